/**
 * Found by the database-faults chaos suite:
 *
 * - while the database refused connections, GET /readyz did not answer at
 *   all — postgres.js queued its `select 1` behind the reconnect backoff
 *   (which grows to 20 s) — so a load balancer learned nothing until the
 *   database was back. /readyz now bounds the probe: a database that does not
 *   answer within 2 s is reported down. Here the probe's statement never
 *   answers; /readyz must still answer 503 with `database: false`, and 200
 *   again once the statement answers;
 * - while only the LISTEN connection was down (terminated, and new
 *   connections refused, so it could not come back), /readyz said ready:
 *   `listener` was a flag set once at start. Nothing was pushed to clients
 *   meanwhile. /readyz now sends a NOTIFY and waits for it on the LISTEN
 *   connection.
 */
import { afterEach, expect, it } from "vitest";
import type { Db } from "../../src/db/index.js";
import { type SessiondServer, startServer } from "../../src/server/index.js";
import { PgFaults } from "../support/chaos/pg-faults.js";
import { describeEachDb } from "../support/db.js";
import { eventually } from "../support/wait.js";

/** A Db whose readiness probe (`select 1`) hangs while `stall.on`; hung calls are let go by `stall.release()`. */
function stallingProbe(db: Db) {
  const hung: Array<() => void> = [];
  const stall = {
    on: false,
    release() {
      stall.on = false;
      for (const go of hung.splice(0)) go();
    },
  };
  const wrapped: Db = {
    kind: db.kind,
    transaction: db.transaction.bind(db),
    listen: db.listen.bind(db),
    close: db.close.bind(db),
    async query(text, params) {
      if (stall.on && text === "select 1") await new Promise<void>((resolve) => hung.push(resolve));
      return db.query(text, params);
    },
  };
  return { db: wrapped, stall };
}

describeEachDb(
  "/readyz while the database does not answer",
  (t) => {
    let server: SessiondServer | undefined;
    afterEach(async () => {
      await server?.close({ graceMs: 0 });
    });

    it("answers 503 (database: false) instead of waiting, and 200 once the database answers", async () => {
      const { db, stall } = stallingProbe(t.db);
      server = await startServer({ db, port: 0, secret: "readiness-secret-0123456789abcdef0123", logLevel: "silent" });
      const get = async () => {
        const response = await fetch(`${server?.url}/readyz`, { signal: AbortSignal.timeout(8_000) });
        return { status: response.status, body: (await response.json()) as { checks: Record<string, boolean> } };
      };
      expect((await get()).status).toBe(200);
      stall.on = true;
      try {
        const down = await get();
        expect(down.status).toBe(503);
        expect(down.body.checks).toMatchObject({ database: false, listener: true, accepting: true });
      } finally {
        stall.release();
      }
      expect((await get()).status).toBe(200);
    });
  },
  ["pglite"],
);

describeEachDb(
  "/readyz while the LISTEN connection is down",
  (t) => {
    let server: SessiondServer | undefined;
    let faults: PgFaults | undefined;
    afterEach(async () => {
      await faults?.close();
      await server?.close({ graceMs: 0 });
    });

    it("answers 503 (listener: false) while the LISTEN connection cannot come back, 200 once it is back", async () => {
      server = await startServer({
        db: t.db,
        port: 0,
        secret: "readiness-secret-0123456789abcdef0123",
        logLevel: "silent",
      });
      const get = async () => {
        const response = await fetch(`${server?.url}/readyz`, { signal: AbortSignal.timeout(8_000) });
        return { status: response.status, body: (await response.json()) as { checks: Record<string, boolean> } };
      };
      expect((await get()).status).toBe(200);
      faults = new PgFaults(new URL(t.url as string).pathname.slice(1));
      await faults.block();
      expect((await faults.terminate("listen")).listen).toBe(1);
      const down = await get();
      expect(down.status).toBe(503);
      expect(down.body.checks).toEqual({ database: true, listener: false, accepting: true });
      await faults.unblock();
      await eventually(async () => (await get()).status === 200, { ms: 30_000, what: "/readyz 200 again" });
    });
  },
  ["postgres"],
);
