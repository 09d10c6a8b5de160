/** camelCase <-> snake_case between the SDK's types and the control plane's JSON. */

import type { CreatedGatewayKey, GatewayKey, OrgConfig, ProviderConfig, ProviderConfigPatch } from "./types.js";

type Json = Record<string, unknown>;

const CONFIG_FIELDS: Record<string, string> = {
  baseUrl: "base_url",
  model: "model",
  models: "models",
  organization: "organization",
  headers: "headers",
  fallbacks: "fallbacks",
  strict: "strict",
  defaultMaxTokens: "default_max_tokens",
  http2: "http2",
  fetchImages: "fetch_images",
  connectTimeout: "connect_timeout",
  firstByteTimeout: "first_byte_timeout",
  idleTimeout: "idle_timeout",
};
const CONFIG_FIELDS_BACK: Record<string, string> = Object.fromEntries(
  Object.entries(CONFIG_FIELDS).map(([camel, snake]) => [snake, camel]),
);

/** Known fields renamed; anything else passes unchanged (the server names it in its 400). */
function renameKeys(obj: Json, names: Record<string, string>): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v !== undefined) out[names[k] ?? k] = v;
  }
  return out;
}

export function configToWire(config: ProviderConfig | ProviderConfigPatch): Json {
  return renameKeys(config as Json, CONFIG_FIELDS);
}

export function configFromWire(config: unknown): ProviderConfig {
  return isObject(config) ? (renameKeys(config, CONFIG_FIELDS_BACK) as ProviderConfig) : {};
}

export function orgConfigFromWire(o: Json): OrgConfig {
  return {
    id: o["id"] as string,
    provider: o["provider"] as string,
    name: o["name"] as string,
    config: configFromWire(o["config"]),
    apiKeySet: o["api_key_set"] as boolean,
    apiKeyHint: (o["api_key_hint"] as string | null | undefined) ?? null,
    enabled: o["enabled"] as boolean,
    createdAt: o["created_at"] as number,
    updatedAt: o["updated_at"] as number,
  };
}

export function gatewayKeyFromWire(o: Json): GatewayKey {
  return {
    id: o["id"] as string,
    object: "gateway_key",
    name: (o["name"] as string | null | undefined) ?? null,
    hint: o["hint"] as string,
    createdAt: o["created_at"] as number,
  };
}

export function createdGatewayKeyFromWire(o: Json): CreatedGatewayKey {
  return { ...gatewayKeyFromWire(o), key: o["key"] as string };
}

function toCamel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Every object key camelCased, recursively (for answers with no user-chosen keys). */
export function camelize<T>(value: unknown): T {
  if (Array.isArray(value)) return value.map((v) => camelize(v)) as T;
  if (isObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [toCamel(k), camelize(v)])) as T;
  }
  return value as T;
}

export function isObject(v: unknown): v is Json {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** The `data` array of a `{"object": "list", "data": [...]}` answer. */
export function listData(answer: unknown): Json[] {
  const data = isObject(answer) ? answer["data"] : undefined;
  return Array.isArray(data) ? data.filter(isObject) : [];
}
