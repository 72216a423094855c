/**
 * Found by the database-faults chaos suite: while the database refused
 * connections, GET /readyz did not answer at all — postgres.js queued its
 * `select 1` behind the reconnect backoff (which grows to 20 s) — so a load
 * balancer learned nothing until the database was back. /readyz now bounds
 * the probe: a database that does not answer within 2 s is reported down.
 *
 * Here the probe's statement never answers; /readyz must still answer 503
 * with `database: false`, and 200 again once the statement answers.
 */
import { afterEach, expect, it } from "vitest";
import type { Db } from "../../src/db/index.js";
import { type SessiondServer, startServer } from "../../src/server/index.js";
import { describeEachDb } from "../support/db.js";

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
