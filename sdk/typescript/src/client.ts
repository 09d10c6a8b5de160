/** `Prism`: the official `openai` client for the data plane, typed resources for the
 * control plane. */

import OpenAI from "openai";

import { ControlPlane, type Fetch } from "./control.js";
import { PrismError } from "./errors.js";
import { Keys, OrgConfigs, Providers } from "./resources.js";
import type { ReloadResult } from "./types.js";
import { camelize } from "./wire.js";

export const DEFAULT_BASE_URL = "http://localhost:8080";
export const DEFAULT_CONTROL_PLANE_URL = "http://localhost:8081";
/** Milliseconds. */
export const DEFAULT_TIMEOUT = 60_000;

export interface PrismOptions {
  /** Gateway key for the data plane (default: `PRISM_API_KEY`). */
  apiKey?: string | undefined;
  /** The gateway's data plane, without `/v1` (default: `PRISM_BASE_URL`, else http://localhost:8080). */
  baseUrl?: string | undefined;
  /** The control plane (default: `PRISM_CONTROL_PLANE_URL`, else http://localhost:8081). */
  controlPlaneUrl?: string | undefined;
  /** Admin key for the control plane (default: `PRISM_ADMIN_KEY`). */
  adminKey?: string | undefined;
  /** Milliseconds per request, both planes. */
  timeout?: number | undefined;
  /** Data-plane retries, done by the official SDK (its default when left out). */
  maxRetries?: number | undefined;
  /** Extra headers on data-plane requests. */
  defaultHeaders?: Record<string, string> | undefined;
  /** A `fetch` for both planes (default: the global one). */
  fetch?: Fetch | undefined;
}

function env(name: string): string | undefined {
  const value = globalThis.process?.env?.[name];
  return value === "" ? undefined : value;
}

/** The OpenAI API root: `<baseUrl>/v1` (a base URL already ending in /v1 is kept). */
function dataPlaneUrl(baseUrl: string): string {
  const url = baseUrl.replace(/\/+$/, "");
  return url.endsWith("/v1") ? url : `${url}/v1`;
}

/**
 * A client for one Prism gateway.
 *
 * Data plane (`chat`, `completions`, `embeddings`, `models`, or `openai` for the whole
 * official client): `new OpenAI()` pointed at `<baseUrl>/v1` with the gateway key, so
 * streaming, retries and response types are the official SDK's.
 *
 * Control plane (`orgConfigs`, `keys`, `providers`, `reload()`): the admin API at
 * `controlPlaneUrl` with the admin key; failures throw `PrismError` subclasses.
 */
export class Prism {
  readonly apiKey: string | undefined;
  readonly baseUrl: string;
  readonly controlPlaneUrl: string;
  readonly orgConfigs: OrgConfigs;
  readonly keys: Keys;
  readonly providers: Providers;

  readonly #options: PrismOptions;
  readonly #control: ControlPlane;
  #openai: OpenAI | undefined;

  constructor(options: PrismOptions = {}) {
    this.#options = options;
    this.apiKey = options.apiKey ?? env("PRISM_API_KEY");
    this.baseUrl = options.baseUrl ?? env("PRISM_BASE_URL") ?? DEFAULT_BASE_URL;
    this.controlPlaneUrl = options.controlPlaneUrl ?? env("PRISM_CONTROL_PLANE_URL") ?? DEFAULT_CONTROL_PLANE_URL;
    this.#control = new ControlPlane({
      baseUrl: this.controlPlaneUrl,
      adminKey: options.adminKey ?? env("PRISM_ADMIN_KEY"),
      timeout: options.timeout ?? DEFAULT_TIMEOUT,
      fetch: options.fetch,
    });
    this.orgConfigs = new OrgConfigs(this.#control);
    this.keys = new Keys(this.#control);
    this.providers = new Providers(this.#control);
  }

  /** The official OpenAI client, configured for this gateway (created on first use). */
  get openai(): OpenAI {
    if (this.#openai === undefined) {
      if (!this.apiKey) {
        throw new PrismError(
          "No gateway key for the data plane: pass `apiKey` to new Prism() or set PRISM_API_KEY.",
        );
      }
      const o = this.#options;
      this.#openai = new OpenAI({
        apiKey: this.apiKey,
        baseURL: dataPlaneUrl(this.baseUrl),
        timeout: o.timeout ?? DEFAULT_TIMEOUT,
        ...(o.maxRetries !== undefined && { maxRetries: o.maxRetries }),
        ...(o.defaultHeaders !== undefined && { defaultHeaders: o.defaultHeaders }),
        ...(o.fetch !== undefined && { fetch: o.fetch }),
      });
    }
    return this.#openai;
  }

  get chat(): OpenAI["chat"] {
    return this.openai.chat;
  }

  get completions(): OpenAI["completions"] {
    return this.openai.completions;
  }

  get embeddings(): OpenAI["embeddings"] {
    return this.openai.embeddings;
  }

  get models(): OpenAI["models"] {
    return this.openai.models;
  }

  /**
   * Re-read the gateway's config file. A rejected file throws `BadRequestError` (its
   * `body.errors` lists every error) and the running config stays.
   */
  async reload(): Promise<ReloadResult> {
    return camelize<ReloadResult>(await this.#control.request("POST", "/v1/reload"));
  }
}
