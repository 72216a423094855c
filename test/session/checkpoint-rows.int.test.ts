import { expect, it } from "vitest";
import type { Queryable } from "../../src/db/index.js";
import { selectBlobs, selectWrites } from "../../src/session/checkpoint-rows.js";
import { describeEachDb } from "../support/db.js";

/** Sequential scans of a sessiond table so far in the caller's transaction (its own backend, no stats delay). */
async function seqScans(tx: Queryable, table: string): Promise<number> {
  const [row] = await tx.query<{ n: number }>(
    "select coalesce(seq_scan, 0)::int as n from pg_stat_xact_user_tables where relid = $1::regclass",
    [`sessiond.${table}`],
  );
  return row?.n ?? 0;
}

describeEachDb("checkpoint rows", (t) => {
  it("reads blobs and writes by their primary key: a read does not scan every thread's history", async () => {
    // Other sessions' history (3,000 blobs, 3,000 writes) and the few rows one read asks for.
    await t.db.query(
      `insert into sessiond.checkpoint_blobs (thread_id, channel, version, type, blob)
       select 'other-' || (i % 300), 'messages', lpad(i::text, 8, '0'), 'json', '\\x00'
         from generate_series(1, 3000) i`,
    );
    await t.db.query(
      `insert into sessiond.checkpoint_blobs (thread_id, channel, version, type, blob)
       values ('mine', 'messages', '1', 'json', '\\x01'), ('mine', 'messages', '2', 'json', '\\x02')`,
    );
    await t.db.query(
      `insert into sessiond.checkpoint_writes (thread_id, checkpoint_id, task_id, idx, channel, blob)
       select 'other-' || (i % 300), 'cp-' || i, 'task', 0, 'messages', '\\x00'
         from generate_series(1, 3000) i`,
    );
    await t.db.query(
      `insert into sessiond.checkpoint_writes (thread_id, checkpoint_id, task_id, idx, channel, blob)
       values ('mine', 'cp-a', 'task', 0, 'messages', '\\x03'), ('mine', 'cp-a', 'task', 1, 'messages', '\\x04')`,
    );
    // The planner sees the tables as they are (on a busy server autovacuum would have told it).
    await t.db.query("analyze sessiond.checkpoint_blobs, sessiond.checkpoint_writes");
    const { blobs, writes, scans } = await t.db.transaction(async (tx) => {
      const before = [await seqScans(tx, "checkpoint_blobs"), await seqScans(tx, "checkpoint_writes")];
      const blobs = await selectBlobs(tx, [
        { threadId: "mine", ns: "", channel: "messages", version: "2" },
        { threadId: "mine", ns: "", channel: "messages", version: "9" }, // not there
      ]);
      const writes = await selectWrites(tx, [{ threadId: "mine", ns: "", checkpointId: "cp-a" }]);
      const after = [await seqScans(tx, "checkpoint_blobs"), await seqScans(tx, "checkpoint_writes")];
      return { blobs, writes, scans: after.map((n, i) => n - (before[i] ?? 0)) };
    });
    expect(blobs.map((b) => [b.threadId, b.version, [...(b.blob ?? [])]])).toEqual([["mine", "2", [2]]]);
    expect(writes.map((w) => [w.checkpointId, w.idx, [...w.blob]]).sort()).toEqual([
      ["cp-a", 0, [3]],
      ["cp-a", 1, [4]],
    ]);
    expect(scans).toEqual([0, 0]); // [checkpoint_blobs, checkpoint_writes]
  });
});
