/**
 * Real `sessiond serve` processes for the chaos suites: the CLI's `serve` as
 * a child process (the sources as global setup transpiled them for this run,
 * see test/support/compiled-server.ts), configured through its environment
 * like any deployment, on a loopback port the OS picks. A process can be stopped
 * (SIGTERM), killed outright (SIGKILL: no shutdown code runs at all) and asked
 * for its resident memory. Every child is killed when the test process exits,
 * so a failed run leaves no server behind.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { inject } from "vitest";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** The token secret every chaos server shares (tests mint tokens with it). */
export const CHAOS_SECRET = "chaos-secret-0123456789abcdef-0123456789abcdef";

/** Kept output per process: the tail is enough to diagnose a failure. */
const MAX_OUTPUT = 256 * 1024;

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export interface ServeOptions {
  databaseUrl: string;
  /** Extra environment variables (SESSIOND_LEASE_MS, SESSIOND_TOKEN_DELAY_MS, …). */
  env?: Record<string, string>;
  /** A name for messages (e.g. "node-2"). */
  name?: string;
  /** How long the process may take to listen (default 60 s: two busy cores). */
  startMs?: number;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class ServerProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  /** http://127.0.0.1:port, once listening. */
  url = "";
  /** The processor's owner id (lease_owner in sessiond.sessions) from the banner, if it processes. */
  owner: string | undefined;
  /** True once this harness sent SIGKILL or SIGTERM (an exit without it is a crash). */
  stoppedByUs = false;
  #output = "";
  #outputWaiters = new Set<() => void>();

  private constructor(child: ChildProcess, name: string) {
    this.child = child;
    this.name = name;
    live.add(child);
    const onData = (chunk: Buffer) => {
      this.#output += chunk.toString();
      if (this.#output.length > MAX_OUTPUT * 2) this.#output = this.#output.slice(-MAX_OUTPUT);
      for (const waiter of [...this.#outputWaiters]) waiter();
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        resolve({ code, signal });
        for (const waiter of [...this.#outputWaiters]) waiter();
      });
    });
  }

  /** Starts a server and resolves once it listens. */
  static async start(options: ServeOptions): Promise<ServerProcess> {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of Object.keys(env))
      if (name.startsWith("SESSIOND_") || name === "OPENAI_API_KEY") delete env[name];
    Object.assign(env, {
      DATABASE_URL: options.databaseUrl,
      PORT: "0",
      HOST: "127.0.0.1",
      SESSIOND_SECRET: CHAOS_SECRET,
      SESSIOND_DATA_DIR: join(tmpdir(), "sessiond-chaos-unused"),
      SESSIOND_MIGRATE: "off",
      SESSIOND_LOG_LEVEL: "warn",
      ...options.env,
    });
    const child = spawn(process.execPath, [inject("serveEntry"), "serve"], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const server = new ServerProcess(child, options.name ?? "sessiond");
    try {
      const [, url] = await server.waitForOutput(/sessiond listening on (http:\/\/[^\s]+)/, options.startMs ?? 60_000);
      server.url = url as string;
      // The banner's next lines follow at once; a server without processing prints no owner.
      const owner = await server.waitForOutput(/ {2}processor: (\S+)/, 2_000).catch(() => undefined);
      server.owner = owner?.[1];
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    }
    return server;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** True until the process exits. */
  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get output(): string {
    return this.#output;
  }

  /** Resolves with the first match of `pattern` in the output; rejects on exit or after `ms`. */
  async waitForOutput(pattern: RegExp, ms: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = pattern.exec(this.#output);
      if (found) return found;
      if (!this.alive) throw new Error(`${this.name} exited before printing ${pattern}:\n${this.#output.slice(-4000)}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`${this.name} printed no ${pattern} within ${ms} ms:\n${this.#output.slice(-4000)}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#outputWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.#outputWaiters.add(done);
      });
    }
  }

  /** SIGKILL: the process dies wherever it is (mid-append, mid-run, mid-commit, mid-delivery). */
  async kill9(): Promise<Exit> {
    this.stoppedByUs = true;
    if (this.alive) this.child.kill("SIGKILL");
    return this.exited;
  }

  /** SIGTERM (graceful shutdown); SIGKILL if it has not exited after `ms`. */
  async stop(ms = 15_000): Promise<Exit> {
    this.stoppedByUs = true;
    if (!this.alive) return this.exited;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), ms);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  /** Resident set size in bytes (Linux /proc), or undefined once the process is gone. */
  rssBytes(): number | undefined {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, "utf8");
      const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
      return kb === undefined ? undefined : Number(kb) * 1024;
    } catch {
      return undefined;
    }
  }

  /** CPU time (user + system) the process has used so far, in ms (Linux /proc). */
  cpuMs(): number {
    try {
      const fields = readFileSync(`/proc/${this.pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
      // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the command).
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
    } catch {
      return Number.NaN;
    }
  }

  /** Log lines at level error or fatal (pino JSON: level ≥ 50). */
  errorLines(): string[] {
    return this.#output.split("\n").filter((line) => /"level":(50|60)\b/.test(line));
  }

  /** One sample of /metrics by its full name with labels (e.g. `sessiond_socket_closes_total{code="4408"}`); 0 if absent. */
  async metric(name: string): Promise<number> {
    // Generous: right after database faults /metrics may wait for the pool to recover (up to ~10 s).
    const { body } = await this.get("/metrics", {}, 30_000);
    const line = body.split("\n").find((l) => l.startsWith(`${name} `));
    return line ? Number(line.slice(name.length + 1)) : 0;
  }

  /** GET a path; resolves with status and body text (never throws on HTTP errors; rejects after `ms`). */
  async get(path: string, init: RequestInit = {}, ms = 10_000): Promise<{ status: number; body: string }> {
    const response = await fetch(`${this.url}${path}`, { ...init, signal: AbortSignal.timeout(ms) });
    return { status: response.status, body: await response.text() };
  }
}

/** Kills every server still running (afterEach/afterAll). */
export async function killAll(servers: Iterable<ServerProcess>): Promise<void> {
  await Promise.all([...servers].map((server) => server.kill9()));
}
