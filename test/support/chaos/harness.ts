/**
 * The shared frame of the chaos suites: a fresh real-Postgres database,
 * servers started as child processes on it, resilient clients with tokens,
 * and one afterAll that stops and removes all of it.
 */
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach } from "vitest";
import { createPostgresDb, type Db } from "../../../src/db/index.js";
import { mintToken } from "../../../src/server/auth.js";
import { freshPostgresDatabase } from "../db.js";
import { ChaosClient } from "./chaos-client.js";
import type { Rng } from "./prng.js";
import { CHAOS_SECRET, type ServeOptions, ServerProcess } from "./server-process.js";

export interface ChaosHarness {
  /** The test's own connection to the database (application_name chaos-test). */
  db: Db;
  url: string;
  /** The database's name (for pg_stat_activity and ALTER DATABASE). */
  name: string;
  servers: ServerProcess[];
  clients: ChaosClient[];
  start(options?: Omit<ServeOptions, "databaseUrl">): Promise<ServerProcess>;
  client(sessionKey: string, url: () => string | undefined, rng: Rng, idPrefix?: string): ChaosClient;
}

/** A harness whose resources afterAll releases; call `await ready()` in the test (or beforeAll). */
export function useChaosHarness(env: Record<string, string> = {}) {
  const state: Partial<ChaosHarness> & { drop?: () => Promise<void> } = {};
  const servers: ServerProcess[] = [];
  const clients: ChaosClient[] = [];
  afterEach((context) => {
    if (context.task.result?.state !== "fail") return;
    // What the processes and clients saw, for the failure report.
    for (const server of servers) {
      const exit = server.alive ? "alive" : `exited: code ${server.child.exitCode}, signal ${server.child.signalCode}`;
      const file = join(tmpdir(), `sessiond-chaos-${server.name}-${server.pid}.log`);
      writeFileSync(file, server.output);
      console.error(`--- ${server.name} (${exit}), output in ${file}; its tail:\n${server.output.slice(-4000)}`);
    }
    for (const c of clients) {
      console.error(
        `--- ${c.sessionKey}: connected ${c.connected}, lastSeq ${c.lastSeq}, sent ${c.sent.size}, ` +
          `outstanding ${c.outstanding()}, closes ${JSON.stringify(c.closeCodes.slice(-10))}, ` +
          `refusals ${JSON.stringify(c.refusals.slice(-10))}, errors ${JSON.stringify(c.errors.slice(-3))}`,
      );
    }
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(servers.map((s) => s.kill9()));
    await state.db?.close();
    await state.drop?.();
  });
  return async function ready(): Promise<ChaosHarness> {
    if (state.db) return state as ChaosHarness;
    const fresh = await freshPostgresDatabase();
    state.drop = fresh.drop;
    state.url = fresh.url;
    state.name = new URL(fresh.url).pathname.slice(1);
    state.db = createPostgresDb(fresh.url, { max: 3, applicationName: "chaos-test" });
    state.servers = servers;
    state.clients = clients;
    state.start = async (options = {}) => {
      const server = await ServerProcess.start({
        ...options,
        databaseUrl: fresh.url,
        env: { ...env, ...options.env },
      });
      servers.push(server);
      return server;
    };
    state.client = (sessionKey, url, rng, idPrefix) => {
      const token = mintToken(CHAOS_SECRET, sessionKey);
      const client = new ChaosClient({ sessionKey, token, url, rng, ...(idPrefix ? { idPrefix } : {}) });
      clients.push(client);
      return client;
    };
    return state as ChaosHarness;
  };
}
