/** The control-plane transport: global `fetch`, the admin bearer key, JSON in and out, and
 * error answers turned into typed errors. */

import { APIConnectionError, PrismError, errorForStatus } from "./errors.js";

export type Fetch = typeof globalThis.fetch;

export interface ControlPlaneOptions {
  baseUrl: string;
  adminKey: string | undefined;
  /** Milliseconds per request. */
  timeout: number;
  fetch?: Fetch | undefined;
}

export class ControlPlane {
  readonly baseUrl: string;
  readonly #adminKey: string | undefined;
  readonly #timeout: number;
  readonly #fetch: Fetch;

  constructor(opts: ControlPlaneOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.#adminKey = opts.adminKey;
    this.#timeout = opts.timeout;
    this.#fetch = opts.fetch ?? globalThis.fetch;
  }

  async request(method: string, path: string, body?: unknown): Promise<unknown> {
    if (!this.#adminKey) {
      throw new PrismError(
        "No admin key for the control plane: pass `adminKey` to new Prism() or set PRISM_ADMIN_KEY.",
      );
    }
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.#adminKey}`,
      Accept: "application/json",
    };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp: Response;
    try {
      resp = await this.#fetch(`${this.baseUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#timeout),
      });
    } catch (e) {
      const timedOut = e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError");
      const why = timedOut ? `timed out after ${this.#timeout} ms` : `cannot be reached (${describe(e)})`;
      throw new APIConnectionError(`The control plane at ${this.baseUrl} ${why}`, { cause: e });
    }
    const text = await resp.text();
    let data: unknown = undefined;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = undefined;
      }
    }
    if (!resp.ok) throw errorForStatus(resp.status, data, text);
    if (data === undefined) {
      throw new PrismError(`The control plane answered ${resp.status} with a body that is not JSON`, {
        status: resp.status,
        body: text,
      });
    }
    return data;
  }
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message}: ${cause.message}` : e.message;
  }
  return String(e);
}

export function itemPath(collection: string, id: string): string {
  if (typeof id !== "string" || id === "") {
    throw new TypeError(`expected a non-empty ${collection} id, got ${JSON.stringify(id)}`);
  }
  return `/v1/${collection}/${encodeURIComponent(id)}`;
}
