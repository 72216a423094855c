/**
 * Found by the database-faults chaos suite: a run whose commit failed because
 * the database was unreachable counted as a failed attempt, so an outage
 * longer than the retries (3 attempts, 250 ms and 500 ms apart) answered the
 * user's message with `failure run_failed` — the reply was lost to a blip of
 * the infrastructure, and the failure frame carried the driver's message.
 *
 * Here the commit fails with each kind of connection error more times than
 * the processor has attempts; the message must still be answered, with its
 * one send_message and no error effect. isConnectionError's table is checked
 * on its own below.
 */
import { afterEach, expect, it } from "vitest";
import { type Db, DbError, isConnectionError } from "../../src/db/index.js";
import { createRuntime, type Runtime } from "../../src/session/runtime.js";
import { describeEachDb } from "../support/db.js";
import { clientEffects, isCaughtUp, uniqueKey } from "../support/sessions.js";
import { eventually } from "../support/wait.js";

/**
 * A Db whose next `failures.left` commits (the run's one commit_run statement, or a
 * transaction) throw `failures.make()` before they reach the database.
 */
function failingCommits(db: Db, failures: { left: number; make: () => Error }): Db {
  const fail = (): boolean => {
    if (failures.left <= 0) return false;
    failures.left -= 1;
    return true;
  };
  return {
    kind: db.kind,
    listen: db.listen.bind(db),
    close: db.close.bind(db),
    async query(text, params) {
      if (text.includes("sessiond.commit_run(") && fail()) throw failures.make();
      return db.query(text, params);
    },
    async transaction(fn) {
      if (fail()) throw failures.make();
      return db.transaction(fn);
    },
  };
}

const CONNECTION_ERRORS: Array<[string, () => Error]> = [
  [
    "a dropped socket (postgres.js)",
    () => Object.assign(new Error("write CONNECTION_CLOSED"), { code: "CONNECTION_CLOSED" }),
  ],
  [
    "a refused connection",
    () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }),
  ],
  ["pg_terminate_backend (57P01)", () => new DbError("terminating connection due to administrator command", "57P01")],
  [
    "a database that refuses connections",
    () => new DbError('database "x" is not currently accepting connections', "55000"),
  ],
];

const running: Runtime[] = [];

describeEachDb(
  "a database outage is not a failed run",
  (t) => {
    afterEach(async () => {
      await Promise.all(running.splice(0).map((rt) => rt.stop({ graceMs: 0 })));
    });

    for (const [what, make] of CONNECTION_ERRORS) {
      it(`${what} at commit, more often than there are attempts: answered once, no failure`, async () => {
        const maxAttempts = 3;
        const failures = { left: maxAttempts, make };
        const rt = await createRuntime({
          db: failingCommits(t.db, failures),
          sweepMs: 30,
          leaseMs: 1000,
          retryBaseMs: 1,
          maxAttempts,
        });
        running.push(rt);
        await rt.start();
        const key = uniqueKey("outage");
        await rt.sendMessage({ sessionKey: key, requestId: "r1", text: "still there?" });
        await eventually(() => isCaughtUp(t.db, key, 1), { what: "the message processed" });
        expect(failures.left).toBe(0);
        const effects = await clientEffects(t.db, key);
        expect(effects.map((e) => [e.type, e.event_seq])).toEqual([["send_message", 1]]);
        expect(effects[0]?.payload.content).toBe(
          '[local model] You said: "still there?". (message 2 in this conversation)',
        );
      });
    }
  },
  ["pglite"],
);

it("isConnectionError tells the connection's failures from the statement's", () => {
  for (const [, make] of CONNECTION_ERRORS) expect(isConnectionError(make())).toBe(true);
  expect(isConnectionError(new DbError("the database system is starting up", "57P03"))).toBe(true);
  expect(isConnectionError(new DbError("connection failure", "08006"))).toBe(true);
  expect(isConnectionError(new DbError("sorry, too many clients already", "53300"))).toBe(true);
  // The statement's own failures are not connection errors (they stay run failures).
  expect(isConnectionError(new DbError("sessiond: events are immutable", "55000"))).toBe(false);
  expect(isConnectionError(new DbError("payload too large", "54000"))).toBe(false);
  expect(isConnectionError(new DbError("lease lost", "SDL01"))).toBe(false);
  expect(isConnectionError(new Error("model unavailable"))).toBe(false);
  expect(isConnectionError("CONNECTION_CLOSED")).toBe(false);
});
