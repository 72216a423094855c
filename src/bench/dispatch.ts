/**
 * Scenario 1, dispatch latency: from an event's commit to the moment the
 * processor starts its run (the `onRunStart` hook), in `notify` and
 * `poll-only` mode. Runs inside the bench host, beside the runtime it
 * measures, with its own connection for the appends (as a server's socket
 * handler would).
 *
 * The commit moment is bracketed from both sides:
 * - statement end: `clock_timestamp()` taken in the append's own statement,
 *   after append_event returned and just before the commit record is
 *   flushed. Postgres's clock is mapped onto this process's monotonic clock
 *   by the probe with the smallest round trip (error ≤ half that round
 *   trip, reported). Latency from here includes the commit's WAL flush, so
 *   it is an upper bound.
 * - client ack: the moment the append's result reached this process, after
 *   the commit. Latency from here is a lower bound (the NOTIFY and the
 *   result race from the same commit).
 *
 * A second LISTEN on the events channel, on the append connection, stamps
 * when the NOTIFY reaches this process: it splits the dispatch into
 * Postgres's part (commit → notification) and the processor's (claim and
 * read before the run starts).
 *
 * Each notify sample runs alone on an idle processor (append, wait for the
 * run to start and commit, pause a little); poll-only samples are appended at
 * uniformly random moments across one sweep interval, so they see every phase
 * of the sweep timer.
 */
import { setTimeout as delay } from "node:timers/promises";
import { LocalChatModel } from "../agent/local-model.js";
import { Channels, type Db, parseSeqPairs } from "../db/index.js";
import { createRuntime } from "../session/runtime.js";

export interface DispatchParams {
  mode: "notify" | "poll-only";
  /** Recorded samples (notify also runs a few unrecorded warm-up samples first). */
  samples: number;
  sweepMs: number;
  keyPrefix: string;
  /** Idle pause between notify samples. */
  gapMs: number;
}

export interface DispatchSamples {
  /** Statement end → run start, ms. */
  fromStatement: number[];
  /** Client saw the commit → run start, ms. */
  fromClient: number[];
  /**
   * Statement end → the NOTIFY reached a second listener of this process (its
   * own connection): the part of the dispatch that is Postgres's.
   */
  toNotify: number[];
  /** Round trip of the best clock probe (the mapping error is at most half of it), ms. */
  calibrationRttMs: number;
  /** Samples whose run did not start within the deadline. */
  timeouts: number;
}

const APPEND_SQL =
  "select seq, (extract(epoch from clock_timestamp()) * 1000000)::int8 as us " +
  "from sessiond.append_event($1, 'user_message', $2, $3, false)";

/** Maps Postgres's clock (µs since the epoch) onto performance.now(): returns pgMs − monoMs. */
export async function calibrateClock(db: Db, probes = 25): Promise<{ offsetMs: number; rttMs: number }> {
  let best = { rttMs: Number.POSITIVE_INFINITY, offsetMs: 0 };
  for (let i = 0; i < probes; i++) {
    const t0 = performance.now();
    const [row] = await db.query<{ us: number }>(
      "select (extract(epoch from clock_timestamp()) * 1000000)::int8 as us",
    );
    const t1 = performance.now();
    if (row && t1 - t0 < best.rttMs) best = { rttMs: t1 - t0, offsetMs: Number(row.us) / 1000 - (t0 + t1) / 2 };
  }
  return best;
}

class Waiters {
  readonly #times = new Map<string, number>();
  readonly #waiting = new Map<string, () => void>();

  mark(key: string): void {
    if (this.#times.has(key)) return;
    this.#times.set(key, performance.now());
    this.#waiting.get(key)?.();
  }

  time(key: string): number | undefined {
    return this.#times.get(key);
  }

  /** Resolves true once `key` is marked, false after `ms`. */
  wait(key: string, ms: number): Promise<boolean> {
    if (this.#times.has(key)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(key);
        resolve(false);
      }, ms);
      this.#waiting.set(key, () => {
        clearTimeout(timer);
        this.#waiting.delete(key);
        resolve(true);
      });
    });
  }
}

/** Measures dispatch latency on `runtimeDb` (the processor's pool); appends go through `appendDb`. */
export async function measureDispatch(runtimeDb: Db, appendDb: Db, params: DispatchParams): Promise<DispatchSamples> {
  const starts = new Waiters();
  const commits = new Waiters();
  const runtime = await createRuntime({
    db: runtimeDb,
    model: new LocalChatModel(),
    mode: params.mode,
    sweepMs: params.sweepMs,
    effectRunner: false,
    hooks: {
      onRunStart: (key) => starts.mark(key),
      onCommitted: (key) => commits.mark(key),
    },
  });
  const result: DispatchSamples = { fromStatement: [], fromClient: [], toNotify: [], calibrationRttMs: 0, timeouts: 0 };
  const heard = new Waiters();
  const listener = await appendDb.listen(Channels.events, (payload) => {
    for (const [key] of parseSeqPairs(payload) ?? []) heard.mark(key);
  });
  const deadlineMs = params.sweepMs * 2 + 5_000;
  let n = 0;
  const append = async () => {
    const key = `${params.keyPrefix}-${params.mode === "notify" ? "n" : "p"}-${n++}`;
    const [row] = await appendDb.query<{ seq: number; us: number }>(APPEND_SQL, [key, { text: "ping" }, `r-${key}`]);
    const clientMs = performance.now();
    return { key, statementPgMs: Number(row?.us) / 1000, clientMs };
  };
  await runtime.start();
  try {
    const clock = await calibrateClock(appendDb);
    result.calibrationRttMs = clock.rttMs;
    const record = (sample: { key: string; statementPgMs: number; clientMs: number }) => {
      const start = starts.time(sample.key);
      if (start === undefined) {
        result.timeouts += 1;
        return;
      }
      const committedMs = sample.statementPgMs - clock.offsetMs;
      result.fromStatement.push(start - committedMs);
      result.fromClient.push(start - sample.clientMs);
      const notified = heard.time(sample.key);
      if (notified !== undefined) result.toNotify.push(notified - committedMs);
    };

    if (params.mode === "notify") {
      const warmup = 3;
      for (let i = 0; i < params.samples + warmup; i++) {
        const sample = await append();
        await starts.wait(sample.key, deadlineMs);
        await commits.wait(sample.key, deadlineMs);
        if (i >= warmup) record(sample);
        await delay(params.gapMs + Math.random() * params.gapMs);
      }
    } else {
      // Let the sweep that start() fires at once finish, then spread the appends over one interval.
      await delay(100);
      const offsets = Array.from({ length: params.samples }, () => Math.random() * params.sweepMs).sort(
        (a, b) => a - b,
      );
      const began = performance.now();
      const appended = [];
      for (const offset of offsets) {
        const wait = began + offset - performance.now();
        if (wait > 0) await delay(wait);
        appended.push(await append());
      }
      for (const sample of appended) await starts.wait(sample.key, deadlineMs);
      for (const sample of appended) await commits.wait(sample.key, deadlineMs);
      for (const sample of appended) record(sample);
    }
  } finally {
    await runtime.stop({ graceMs: 2_000 });
    await listener.close();
  }
  return result;
}
