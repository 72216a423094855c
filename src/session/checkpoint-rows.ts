/**
 * The rows of sessiond's three checkpoint tables (migrations/committed/000002)
 * and the statements that read and write them. Each write is one statement
 * (batches go through sessiond.put_checkpoint_rows, which commit_run also
 * calls for a run's rows), so it is atomic on its own and also runs unchanged
 * inside a caller's transaction.
 *
 * Conflict rules, the same as LangGraph's own savers:
 * - a checkpoint replaces an earlier one with the same id;
 * - a channel blob is immutable per (channel, version): the first one stays;
 * - a pending write with a regular index (>= 0) keeps the first one stored, a
 *   write to a special channel (negative index, WRITES_IDX_MAP: error,
 *   interrupt, resume, scheduled) replaces the earlier one.
 * `mergeWrite` applies the last rule in memory so a run buffer and the table
 * agree on what a flush will leave behind.
 *
 * Bytes travel inside a jsonb batch as base64 (decode() in SQL), which both
 * drivers pass the same way; bytea comes back as Uint8Array (a Buffer on
 * postgres.js).
 */
import type { Queryable } from "../db/index.js";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** sessiond.checkpoints: the checkpoint serialised without its channel values. */
export interface CheckpointRow {
  threadId: string;
  ns: string;
  id: string;
  parentId: string | undefined;
  type: string;
  checkpoint: Uint8Array;
  /** As stored in jsonb (what `filter` matches with @>). */
  metadata: JsonObject;
}

/** sessiond.checkpoint_blobs: one channel value at one version; type "empty" has no bytes. */
export interface BlobRow {
  threadId: string;
  ns: string;
  channel: string;
  version: string;
  type: string;
  blob: Uint8Array | undefined;
}

/** sessiond.checkpoint_writes: one pending write of a task against a checkpoint. */
export interface WriteRow {
  threadId: string;
  ns: string;
  checkpointId: string;
  taskId: string;
  idx: number;
  channel: string;
  type: string;
  blob: Uint8Array;
  taskPath: string;
}

export interface RowBatch {
  checkpoints: CheckpointRow[];
  blobs: BlobRow[];
  writes: WriteRow[];
}

const sep = "\u0000";
export const checkpointKey = (r: { threadId: string; ns: string; id: string }) => [r.threadId, r.ns, r.id].join(sep);
export const blobKey = (threadId: string, ns: string, channel: string, version: string) =>
  [threadId, ns, channel, version].join(sep);
export const writesOwnerKey = (threadId: string, ns: string, checkpointId: string) =>
  [threadId, ns, checkpointId].join(sep);
export const writeKey = (w: WriteRow) => [w.threadId, w.ns, w.checkpointId, w.taskId, String(w.idx)].join(sep);

/** Adds `row` to `writes` by the table's conflict rule: special writes replace, regular ones keep the first. */
export function mergeWrite(writes: Map<string, WriteRow>, row: WriteRow): void {
  const key = writeKey(row);
  if (row.idx < 0 || !writes.has(key)) writes.set(key, row);
}

/** Newest first: the order of `list` (checkpoint ids are uuid6, ordered by time as strings). */
export function newestFirst(a: CheckpointRow, b: CheckpointRow): number {
  if (a.id !== b.id) return a.id < b.id ? 1 : -1;
  if (a.threadId !== b.threadId) return a.threadId < b.threadId ? -1 : 1;
  return a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0;
}

/** bytea as a plain Uint8Array (postgres.js hands out Buffers). */
const plain = (bytes: Uint8Array): Uint8Array =>
  Buffer.isBuffer(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;

const base64 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");

/** A batch as sessiond.put_checkpoint_rows (and commit_run's checkpoint_rows) takes it: JSON, bytea as base64. */
export function checkpointRowsJson(batch: RowBatch) {
  return {
    blobs: batch.blobs.map((b) => ({
      thread_id: b.threadId,
      checkpoint_ns: b.ns,
      channel: b.channel,
      version: b.version,
      type: b.type,
      blob: b.blob === undefined ? null : base64(b.blob),
    })),
    checkpoints: batch.checkpoints.map((c) => ({
      thread_id: c.threadId,
      checkpoint_ns: c.ns,
      checkpoint_id: c.id,
      parent_checkpoint_id: c.parentId ?? null,
      type: c.type,
      checkpoint: base64(c.checkpoint),
      metadata: c.metadata,
    })),
    writes: batch.writes.map((w) => ({
      thread_id: w.threadId,
      checkpoint_ns: w.ns,
      checkpoint_id: w.checkpointId,
      task_id: w.taskId,
      idx: w.idx,
      channel: w.channel,
      type: w.type,
      blob: base64(w.blob),
      task_path: w.taskPath,
    })),
  };
}

/** True when the batch has no row at all. */
export const isEmptyBatch = (batch: RowBatch) =>
  batch.checkpoints.length + batch.blobs.length + batch.writes.length === 0;

/** Writes a batch in one statement (sessiond.put_checkpoint_rows and its conflict rules). A batch must not repeat a key. */
export async function writeRows(q: Queryable, batch: RowBatch): Promise<void> {
  if (isEmptyBatch(batch)) return;
  const json = checkpointRowsJson(batch);
  await q.query("select sessiond.put_checkpoint_rows($1, $2, $3)", [json.blobs, json.checkpoints, json.writes]);
}

/** Deletes every checkpoint, blob and write of a thread, in one statement. */
export async function deleteThreadRows(q: Queryable, threadId: string): Promise<void> {
  await q.query(
    `with w as (delete from sessiond.checkpoint_writes where thread_id = $1),
          b as (delete from sessiond.checkpoint_blobs where thread_id = $1)
     delete from sessiond.checkpoints where thread_id = $1`,
    [threadId],
  );
}

/** What `getTuple` and `list` select by; an undefined field does not restrict. */
export interface CheckpointQuery {
  threadId?: string | undefined;
  ns?: string | undefined;
  id?: string | undefined;
  /** Only checkpoints older than this id. */
  before?: string | undefined;
  /** Metadata must contain this (jsonb @>). */
  filter?: JsonObject | undefined;
  limit?: number | undefined;
}

interface CheckpointDbRow {
  thread_id: string;
  checkpoint_ns: string;
  checkpoint_id: string;
  parent_checkpoint_id: string | null;
  type: string | null;
  checkpoint: Uint8Array;
  metadata: JsonObject;
}

/** Committed checkpoints matching `query`, newest first, at most `limit` (all when undefined). */
export async function selectCheckpoints(
  q: Queryable,
  query: CheckpointQuery,
  limit: number | undefined,
): Promise<CheckpointRow[]> {
  const rows = await q.query<CheckpointDbRow>(
    `select thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
       from sessiond.checkpoints
      where ($1::text is null or thread_id = $1)
        and ($2::text is null or checkpoint_ns = $2)
        and ($3::text is null or checkpoint_id = $3)
        and ($4::text is null or checkpoint_id < $4)
        and ($5::jsonb is null or metadata @> $5)
      order by checkpoint_id desc, thread_id, checkpoint_ns
      limit $6`,
    [
      query.threadId ?? null,
      query.ns ?? null,
      query.id ?? null,
      query.before ?? null,
      query.filter ?? null,
      limit ?? null,
    ],
  );
  return rows.map((r) => ({
    threadId: r.thread_id,
    ns: r.checkpoint_ns,
    id: r.checkpoint_id,
    parentId: r.parent_checkpoint_id ?? undefined,
    type: r.type ?? "json",
    checkpoint: plain(r.checkpoint),
    metadata: r.metadata,
  }));
}

interface BlobDbRow {
  thread_id: string;
  checkpoint_ns: string;
  channel: string;
  version: string;
  type: string;
  blob: Uint8Array | null;
}

/** The committed blobs among `keys`. */
export async function selectBlobs(
  q: Queryable,
  keys: { threadId: string; ns: string; channel: string; version: string }[],
): Promise<BlobRow[]> {
  if (keys.length === 0) return [];
  const rows = await q.query<BlobDbRow>(
    // One primary-key probe per key. A plain join of the key set lets the planner hash it against a
    // scan of the whole table (it guesses 100 keys; a read asks for a handful), so every checkpoint
    // read cost time in proportion to all sessions' history. `limit 1` (the key is the primary key)
    // keeps the lateral subquery from being merged into such a join.
    `select b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, b.blob
       from jsonb_to_recordset($1::jsonb) as k(thread_id text, checkpoint_ns text, channel text, version text)
       cross join lateral (
         select * from sessiond.checkpoint_blobs b
          where b.thread_id = k.thread_id and b.checkpoint_ns = k.checkpoint_ns
            and b.channel = k.channel and b.version = k.version
          limit 1) b`,
    [keys.map((k) => ({ thread_id: k.threadId, checkpoint_ns: k.ns, channel: k.channel, version: k.version }))],
  );
  return rows.map((r) => ({
    threadId: r.thread_id,
    ns: r.checkpoint_ns,
    channel: r.channel,
    version: r.version,
    type: r.type,
    blob: r.blob === null ? undefined : plain(r.blob),
  }));
}

interface WriteDbRow {
  thread_id: string;
  checkpoint_ns: string;
  checkpoint_id: string;
  task_id: string;
  idx: number;
  channel: string;
  type: string | null;
  blob: Uint8Array;
  task_path: string;
}

/** The committed pending writes of the given checkpoints, in no particular order. */
export async function selectWrites(
  q: Queryable,
  owners: { threadId: string; ns: string; checkpointId: string }[],
): Promise<WriteRow[]> {
  if (owners.length === 0) return [];
  const rows = await q.query<WriteDbRow>(
    // A range of the primary key per checkpoint, for the reason selectBlobs gives; `offset 0` keeps
    // the lateral subquery from being merged into a join that scans the whole table.
    `select w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx, w.channel, w.type, w.blob, w.task_path
       from jsonb_to_recordset($1::jsonb) as k(thread_id text, checkpoint_ns text, checkpoint_id text)
       cross join lateral (
         select * from sessiond.checkpoint_writes w
          where w.thread_id = k.thread_id and w.checkpoint_ns = k.checkpoint_ns and w.checkpoint_id = k.checkpoint_id
         offset 0) w`,
    [owners.map((o) => ({ thread_id: o.threadId, checkpoint_ns: o.ns, checkpoint_id: o.checkpointId }))],
  );
  return rows.map((r) => ({
    threadId: r.thread_id,
    ns: r.checkpoint_ns,
    checkpointId: r.checkpoint_id,
    taskId: r.task_id,
    idx: r.idx,
    channel: r.channel,
    type: r.type ?? "json",
    blob: plain(r.blob),
    taskPath: r.task_path,
  }));
}

/** jsonb's `@>` in memory (for buffered rows): objects by key, arrays by element, scalars by equality. */
export function jsonContains(target: Json | undefined, pattern: Json): boolean {
  if (Array.isArray(pattern)) {
    return Array.isArray(target) && pattern.every((p) => target.some((t) => jsonContains(t, p)));
  }
  if (pattern !== null && typeof pattern === "object") {
    if (target === null || typeof target !== "object" || Array.isArray(target)) return false;
    return Object.entries(pattern).every(([k, v]) => Object.hasOwn(target, k) && jsonContains(target[k], v));
  }
  return target === pattern;
}

/** Drops U+0000 from strings and keys: jsonb cannot store it. */
export function withoutNul(value: Json): Json {
  if (typeof value === "string") return value.replaceAll("\u0000", "");
  if (Array.isArray(value)) return value.map(withoutNul);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k.replaceAll("\u0000", ""), withoutNul(v)]));
  }
  return value;
}
