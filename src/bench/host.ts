/**
 * The bench host: the process under test. The bench command forks it (see
 * host-client.ts) so that the servers it measures do not share an event loop
 * with the load generator, and so that the CPU profiler sees the server side
 * only. It holds databases and servers by id and answers the commands of
 * host-protocol.ts over the IPC channel; it exits when told to or when the
 * channel closes (the bench died).
 */
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { performance } from "node:perf_hooks";
import { LocalChatModel } from "../agent/local-model.js";
import { type Db, openDb } from "../db/index.js";
import { startServer } from "../server/index.js";
import { ownCpuMs } from "./cpu.js";
import { startDirectServer } from "./direct-server.js";
import { measureDispatch } from "./dispatch.js";
import type { HostCommand, HostCommands, HostReply, HostRequest } from "./host-protocol.js";
import { StatementCounter } from "./statement-counter.js";

interface OpenDb {
  db: Db;
  kind: "postgres" | "pglite";
  url: string | undefined;
}

interface RunningServer {
  close(): Promise<void>;
  sockets(): number;
  statements?: StatementCounter;
}

const dbs = new Map<string, OpenDb>();
const servers = new Map<string, RunningServer>();
let profiler: Session | undefined;

function dbOf(id: string): OpenDb {
  const entry = dbs.get(id);
  if (!entry) throw new Error(`no database ${id}`);
  return entry;
}

function replyText(content: string, i: number): string {
  return `[local model] You said: "${content} ${i}". (message ${2 * (i % 50) + 2} in this conversation)`;
}

type Handlers = { [C in HostCommand]: (params: HostCommands[C]["params"]) => Promise<HostCommands[C]["result"]> };

const handlers: Handlers = {
  async openDb(params) {
    const started = performance.now();
    const db = await openDb({
      ...(params.kind === "postgres" ? { databaseUrl: params.url } : { dataDir: params.dataDir }),
      postgres: { max: params.poolMax ?? 10, applicationName: "sessiond-bench" },
    });
    dbs.set(params.id, { db, kind: params.kind, url: params.url });
    return { kind: params.kind, migrateMs: performance.now() - started };
  },

  async closeDb({ id }) {
    const entry = dbs.get(id);
    dbs.delete(id);
    await entry?.db.close();
    return null;
  },

  async startSessiond(params) {
    const statements = new StatementCounter();
    const server = await startServer({
      db: statements.wrap(dbOf(params.dbId).db),
      model: new LocalChatModel({ tokenDelayMs: params.tokenDelayMs }),
      secret: params.secret,
      host: "127.0.0.1",
      port: 0,
      migrate: false,
      concurrency: params.concurrency,
      logLevel: "warn",
      // The bench drives each socket far faster than a person would; the limits
      // are per connection and would measure the limiter, not the server.
      rateLimitPerSec: 100_000,
      rateLimitBurst: 100_000,
      maxBadFrames: 100_000,
      graceMs: 2_000,
    });
    servers.set(params.id, {
      close: () => server.close({ graceMs: 2_000 }),
      sockets: () => server.metrics.openSockets,
      statements,
    });
    return { url: server.url };
  },

  async startDirect(params) {
    const server = await startDirectServer({
      model: new LocalChatModel({ tokenDelayMs: params.tokenDelayMs }),
      secret: params.secret,
    });
    servers.set(params.id, { close: () => server.close(), sockets: () => server.sockets });
    return { url: server.url };
  },

  async stopServer({ id }) {
    const server = servers.get(id);
    servers.delete(id);
    await server?.close();
    return null;
  },

  async statements({ id }) {
    const server = servers.get(id);
    if (!server) throw new Error(`no server ${id}`);
    return server.statements?.take() ?? StatementCounter.empty();
  },

  async sockets({ id }) {
    const server = servers.get(id);
    if (!server) throw new Error(`no server ${id}`);
    return { sockets: server.sockets() };
  },

  async cpu() {
    return { ms: ownCpuMs() };
  },

  async memory() {
    // Collect, then give V8 a moment to hand freed pages back, three times: RSS
    // read right after one collection still counts garbage of the last burst.
    const gc = (globalThis as { gc?: () => void }).gc;
    for (let i = 0; i < 3 && gc; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const m = process.memoryUsage();
    return {
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
    };
  },

  async dispatch(params) {
    const { dbId, ...rest } = params;
    const entry = dbOf(dbId);
    if (entry.kind !== "postgres" || !entry.url) return measureDispatch(entry.db, entry.db, rest);
    // The processor gets a pool of its own (as in a server), the appends one more connection.
    const runtimeDb = await openDb({ databaseUrl: entry.url, migrate: false, postgres: { max: 10 } });
    const appendDb = await openDb({ databaseUrl: entry.url, migrate: false, postgres: { max: 1 } });
    try {
      return await measureDispatch(runtimeDb, appendDb, rest);
    } finally {
      await appendDb.close();
      await runtimeDb.close();
    }
  },

  async insertRate(params) {
    const entry = dbOf(params.dbId);
    const connections = entry.kind === "pglite" ? 1 : Math.max(1, params.connections);
    const db =
      entry.kind === "postgres" && entry.url
        ? await openDb({ databaseUrl: entry.url, migrate: false, postgres: { max: connections } })
        : entry.db;
    const table = "sessiond_bench_inserts";
    try {
      await db.query(
        `create table if not exists ${table} (id bigserial primary key, session_key text not null, payload jsonb not null, created_at timestamptz not null default now())`,
      );
      const insert = `insert into ${table} (session_key, payload) values ($1, $2)`;
      // Warm every connection (and its prepared statement) before the clock starts.
      await Promise.all(
        Array.from({ length: connections }, (_, w) => db.query(insert, [`warm-${w}`, { text: "warm" }])),
      );
      const perBucket: number[] = [];
      let commits = 0;
      const started = performance.now();
      const end = started + params.durationMs;
      const worker = async (w: number) => {
        for (let i = 0; performance.now() < end; i++) {
          await db.query(insert, [`bench-${w}`, { text: "a single-row insert", i }]);
          commits += 1;
          const bucket = Math.floor((performance.now() - started) / params.bucketMs);
          perBucket[bucket] = (perBucket[bucket] ?? 0) + 1;
        }
      };
      await Promise.all(Array.from({ length: connections }, (_, w) => worker(w)));
      const elapsedMs = performance.now() - started;
      await db.query(`drop table if exists ${table}`);
      return { commits, elapsedMs, perBucket: Array.from(perBucket, (v) => v ?? 0) };
    } finally {
      if (db !== entry.db) await db.close();
    }
  },

  async seedEffects({ dbId, sessionKey, count }) {
    const { db } = dbOf(dbId);
    const batch = 500;
    for (let from = 0; from < count; from += batch) {
      const effects = [];
      for (let i = from; i < Math.min(count, from + batch); i++) {
        effects.push({
          type: "send_message",
          delivery: "client",
          dedupe_key: `seed-${i}`,
          payload: {
            requestId: `seed-${i}`,
            role: "assistant",
            content: replyText("a missed message", i),
            final: true,
          },
        });
      }
      await db.query("select count(*) from sessiond.enqueue_effects($1, $2)", [sessionKey, effects]);
    }
    const [row] = await db.query<{ effect_seq: number }>(
      "select effect_seq from sessiond.sessions where session_key = $1",
      [sessionKey],
    );
    return { head: row?.effect_seq ?? 0 };
  },

  async backlog({ dbId }) {
    const { db } = dbOf(dbId);
    const [row] = await db.query<{ n: number }>(
      "select count(*)::int as n from sessiond.sessions where processed_seq < last_seq",
    );
    return { unprocessed: row?.n ?? 0 };
  },

  async profileStart({ samplingIntervalUs }) {
    if (profiler) throw new Error("the profiler is already running");
    profiler = new Session();
    profiler.connect();
    await profiler.post("Profiler.enable");
    await profiler.post("Profiler.setSamplingInterval", { interval: samplingIntervalUs });
    await profiler.post("Profiler.start");
    return null;
  },

  async profileStop({ file }) {
    if (!profiler) throw new Error("the profiler is not running");
    const session = profiler;
    profiler = undefined;
    const { profile } = await session.post("Profiler.stop");
    session.disconnect();
    await writeFile(file, JSON.stringify(profile));
    return null;
  },

  async shutdown() {
    await closeEverything();
    return null;
  },
};

async function closeEverything(): Promise<void> {
  for (const [id, server] of servers) {
    servers.delete(id);
    await server.close().catch(() => {});
  }
  for (const [id, entry] of dbs) {
    dbs.delete(id);
    await entry.db.close().catch(() => {});
  }
}

function send(reply: HostReply, then?: () => void): void {
  process.send?.(reply, undefined, {}, () => then?.());
}

process.on("message", (message: HostRequest) => {
  const handler = handlers[message.command] as (params: unknown) => Promise<unknown>;
  void (async () => {
    try {
      if (!handler) throw new Error(`unknown command ${String(message.command)}`);
      const result = await handler(message.params);
      send({ id: message.id, ok: true, result }, message.command === "shutdown" ? () => process.exit(0) : undefined);
    } catch (error) {
      send({
        id: message.id,
        ok: false,
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
    }
  })();
});

process.on("disconnect", () => {
  void closeEverything().finally(() => process.exit(0));
});

send({ ready: true, pid: process.pid });
