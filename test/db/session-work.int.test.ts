/**
 * claim_session_work and next_session_work: the processor's statement before a
 * session's first run (lease + events) and after each run (next events, or
 * release when there are none). The cases on both databases pin down what each
 * returns and writes; the Postgres cases pin down the race the release must not
 * lose: an append in flight while the lease holder finishes. Waiting is
 * observed in pg_stat_activity, never inferred from time.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Db, Queryable } from "../../src/db/index.js";
import { appendEvent } from "../../src/events/index.js";
import { describeEachDb } from "../support/db.js";

let n = 0;
const key = (prefix = "w") => `${prefix}-${process.pid}-${++n}`;

interface WorkRow {
  lease_token: number;
  seq: number | null;
  type: string | null;
  payload: Record<string, unknown> | null;
  request_id: string | null;
}

const claimWork = (db: Queryable, s: string, owner: string, max = 64, ttlMs = 60_000) =>
  db.query<WorkRow>(
    "select lease_token, seq, type, payload, request_id from sessiond.claim_session_work($1, $2, $3, $4)",
    [s, owner, ttlMs, max],
  );

const nextWork = (db: Queryable, s: string, owner: string, token: number, max = 64) =>
  db.query<WorkRow>(
    "select lease_token, seq, type, payload, request_id from sessiond.next_session_work($1, $2, $3, $4)",
    [s, owner, token, max],
  );

async function append(db: Queryable, s: string, requestId: string) {
  return appendEvent(db, { sessionKey: s, type: "user_message", payload: { text: requestId }, requestId });
}

async function lease(db: Queryable, s: string) {
  const [row] = await db.query<{ lease_owner: string | null; lease_token: number; processed_seq: number }>(
    "select lease_owner, lease_token, processed_seq from sessiond.sessions where session_key = $1",
    [s],
  );
  return row;
}

async function commitProcessed(db: Db, s: string, token: number, seqs: number[]) {
  await db.transaction(async (tx) => {
    await tx.query("select * from sessiond.commit_run($1, $2, $3, '[]')", [
      s,
      token,
      seqs.map((seq) => ({ seq, status: "processed" })),
    ]);
  });
}

describeEachDb("session work", (t) => {
  describe("claim_session_work", () => {
    it("takes the lease of a session with unprocessed events and returns its token with the events in order", async () => {
      const s = key();
      for (const r of ["r1", "r2", "r3"]) await append(t.db, s, r);
      const rows = await claimWork(t.db, s, "worker-a", 2);
      expect(rows).toEqual([
        { lease_token: 1, seq: 1, type: "user_message", payload: { text: "r1" }, request_id: "r1" },
        { lease_token: 1, seq: 2, type: "user_message", payload: { text: "r2" }, request_id: "r2" },
      ]);
      expect(await lease(t.db, s)).toEqual({ lease_owner: "worker-a", lease_token: 1, processed_seq: 0 });
    });

    it("returns nothing and writes nothing while another owner holds a live lease", async () => {
      const s = key();
      await append(t.db, s, "r1");
      expect(await claimWork(t.db, s, "worker-a")).toHaveLength(1);
      expect(await claimWork(t.db, s, "worker-b")).toEqual([]);
      expect(await lease(t.db, s)).toEqual({ lease_owner: "worker-a", lease_token: 1, processed_seq: 0 });
    });

    it("takes an expired lease with a larger token", async () => {
      const s = key();
      await append(t.db, s, "r1");
      await claimWork(t.db, s, "worker-a", 64, 1);
      await t.db.query(
        "update sessiond.sessions set lease_expires_at = now() - interval '1 second' where session_key = $1",
        [s],
      );
      expect((await claimWork(t.db, s, "worker-b")).map((r) => [r.lease_token, r.seq])).toEqual([[2, 1]]);
    });

    it("returns nothing and takes no lease when the session has no unprocessed event, or does not exist", async () => {
      const s = key();
      await append(t.db, s, "r1");
      const [claimed] = await claimWork(t.db, s, "worker-a");
      await commitProcessed(t.db, s, claimed!.lease_token, [1]);
      await t.db.query("select sessiond.release_session($1, 'worker-a', $2)", [s, claimed!.lease_token]);
      expect(await claimWork(t.db, s, "worker-b")).toEqual([]);
      expect(await lease(t.db, s)).toEqual({ lease_owner: null, lease_token: 1, processed_seq: 1 });
      expect(await claimWork(t.db, key("missing"), "worker-b")).toEqual([]);
    });
  });

  describe("next_session_work", () => {
    it("returns the next unprocessed events and keeps the lease while there are some", async () => {
      const s = key();
      for (const r of ["r1", "r2", "r3"]) await append(t.db, s, r);
      const [claimed] = await claimWork(t.db, s, "worker-a", 1);
      const token = claimed!.lease_token;
      await commitProcessed(t.db, s, token, [1]);
      expect((await nextWork(t.db, s, "worker-a", token)).map((r) => [r.lease_token, r.seq, r.request_id])).toEqual([
        [token, 2, "r2"],
        [token, 3, "r3"],
      ]);
      expect(await lease(t.db, s)).toEqual({ lease_owner: "worker-a", lease_token: token, processed_seq: 1 });
    });

    it("releases the lease when nothing is pending and says so with one row of null event columns", async () => {
      const s = key();
      await append(t.db, s, "r1");
      const [claimed] = await claimWork(t.db, s, "worker-a");
      const token = claimed!.lease_token;
      await commitProcessed(t.db, s, token, [1]);
      expect(await nextWork(t.db, s, "worker-a", token)).toEqual([
        { lease_token: token, seq: null, type: null, payload: null, request_id: null },
      ]);
      expect(await lease(t.db, s)).toEqual({ lease_owner: null, lease_token: token, processed_seq: 1 });
      // Free again: the next event is claimed at once, with a larger token.
      await append(t.db, s, "r2");
      expect((await claimWork(t.db, s, "worker-b")).map((r) => [r.lease_token, r.seq])).toEqual([[token + 1, 2]]);
    });

    it("returns nothing and changes nothing for a caller that lost the lease (stale token or another owner)", async () => {
      const s = key();
      await append(t.db, s, "r1");
      const [first] = await claimWork(t.db, s, "worker-a");
      await t.db.query(
        "update sessiond.sessions set lease_expires_at = now() - interval '1 second' where session_key = $1",
        [s],
      );
      const [second] = await claimWork(t.db, s, "worker-b");
      expect(second!.lease_token).toBe(first!.lease_token + 1);
      // worker-a's stale token sees nothing, pending or not, and never releases worker-b's lease.
      expect(await nextWork(t.db, s, "worker-a", first!.lease_token)).toEqual([]);
      await commitProcessed(t.db, s, second!.lease_token, [1]);
      expect(await nextWork(t.db, s, "worker-a", first!.lease_token)).toEqual([]);
      expect(await nextWork(t.db, s, "worker-a", second!.lease_token)).toEqual([]);
      expect(await lease(t.db, s)).toEqual({
        lease_owner: "worker-b",
        lease_token: second!.lease_token,
        processed_seq: 1,
      });
    });
  });
});

describeEachDb("commit_run with the run's checkpoint rows", (t) => {
  const rows = (thread: string) => ({
    blobs: [{ thread_id: thread, checkpoint_ns: "", channel: "messages", version: "1", type: "json", blob: "W10=" }],
    checkpoints: [
      {
        thread_id: thread,
        checkpoint_ns: "",
        checkpoint_id: "cp-1",
        parent_checkpoint_id: null,
        type: "json",
        checkpoint: "e30=",
        metadata: { step: 1 },
      },
    ],
    writes: [
      {
        thread_id: thread,
        checkpoint_ns: "",
        checkpoint_id: "cp-1",
        task_id: "t1",
        idx: 0,
        channel: "messages",
        type: "json",
        blob: "W10=",
        task_path: "",
      },
    ],
  });
  const stored = async (thread: string) => {
    const [row] = await t.db.query<{ checkpoints: number; blobs: number; writes: number }>(
      `select (select count(*) from sessiond.checkpoints where thread_id = $1)::int as checkpoints,
              (select count(*) from sessiond.checkpoint_blobs where thread_id = $1)::int as blobs,
              (select count(*) from sessiond.checkpoint_writes where thread_id = $1)::int as writes`,
      [thread],
    );
    return row;
  };
  const commit = (s: string, token: number, seq: number) =>
    t.db.query("select * from sessiond.commit_run($1, $2, $3, '[]', $4)", [
      s,
      token,
      [{ seq, status: "processed" }],
      rows(s),
    ]);

  it("writes the checkpoint rows in the same statement as the outcome and the cursor", async () => {
    const s = key("cp");
    await append(t.db, s, "r1");
    const [claimed] = await claimWork(t.db, s, "worker-a");
    await commit(s, claimed!.lease_token, 1);
    expect(await stored(s)).toEqual({ checkpoints: 1, blobs: 1, writes: 1 });
    expect(await lease(t.db, s)).toMatchObject({ processed_seq: 1 });
    const [cp] = await t.db.query<{ checkpoint: Uint8Array; metadata: unknown }>(
      "select checkpoint, metadata from sessiond.checkpoints where thread_id = $1",
      [s],
    );
    expect(Buffer.from(cp!.checkpoint).toString()).toBe("{}");
    expect(cp!.metadata).toEqual({ step: 1 });
  });

  it("writes none of them when the token is stale (SDL01) or the commit is out of order (SDO01)", async () => {
    const s = key("cp");
    await append(t.db, s, "r1");
    const [claimed] = await claimWork(t.db, s, "worker-a");
    const stale = commit(s, claimed!.lease_token - 1, 1);
    await expect(stale).rejects.toMatchObject({ code: "SDL01" });
    const outOfOrder = commit(s, claimed!.lease_token, 2);
    await expect(outOfOrder).rejects.toMatchObject({ code: "SDO01" });
    expect(await stored(s)).toEqual({ checkpoints: 0, blobs: 0, writes: 0 });
    expect(await lease(t.db, s)).toMatchObject({ processed_seq: 0 });
  });
});

/**
 * Polls (one round trip per check, no sleep) until backend `pid` waits for a lock, as
 * pg_stat_activity shows it.
 */
async function untilWaitingForLock(db: Db, pid: number, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const rows = await db.query("select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'", [pid]);
    if (rows.length === 1) return;
    if (Date.now() > deadline) throw new Error(`backend ${pid} did not wait for a lock within ${ms} ms`);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** An append left uncommitted until `commit()`: it holds the session's lock and row meanwhile. */
async function heldAppend(db: Db, s: string, requestId: string) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let appended!: () => void;
  const ready = new Promise<void>((resolve) => {
    appended = resolve;
  });
  const committed = db.transaction(async (tx) => {
    await append(tx, s, requestId);
    appended();
    await released;
  });
  await Promise.race([ready, committed]);
  return () => {
    release();
    return committed;
  };
}

describeEachDb(
  "session work under concurrency",
  (t) => {
    const pools: Db[] = [];
    const onePool = () => {
      const db = t.another({ max: 1 });
      pools.push(db);
      return db;
    };
    afterEach(async () => {
      for (const db of pools.splice(0)) await db.close();
    });

    const pidOf = async (db: Db) => (await db.query<{ pid: number }>("select pg_backend_pid() as pid"))[0]!.pid;

    it("next_session_work that meets an append in flight waits for it and returns its event instead of releasing", async () => {
      const finisher = onePool();
      const appender = onePool();
      const s = key("race");
      await append(t.db, s, "r1");
      const [claimed] = await claimWork(t.db, s, "worker-a");
      const token = claimed!.lease_token;
      await commitProcessed(t.db, s, token, [1]);

      const commit = await heldAppend(appender, s, "r2");
      const pid = await pidOf(finisher);
      const next = nextWork(finisher, s, "worker-a", token);
      await untilWaitingForLock(t.db, pid);
      await commit();
      expect((await next).map((r) => [r.lease_token, r.seq, r.request_id])).toEqual([[token, 2, "r2"]]);
      expect(await lease(t.db, s)).toEqual({ lease_owner: "worker-a", lease_token: token, processed_seq: 1 });
    });

    it("claim_session_work does not wait for an append in flight to a caught-up session; once it commits, it claims", async () => {
      const claimer = onePool();
      const appender = onePool();
      const s = key("race");
      await append(t.db, s, "r1");
      const [claimed] = await claimWork(t.db, s, "worker-a");
      await commitProcessed(t.db, s, claimed!.lease_token, [1]);
      await nextWork(t.db, s, "worker-a", claimed!.lease_token); // releases: nothing pending

      // The uncommitted append is invisible and the committed row says caught up: nothing to claim,
      // and no wait (the append's NOTIFY, sent at its commit, brings the next claim).
      const commit = await heldAppend(appender, s, "r2");
      expect(await claimWork(claimer, s, "worker-b")).toEqual([]);
      await commit();
      expect((await claimWork(claimer, s, "worker-b")).map((r) => [r.lease_token, r.seq, r.request_id])).toEqual([
        [claimed!.lease_token + 1, 2, "r2"],
      ]);
    });
  },
  ["postgres"],
);
