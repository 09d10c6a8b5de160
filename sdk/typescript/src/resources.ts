/** Control-plane resources: `orgConfigs`, `keys` and `providers`. */

import { ControlPlane, itemPath } from "./control.js";
import type {
  CreatedGatewayKey,
  Deleted,
  GatewayKey,
  GatewayKeyCreateParams,
  OrgConfig,
  OrgConfigCreateParams,
  OrgConfigUpdateParams,
  ProviderHealth,
} from "./types.js";
import {
  camelize,
  configToWire,
  createdGatewayKeyFromWire,
  gatewayKeyFromWire,
  isObject,
  listData,
  orgConfigFromWire,
} from "./wire.js";

type Json = Record<string, unknown>;

function object(answer: unknown): Json {
  return isObject(answer) ? answer : {};
}

function deleted(answer: unknown): Deleted {
  const o = object(answer);
  return { id: o["id"] as string, deleted: o["deleted"] === true };
}

/**
 * Provider configs ("org configs") managed at runtime: `/v1/org_configs`. A change takes
 * effect for the next request through the gateway, without a restart.
 */
export class OrgConfigs {
  readonly #cp: ControlPlane;

  constructor(cp: ControlPlane) {
    this.#cp = cp;
  }

  /** Add a provider; requests reach it as `<name>/<model>`. */
  async create(params: OrgConfigCreateParams): Promise<OrgConfig> {
    const body: Json = { provider: params.provider };
    if (params.name !== undefined) body["name"] = params.name;
    if (params.apiKey !== undefined) body["api_key"] = params.apiKey;
    if (params.config !== undefined) body["config"] = configToWire(params.config);
    if (params.enabled !== undefined) body["enabled"] = params.enabled;
    return orgConfigFromWire(object(await this.#cp.request("POST", "/v1/org_configs", body)));
  }

  /** Every stored org config, oldest first. */
  async list(): Promise<OrgConfig[]> {
    return listData(await this.#cp.request("GET", "/v1/org_configs")).map(orgConfigFromWire);
  }

  async get(id: string): Promise<OrgConfig> {
    return orgConfigFromWire(object(await this.#cp.request("GET", itemPath("org_configs", id))));
  }

  /**
   * Change an org config; fields left out (`undefined`) stay as they are. `config` is merged
   * field by field (a `null` field is reset; `config: null` resets them all); `apiKey: null`
   * removes the key.
   */
  async update(id: string, params: OrgConfigUpdateParams): Promise<OrgConfig> {
    const body: Json = {};
    if (params.name !== undefined) body["name"] = params.name;
    if (params.apiKey !== undefined) body["api_key"] = params.apiKey;
    if (params.config !== undefined) body["config"] = params.config === null ? null : configToWire(params.config);
    if (params.enabled !== undefined) body["enabled"] = params.enabled;
    return orgConfigFromWire(object(await this.#cp.request("PATCH", itemPath("org_configs", id), body)));
  }

  async delete(id: string): Promise<Deleted> {
    return deleted(await this.#cp.request("DELETE", itemPath("org_configs", id)));
  }
}

/** Gateway client keys (the bearer keys of the data plane): `/v1/keys`. */
export class Keys {
  readonly #cp: ControlPlane;

  constructor(cp: ControlPlane) {
    this.#cp = cp;
  }

  /** Create a key. The answer's `key` is shown this once; keep it. */
  async create(params: GatewayKeyCreateParams = {}): Promise<CreatedGatewayKey> {
    const body: Json = params.name === undefined ? {} : { name: params.name };
    return createdGatewayKeyFromWire(object(await this.#cp.request("POST", "/v1/keys", body)));
  }

  async list(): Promise<GatewayKey[]> {
    return listData(await this.#cp.request("GET", "/v1/keys")).map(gatewayKeyFromWire);
  }

  /** Revoke a key: refused by the gateway from the next request on. */
  async delete(id: string): Promise<Deleted> {
    return deleted(await this.#cp.request("DELETE", itemPath("keys", id)));
  }
}

/** Provider health: `/v1/providers/health`. */
export class Providers {
  readonly #cp: ControlPlane;

  constructor(cp: ControlPlane) {
    this.#cp = cp;
  }

  /** State, breaker, latency, error rate and last error of every provider upstream. */
  async health(): Promise<ProviderHealth[]> {
    return camelize<ProviderHealth[]>(listData(await this.#cp.request("GET", "/v1/providers/health")));
  }
}
