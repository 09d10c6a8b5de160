/**
 * Start a real Prism gateway (the debug build) and its mock upstreams for the SDK tests.
 * The binaries come from `$PRISM_BIN_DIR` or `<repo>/target/debug` (`cargo build --bins`).
 */

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const GATEWAY_KEY = "sk-prism-sdk-test-key";
export const ADMIN_KEY = "admin-sdk-test-key";

// build-test/test/gateway.js -> the repository root is four levels up.
const REPO = resolve(fileURLToPath(import.meta.url), "../../../../..");

function binary(name: string): string {
  const path = join(process.env["PRISM_BIN_DIR"] || join(REPO, "target", "debug"), name);
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`cargo build --bins\` first`);
  return path;
}

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}

async function status(url: string): Promise<number> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(timer);
      ok();
    });
    child.kill("SIGTERM");
  });
}

/** One `prism-mock` process: OpenAI format at `v1`, native formats at `root`. */
export class Mock {
  private constructor(
    private readonly child: ChildProcess,
    readonly root: string,
  ) {}

  get v1(): string {
    return `${this.root}/v1`;
  }

  static async start(): Promise<Mock> {
    const child = spawn(binary("prism-mock"), ["--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] });
    const lines = createInterface({ input: child.stdout! });
    const banner: string = await new Promise((ok, fail) => {
      lines.once("line", ok);
      child.once("exit", (code) => fail(new Error(`prism-mock exited (${code}) before listening`)));
    });
    lines.close();
    child.stdout!.resume();
    const url = banner.trim().split(" ").pop() ?? "";
    if (!url.startsWith("http://")) {
      child.kill("SIGKILL");
      throw new Error(`unexpected prism-mock banner: ${banner}`);
    }
    return new Mock(child, url.replace(/\/+$/, ""));
  }

  async stats(): Promise<{ requests: number; by_path: Record<string, number> }> {
    const r = await fetch(`${this.root}/_mock/stats`);
    return (await r.json()) as { requests: number; by_path: Record<string, number> };
  }

  async requests(): Promise<number> {
    return (await this.stats()).requests;
  }

  close(): Promise<void> {
    return stop(this.child);
  }
}

/** `prism serve` with no providers: the tests add them at runtime. */
export class Gateway {
  private constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
    readonly baseUrl: string,
    readonly controlPlaneUrl: string,
  ) {}

  static async start(): Promise<Gateway> {
    const dir = mkdtempSync(join(tmpdir(), "prism-sdk-ts-"));
    const config = join(dir, "prism.toml");
    writeFileSync(
      config,
      `[server]\nupgrade_sock = "${join(dir, "upgrade.sock")}"\npid_file = "${join(dir, "prism.pid")}"\n` +
        `[health]\nprobe_interval = "0s"\n`,
    );
    const [port, adminPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    const log = openSync(join(dir, "prism.log"), "a");
    const child = spawn(binary("prism"), ["serve", "-c", config], {
      env: {
        ...process.env,
        PRISM_LISTEN: `127.0.0.1:${port}`,
        PRISM_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
        PRISM_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
        PRISM_DATA_DIR: join(dir, "data"),
        PRISM_API_KEYS: GATEWAY_KEY,
        PRISM_ADMIN_KEY: ADMIN_KEY,
        PRISM_MASTER_KEY: randomBytes(32).toString("base64"),
      },
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    const gw = new Gateway(child, dir, `http://127.0.0.1:${port}`, `http://127.0.0.1:${adminPort}`);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && child.exitCode === null) {
      if ((await status(`${gw.baseUrl}/healthz`)) === 200 && (await status(`${gw.controlPlaneUrl}/readyz`)) === 200) {
        return gw;
      }
      await new Promise((ok) => setTimeout(ok, 100));
    }
    const text = gw.log();
    await gw.close();
    throw new Error(`prism did not become ready; its log:\n${text}`);
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, "prism.log"), "utf8");
    } catch {
      return "";
    }
  }

  async close(): Promise<void> {
    await stop(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
