/**
 * The transactional LangGraph checkpointer: a BaseCheckpointSaver over
 * sessiond's Db, storing like LangGraph's Postgres saver (the checkpoint
 * without its values in `checkpoints`, each changed channel value once per
 * version in `checkpoint_blobs`, pending writes with their task path in
 * `checkpoint_writes`).
 *
 * Run buffering is what makes a run's commit atomic. Between `beginRun` and
 * `takeRun`/`flushRun`/`discardRun`, every put and putWrites of that thread
 * goes to an in-memory RunBuffer; reads of the thread merge committed rows
 * with the buffer (the buffer wins, except that a regular pending write
 * already committed stays, as the table's conflict rule will keep it). The
 * processor `takeRun`s the buffer and hands it to commit_run, which writes it
 * in the same statement as the outcomes, the effects and the cursor, so they
 * commit or vanish together (`flushRun` writes it in a caller's transaction
 * instead). Threads without a run write straight through, one atomic
 * statement per call.
 *
 * A run is fenced by its id. The processor puts the id `beginRun` returned
 * into the graph's config (`configurable[RUN_CONFIG_KEY]`), and LangGraph
 * hands that config to every put and putWrites of the run, subgraphs
 * included. A write that names a run which is no longer the thread's
 * current one (discarded on a lost lease, an abort or an error, or already
 * taken for its commit) is dropped: an abandoned graph that is still winding
 * down must not write straight through to the tables once its buffer is gone.
 *
 * Channel versions are strings "<32-digit counter>.<16 random hex>", unique
 * per write: two branches forked from one checkpoint (time travel) would
 * otherwise mint equal integer versions for different values, and the blob
 * table, immutable per version, would hand one branch the other's value.
 *
 * Ordering compares checkpoint ids as strings, in SQL and in memory alike;
 * LangGraph's ids are uuid6 (fixed-width lowercase hex), which every
 * collation orders the same way.
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { RunnableConfig } from "@langchain/core/runnables";
import {
  BaseCheckpointSaver,
  type ChannelVersions,
  type Checkpoint,
  type CheckpointListOptions,
  type CheckpointMetadata,
  type CheckpointPendingWrite,
  type CheckpointTuple,
  compareWritesSortKeys,
  getCheckpointId,
  maxChannelVersion,
  type PendingWrite,
  type SerializerProtocol,
  TASKS,
  WRITES_IDX_MAP,
  writesSortKey,
} from "@langchain/langgraph-checkpoint";
import type { Db, Queryable } from "../db/index.js";
import {
  type BlobRow,
  blobKey,
  type CheckpointQuery,
  type CheckpointRow,
  checkpointKey,
  deleteThreadRows,
  type Json,
  type JsonObject,
  jsonContains,
  mergeWrite,
  newestFirst,
  type RowBatch,
  selectBlobs,
  selectCheckpoints,
  selectWrites,
  type WriteRow,
  withoutNul,
  writeRows,
  writesOwnerKey,
} from "./checkpoint-rows.js";
import { RunBuffer } from "./run-buffer.js";

export interface SessiondCheckpointerOptions {
  /** How checkpoints, channel values and writes are serialised (default: LangGraph's JsonPlusSerializer). */
  serde?: SerializerProtocol;
}

/** The configurable key under which a run's id reaches put and putWrites (see beginRun). */
export const RUN_CONFIG_KEY = "sessiond_run";

type StoredCheckpoint = Omit<Checkpoint, "channel_values"> & { channel_values?: Record<string, unknown> };

const decoder = new TextDecoder();

function threadIdOf(config: RunnableConfig, what: string): string {
  const threadId: unknown = config.configurable?.thread_id;
  if (typeof threadId === "string" && threadId !== "") return threadId;
  if (typeof threadId === "number") return String(threadId);
  throw new Error(`${what}: the config needs a configurable.thread_id (a non-empty string)`);
}

/** LangGraph's checkpointer over sessiond's tables, with per-thread run buffering. */
export class SessiondCheckpointer extends BaseCheckpointSaver {
  readonly #db: Db;
  readonly #runs = new Map<string, RunBuffer>();
  #staleWritesDropped = 0;

  constructor(db: Db, options: SessiondCheckpointerOptions = {}) {
    super(options.serde);
    this.#db = db;
  }

  /**
   * Starts buffering the thread's writes in memory. One run per thread at a time. Returns the run's
   * id: put it in the graph's config as `configurable[RUN_CONFIG_KEY]` so that writes the run makes
   * after it ended are dropped instead of reaching the tables.
   */
  beginRun(threadId: string): string {
    if (this.#runs.has(threadId)) throw new Error(`checkpointer: a run is already buffering thread ${threadId}`);
    const id = randomUUID();
    this.#runs.set(threadId, new RunBuffer(threadId, id));
    return id;
  }

  /** How many writes of runs that had already ended were dropped (see RUN_CONFIG_KEY). */
  get staleWritesDropped(): number {
    return this.#staleWritesDropped;
  }

  /** True while the thread is in a run (buffering or flushing). */
  inRun(threadId: string): boolean {
    return this.#runs.has(threadId);
  }

  /**
   * Writes the run's buffered rows with `tx` (the caller's open transaction)
   * and ends the run, also when the write fails: the caller's transaction is
   * then lost anyway and the run is to be redone.
   */
  async flushRun(tx: Queryable, threadId: string): Promise<void> {
    await this.#endRun(threadId, (batch) => writeRows(tx, batch));
  }

  /**
   * Ends the run and hands over its buffered rows (once every pending put has settled), for the
   * caller to write in the commit that makes the run durable (commit_run's checkpoint_rows).
   * Writes of the thread are refused while it settles; afterwards they go straight through.
   */
  async takeRun(threadId: string): Promise<RowBatch> {
    return this.#endRun(threadId, async (batch) => batch);
  }

  /** Marks the run flushing, waits for its pending puts, hands its rows to `use`, then ends it. */
  async #endRun<T>(threadId: string, use: (batch: RowBatch) => Promise<T>): Promise<T> {
    const run = this.#runs.get(threadId);
    if (!run) throw new Error(`checkpointer: no run is buffering thread ${threadId}`);
    if (run.state === "flushing") throw new Error(`checkpointer: the run of thread ${threadId} is already flushing`);
    run.state = "flushing";
    try {
      await run.settled();
      return await use(run.batch());
    } finally {
      if (this.#runs.get(threadId) === run) this.#runs.delete(threadId);
    }
  }

  /** Drops the run's buffered rows and ends the run; nothing to do when there is none. */
  discardRun(threadId: string): void {
    this.#runs.delete(threadId);
  }

  /** The run that takes this thread's writes, if any; refuses writes while it flushes. */
  #runFor(threadId: string): RunBuffer | undefined {
    const run = this.#runs.get(threadId);
    if (run?.state === "flushing") {
      throw new Error(`checkpointer: thread ${threadId} is flushing its run; a write now would be lost`);
    }
    return run;
  }

  /**
   * Serialises with `rows()` and stores the batch: in the thread's run if it has one, else in the
   * database; a write that names a run (`runId`) other than the thread's current one is dropped.
   */
  async #store(threadId: string, runId: unknown, rows: () => Promise<RowBatch>): Promise<void> {
    if (runId !== undefined && this.#runs.get(threadId)?.id !== runId) {
      this.#staleWritesDropped += 1;
      return;
    }
    const run = this.#runFor(threadId);
    if (run) await run.track(rows().then((batch) => run.add(batch)));
    else await writeRows(this.#db, await rows());
  }

  override getNextVersion(current: number | undefined): number {
    const raw: unknown = current;
    const counter = typeof raw === "string" ? Number.parseInt(raw.split(".")[0] ?? "0", 10) : Number(raw ?? 0);
    const next = `${String((counter || 0) + 1).padStart(32, "0")}.${randomBytes(8).toString("hex")}`;
    // LangGraph types a graph's checkpointer as BaseCheckpointSaver<number> yet handles
    // every version as `number | string` (compared with < and >); this is where the two meet.
    return next as unknown as number;
  }

  async put(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    newVersions: ChannelVersions,
  ): Promise<RunnableConfig> {
    const threadId = threadIdOf(config, "put");
    const ns: string = config.configurable?.checkpoint_ns ?? "";
    const parentId: string | undefined = config.configurable?.checkpoint_id || undefined;
    const rows = async (): Promise<RowBatch> => {
      const { channel_values: values, ...stored } = checkpoint;
      const [type, bytes] = await this.serde.dumpsTyped(stored);
      const blobs = await Promise.all(
        Object.entries(newVersions).map(async ([channel, version]): Promise<BlobRow> => {
          const base = { threadId, ns, channel, version: String(version) };
          if (!(channel in values)) return { ...base, type: "empty", blob: undefined };
          const [blobType, blob] = await this.serde.dumpsTyped(values[channel]);
          return { ...base, type: blobType, blob };
        }),
      );
      const row: CheckpointRow = {
        threadId,
        ns,
        id: checkpoint.id,
        parentId,
        type,
        checkpoint: bytes,
        metadata: await this.#metadataToJson(metadata),
      };
      return { checkpoints: [row], blobs, writes: [] };
    };
    await this.#store(threadId, config.configurable?.[RUN_CONFIG_KEY], rows);
    return { configurable: { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpoint.id } };
  }

  async putWrites(config: RunnableConfig, writes: PendingWrite[], taskId: string, taskPath = ""): Promise<void> {
    const threadId = threadIdOf(config, "putWrites");
    const ns: string = config.configurable?.checkpoint_ns ?? "";
    const checkpointId: unknown = config.configurable?.checkpoint_id;
    if (typeof checkpointId !== "string" || checkpointId === "") {
      throw new Error("putWrites: the config needs a configurable.checkpoint_id");
    }
    if (writes.length === 0) return;
    const rows = async (): Promise<RowBatch> => {
      const merged = new Map<string, WriteRow>();
      for (const [index, [channel, value]] of writes.entries()) {
        const [type, blob] = await this.serde.dumpsTyped(value);
        const idx = WRITES_IDX_MAP[channel] ?? index;
        mergeWrite(merged, { threadId, ns, checkpointId, taskId, idx, channel, type, blob, taskPath });
      }
      return { checkpoints: [], blobs: [], writes: [...merged.values()] };
    };
    await this.#store(threadId, config.configurable?.[RUN_CONFIG_KEY], rows);
  }

  async deleteThread(threadId: string): Promise<void> {
    this.#runs.get(threadId)?.clear();
    await deleteThreadRows(this.#db, threadId);
  }

  async getTuple(config: RunnableConfig): Promise<CheckpointTuple | undefined> {
    const threadId: unknown = config.configurable?.thread_id;
    if (threadId === undefined || threadId === null || threadId === "") return undefined;
    const [tuple] = await this.#read({
      threadId: String(threadId),
      ns: config.configurable?.checkpoint_ns ?? "",
      id: getCheckpointId(config) || undefined,
      limit: 1,
    });
    return tuple;
  }

  async *list(config: RunnableConfig, options: CheckpointListOptions = {}): AsyncGenerator<CheckpointTuple> {
    const threadId: unknown = config.configurable?.thread_id;
    const ns: unknown = config.configurable?.checkpoint_ns;
    const filter = options.filter && Object.keys(options.filter).length > 0 ? options.filter : undefined;
    const tuples = await this.#read({
      threadId: threadId === undefined || threadId === null || threadId === "" ? undefined : String(threadId),
      ns: ns === undefined || ns === null ? undefined : String(ns),
      id: config.configurable?.checkpoint_id || undefined,
      before: options.before?.configurable?.checkpoint_id || undefined,
      filter: filter === undefined ? undefined : (withoutNul(JSON.parse(JSON.stringify(filter))) as JsonObject),
      limit: options.limit === undefined ? undefined : Math.max(0, Math.trunc(options.limit)),
    });
    yield* tuples;
  }

  /** Committed rows merged with the buffers of runs in progress, newest first. */
  async #read(query: CheckpointQuery): Promise<CheckpointTuple[]> {
    const runs = query.threadId === undefined ? [...this.#runs.values()] : [this.#runs.get(query.threadId)];
    const shadowed = new Set<string>();
    const buffered: CheckpointRow[] = [];
    for (const run of runs) {
      if (!run) continue;
      await run.settled();
      for (const row of run.checkpoints()) {
        shadowed.add(checkpointKey(row));
        if (matches(row, query)) buffered.push(row);
      }
    }
    if (query.limit === 0) return [];
    // A buffered row may hide a committed one with the same key: ask for that many more.
    const limit = query.limit === undefined ? undefined : query.limit + shadowed.size;
    const committed = await selectCheckpoints(this.#db, query, limit);
    const rows = [...committed.filter((row) => !shadowed.has(checkpointKey(row))), ...buffered].sort(newestFirst);
    return this.#tuples(query.limit === undefined ? rows : rows.slice(0, query.limit));
  }

  async #tuples(rows: CheckpointRow[]): Promise<CheckpointTuple[]> {
    const checkpoints = await Promise.all(
      rows.map(async (row) => (await this.serde.loadsTyped(row.type, row.checkpoint)) as StoredCheckpoint),
    );
    const owners = rows.map((row) => ({ threadId: row.threadId, ns: row.ns, checkpointId: row.id }));
    rows.forEach((row, i) => {
      // Checkpoints before format 4 keep their pending sends as TASKS writes of the parent.
      if ((checkpoints[i]?.v ?? 4) < 4 && row.parentId !== undefined) {
        owners.push({ threadId: row.threadId, ns: row.ns, checkpointId: row.parentId });
      }
    });
    // Blobs and writes depend only on the checkpoint rows: read them at once (one round trip
    // fewer before every run on a pool; PGlite runs them one after the other anyway).
    const [blobs, writes] = await Promise.all([this.#blobs(rows, checkpoints), this.#writes(owners)]);

    return Promise.all(
      rows.map(async (row, i): Promise<CheckpointTuple> => {
        const stored = checkpoints[i] as StoredCheckpoint;
        const channelValues: Record<string, unknown> = {};
        for (const [channel, version] of Object.entries(stored.channel_versions ?? {})) {
          const blob = blobs.get(blobKey(row.threadId, row.ns, channel, String(version)));
          if (blob && blob.type !== "empty" && blob.blob !== undefined) {
            channelValues[channel] = await this.serde.loadsTyped(blob.type, blob.blob);
          }
        }
        const checkpoint: Checkpoint = { ...stored, channel_values: channelValues };
        if (checkpoint.v < 4 && row.parentId !== undefined) {
          const sends = (writes.get(writesOwnerKey(row.threadId, row.ns, row.parentId)) ?? []).filter(
            (w) => w.channel === TASKS,
          );
          checkpoint.channel_values[TASKS] = await Promise.all(sends.map((w) => this.serde.loadsTyped(w.type, w.blob)));
          const versions = Object.values(checkpoint.channel_versions);
          checkpoint.channel_versions[TASKS] =
            versions.length > 0 ? maxChannelVersion(...versions) : this.getNextVersion(undefined);
        }
        const pendingWrites = await Promise.all(
          (writes.get(writesOwnerKey(row.threadId, row.ns, row.id)) ?? []).map(
            async (w): Promise<CheckpointPendingWrite> => [
              w.taskId,
              w.channel,
              await this.serde.loadsTyped(w.type, w.blob),
            ],
          ),
        );
        const configurable = { thread_id: row.threadId, checkpoint_ns: row.ns };
        return {
          config: { configurable: { ...configurable, checkpoint_id: row.id } },
          checkpoint,
          metadata: (await this.#metadataFromJson(row.metadata)) as CheckpointMetadata,
          pendingWrites,
          ...(row.parentId === undefined
            ? {}
            : { parentConfig: { configurable: { ...configurable, checkpoint_id: row.parentId } } }),
        };
      }),
    );
  }

  /** The blobs the checkpoints' channel versions name: buffered ones, then committed ones. */
  async #blobs(rows: CheckpointRow[], checkpoints: StoredCheckpoint[]): Promise<Map<string, BlobRow>> {
    const found = new Map<string, BlobRow>();
    const missing = new Map<string, { threadId: string; ns: string; channel: string; version: string }>();
    rows.forEach((row, i) => {
      const run = this.#runs.get(row.threadId);
      for (const [channel, v] of Object.entries(checkpoints[i]?.channel_versions ?? {})) {
        const version = String(v);
        const key = blobKey(row.threadId, row.ns, channel, version);
        const buffered = run?.blob(key);
        if (buffered) found.set(key, buffered);
        else missing.set(key, { threadId: row.threadId, ns: row.ns, channel, version });
      }
    });
    for (const blob of await selectBlobs(this.#db, [...missing.values()])) {
      found.set(blobKey(blob.threadId, blob.ns, blob.channel, blob.version), blob);
    }
    return found;
  }

  /** Pending writes per checkpoint (committed merged with buffered), in writesSortKey order. */
  async #writes(owners: { threadId: string; ns: string; checkpointId: string }[]): Promise<Map<string, WriteRow[]>> {
    const merged = new Map<string, WriteRow>();
    for (const row of await selectWrites(this.#db, owners)) mergeWrite(merged, row);
    const wanted = new Set(owners.map((o) => writesOwnerKey(o.threadId, o.ns, o.checkpointId)));
    for (const threadId of new Set(owners.map((o) => o.threadId))) {
      for (const row of this.#runs.get(threadId)?.writes() ?? []) {
        if (wanted.has(writesOwnerKey(row.threadId, row.ns, row.checkpointId))) mergeWrite(merged, row);
      }
    }
    const byOwner = new Map<string, WriteRow[]>();
    for (const row of merged.values()) {
      const key = writesOwnerKey(row.threadId, row.ns, row.checkpointId);
      const list = byOwner.get(key);
      if (list) list.push(row);
      else byOwner.set(key, [row]);
    }
    for (const list of byOwner.values()) {
      list.sort((a, b) =>
        compareWritesSortKeys(writesSortKey(a.taskPath, a.taskId, a.idx), writesSortKey(b.taskPath, b.taskId, b.idx)),
      );
    }
    return byOwner;
  }

  /** Metadata as stored in jsonb: serialised by serde when it speaks JSON, U+0000 dropped. */
  async #metadataToJson(metadata: CheckpointMetadata): Promise<JsonObject> {
    const [type, bytes] = await this.serde.dumpsTyped(metadata);
    const json: Json = type === "json" ? JSON.parse(decoder.decode(bytes)) : JSON.parse(JSON.stringify(metadata));
    return withoutNul(json) as JsonObject;
  }

  /** Revives what serde encoded inside the stored metadata (as LangGraph's Postgres saver does). */
  async #metadataFromJson(json: JsonObject): Promise<unknown> {
    const [type, bytes] = await this.serde.dumpsTyped(json);
    return this.serde.loadsTyped(type, bytes);
  }
}

function matches(row: CheckpointRow, query: CheckpointQuery): boolean {
  if (query.threadId !== undefined && row.threadId !== query.threadId) return false;
  if (query.ns !== undefined && row.ns !== query.ns) return false;
  if (query.id !== undefined && row.id !== query.id) return false;
  if (query.before !== undefined && !(row.id < query.before)) return false;
  return query.filter === undefined || jsonContains(row.metadata, query.filter);
}
