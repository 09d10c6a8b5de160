/** The TypeScript SDK against a real gateway (debug build) and the mock upstream. */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import OpenAI from "openai";

import {
  APIConnectionError,
  APIStatusError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  Prism,
  PrismError,
} from "../src/index.js";
import { ADMIN_KEY, GATEWAY_KEY, Gateway, Mock, freePort } from "./gateway.js";

const HELLO: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: "user", content: "Hello" }];

const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

async function chatText(client: Prism, model: string): Promise<string> {
  const resp = await client.chat.completions.create({ model, messages: HELLO });
  return resp.choices[0]?.message.content ?? "";
}

async function streamText(client: Prism, model: string): Promise<[string, number]> {
  const stream = await client.chat.completions.create({ model, messages: HELLO, stream: true });
  const parts: string[] = [];
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta.content;
    if (delta) parts.push(delta);
  }
  return [parts.join(""), parts.length];
}

describe("Prism TypeScript SDK against a real gateway", () => {
  let gw: Gateway;
  let mock: Mock;
  let mock2: Mock;
  let client: Prism;

  before(async () => {
    [mock, mock2] = [await Mock.start(), await Mock.start()];
    gw = await Gateway.start();
    client = new Prism({
      apiKey: GATEWAY_KEY,
      baseUrl: gw.baseUrl,
      controlPlaneUrl: gw.controlPlaneUrl,
      adminKey: ADMIN_KEY,
      maxRetries: 0,
    });
  });

  after(async () => {
    await Promise.all([gw?.close(), mock?.close(), mock2?.close()]);
  });

  test("the data plane is the official openai client", () => {
    assert.ok(client.openai instanceof OpenAI);
    assert.equal(client.openai.baseURL, `${gw.baseUrl}/v1`);
    assert.equal(client.openai.apiKey, GATEWAY_KEY);
    assert.equal(client.chat, client.openai.chat);
    const other = new Prism({ apiKey: "k", baseUrl: `${gw.baseUrl}/v1/` });
    assert.equal(other.openai.baseURL, `${gw.baseUrl}/v1`, "a base URL naming /v1 is not doubled");
  });

  test("create a provider, chat and stream through it", async () => {
    const name = unique("mock-openai");
    const provider = await client.orgConfigs.create({
      provider: "openai",
      name,
      apiKey: "sk-test-123",
      config: { baseUrl: mock.v1 },
    });
    assert.match(provider.id, /^oc_/);
    assert.equal(provider.provider, "openai");
    assert.equal(provider.name, name);
    assert.deepEqual(provider.config, { baseUrl: mock.v1 });
    assert.equal(provider.apiKeySet, true);
    assert.equal(provider.enabled, true);
    assert.equal(typeof provider.createdAt, "number");
    assert.ok(!JSON.stringify(provider).includes("sk-test-123"), "the provider key never comes back");

    const before = await mock.requests();
    const resp = await client.chat.completions.create({ model: `${name}/some-model`, messages: HELLO });
    assert.equal(resp.object, "chat.completion");
    assert.match(resp.choices[0]?.message.content ?? "", /prism-mock received \d+ bytes/);

    const [text, chunks] = await streamText(client, `${name}/some-model`);
    assert.match(text, /prism-mock received \d+ bytes/);
    assert.ok(chunks > 1, `a stream of several chunks, got ${chunks}`);
    assert.equal(await mock.requests(), before + 2);

    assert.deepEqual(await client.orgConfigs.delete(provider.id), { id: provider.id, deleted: true });
  });

  test("list, get and update (base URL, key, config reset, rename)", async () => {
    const name = unique("mock-openai");
    const provider = await client.orgConfigs.create({ provider: "openai", name, config: { baseUrl: mock.v1 } });
    try {
      assert.equal(provider.apiKeySet, false);
      assert.equal(provider.apiKeyHint, null);
      assert.ok((await client.orgConfigs.list()).some((p) => p.id === provider.id));
      assert.deepEqual(await client.orgConfigs.get(provider.id), provider);

      let updated = await client.orgConfigs.update(provider.id, {
        config: { baseUrl: mock2.v1, organization: "my-org" },
        apiKey: "sk-new-4567",
      });
      assert.deepEqual(updated.config, { baseUrl: mock2.v1, organization: "my-org" });
      assert.equal(updated.apiKeySet, true);
      const [first, second] = [await mock.requests(), await mock2.requests()];
      assert.match(await chatText(client, `${name}/m`), /prism-mock received/);
      assert.deepEqual([await mock.requests(), await mock2.requests()], [first, second + 1]);

      updated = await client.orgConfigs.update(provider.id, { config: { organization: null }, apiKey: null });
      assert.deepEqual(updated.config, { baseUrl: mock2.v1 });
      assert.equal(updated.apiKeySet, false);
      assert.equal(updated.name, name);

      const renamed = `${name}-renamed`;
      updated = await client.orgConfigs.update(provider.id, { name: renamed, enabled: true });
      assert.equal(updated.name, renamed);
      assert.match(await chatText(client, `${renamed}/m`), /prism-mock received/);
      await assert.rejects(chatText(client, `${name}/m`), OpenAI.NotFoundError);
    } finally {
      await client.orgConfigs.delete(provider.id);
    }
  });

  test("an Anthropic provider, reached in the OpenAI format", async () => {
    const name = unique("claude");
    const provider = await client.orgConfigs.create({
      provider: "anthropic",
      name,
      apiKey: "sk-ant-test",
      config: { baseUrl: mock.root },
    });
    try {
      const before = (await mock.stats()).by_path["/v1/messages"] ?? 0;
      assert.match(await chatText(client, `${name}/claude-haiku-4-5`), /prism-mock received/);
      const [text] = await streamText(client, `${name}/claude-haiku-4-5`);
      assert.match(text, /prism-mock received/);
      assert.equal((await mock.stats()).by_path["/v1/messages"], before + 2);
    } finally {
      await client.orgConfigs.delete(provider.id);
    }
  });

  test("a deleted provider is no longer routed", async () => {
    const name = unique("mock-openai");
    const provider = await client.orgConfigs.create({ provider: "openai", name, config: { baseUrl: mock.v1 } });
    assert.match(await chatText(client, `${name}/m`), /prism-mock received/);
    assert.equal((await client.orgConfigs.delete(provider.id)).deleted, true);
    assert.ok(!(await client.orgConfigs.list()).some((p) => p.id === provider.id));
    await assert.rejects(client.orgConfigs.get(provider.id), NotFoundError);
    await assert.rejects(chatText(client, `${name}/m`), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.status, 404);
      return true;
    });
  });

  test("gateway keys: create, list, use, revoke", async () => {
    const name = unique("mock-openai");
    const provider = await client.orgConfigs.create({ provider: "openai", name, config: { baseUrl: mock.v1 } });
    try {
      const created = await client.keys.create({ name: "sdk-test" });
      assert.match(created.key, /^sk-prism-/);
      assert.match(created.id, /^key_/);
      assert.equal(created.name, "sdk-test");
      assert.equal(created.object, "gateway_key");
      const listed = (await client.keys.list()).find((k) => k.id === created.id);
      assert.ok(listed, "the new key is listed");
      assert.equal(listed.hint, created.hint);
      assert.ok(!("key" in listed), "a listed key shows only its hint");

      const user = new Prism({ apiKey: created.key, baseUrl: gw.baseUrl, maxRetries: 0 });
      assert.match(await chatText(user, `${name}/m`), /prism-mock received/);
      assert.deepEqual(await client.keys.delete(created.id), { id: created.id, deleted: true });
      await assert.rejects(chatText(user, `${name}/m`), (e: unknown) => {
        assert.ok(e instanceof OpenAI.AuthenticationError);
        assert.equal(e.status, 401);
        return true;
      });
      assert.ok(!(await client.keys.list()).some((k) => k.id === created.id));
      await assert.rejects(client.keys.delete(created.id), NotFoundError);

      const anon = await client.keys.create();
      assert.equal(anon.name, null);
      await client.keys.delete(anon.id);
    } finally {
      await client.orgConfigs.delete(provider.id);
    }
  });

  test("provider health", async () => {
    const name = unique("mock-openai");
    const provider = await client.orgConfigs.create({ provider: "openai", name, config: { baseUrl: mock.v1 } });
    try {
      await chatText(client, `${name}/m`);
      const entries = (await client.providers.health()).filter((h) => h.provider === name);
      assert.equal(entries.length, 1);
      const h = entries[0]!;
      assert.equal(h.kind, "openai");
      assert.equal(h.upstream, mock.v1);
      assert.equal(h.state, "healthy");
      assert.equal(h.breaker, "closed");
      assert.equal(typeof h.errorRate, "number");
      assert.ok((h.requests ?? 0) >= 1);
    } finally {
      await client.orgConfigs.delete(provider.id);
    }
  });

  test("reload", async () => {
    const result = await client.reload();
    assert.equal(result.reloaded, true);
    assert.deepEqual(result.added, []);
    assert.deepEqual(result.removed, []);
    assert.equal(typeof result.routesChanged, "boolean");
  });

  test("errors are typed and carry the server's message", async () => {
    await assert.rejects(client.orgConfigs.get("oc_does_not_exist"), (e: unknown) => {
      assert.ok(e instanceof NotFoundError && e instanceof APIStatusError && e instanceof PrismError);
      assert.equal(e.status, 404);
      assert.equal(e.type, "not_found_error");
      assert.equal(e.param, "id");
      assert.match(e.message, /oc_does_not_exist/);
      assert.equal(e.name, "NotFoundError");
      return true;
    });
    await assert.rejects(client.orgConfigs.update("oc_does_not_exist", { enabled: false }), NotFoundError);
    await assert.rejects(client.orgConfigs.delete("oc_does_not_exist"), NotFoundError);

    const name = unique("mock-openai");
    const provider = await client.orgConfigs.create({ provider: "openai", name, config: { baseUrl: mock.v1 } });
    try {
      await assert.rejects(
        client.orgConfigs.create({ provider: "openai", name, config: { baseUrl: mock.v1 } }),
        (e: unknown) => {
          assert.ok(e instanceof ConflictError);
          assert.equal(e.status, 409);
          assert.equal(e.param, "name");
          assert.equal(e.code, "conflict");
          assert.ok(e.message.includes(provider.id));
          return true;
        },
      );
      await assert.rejects(
        client.orgConfigs.update(provider.id, { config: { baseUrl: "ftp://nowhere" } }),
        (e: unknown) => {
          assert.ok(e instanceof BadRequestError);
          assert.equal(e.status, 400);
          assert.equal(e.param, "config.base_url");
          assert.match(e.message, /http or https/);
          return true;
        },
      );
      assert.deepEqual((await client.orgConfigs.get(provider.id)).config, { baseUrl: mock.v1 }, "nothing changed");
    } finally {
      await client.orgConfigs.delete(provider.id);
    }

    await assert.rejects(client.orgConfigs.create({ provider: "not-a-kind", name }), (e: unknown) => {
      assert.ok(e instanceof BadRequestError);
      assert.equal(e.param, "provider");
      assert.match(e.message, /Unknown provider kind/);
      return true;
    });
  });

  test("wrong or missing admin key, unreachable control plane", async () => {
    const wrong = new Prism({ controlPlaneUrl: gw.controlPlaneUrl, adminKey: "wrong-admin-key" });
    await assert.rejects(wrong.orgConfigs.list(), (e: unknown) => {
      assert.ok(e instanceof AuthenticationError);
      assert.equal(e.status, 401);
      assert.equal(e.type, "authentication_error");
      assert.match(e.message, /admin key/);
      return true;
    });

    const saved = process.env["PRISM_ADMIN_KEY"];
    try {
      delete process.env["PRISM_ADMIN_KEY"];
      const missing = new Prism({ controlPlaneUrl: gw.controlPlaneUrl });
      await assert.rejects(missing.keys.list(), (e: unknown) => e instanceof PrismError && /PRISM_ADMIN_KEY/.test(e.message));
      process.env["PRISM_ADMIN_KEY"] = ADMIN_KEY;
      const fromEnv = new Prism({ controlPlaneUrl: gw.controlPlaneUrl });
      assert.ok(Array.isArray(await fromEnv.orgConfigs.list()));
    } finally {
      if (saved === undefined) delete process.env["PRISM_ADMIN_KEY"];
      else process.env["PRISM_ADMIN_KEY"] = saved;
    }

    const down = new Prism({ controlPlaneUrl: `http://127.0.0.1:${await freePort()}`, adminKey: ADMIN_KEY });
    await assert.rejects(down.providers.health(), (e: unknown) => {
      assert.ok(e instanceof APIConnectionError);
      assert.equal(e.status, undefined);
      return true;
    });
  });

  test("the data plane without a gateway key", async () => {
    const saved = process.env["PRISM_API_KEY"];
    try {
      delete process.env["PRISM_API_KEY"];
      const none = new Prism({ baseUrl: gw.baseUrl });
      assert.throws(() => none.chat, /PRISM_API_KEY/);
      process.env["PRISM_API_KEY"] = "sk-prism-not-a-real-key";
      const bad = new Prism({ baseUrl: gw.baseUrl, maxRetries: 0 });
      await assert.rejects(chatText(bad, "x/y"), OpenAI.AuthenticationError);
    } finally {
      if (saved === undefined) delete process.env["PRISM_API_KEY"];
      else process.env["PRISM_API_KEY"] = saved;
    }
  });
});
