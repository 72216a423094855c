import {
  type Checkpoint,
  type CheckpointMetadata,
  type CheckpointTuple,
  ERROR,
  INTERRUPT,
  JsonPlusSerializer,
  RESUME,
  type SerializerProtocol,
  TASKS,
} from "@langchain/langgraph-checkpoint";
import { describe, expect, it } from "vitest";
import type { Db } from "../../src/db/index.js";
import { RUN_CONFIG_KEY, SessiondCheckpointer } from "../../src/session/index.js";
import { describeEachDb } from "../support/db.js";

let n = 0;
const thread = () => `cp-${process.pid}-${++n}`;

// Checkpoint ids as LangGraph makes them (uuid6: later = larger as a string), minted in order.
let clock = 0;
const nextId = () => `1f0a0000-0000-6000-8000-${(++clock).toString(16).padStart(12, "0")}`;

function checkpoint(
  values: Record<string, unknown>,
  versions: Record<string, string | number>,
  extra: Partial<Checkpoint> = {},
): Checkpoint {
  return {
    v: 4,
    id: nextId(),
    ts: new Date().toISOString(),
    channel_values: values,
    channel_versions: versions,
    versions_seen: { node: { a: versions.a ?? 0 } },
    ...extra,
  };
}

const meta = (extra: Record<string, unknown> = {}) =>
  ({ source: "loop", step: 0, parents: {}, ...extra }) as CheckpointMetadata;

const cfg = (threadId: string, checkpointId?: string, ns = "") => ({
  configurable: { thread_id: threadId, checkpoint_ns: ns, ...(checkpointId ? { checkpoint_id: checkpointId } : {}) },
});

async function collect(gen: AsyncGenerator<CheckpointTuple>): Promise<CheckpointTuple[]> {
  const out: CheckpointTuple[] = [];
  for await (const tuple of gen) out.push(tuple);
  return out;
}

const ids = (tuples: CheckpointTuple[]) => tuples.map((t) => t.checkpoint.id);

async function count(db: Db, table: string, threadId: string): Promise<number> {
  const [row] = await db.query<{ n: number }>(`select count(*)::int as n from sessiond.${table} where thread_id = $1`, [
    threadId,
  ]);
  return row?.n ?? -1;
}

/** Puts a chain of checkpoints (each the child of the one before) and returns them. */
async function chain(saver: SessiondCheckpointer, threadId: string, length: number, ns = ""): Promise<Checkpoint[]> {
  const out: Checkpoint[] = [];
  for (let i = 0; i < length; i++) {
    const c = checkpoint({ a: `a${i}` }, { a: i + 1 });
    await saver.put(cfg(threadId, out.at(-1)?.id, ns), c, meta({ step: i, user: `u${i % 2}` }), { a: i + 1 });
    out.push(c);
  }
  return out;
}

describeEachDb("SessiondCheckpointer", (t) => {
  describe("put and getTuple", () => {
    it("round-trips a checkpoint, storing one blob per changed channel version", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const bytes = new Uint8Array([0, 1, 254, 255]);
      const first = checkpoint(
        { a: "one", b: { deep: [1, 2, { x: null }] }, c: bytes, gone: "x" },
        { a: 1, b: 1, c: 1, gone: 1, missing: 1 },
      );
      const returned = await saver.put(cfg(th), first, meta({ step: -1, source: "input" }), {
        a: 1,
        b: 1,
        c: 1,
        gone: 1,
        missing: 1,
      });
      expect(returned).toEqual(cfg(th, first.id));

      // The child changes only `a`: it stores one blob, and reads the others from earlier versions.
      const second = checkpoint({ a: "two", b: { deep: [1, 2, { x: null }] }, c: bytes }, { a: 2, b: 1, c: 1 });
      await saver.put(cfg(th, first.id), second, meta({ step: 0 }), { a: 2 });

      const blobs = await t.db.query<{ channel: string; version: string; type: string }>(
        "select channel, version, type from sessiond.checkpoint_blobs where thread_id = $1 order by channel, version",
        [th],
      );
      expect(blobs).toEqual([
        { channel: "a", version: "1", type: "json" },
        { channel: "a", version: "2", type: "json" },
        { channel: "b", version: "1", type: "json" },
        { channel: "c", version: "1", type: "bytes" },
        { channel: "gone", version: "1", type: "json" },
        { channel: "missing", version: "1", type: "empty" },
      ]);

      const latest = await saver.getTuple(cfg(th));
      expect(latest?.config).toEqual(cfg(th, second.id));
      expect(latest?.parentConfig).toEqual(cfg(th, first.id));
      expect(latest?.checkpoint).toEqual({
        ...second,
        channel_values: { a: "two", b: { deep: [1, 2, { x: null }] }, c: bytes },
      });
      expect(latest?.metadata).toEqual(meta({ step: 0 }));
      expect(latest?.pendingWrites).toEqual([]);

      const byId = await saver.getTuple(cfg(th, first.id));
      expect(byId?.checkpoint.channel_values).toEqual({
        a: "one",
        b: { deep: [1, 2, { x: null }] },
        c: bytes,
        gone: "x",
      });
      expect(byId?.checkpoint.channel_values).not.toHaveProperty("missing");
      expect(byId?.parentConfig).toBeUndefined();
      expect(byId?.metadata).toEqual(meta({ step: -1, source: "input" }));
    });

    it("returns undefined for an unknown thread, id or namespace, and without a thread_id", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      await chain(saver, th, 1);
      expect(await saver.getTuple(cfg(thread()))).toBeUndefined();
      expect(await saver.getTuple(cfg(th, nextId()))).toBeUndefined();
      expect(await saver.getTuple(cfg(th, undefined, "other:1"))).toBeUndefined();
      expect(await saver.getTuple({ configurable: {} })).toBeUndefined();
      await expect(saver.put({ configurable: {} }, checkpoint({}, {}), meta(), {})).rejects.toThrow(/thread_id/);
    });

    it("keeps metadata in jsonb (U+0000 dropped, which jsonb cannot hold) and replaces a re-put checkpoint", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const c = checkpoint({ a: 1 }, { a: 1 });
      await saver.put(cfg(th), c, meta({ note: "nul\u0000here", nested: { k: [1, "two"] } }), { a: 1 });
      const [row] = await t.db.query<{ metadata: Record<string, unknown> }>(
        "select metadata from sessiond.checkpoints where thread_id = $1",
        [th],
      );
      expect(row?.metadata).toEqual(meta({ note: "nulhere", nested: { k: [1, "two"] } }));
      await saver.put(cfg(th), c, meta({ note: "again" }), { a: 1 });
      expect((await saver.getTuple(cfg(th, c.id)))?.metadata).toEqual(meta({ note: "again" }));
      expect(await count(t.db, "checkpoints", th)).toBe(1);
    });

    it("mints string versions that increase and differ between forks of one version", () => {
      const saver = new SessiondCheckpointer(t.db);
      const v1 = saver.getNextVersion(undefined) as unknown as string;
      const v2 = saver.getNextVersion(v1 as unknown as number) as unknown as string;
      const fork = saver.getNextVersion(v1 as unknown as number) as unknown as string;
      expect(v1).toMatch(/^0{31}1\.[0-9a-f]{16}$/);
      expect(v2 > v1 && fork > v1).toBe(true);
      expect(v2.split(".")[0]).toBe(fork.split(".")[0]);
      expect(v2).not.toBe(fork);
      expect(saver.getNextVersion(7)).toMatch(/^0{31}8\./);
    });

    it("migrates a checkpoint of format < 4: its pending sends are the parent's TASKS writes", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const parent = checkpoint({ a: 1 }, { a: 1 });
      await saver.put(cfg(th), parent, meta(), { a: 1 });
      await saver.putWrites(cfg(th, parent.id), [[TASKS, { node: "n", args: 2 }]], "task-b", "~b");
      await saver.putWrites(
        cfg(th, parent.id),
        [
          [TASKS, { node: "n", args: 1 }],
          ["a", 5],
        ],
        "task-a",
        "~a",
      );
      const old = checkpoint({ a: 2 }, { a: 2, b: 7 }, { v: 3 });
      await saver.put(cfg(th, parent.id), old, meta(), { a: 2 });
      const tuple = await saver.getTuple(cfg(th, old.id));
      expect(tuple?.checkpoint.channel_values[TASKS]).toEqual([
        { node: "n", args: 1 },
        { node: "n", args: 2 },
      ]);
      expect(tuple?.checkpoint.channel_versions[TASKS]).toBe(7);
      // A checkpoint of format 4 is left alone.
      expect((await saver.getTuple(cfg(th, parent.id)))?.checkpoint.channel_values).not.toHaveProperty(TASKS);
    });
  });

  describe("list", () => {
    it("lists newest first, by namespace, metadata filter, before and limit", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const root = await chain(saver, th, 5);
      const sub = await chain(saver, th, 2, "child:1");
      const other = await chain(saver, thread(), 1);

      const all = await collect(saver.list({ configurable: { thread_id: th } }));
      expect(ids(all)).toEqual([...root, ...sub].map((c) => c.id).reverse());
      expect(all[0]?.config).toEqual(cfg(th, sub[1]?.id, "child:1"));
      expect(all[0]?.parentConfig).toEqual(cfg(th, sub[0]?.id, "child:1"));

      expect(ids(await collect(saver.list(cfg(th))))).toEqual(root.map((c) => c.id).reverse());
      expect(ids(await collect(saver.list(cfg(th, undefined, "child:1"))))).toEqual(sub.map((c) => c.id).reverse());
      expect(ids(await collect(saver.list(cfg(th), { filter: { user: "u1" } })))).toEqual([root[3]?.id, root[1]?.id]);
      expect(ids(await collect(saver.list(cfg(th), { filter: { step: 2, user: "u0" } })))).toEqual([root[2]?.id]);
      expect(ids(await collect(saver.list(cfg(th), { filter: { user: "nobody" } })))).toEqual([]);
      expect(ids(await collect(saver.list(cfg(th), { before: cfg(th, root[3]?.id) })))).toEqual(
        [root[2], root[1], root[0]].map((c) => c?.id),
      );
      expect(ids(await collect(saver.list(cfg(th), { limit: 2 })))).toEqual([root[4]?.id, root[3]?.id]);
      expect(ids(await collect(saver.list(cfg(th), { limit: 0 })))).toEqual([]);
      expect(
        ids(await collect(saver.list(cfg(th), { before: cfg(th, root[4]?.id), filter: { user: "u0" }, limit: 1 }))),
      ).toEqual([root[2]?.id]);
      expect(ids(await collect(saver.list(cfg(th, root[1]?.id))))).toEqual([root[1]?.id]);

      // Without a thread_id: every thread, still newest first.
      const everywhere = ids(await collect(saver.list({ configurable: {} }, { limit: 2 })));
      expect(everywhere).toEqual([other[0]?.id, sub[1]?.id]);
    });
  });

  describe("putWrites", () => {
    it("returns pending writes ordered by task path, task id and index", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const [c] = await chain(saver, th, 1);
      const at = cfg(th, c?.id);
      await saver.putWrites(
        at,
        [
          ["a", "z-1"],
          ["b", "z-2"],
        ],
        "task-z",
        "~0, 2",
      );
      await saver.putWrites(at, [["a", "y-1"]], "task-y", "~0, 1");
      await saver.putWrites(at, [["a", "input"]], "task-x");
      const tuple = await saver.getTuple(at);
      expect(tuple?.pendingWrites).toEqual([
        ["task-x", "a", "input"],
        ["task-y", "a", "y-1"],
        ["task-z", "a", "z-1"],
        ["task-z", "b", "z-2"],
      ]);
      const rows = await t.db.query(
        "select task_id, idx, task_path from sessiond.checkpoint_writes where thread_id = $1 order by task_path, task_id, idx",
        [th],
      );
      expect(rows).toEqual([
        { task_id: "task-x", idx: 0, task_path: "" },
        { task_id: "task-y", idx: 0, task_path: "~0, 1" },
        { task_id: "task-z", idx: 0, task_path: "~0, 2" },
        { task_id: "task-z", idx: 1, task_path: "~0, 2" },
      ]);
    });

    it("keeps the first regular write of a task and index, and lets special channels overwrite", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const [c] = await chain(saver, th, 1);
      const at = cfg(th, c?.id);
      await saver.putWrites(at, [["a", "first"]], "task");
      await saver.putWrites(at, [["a", "second"]], "task");
      await saver.putWrites(at, [[ERROR, "boom 1"]], "task");
      await saver.putWrites(at, [[ERROR, "boom 2"]], "task");
      await saver.putWrites(at, [[INTERRUPT, [{ value: "q1" }]]], "task");
      await saver.putWrites(at, [[INTERRUPT, [{ value: "q2" }]]], "task");
      await saver.putWrites(at, [[RESUME, "r"]], "task");
      const tuple = await saver.getTuple(at);
      expect(tuple?.pendingWrites).toEqual([
        ["task", RESUME, "r"],
        ["task", INTERRUPT, [{ value: "q2" }]],
        ["task", ERROR, "boom 2"],
        ["task", "a", "first"],
      ]);
      const idx = await t.db.query<{ idx: number }>(
        "select idx from sessiond.checkpoint_writes where thread_id = $1 order by idx",
        [th],
      );
      expect(idx.map((r) => r.idx)).toEqual([-4, -3, -1, 0]);
      await expect(saver.putWrites(cfg(th), [["a", 1]], "task")).rejects.toThrow(/checkpoint_id/);
    });
  });

  it("deleteThread removes the thread's checkpoints, blobs and writes, and nothing else", async () => {
    const saver = new SessiondCheckpointer(t.db);
    const [gone, kept] = [thread(), thread()];
    for (const th of [gone, kept]) {
      const [c] = await chain(saver, th, 2);
      await saver.putWrites(cfg(th, c?.id), [["a", 1]], "task");
    }
    await saver.deleteThread(gone);
    for (const table of ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]) {
      expect(await count(t.db, table, gone)).toBe(0);
      expect(await count(t.db, table, kept)).toBeGreaterThan(0);
    }
    expect(await saver.getTuple(cfg(gone))).toBeUndefined();
    expect(await saver.getTuple(cfg(kept))).toBeDefined();
  });

  describe("run buffering", () => {
    it("buffers a run's writes in memory, reads merge them newest first, flush commits them in the caller's transaction", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const committed = await chain(saver, th, 2);
      saver.beginRun(th);
      expect(saver.inRun(th)).toBe(true);
      const c2 = checkpoint({ a: "buffered" }, { a: 3 });
      await saver.put(cfg(th, committed[1]?.id), c2, meta({ step: 2, user: "u0" }), { a: 3 });
      const c3 = checkpoint({ a: "buffered" }, { a: 3 });
      await saver.put(cfg(th, c2.id), c3, meta({ step: 3, user: "u1" }), {});
      await saver.putWrites(cfg(th, c3.id), [["a", "w"]], "task", "~1");

      // Nothing reached the database.
      expect(await count(t.db, "checkpoints", th)).toBe(2);
      expect(await count(t.db, "checkpoint_blobs", th)).toBe(2);
      expect(await count(t.db, "checkpoint_writes", th)).toBe(0);

      const latest = await saver.getTuple(cfg(th));
      expect(latest?.checkpoint.id).toBe(c3.id);
      expect(latest?.checkpoint.channel_values).toEqual({ a: "buffered" });
      expect(latest?.pendingWrites).toEqual([["task", "a", "w"]]);
      expect((await saver.getTuple(cfg(th, committed[0]?.id)))?.checkpoint.channel_values).toEqual({ a: "a0" });
      const listed = await collect(saver.list(cfg(th)));
      expect(ids(listed)).toEqual([c3.id, c2.id, committed[1]?.id, committed[0]?.id]);
      expect(ids(await collect(saver.list(cfg(th), { limit: 3, filter: { user: "u1" } })))).toEqual([
        c3.id,
        committed[1]?.id,
      ]);
      expect(ids(await collect(saver.list(cfg(th), { before: cfg(th, c3.id), limit: 2 })))).toEqual([
        c2.id,
        committed[1]?.id,
      ]);

      await t.db.transaction((tx) => saver.flushRun(tx, th));
      expect(saver.inRun(th)).toBe(false);
      expect(await count(t.db, "checkpoints", th)).toBe(4);
      expect(await count(t.db, "checkpoint_blobs", th)).toBe(3);
      expect(await count(t.db, "checkpoint_writes", th)).toBe(1);
      // A fresh saver (no buffer) reads the same thing back from the tables.
      const fresh = new SessiondCheckpointer(t.db);
      expect(await collect(fresh.list(cfg(th)))).toEqual(listed);
    });

    it("a flush in a transaction that rolls back writes nothing, and ends the run", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      saver.beginRun(th);
      await chain(saver, th, 2);
      const rollback = new Error("rollback");
      await expect(
        t.db.transaction(async (tx) => {
          await saver.flushRun(tx, th);
          expect(await tx.query("select 1 from sessiond.checkpoints where thread_id = $1", [th])).toHaveLength(2);
          throw rollback;
        }),
      ).rejects.toBe(rollback);
      expect(saver.inRun(th)).toBe(false);
      for (const table of ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]) {
        expect(await count(t.db, table, th)).toBe(0);
      }
      expect(await saver.getTuple(cfg(th))).toBeUndefined();
    });

    it("discard drops the buffer; other threads write straight through meanwhile", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const [th, bystander] = [thread(), thread()];
      const [kept] = await chain(saver, th, 1);
      saver.beginRun(th);
      await saver.put(cfg(th, kept?.id), checkpoint({ a: "dropped" }, { a: 9 }), meta(), { a: 9 });
      await saver.putWrites(cfg(th, kept?.id), [["a", "dropped"]], "task");
      await chain(saver, bystander, 1);
      expect(await count(t.db, "checkpoints", bystander)).toBe(1);
      expect((await saver.getTuple(cfg(th)))?.checkpoint.channel_values).toEqual({ a: "dropped" });
      saver.discardRun(th);
      expect(saver.inRun(th)).toBe(false);
      const after = await saver.getTuple(cfg(th));
      expect(after?.checkpoint.id).toBe(kept?.id);
      expect(after?.pendingWrites).toEqual([]);
      expect(await count(t.db, "checkpoints", th)).toBe(1);
      saver.discardRun(th); // nothing to discard: no error
      // After the run, writes go straight through again.
      await chain(saver, th, 1);
      expect(await count(t.db, "checkpoints", th)).toBe(2);
    });

    it("the buffer wins over committed rows, except a committed regular write, as the flush will leave it", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const [c] = await chain(saver, th, 1);
      await saver.putWrites(cfg(th, c?.id), [["a", "committed"]], "task");
      await saver.putWrites(cfg(th, c?.id), [[ERROR, "committed error"]], "task");
      saver.beginRun(th);
      const again = { ...(c as Checkpoint), channel_values: { a: "redone" }, channel_versions: { a: 5 } };
      await saver.put(cfg(th), again, meta({ user: "replaced" }), { a: 5 });
      await saver.putWrites(cfg(th, c?.id), [["a", "buffered"]], "task");
      await saver.putWrites(cfg(th, c?.id), [[ERROR, "buffered error"]], "task");

      const during = await saver.getTuple(cfg(th, c?.id));
      expect(during?.metadata).toMatchObject({ user: "replaced" });
      expect(during?.checkpoint.channel_values).toEqual({ a: "redone" });
      expect(during?.pendingWrites).toEqual([
        ["task", ERROR, "buffered error"],
        ["task", "a", "committed"],
      ]);
      expect(ids(await collect(saver.list(cfg(th), { filter: { user: "u0" } })))).toEqual([]);
      expect(ids(await collect(saver.list(cfg(th), { filter: { user: "replaced" }, limit: 1 })))).toEqual([c?.id]);

      await t.db.transaction((tx) => saver.flushRun(tx, th));
      const after = await saver.getTuple(cfg(th, c?.id));
      expect(after).toEqual(during);
    });

    it("flush waits for a put still serialising; writes while flushing are refused; one run per thread", async () => {
      // A serde that holds every serialisation until the test opens the gate.
      let open!: () => void;
      const gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      const json = new JsonPlusSerializer();
      const serde: SerializerProtocol = {
        dumpsTyped: async (data: unknown) => {
          await gate;
          return json.dumpsTyped(data);
        },
        loadsTyped: (type, data) => json.loadsTyped(type, data),
      };
      const saver = new SessiondCheckpointer(t.db, { serde });
      const th = thread();
      expect(() => saver.discardRun(th)).not.toThrow();
      await expect(t.db.transaction((tx) => saver.flushRun(tx, th))).rejects.toThrow(/no run/);
      saver.beginRun(th);
      expect(() => saver.beginRun(th)).toThrow(/already buffering/);
      const c = checkpoint({ a: "late" }, { a: 1 });
      const put = saver.put(cfg(th), c, meta(), { a: 1 }); // held at the gate
      await t.db.transaction(async (tx) => {
        const flush = saver.flushRun(tx, th);
        await expect(saver.put(cfg(th), checkpoint({}, {}), meta(), {})).rejects.toThrow(/flushing/);
        open();
        await flush;
      });
      await put;
      expect(saver.inRun(th)).toBe(false);
      expect(await count(t.db, "checkpoints", th)).toBe(1);
      expect((await saver.getTuple(cfg(th)))?.checkpoint.channel_values).toEqual({ a: "late" });
    });

    it("a buffered re-put that no longer matches hides its committed row without starving the limit", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const committed = await chain(saver, th, 3); // users u0, u1, u0
      saver.beginRun(th);
      const moved = committed[2] as Checkpoint;
      await saver.put(cfg(th, committed[1]?.id), moved, meta({ step: 2, user: "moved" }), {});
      expect(ids(await collect(saver.list(cfg(th), { filter: { user: "u0" }, limit: 1 })))).toEqual([committed[0]?.id]);
      expect(ids(await collect(saver.list(cfg(th), { filter: { user: "moved" }, limit: 1 })))).toEqual([moved.id]);
      saver.discardRun(th);
      expect(ids(await collect(saver.list(cfg(th), { filter: { user: "u0" }, limit: 1 })))).toEqual([moved.id]);
    });

    it("drops the writes of a run that has ended (discarded or taken); untagged writes go through", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      const tagged = (runId: string, checkpointId?: string) => {
        const base = cfg(th, checkpointId);
        return { configurable: { ...base.configurable, [RUN_CONFIG_KEY]: runId } };
      };
      // A run abandoned (lease lost, abort): its graph winds down and still writes.
      const abandoned = saver.beginRun(th);
      const c1 = checkpoint({ a: 1 }, { a: 1 });
      await saver.put(tagged(abandoned), c1, meta(), { a: 1 });
      saver.discardRun(th);
      await saver.put(tagged(abandoned), checkpoint({ a: 2 }, { a: 2 }), meta(), { a: 2 });
      await saver.putWrites(tagged(abandoned, c1.id), [["a", "late"]], "task");
      // The next run of the thread; the abandoned one's writes do not land in its buffer either.
      const next = saver.beginRun(th);
      expect(next).not.toBe(abandoned);
      await saver.put(tagged(abandoned), checkpoint({ a: 3 }, { a: 3 }), meta(), { a: 3 });
      const c4 = checkpoint({ a: 4 }, { a: 4 });
      await saver.put(tagged(next), c4, meta(), { a: 4 });
      const batch = await saver.takeRun(th);
      expect(batch.checkpoints.map((row) => row.id)).toEqual([c4.id]);
      // After the take (the commit), the run's late writes are dropped too.
      await saver.put(tagged(next), checkpoint({ a: 5 }, { a: 5 }), meta(), { a: 5 });
      expect(saver.staleWritesDropped).toBe(4);
      for (const table of ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]) {
        expect(await count(t.db, table, th)).toBe(0);
      }
      // A write that names no run (a library caller's updateState) still goes straight through.
      await saver.put(cfg(th), checkpoint({ a: 6 }, { a: 6 }), meta(), { a: 6 });
      expect(await count(t.db, "checkpoints", th)).toBe(1);
    });

    it("deleteThread during a run also empties the buffer", async () => {
      const saver = new SessiondCheckpointer(t.db);
      const th = thread();
      await chain(saver, th, 1);
      saver.beginRun(th);
      await chain(saver, th, 1);
      await saver.deleteThread(th);
      expect(await saver.getTuple(cfg(th))).toBeUndefined();
      await t.db.transaction((tx) => saver.flushRun(tx, th));
      expect(await count(t.db, "checkpoints", th)).toBe(0);
    });
  });
});
