import { describe, expect, it } from "vitest";
import { Channels, type Db, DbError, SqlState } from "../../src/db/index.js";
import { appendEvent, readEvents } from "../../src/events/index.js";
import { describeEachDb, nextValue } from "../support/db.js";

let n = 0;
const key = (prefix = "s") => `${prefix}-${process.pid}-${++n}`;

async function sqlError(promise: Promise<unknown>): Promise<DbError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "expected the database to reject this").toBeInstanceOf(DbError);
  return error as DbError;
}

async function countRows(db: Db, table: string, sessionKey: string) {
  const [row] = await db.query<{ n: number }>(
    `select count(*)::int as n from sessiond.${table} where session_key = $1`,
    [sessionKey],
  );
  return row?.n ?? 0;
}

describeEachDb("schema", (t) => {
  describe("append_event", () => {
    it("numbers events 1..N per session and creates the session row on first use", async () => {
      const a = key();
      const b = key();
      for (let i = 1; i <= 5; i++) {
        const e = await appendEvent(t.db, {
          sessionKey: a,
          type: "user_message",
          payload: { text: `a${i}` },
          requestId: `ra${i}`,
        });
        expect(e).toMatchObject({ seq: i, sessionKey: a, duplicate: false, payload: { text: `a${i}` } });
      }
      const eb = await appendEvent(t.db, { sessionKey: b, type: "user_message", payload: {}, requestId: "r1" });
      expect(eb.seq).toBe(1);
      const [session] = await t.db.query(
        "select last_seq, processed_seq, effect_seq, acked_seq from sessiond.sessions where session_key = $1",
        [a],
      );
      expect(session).toEqual({ last_seq: 5, processed_seq: 0, effect_seq: 0, acked_seq: 0 });
      expect((await readEvents(t.db, a)).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    });

    it("returns the existing event for a repeated requestId and changes nothing", async () => {
      const s = key();
      const first = await appendEvent(t.db, {
        sessionKey: s,
        type: "user_message",
        payload: { text: "hi" },
        requestId: "same",
      });
      const again = await appendEvent(t.db, {
        sessionKey: s,
        type: "user_message",
        payload: { text: "different" },
        requestId: "same",
      });
      expect(again).toMatchObject({ id: first.id, seq: 1, duplicate: true, payload: { text: "hi" } });
      expect(await countRows(t.db, "events", s)).toBe(1);
      const [session] = await t.db.query("select last_seq from sessiond.sessions where session_key = $1", [s]);
      expect(session).toEqual({ last_seq: 1 });
    });

    it.each([
      ["empty", ""],
      ["201 characters", "k".repeat(201)],
      ["path traversal", "../../etc/passwd"],
      ["a slash", "a/b"],
      ["a space", "a b"],
      ["unicode", "sessão"],
      ["SQL metacharacters", "x'; drop table sessiond.events; --"],
      ["a leading dot", ".hidden"],
    ])("rejects a hostile session key (%s) and stores nothing", async (_why, bad) => {
      const error = await sqlError(
        appendEvent(t.db, { sessionKey: bad, type: "user_message", payload: {}, requestId: "r" }),
      );
      expect(error.code).toBe(SqlState.checkViolation);
      expect(error.message).toMatch(/session_key/);
      const [row] = await t.db.query<{ n: number }>(
        "select count(*)::int as n from sessiond.sessions where session_key = $1",
        [bad],
      );
      expect(row?.n).toBe(0);
    });

    it("accepts a 200-character key of the safe set", async () => {
      const long = `k${"a.b_c:d@e-".repeat(19)}123456789`;
      expect(long).toHaveLength(200);
      const e = await appendEvent(t.db, { sessionKey: long, type: "user_message", payload: {}, requestId: "r" });
      expect(e.seq).toBe(1);
    });

    it.each([["Upper"], ["1starts_with_digit"], [""], ["has space"], ["t".repeat(65)]])(
      "rejects the type name %j",
      async (badType) => {
        const s = key();
        const error = await sqlError(appendEvent(t.db, { sessionKey: s, type: badType, payload: {}, requestId: "r" }));
        expect(error.code).toBe(SqlState.checkViolation);
        expect(await countRows(t.db, "events", s)).toBe(0);
      },
    );

    it("rejects an empty or 201-character requestId", async () => {
      const s = key();
      expect(
        (await sqlError(appendEvent(t.db, { sessionKey: s, type: "user_message", payload: {}, requestId: "" }))).code,
      ).toBe(SqlState.checkViolation);
      expect(
        (
          await sqlError(
            appendEvent(t.db, { sessionKey: s, type: "user_message", payload: {}, requestId: "r".repeat(201) }),
          )
        ).code,
      ).toBe(SqlState.checkViolation);
    });

    it("rejects a payload that is not a JSON object", async () => {
      const s = key();
      const error = await sqlError(
        t.db.query("select * from sessiond.append_event($1, 'user_message', $2::jsonb, 'r')", [s, "[1,2]"]),
      );
      expect(error.code).toBe(SqlState.checkViolation);
      expect(await countRows(t.db, "events", s)).toBe(0);
    });

    it("rejects an oversize payload (default 64 KiB, configurable) and leaves the counters alone", async () => {
      const s = key();
      await appendEvent(t.db, { sessionKey: s, type: "user_message", payload: { text: "ok" }, requestId: "r0" });
      const big = { text: "x".repeat(70 * 1024) };
      const error = await sqlError(
        appendEvent(t.db, { sessionKey: s, type: "user_message", payload: big, requestId: "r1" }),
      );
      expect(error.code).toBe(SqlState.programLimitExceeded);
      expect(error.message).toMatch(/over the limit of 65536 bytes/);
      const [session] = await t.db.query("select last_seq from sessiond.sessions where session_key = $1", [s]);
      expect(session).toEqual({ last_seq: 1 });
      // The ceiling is a setting: raised for one transaction, the same payload fits.
      const e = await t.db.transaction(async (tx) => {
        await tx.query("select set_config('sessiond.max_payload_bytes', '131072', true)");
        const [row] = await tx.query<{ seq: number }>(
          "select seq from sessiond.append_event($1, 'user_message', $2, 'r1')",
          [s, big],
        );
        return row;
      });
      expect(e?.seq).toBe(2);
    });

    it("stores SQL metacharacters verbatim and never executes them", async () => {
      const s = key();
      const nasty = "'); drop table sessiond.events; select ('\\\" $1 $$ ;-- \u0007";
      const e = await appendEvent(t.db, {
        sessionKey: s,
        type: "user_message",
        payload: { text: nasty },
        requestId: nasty,
      });
      const [row] = await t.db.query<{ payload: { text: string }; request_id: string }>(
        "select payload, request_id from sessiond.events where session_key = $1 and seq = $2",
        [s, e.seq],
      );
      expect(row).toEqual({ payload: { text: nasty }, request_id: nasty });
      const [tables] = await t.db.query<{ n: number }>("select count(*)::int as n from sessiond.events");
      expect(tables?.n).toBeGreaterThan(0);
    });

    it("keeps events immutable", async () => {
      const s = key();
      await appendEvent(t.db, { sessionKey: s, type: "user_message", payload: { text: "a" }, requestId: "r" });
      const error = await sqlError(t.db.query("update sessiond.events set payload = '{}' where session_key = $1", [s]));
      expect(error.code).toBe(SqlState.objectNotInPrerequisiteState);
      expect(error.message).toMatch(/immutable/);
    });

    it("refuses with 55P03 when only_if_idle and the session has unprocessed events", async () => {
      const s = key();
      await appendEvent(t.db, { sessionKey: s, type: "user_message", payload: {}, requestId: "r1", onlyIfIdle: true });
      const error = await sqlError(
        appendEvent(t.db, { sessionKey: s, type: "user_message", payload: {}, requestId: "r2", onlyIfIdle: true }),
      );
      expect(error.code).toBe(SqlState.lockNotAvailable);
      expect(error.message).toMatch(/busy/);
      // A retry of the first request is still answered (idempotency wins over busy).
      const dup = await appendEvent(t.db, {
        sessionKey: s,
        type: "user_message",
        payload: {},
        requestId: "r1",
        onlyIfIdle: true,
      });
      expect(dup.duplicate).toBe(true);
      expect(await countRows(t.db, "events", s)).toBe(1);
    });
  });

  describe("sessions constraints", () => {
    it("rejects processed_seq past last_seq, acked past the effect head, and negative counters", async () => {
      const s = key();
      await appendEvent(t.db, { sessionKey: s, type: "user_message", payload: {}, requestId: "r" });
      for (const set of ["processed_seq = 2", "acked_seq = 1", "last_seq = -1", "lease_token = -1"]) {
        const error = await sqlError(t.db.query(`update sessiond.sessions set ${set} where session_key = $1`, [s]));
        expect(error.code).toBe(SqlState.checkViolation);
      }
    });
  });

  describe("enqueue_effects", () => {
    const enqueue = (db: Db, s: string, effects: unknown[]) =>
      db.query<{ seq: number; duplicate: boolean; dedupe_key: string; status: string }>(
        "select * from sessiond.enqueue_effects($1, $2)",
        [s, effects],
      );

    it("numbers effects 1..N per session and dedupes by key without a second row", async () => {
      const s = key();
      const first = await enqueue(t.db, s, [
        { type: "send_message", delivery: "client", event_seq: 1, payload: { content: "one" } },
        { type: "webhook", event_seq: 1, payload: { url: "http://127.0.0.1/x" }, dedupe_key: "custom-1" },
      ]);
      expect(first.map((r) => [r.seq, r.duplicate, r.status])).toEqual([
        [1, false, "pending"],
        [2, false, "pending"],
      ]);
      expect(first[0]?.dedupe_key).toBe(`${s}/1/send_message/1`);
      const again = await enqueue(t.db, s, [
        { type: "send_message", delivery: "client", event_seq: 1, payload: { content: "one again" } },
        { type: "webhook", payload: {}, dedupe_key: "custom-1" },
        { type: "send_message", delivery: "client", event_seq: 2, payload: { content: "two" } },
      ]);
      expect(again.map((r) => [r.seq, r.duplicate])).toEqual([
        [1, true],
        [2, true],
        [3, false],
      ]);
      expect(await countRows(t.db, "effects", s)).toBe(3);
      const [session] = await t.db.query("select effect_seq from sessiond.sessions where session_key = $1", [s]);
      expect(session).toEqual({ effect_seq: 3 });
    });

    it("rejects a non-array, an unknown delivery, and an oversize effect payload", async () => {
      const s = key();
      expect((await sqlError(enqueue(t.db, s, {} as unknown as unknown[]))).code).toBe(SqlState.invalidParameter);
      expect((await sqlError(enqueue(t.db, s, [{ type: "x", delivery: "everyone" }]))).code).toBe(
        SqlState.checkViolation,
      );
      expect((await sqlError(enqueue(t.db, s, [{ type: "x", payload: { b: "y".repeat(70_000) } }]))).code).toBe(
        SqlState.programLimitExceeded,
      );
      expect(await countRows(t.db, "effects", s)).toBe(0);
    });

    it("enforces the status machine in the database", async () => {
      const s = key();
      await enqueue(t.db, s, [{ type: "webhook", payload: {} }]);
      const set = (status: string) =>
        t.db.query("update sessiond.effects set status = $2 where session_key = $1 and seq = 1", [s, status]);
      // pending → failed skips executing: illegal.
      expect((await sqlError(set("failed"))).code).toBe(SqlState.objectNotInPrerequisiteState);
      await set("executing");
      await set("failed");
      await set("dead");
      await set("pending");
      await set("executing");
      await set("completed");
      for (const next of ["pending", "executing", "failed", "dead"]) {
        const error = await sqlError(set(next));
        expect(error.message).toMatch(/illegal effect transition completed -> /);
      }
      const [row] = await t.db.query<{ status: string; completed_at: Date | null }>(
        "select status, completed_at from sessiond.effects where session_key = $1",
        [s],
      );
      expect(row?.status).toBe("completed");
      expect(row?.completed_at).toBeInstanceOf(Date);
    });

    it("keeps an effect's identity and payload immutable", async () => {
      const s = key();
      await enqueue(t.db, s, [{ type: "webhook", payload: { a: 1 } }]);
      const error = await sqlError(
        t.db.query("update sessiond.effects set payload = '{}' where session_key = $1", [s]),
      );
      expect(error.message).toMatch(/immutable/);
    });

    it("acks client effects cumulatively and refuses an ack beyond the head", async () => {
      const s = key();
      await enqueue(t.db, s, [
        { type: "send_message", delivery: "client", event_seq: 1, payload: {} },
        { type: "webhook", event_seq: 1, payload: {} },
        { type: "send_message", delivery: "client", event_seq: 2, payload: {} },
      ]);
      const [acked] = await t.db.query<{ acked: number }>("select sessiond.ack_effects($1, 2) as acked", [s]);
      expect(acked?.acked).toBe(2);
      const rows = await t.db.query<{ seq: number; status: string }>(
        "select seq, status from sessiond.effects where session_key = $1 order by seq",
        [s],
      );
      // The webhook is a handler's job: an ack does not complete it.
      expect(rows.map((r) => r.status)).toEqual(["completed", "pending", "pending"]);
      const [again] = await t.db.query<{ acked: number }>("select sessiond.ack_effects($1, 1) as acked", [s]);
      expect(again?.acked).toBe(2);
      expect((await sqlError(t.db.query("select sessiond.ack_effects($1, 4)", [s]))).code).toBe(
        SqlState.invalidParameter,
      );
      const replay = await t.db.query<{ seq: number }>("select seq from sessiond.effects_after($1, 0)", [s]);
      expect(replay.map((r) => r.seq)).toEqual([1, 3]);
    });
  });

  describe("NOTIFY", () => {
    it("notifies sessiond_events with ids after commit, and not after rollback", async () => {
      const received: string[] = [];
      let wake: (() => void) | undefined;
      const listener = await t.db.listen(Channels.events, (payload) => {
        received.push(payload);
        wake?.();
      });
      try {
        const rolledBack = key("rb");
        const committed = key("ok");
        await t.db
          .transaction(async (tx) => {
            await appendEvent(tx, { sessionKey: rolledBack, type: "user_message", payload: {}, requestId: "r" });
            throw new Error("roll back");
          })
          .catch(() => {});
        await appendEvent(t.db, {
          sessionKey: committed,
          type: "user_message",
          payload: { text: "secret" },
          requestId: "r",
        });
        await nextValue<void>(
          (resolve) => {
            wake = resolve;
            if (received.length > 0) resolve();
          },
          5000,
          "notification",
        );
        // The first notification is the committed append's: the rolled-back one never came.
        expect(JSON.parse(received[0] as string)).toEqual([[committed, 1]]);
        expect(received.join()).not.toContain("secret");
      } finally {
        await listener.close();
      }
    });

    it("notifies once per statement for effects, with [session_key, max seq]", async () => {
      const received: string[] = [];
      let wake: (() => void) | undefined;
      const listener = await t.db.listen(Channels.effects, (payload) => {
        received.push(payload);
        wake?.();
      });
      try {
        const s = key();
        await t.db.query("select * from sessiond.enqueue_effects($1, $2)", [
          s,
          [
            { type: "a", payload: {} },
            { type: "b", payload: {} },
            { type: "c", payload: {} },
          ],
        ]);
        await nextValue<void>(
          (resolve) => {
            wake = resolve;
            if (received.length > 0) resolve();
          },
          5000,
          "notification",
        );
        // enqueue_effects inserts row by row; all its notifications name this session only.
        const pairs = received.flatMap((p) => JSON.parse(p) as Array<[string, number]>);
        expect(pairs.every(([k]) => k === s)).toBe(true);
        expect(Math.max(...pairs.map(([, seq]) => seq))).toBeLessThanOrEqual(3);
      } finally {
        await listener.close();
      }
    });
  });
});
