/**
 * Concurrency on real Postgres (PGlite is one session, so it cannot race).
 *
 * What these cases pin down: append_event and enqueue_effects stay gap-free
 * and idempotent under many connections at once; the per-session advisory lock
 * (sessiond.session_lock) serialises writers of one session only (another
 * session's append never waits), and a writer blocked on it resumes with the
 * next seq, or the existing row, once the holder commits. Waiting is observed
 * in pg_locks and pg_stat_activity, never inferred from time.
 *
 * Seqs would stay gap-free even without the advisory lock (the counter is
 * raised under the sessions row lock); what needs the lock is idempotency, so
 * the retry and dedupe races are the cases that fail without it: the free-for-all
 * races usually, the ones parked behind an open transaction always.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Db, Queryable } from "../../src/db/index.js";
import { appendEvent, readEvents } from "../../src/events/index.js";
import { describeEachDb } from "../support/db.js";

const CONNECTIONS = 16;
const PER_CONNECTION = 64;
const N = CONNECTIONS * PER_CONNECTION;

let n = 0;
const key = (prefix = "c") => `${prefix}-${process.pid}-${++n}`;
const range = (count: number) => Array.from({ length: count }, (_, i) => i + 1);

/** Rejects with a clear message when `promise` does not settle within `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Tracks whether a promise has settled, without awaiting it. */
function track<T>(promise: Promise<T>) {
  const state = { settled: false, promise };
  promise.then(
    () => {
      state.settled = true;
    },
    () => {
      state.settled = true;
    },
  );
  return state;
}

/**
 * The session's advisory lock as pg_locks shows it: session_lock takes
 * pg_advisory_xact_lock(24149, hashtext(key)), i.e. classid 24149, objid the
 * hash as an unsigned 32-bit number, objsubid 2 (the two-key form).
 */
const LOCK_ROWS = `
  select pid, granted from pg_locks
   where locktype = 'advisory' and database = (select oid from pg_database where datname = current_database())
     and classid = 24149 and objid::bigint = (hashtext($1)::bigint & 4294967295) and objsubid = 2`;

async function sessionLockRows(db: Db, sessionKey: string) {
  return db.query<{ pid: number; granted: boolean }>(LOCK_ROWS, [sessionKey]);
}

/**
 * Polls (no sleep: one round trip per check) until every backend in `pids`
 * waits for the session's advisory lock, as both pg_locks and
 * pg_stat_activity show it.
 */
async function untilWaitingForLock(db: Db, sessionKey: string, pids: readonly number[], ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const waiting = new Set((await sessionLockRows(db, sessionKey)).filter((r) => !r.granted).map((r) => r.pid));
    const activity = await db.query<{ pid: number }>(
      "select pid from pg_stat_activity where pid = any($1::int[]) and wait_event_type = 'Lock' and wait_event = 'advisory'",
      [pids],
    );
    if (pids.every((pid) => waiting.has(pid)) && activity.length === pids.length) return;
    if (Date.now() > deadline) {
      throw new Error(`backends ${pids.join(", ")} did not all wait for the lock of ${sessionKey} within ${ms} ms`);
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Opens every connection of a pool before a race, so the racers start together; returns their pids. */
async function warm(pool: Db): Promise<number[]> {
  const pids = await Promise.all(
    range(CONNECTIONS).map(() =>
      pool.query<{ pid: number }>("select pg_backend_pid() as pid").then(([row]) => row!.pid),
    ),
  );
  expect(new Set(pids).size).toBe(CONNECTIONS);
  return pids;
}

/**
 * Runs `work` in a transaction on `db` and keeps it open until the returned
 * `commit()` is called: whatever session lock `work` took stays held.
 */
async function holdOpen<T>(db: Db, work: (tx: Queryable) => Promise<T>) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let done!: (value: { pid: number; result: T }) => void;
  const ready = new Promise<{ pid: number; result: T }>((resolve) => {
    done = resolve;
  });
  const committed = db.transaction(async (tx) => {
    const [me] = await tx.query<{ pid: number }>("select pg_backend_pid() as pid");
    const result = await work(tx);
    done({ pid: me!.pid, result });
    await released;
    return result;
  });
  // A failure before `ready` must surface here rather than hang the test.
  const opened = await within(Promise.race([ready, committed.then(() => never)]), 10_000, "the held transaction");
  return {
    ...opened,
    commit: () => {
      release();
      return within(committed, 10_000, "the held transaction's commit");
    },
  };
}
const never = new Promise<never>(() => {});

/** Per connection, in submission order, seqs must increase: a connection runs its statements one after another. */
function expectIncreasingPerConnection(results: Array<{ pid: number; seq: number }>) {
  const byPid = new Map<number, number[]>();
  for (const r of results) byPid.set(r.pid, [...(byPid.get(r.pid) ?? []), r.seq]);
  for (const seqs of byPid.values()) {
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  }
}

describeEachDb(
  "concurrency",
  (t) => {
    // Each test's extra connections are closed when it ends: the server's max_connections is shared with
    // every other test file running at the same time.
    const pools: Db[] = [];
    const openPool = (options: { max: number }) => {
      const db = t.another(options);
      pools.push(db);
      return db;
    };
    afterEach(async () => {
      for (const db of pools.splice(0)) await db.close();
    });

    describe("append_event", () => {
      it(`numbers ${N} appends from ${CONNECTIONS} connections at once 1..N with no gap and no duplicate`, async () => {
        const pool = openPool({ max: CONNECTIONS });
        await warm(pool);
        const s = key();
        const results = await Promise.all(
          range(N).map((i) =>
            pool
              .query<{ seq: number; request_id: string; duplicate: boolean; pid: number }>(
                "select e.seq, e.request_id, e.duplicate, pg_backend_pid() as pid from sessiond.append_event($1, 'user_message', $2, $3) e",
                [s, { i }, `r${i}`],
              )
              .then(([row]) => row!),
          ),
        );
        expect(new Set(results.map((r) => r.pid)).size, "every connection of the pool appended").toBe(CONNECTIONS);
        expect(results.every((r) => !r.duplicate)).toBe(true);
        expect(results.map((r) => r.seq).sort((a, b) => a - b)).toEqual(range(N));
        expectIncreasingPerConnection(results);

        const stored = await readEvents(t.db, s, 0, N + 10);
        expect(stored.map((e) => e.seq)).toEqual(range(N));
        // Each request's row is the one its caller was told about.
        const told = new Map(results.map((r) => [r.request_id, r.seq]));
        expect(
          stored.every((e) => told.get(e.requestId) === e.seq && e.payload.i === Number(e.requestId.slice(1))),
        ).toBe(true);
        const [session] = await t.db.query("select last_seq from sessiond.sessions where session_key = $1", [s]);
        expect(session).toEqual({ last_seq: N });
      });

      it("lets retries of one request_id race from many connections: one event, one seq for every caller", async () => {
        const pool = openPool({ max: CONNECTIONS });
        await warm(pool);
        const s = key();
        const requests = range(8).map((i) => `retry-${i}`);
        const calls = requests.flatMap((requestId) =>
          range(CONNECTIONS).map((attempt) =>
            pool
              .query<{ id: string; seq: number; duplicate: boolean; payload: { attempt: number }; pid: number }>(
                "select e.id, e.seq, e.duplicate, e.payload, pg_backend_pid() as pid from sessiond.append_event($1, 'user_message', $2, $3) e",
                [s, { attempt }, requestId],
              )
              .then(([row]) => ({ requestId, ...row! })),
          ),
        );
        const results = await Promise.all(calls);
        expect(new Set(results.map((r) => r.pid)).size).toBe(CONNECTIONS);

        const stored = await readEvents(t.db, s);
        expect(stored.map((e) => e.seq)).toEqual(range(requests.length));
        for (const requestId of requests) {
          const mine = results.filter((r) => r.requestId === requestId);
          const event = stored.find((e) => e.requestId === requestId);
          expect(event, `one event for ${requestId}`).toBeDefined();
          expect(mine).toHaveLength(CONNECTIONS);
          expect(
            mine.filter((r) => !r.duplicate),
            `exactly one caller appended ${requestId}`,
          ).toHaveLength(1);
          // Every caller, winner or not, got the stored event: same id, same seq, the winner's payload.
          for (const r of mine) {
            expect({ id: r.id, seq: r.seq, payload: r.payload }).toEqual({
              id: event!.id,
              seq: event!.seq,
              payload: event!.payload,
            });
          }
          expect(mine.find((r) => !r.duplicate)?.payload).toEqual(event!.payload);
        }
        const [session] = await t.db.query("select last_seq from sessiond.sessions where session_key = $1", [s]);
        expect(session).toEqual({ last_seq: requests.length });
      });

      it("answers retries blocked behind an uncommitted append of their request_id with that event once it commits", async () => {
        const pool = openPool({ max: CONNECTIONS });
        const pids = await warm(pool);
        const s = key();
        const holder = await holdOpen(t.db, (tx) =>
          appendEvent(tx, { sessionKey: s, type: "user_message", payload: { who: "first" }, requestId: "r" }),
        );
        const retries = pids.map(() =>
          appendEvent(pool, { sessionKey: s, type: "user_message", payload: { who: "retry" }, requestId: "r" }),
        );
        // Every retry is parked on the session's lock, none has looked for the request yet.
        await untilWaitingForLock(t.db, s, pids);
        const first = await holder.commit();
        const answers = await within(Promise.all(retries), 10_000, "the retries");
        expect(first).toMatchObject({ seq: 1, duplicate: false, payload: { who: "first" } });
        for (const answer of answers) {
          expect(answer).toMatchObject({ id: first.id, seq: 1, duplicate: true, payload: { who: "first" } });
        }
        expect((await readEvents(t.db, s)).map((e) => e.seq)).toEqual([1]);
        const [session] = await t.db.query("select last_seq from sessiond.sessions where session_key = $1", [s]);
        expect(session).toEqual({ last_seq: 1 });
      });

      it("serialises writers of one session only: another session's append does not wait, the same session's does", async () => {
        const waiterDb = openPool({ max: 1 });
        const otherDb = openPool({ max: 1 });
        const busy = key("busy");
        let free = key("free");
        // Different sessions must map to different locks (a 32-bit hash collision would be a false alarm).
        for (;;) {
          const [row] = await t.db.query<{ same: boolean }>("select hashtext($1) = hashtext($2) as same", [busy, free]);
          if (!row?.same) break;
          free = key("free");
        }

        // An append to `busy` in a transaction left open: it holds busy's advisory lock until commit.
        const holder = await holdOpen(t.db, (tx) =>
          appendEvent(tx, { sessionKey: busy, type: "user_message", payload: {}, requestId: "held" }),
        );
        expect(await sessionLockRows(t.db, busy)).toEqual([{ pid: holder.pid, granted: true }]);

        // A second append to the same session, on its own connection: it must wait for the lock.
        const [waiter] = await waiterDb.query<{ pid: number }>("select pg_backend_pid() as pid");
        const second = track(
          appendEvent(waiterDb, { sessionKey: busy, type: "user_message", payload: {}, requestId: "waited" }),
        );
        await untilWaitingForLock(t.db, busy, [waiter!.pid]);

        // Meanwhile another session's append completes, though busy's transaction is still open.
        const elsewhere = await within(
          appendEvent(otherDb, { sessionKey: free, type: "user_message", payload: {}, requestId: "free" }),
          10_000,
          "an append to another session while one session's lock is held",
        );
        expect(elsewhere).toMatchObject({ sessionKey: free, seq: 1, duplicate: false });
        expect(second.settled, "the same session's append went through while the lock was held").toBe(false);
        expect(await sessionLockRows(t.db, busy)).toEqual(
          expect.arrayContaining([
            { pid: holder.pid, granted: true },
            { pid: waiter!.pid, granted: false },
          ]),
        );
        // Nothing of busy's is visible yet: the holder has not committed.
        expect(await readEvents(t.db, busy)).toEqual([]);

        const first = await holder.commit();
        const after = await within(second.promise, 10_000, "the waiting append after the holder committed");
        expect([first.seq, after.seq]).toEqual([1, 2]);
        expect((await readEvents(t.db, busy)).map((e) => [e.seq, e.requestId])).toEqual([
          [1, "held"],
          [2, "waited"],
        ]);
        const [session] = await t.db.query("select last_seq from sessiond.sessions where session_key = $1", [busy]);
        expect(session).toEqual({ last_seq: 2 });
      });
    });

    describe("enqueue_effects", () => {
      type Enqueued = { seq: number; dedupe_key: string; duplicate: boolean; id: string; pid: number };
      const enqueue = (db: Db, s: string, effects: unknown[]) =>
        db.query<Enqueued>(
          "select e.seq, e.dedupe_key, e.duplicate, e.id, pg_backend_pid() as pid from sessiond.enqueue_effects($1, $2) e",
          [s, effects],
        );

      it(`numbers effects enqueued from ${CONNECTIONS} connections at once 1..N, each call's effects consecutive`, async () => {
        const pool = openPool({ max: CONNECTIONS });
        await warm(pool);
        const s = key();
        const calls = N / 2;
        const results = await Promise.all(
          range(calls).map((i) =>
            enqueue(pool, s, [
              { type: "webhook", payload: { i }, dedupe_key: `d${i}a` },
              { type: "webhook", payload: { i }, dedupe_key: `d${i}b` },
            ]),
          ),
        );
        expect(new Set(results.map((rows) => rows[0]!.pid)).size).toBe(CONNECTIONS);
        for (const [a, b] of results) {
          expect(a!.duplicate || b!.duplicate).toBe(false);
          expect(b!.seq, "one call's effects are numbered under one lock").toBe(a!.seq + 1);
        }
        expect(results.flatMap((rows) => rows.map((r) => r.seq)).sort((x, y) => x - y)).toEqual(range(N));
        expectIncreasingPerConnection(results.map((rows) => rows[0]!));

        const stored = await t.db.query<{ seq: number }>(
          "select seq from sessiond.effects where session_key = $1 order by seq",
          [s],
        );
        expect(stored.map((r) => r.seq)).toEqual(range(N));
        const [session] = await t.db.query("select effect_seq from sessiond.sessions where session_key = $1", [s]);
        expect(session).toEqual({ effect_seq: N });
      });

      it("answers enqueues blocked behind an uncommitted enqueue of their dedupe key with that row once it commits", async () => {
        const pool = openPool({ max: CONNECTIONS });
        const pids = await warm(pool);
        const s = key();
        await appendEvent(t.db, { sessionKey: s, type: "user_message", payload: {}, requestId: "r" });
        const holder = await holdOpen(t.db, async (tx) => {
          const [row] = await tx.query<Enqueued>(
            "select e.seq, e.dedupe_key, e.duplicate, e.id, 0 as pid from sessiond.enqueue_effects($1, $2) e",
            [s, [{ type: "webhook", payload: { who: "first" }, dedupe_key: "k" }]],
          );
          return row!;
        });
        const racers = pids.map(() =>
          enqueue(pool, s, [{ type: "webhook", payload: { who: "racer" }, dedupe_key: "k" }]),
        );
        await untilWaitingForLock(t.db, s, pids);
        const first = await holder.commit();
        const answers = (await within(Promise.all(racers), 10_000, "the racing enqueues")).flat();
        expect(first).toMatchObject({ seq: 1, duplicate: false });
        expect(answers).toHaveLength(CONNECTIONS);
        for (const answer of answers) expect(answer).toMatchObject({ id: first.id, seq: 1, duplicate: true });
        const stored = await t.db.query<{ seq: number; payload: unknown }>(
          "select seq, payload from sessiond.effects where session_key = $1",
          [s],
        );
        expect(stored).toEqual([{ seq: 1, payload: { who: "first" } }]);
        const [session] = await t.db.query("select effect_seq from sessiond.sessions where session_key = $1", [s]);
        expect(session).toEqual({ effect_seq: 1 });
      });

      it("lets the same dedupe key race from many connections: one row, one seq for every caller", async () => {
        const pool = openPool({ max: CONNECTIONS });
        await warm(pool);
        const s = key();
        // The session exists (an event came first, as in real runs), so the racers meet on the lock, not on
        // the creation of the session row.
        await appendEvent(t.db, { sessionKey: s, type: "user_message", payload: {}, requestId: "r" });
        const keys = range(8).map((i) => `same-${i}`);
        const results = (
          await Promise.all(
            keys.flatMap((dedupeKey) =>
              range(CONNECTIONS).map((attempt) =>
                enqueue(pool, s, [{ type: "webhook", payload: { attempt }, dedupe_key: dedupeKey }]),
              ),
            ),
          )
        ).flat();
        expect(new Set(results.map((r) => r.pid)).size).toBe(CONNECTIONS);

        const stored = await t.db.query<{ seq: number; dedupe_key: string; id: string }>(
          "select seq, dedupe_key, id from sessiond.effects where session_key = $1 order by seq",
          [s],
        );
        expect(stored.map((r) => r.seq)).toEqual(range(keys.length));
        for (const dedupeKey of keys) {
          const mine = results.filter((r) => r.dedupe_key === dedupeKey);
          const row = stored.find((r) => r.dedupe_key === dedupeKey);
          expect(row, `one row for ${dedupeKey}`).toBeDefined();
          expect(mine).toHaveLength(CONNECTIONS);
          expect(
            mine.filter((r) => !r.duplicate),
            `exactly one caller inserted ${dedupeKey}`,
          ).toHaveLength(1);
          expect(new Set(mine.map((r) => `${r.id}/${r.seq}`))).toEqual(new Set([`${row!.id}/${row!.seq}`]));
        }
        const [session] = await t.db.query("select effect_seq from sessiond.sessions where session_key = $1", [s]);
        expect(session).toEqual({ effect_seq: keys.length });
      });
    });
  },
  ["postgres"],
);
