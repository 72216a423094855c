/**
 * The rows one LangGraph run wrote for one thread, held in memory until the
 * run's transaction writes them (flush) or the run is abandoned (discard).
 *
 * States: buffering → flushing → gone. While buffering, puts and writes land
 * here (under the same conflict rules as the tables, see checkpoint-rows.ts).
 * Flushing first waits for operations that began while buffering (a put still
 * serialising), so none of them is lost or written outside the transaction;
 * operations that begin while flushing are refused.
 */
import {
  type BlobRow,
  blobKey,
  type CheckpointRow,
  checkpointKey,
  mergeWrite,
  type RowBatch,
  type WriteRow,
} from "./checkpoint-rows.js";

export class RunBuffer {
  state: "buffering" | "flushing" = "buffering";
  readonly #checkpoints = new Map<string, CheckpointRow>();
  readonly #blobs = new Map<string, BlobRow>();
  readonly #writes = new Map<string, WriteRow>();
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(
    readonly threadId: string,
    /** The run's id (see RUN_CONFIG_KEY in checkpointer.ts). */
    readonly id: string,
  ) {}

  /** Runs `work` as an operation of this run: flush waits for it. */
  async track<T>(work: Promise<T>): Promise<T> {
    this.#inFlight.add(work);
    try {
      return await work;
    } finally {
      this.#inFlight.delete(work);
    }
  }

  /** Resolves once every operation begun so far has settled. */
  async settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  add(batch: RowBatch): void {
    for (const row of batch.checkpoints) this.#checkpoints.set(checkpointKey(row), row);
    for (const row of batch.blobs) {
      const key = blobKey(row.threadId, row.ns, row.channel, row.version);
      if (!this.#blobs.has(key)) this.#blobs.set(key, row);
    }
    for (const row of batch.writes) mergeWrite(this.#writes, row);
  }

  checkpoints(): Iterable<CheckpointRow> {
    return this.#checkpoints.values();
  }

  blob(key: string): BlobRow | undefined {
    return this.#blobs.get(key);
  }

  writes(): Iterable<WriteRow> {
    return this.#writes.values();
  }

  /** Everything buffered, each key once. */
  batch(): RowBatch {
    return {
      checkpoints: [...this.#checkpoints.values()],
      blobs: [...this.#blobs.values()],
      writes: [...this.#writes.values()],
    };
  }

  clear(): void {
    this.#checkpoints.clear();
    this.#blobs.clear();
    this.#writes.clear();
  }
}
