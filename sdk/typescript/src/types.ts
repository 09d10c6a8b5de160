/**
 * Control-plane shapes, in camelCase. The wire format is snake_case; `./wire.ts` converts
 * both ways.
 */

/** Provider kinds the gateway knows (any OpenAI-compatible server is `openai`). */
export type ProviderKind =
  | "openai"
  | "mistral"
  | "ollama"
  | "vllm"
  | "lmstudio"
  | "anthropic"
  | "gemini"
  | "cohere"
  | (string & {});

/** A duration as the gateway reads it: `"30s"`, `"500ms"`, or a number of seconds. */
export type Duration = string | number;

/** The `config` object of an org config. The server rejects unknown fields. */
export interface ProviderConfig {
  /** The upstream, with the version path for OpenAI-compatible kinds (`http://host:8000/v1`). */
  baseUrl?: string;
  /** The model a self-hosted server serves, reachable as `<name>/<model>`. */
  model?: string;
  /** More model names listed by `/v1/models`. */
  models?: string[];
  /** OpenAI `OpenAI-Organization` header. */
  organization?: string;
  /** Extra headers sent upstream (not credentials: those go in `apiKey`). */
  headers?: Record<string, string>;
  /** `provider/model` targets tried after this provider fails. */
  fallbacks?: string[];
  strict?: boolean;
  defaultMaxTokens?: number;
  http2?: boolean;
  fetchImages?: boolean;
  connectTimeout?: Duration;
  firstByteTimeout?: Duration;
  idleTimeout?: Duration;
}

/** A config change: each field given replaces the stored one; `null` resets it. */
export type ProviderConfigPatch = { [K in keyof ProviderConfig]?: ProviderConfig[K] | null };

/** A provider config stored by the gateway. The provider key itself never comes back. */
export interface OrgConfig {
  id: string;
  provider: ProviderKind;
  name: string;
  config: ProviderConfig;
  apiKeySet: boolean;
  /** A hint of the stored key (`sk-...wxyz`), or null without one. */
  apiKeyHint: string | null;
  enabled: boolean;
  /** Unix seconds. */
  createdAt: number;
  updatedAt: number;
}

export interface OrgConfigCreateParams {
  provider: ProviderKind;
  /** The `name/` prefix of model names routed to it (default: the kind). */
  name?: string;
  /** Stored encrypted, never returned. */
  apiKey?: string;
  config?: ProviderConfig;
  enabled?: boolean;
}

export interface OrgConfigUpdateParams {
  name?: string;
  /** A string sets the key; `null` removes it. */
  apiKey?: string | null;
  /** Merged field by field into the stored config; `null` resets every field. */
  config?: ProviderConfigPatch | null;
  enabled?: boolean;
}

export interface Deleted {
  id: string;
  deleted: boolean;
}

/** A gateway client key as listed: only a hint of the key is kept. */
export interface GatewayKey {
  id: string;
  object: "gateway_key";
  name: string | null;
  hint: string;
  createdAt: number;
}

/** The answer to `keys.create`: the only time the full `key` is shown. */
export interface CreatedGatewayKey extends GatewayKey {
  key: string;
}

export interface GatewayKeyCreateParams {
  /** A label for operators (`ci`, `team-a`). */
  name?: string;
}

/** One provider upstream in `providers.health()`. */
export interface ProviderHealth {
  provider: string;
  kind: ProviderKind;
  upstream: string;
  state: "healthy" | "degraded" | "ejected";
  breaker: "closed" | "open" | "half_open";
  errorRate: number;
  consecutiveFailures: number;
  breakerRetryInMs: number | null;
  latencyMs?: { ewma: number | null; p50: number | null; p95: number | null };
  ttftMs?: number | null;
  requests?: number;
  failures?: number;
  /** Unix seconds, while the upstream asked to slow down. */
  rateLimitedUntil?: number | null;
  ratelimitRemaining?: { requests: number | null; tokens: number | null };
  lastError?: { message: string; at: number | null } | null;
  probe?: { ok: boolean | null; latencyMs: number | null };
}

export interface ReloadResult {
  reloaded: boolean;
  added: string[];
  removed: string[];
  changed: string[];
  routesChanged: boolean;
}
