/**
 * Database faults under load, on a real `sessiond serve` process:
 *
 * - terminations: pg_terminate_backend on sessiond's LISTEN connection, on its
 *   pool connections, or on all of them, at chosen moments (a message just
 *   sent, a reply streaming, a durable frame arriving). postgres.js reconnects;
 *   the listener's reconnect wakes every feed and sweeps for events whose
 *   NOTIFY fell into the gap, so nothing waits for a notification that never
 *   comes;
 * - outages: new connections refused (ALLOW_CONNECTIONS false) and every
 *   backend terminated, or only the LISTEN connection (the pool goes on, but
 *   nothing is pushed to clients until it is back). /readyz must answer 503
 *   while it lasts and 200 once connections are allowed again; clients whose
 *   messages were refused meanwhile (`internal`) resend them.
 *
 * Then the books must balance as after a crash (test/support/chaos/checks.ts):
 * a database fault must not lose a message, answer one twice, or turn into a
 * failed reply.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { ChaosClient, Frame } from "../support/chaos/chaos-client.js";
import { auditConversations } from "../support/chaos/checks.js";
import { Conversations } from "../support/chaos/conversation.js";
import { useChaosHarness } from "../support/chaos/harness.js";
import { scale, seedFor, timeoutMs } from "../support/chaos/mode.js";
import { type Backends, PgFaults } from "../support/chaos/pg-faults.js";
import { Rng } from "../support/chaos/prng.js";
import { report } from "../support/chaos/report.js";
import type { ServerProcess } from "../support/chaos/server-process.js";
import { postgresAvailable } from "../support/db.js";

const SESSIONS = scale(4, 8);
/** One of each kind (LISTEN, pool, all) in the short form. */
const TERMINATIONS = scale(3, 60);
/** Alternately the whole database and the LISTEN connection alone: both in the short form. */
const OUTAGES = scale(2, 8);
/** /readyz polls that must still answer 503 once the outage was seen (each may take up to 2 s). */
const POLLS_DOWN = scale(1, 3);
const KINDS: Backends[] = ["listen", "pool", "all"];

const ENV = {
  SESSIOND_TOKEN_DELAY_MS: "8",
  SESSIOND_LEASE_MS: "1500",
  SESSIOND_SWEEP_MS: "200",
  SESSIOND_RATE_LIMIT: "1000",
  SESSIOND_RATE_BURST: "1000",
};

/**
 * Polls /readyz until it answers `status`; returns how many polls that took.
 * Every poll must be answered within 5 s: a /readyz that hangs while the
 * database is away tells a load balancer nothing.
 */
async function readyz(server: ServerProcess, status: number, ms: number): Promise<{ polls: number; body: string }> {
  const deadline = Date.now() + ms;
  let last = { status: 0, body: "" };
  for (let polls = 1; ; polls++) {
    last = await server.get("/readyz", {}, 5_000);
    if (last.status === status) return { polls, body: last.body };
    if (Date.now() > deadline) throw new Error(`/readyz never answered ${status}; last ${last.status} ${last.body}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Resolves at the next frame of one of the kinds that mark a moment worth hitting. */
function nextMoment(clients: readonly ChaosClient[], rng: Rng): Promise<string> {
  const kind = rng.pick(["token", "message", "accepted"]);
  return new Promise((resolve) => {
    const offs = clients.map((client) =>
      client.onFrame((frame: Frame) => {
        if (frame.type !== kind) return;
        for (const off of offs) off();
        resolve(kind);
      }),
    );
  });
}

describe.skipIf(!postgresAvailable)("chaos: database faults", () => {
  const ready = useChaosHarness(ENV);
  let faults: PgFaults | undefined;
  afterAll(async () => {
    await faults?.close();
  });

  it(
    `${TERMINATIONS} backend terminations and ${OUTAGES} outage(s) under load: nothing lost, /readyz tells`,
    async () => {
      const h = await ready();
      faults = new PgFaults(h.name);
      const rng = new Rng(seedFor("db-faults"));
      const server = await h.start({ name: "db-faults" });
      const clients: ChaosClient[] = [];
      for (let i = 0; i < SESSIONS; i++) clients.push(h.client(`dbf-${i}`, () => server.url, rng.fork(`client-${i}`)));
      for (const client of clients) client.start();
      const load = new Conversations(clients, { inflight: 2, rng: rng.fork("texts") });
      load.start();
      await load.progress(SESSIONS, 30_000);

      const terminated = { listen: 0, pool: 0 };
      const rounds: Record<string, number> = {};
      for (let round = 0; round < TERMINATIONS; round++) {
        const kind = KINDS[round % KINDS.length] as Backends;
        const moment = await nextMoment(clients, rng);
        const reconnectsBefore = await server.metric("sessiond_listener_reconnects_total");
        const hit = await faults.terminate(kind);
        terminated.listen += hit.listen;
        terminated.pool += hit.pool;
        rounds[`${kind}@${moment}`] = (rounds[`${kind}@${moment}`] ?? 0) + 1;
        if (hit.listen > 0) {
          // The listener comes back by itself.
          const deadline = Date.now() + 15_000;
          while ((await server.metric("sessiond_listener_reconnects_total")) <= reconnectsBefore) {
            if (Date.now() > deadline) throw new Error("the LISTEN connection did not come back");
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
        await load.progress(1, 30_000);
      }

      const outages: Array<{ kind: Backends; pollsTo503: number; pollsTo200: number; refused: number }> = [];
      for (let outage = 0; outage < OUTAGES; outage++) {
        // Alternately the whole database, and the LISTEN connection alone (the pool keeps working).
        const kind: Backends = outage % 2 === 0 ? "all" : "listen";
        await nextMoment(clients, rng);
        const refusedBefore = clients.reduce((n, c) => n + c.errors.filter((e) => e.code === "internal").length, 0);
        await faults.block();
        const hit = await faults.terminate(kind);
        terminated.listen += hit.listen;
        terminated.pool += hit.pool;
        const down = await readyz(server, 503, 15_000);
        // (With only the LISTEN connection cut, `database` depends on whether the pool still holds a
        // connection: new ones are refused too.)
        expect(JSON.parse(down.body)).toMatchObject({
          status: "unavailable",
          checks: kind === "all" ? { database: false } : { listener: false },
        });
        // Keep the database away for a few more polls, so the load runs into it.
        for (let i = 0; i < POLLS_DOWN; i++) expect((await readyz(server, 503, 5_000)).polls).toBe(1);
        await faults.unblock();
        const up = await readyz(server, 200, 30_000);
        expect(JSON.parse(up.body)).toMatchObject({ status: "ready", checks: { database: true, listener: true } });
        const refused =
          clients.reduce((n, c) => n + c.errors.filter((e) => e.code === "internal").length, 0) - refusedBefore;
        outages.push({ kind, pollsTo503: down.polls, pollsTo200: up.polls, refused });
        await load.progress(SESSIONS, 30_000);
      }

      load.stopSending();
      await load.drain(60_000);
      const reconnects = await server.metric("sessiond_listener_reconnects_total");
      const { problems, stats } = await auditConversations(h.db, clients);
      const unexpectedErrors = clients.flatMap((c) => c.errors).filter((e) => e.code !== "internal");
      report("db-faults", {
        seed: rng.seed,
        terminations: TERMINATIONS,
        outages: OUTAGES,
        backendsTerminated: terminated,
        rounds,
        outageDetails: outages,
        listenerReconnects: reconnects,
        ...stats,
        problems: problems.length,
      });
      expect(server.alive, "the server survived").toBe(true);
      expect(terminated.listen).toBeGreaterThan(0);
      expect(reconnects).toBeGreaterThan(0);
      expect(unexpectedErrors).toEqual([]);
      expect(problems).toEqual([]);
      expect(stats.lost).toBe(0);
    },
    timeoutMs(120_000, 1_800_000),
  );
});
