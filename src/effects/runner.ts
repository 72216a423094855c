/**
 * The effect runner: runs `handler` effects with the handlers of an
 * EffectRegistry, at least once, with retries, backoff and a dead letter.
 *
 * Design note
 * ===========
 *
 * Every guarantee lives in SQL (migrations/committed/000002, "Effect
 * handlers"); this class only decides *when* to ask and what to do with the
 * answer.
 *
 * Lifecycle: `idle` → start() → `running` → stop() → `stopping` → `stopped`.
 * A runner is started once; stop() is idempotent.
 *
 * While running, the claim loop is either CLAIMING (one `claim_effects` call
 * in flight; never two at once in one runner) or WAITING. It leaves WAITING on
 * a "poke", which comes from:
 *   - a NOTIFY on `sessiond_effects` (an insert somewhere, or an operator retry);
 *   - the listener's reconnect hook (notifications sent in the gap are lost);
 *   - the sweep timer (default every 2 s): delayed effects, other processes'
 *     backoffs, claims that expired because a process died;
 *   - a retry timer set after one of our own effects failed, at the end of its
 *     backoff (the SQL jitters the delay into [½, 1] × base·2^(attempts−1), so
 *     waking at the upper bound finds it due);
 *   - a handler finishing: a slot is free, and an ordered effect it finished
 *     may have unblocked the next one of its session.
 * A poke during CLAIMING sets `#again`, so the loop claims once more instead of
 * losing the wake-up. The loop claims at most `concurrency − running` effects
 * and loops while a claim came back full (there may be more due).
 *
 * Invariants:
 *   - At most `concurrency` handlers run in this process.
 *   - No effect runs twice at once across processes: `claim_effects` locks
 *     with FOR UPDATE SKIP LOCKED and marks the effect executing with a claim
 *     expiry. A claim is only taken over after it expired.
 *   - Each claim call uses a fresh claim token (`<ownerId>#<n>`) as the SQL
 *     `owner`. complete_effect/fail_effect only act while claimed_by is still
 *     that token, so a handler that outlived its claim (then reclaimed by
 *     another runner, or by this one) records nothing: it cannot complete or
 *     fail an attempt that is not its own.
 *   - A handler's AbortSignal fires shortly before its claim expires and when
 *     stop() gives up waiting; the handler should stop then. If it ignores the
 *     signal, the effect stays executing until the claim expires and another
 *     claim runs it again (at least once, never exactly once: handlers must be
 *     idempotent, and get `dedupeKey` for that).
 *   - Ordered effects of one session are claimed one at a time in seq order by
 *     the SQL (a later one waits until every earlier one is completed or dead).
 *
 * Why no heartbeat: a claim longer than the longest handler is simpler and the
 * fencing by claim token makes an overrun harmless; the cost is that an effect
 * whose process died waits up to `claimMs` before another process retries it.
 */
import { hostname } from "node:os";
import { Channels, type Db, type Listener } from "../db/index.js";
import { type EffectRecord, type EffectRegistry, PermanentEffectError } from "./registry.js";

/** How one handler run ended, as recorded in the database. */
export type EffectOutcomeStatus =
  /** The handler succeeded and the effect is completed. */
  | "completed"
  /** The handler failed; the effect is due again after a backoff. */
  | "failed"
  /** The handler failed permanently or on its last attempt; the effect is dead. */
  | "dead"
  /** Nothing was recorded: the claim expired and was taken over, or the database call failed. */
  | "lost";

export interface EffectOutcome {
  effect: EffectRecord;
  status: EffectOutcomeStatus;
  /** What the handler threw (failed, dead), or why nothing was recorded (lost). */
  error?: unknown;
}

/** A pino-compatible logger (only what the runner uses). */
export interface EffectRunnerLogger {
  warn(details: object, message: string): void;
  error(details: object, message: string): void;
}

export interface EffectRunnerOptions {
  /** Handlers running at once in this runner (default 8). */
  concurrency?: number;
  /** Fallback sweep interval in ms (default 2000). */
  sweepMs?: number;
  /** How long a claim holds before another runner may take the effect over, in ms (default 30000). */
  claimMs?: number;
  /** Backoff after the first failure, in ms, doubled per attempt (default 1000). */
  backoffBaseMs?: number;
  /** Longest backoff, in ms (default 300000). */
  backoffCapMs?: number;
  /** How long stop() waits for running handlers before aborting them, in ms (default 10000). */
  stopGraceMs?: number;
  /** After aborting, how long stop() still waits for handlers to settle, in ms (default 1000). */
  abortWaitMs?: number;
  /** Prefix of this runner's claim tokens (default `<host>:<pid>:<random>`); must be unique per runner. */
  ownerId?: string;
  /** Effect types to run (default: every handler type of the registry). */
  types?: readonly string[];
  logger?: EffectRunnerLogger;
  /** Called after each handler run with what was recorded (metrics, tests). */
  onOutcome?: (outcome: EffectOutcome) => void;
}

type State = "idle" | "running" | "stopping" | "stopped";

interface EffectRow {
  id: string;
  session_key: string;
  seq: number;
  event_seq: number | null;
  type: string;
  payload: unknown;
  dedupe_key: string;
  attempts: number;
  max_attempts: number;
  claimed_by: string;
}

interface Running {
  controller: AbortController;
  done: Promise<void>;
}

const defaultLogger: EffectRunnerLogger = {
  warn: () => {},
  error: (details, message) => console.error(`sessiond effects: ${message}`, details),
};

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1 || v > 2_147_483_647) {
    throw new RangeError(`EffectRunner: ${name} must be a positive integer (ms or count), got ${String(value)}`);
  }
  return v;
}

function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return typeof error === "string" ? error : (JSON.stringify(error) ?? String(error));
}

function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  if (promises.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    void Promise.allSettled(promises).then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Claims and runs handler effects; see the design note at the top of this file. */
export class EffectRunner {
  /** The prefix of every claim token of this runner (claimed_by = `<ownerId>#<n>`). */
  readonly ownerId: string;
  readonly #db: Db;
  readonly #registry: EffectRegistry;
  readonly #types: string[];
  readonly #concurrency: number;
  readonly #sweepMs: number;
  readonly #claimMs: number;
  readonly #backoffBaseMs: number;
  readonly #backoffCapMs: number;
  readonly #stopGraceMs: number;
  readonly #abortWaitMs: number;
  readonly #logger: EffectRunnerLogger;
  readonly #onOutcome: ((outcome: EffectOutcome) => void) | undefined;

  #state: State = "idle";
  #listener: Listener | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  #claiming: Promise<void> | undefined;
  #again = false;
  #claims = 0;
  #stopped: Promise<void> = Promise.resolve();
  readonly #running = new Set<Running>();

  constructor(db: Db, registry: EffectRegistry, options: EffectRunnerOptions = {}) {
    this.#db = db;
    this.#registry = registry;
    this.#types = [...(options.types ?? registry.handlerTypes())];
    for (const type of this.#types) {
      if (!registry.get(type)?.handler) throw new Error(`EffectRunner: effect type ${type} has no handler`);
    }
    this.#concurrency = positiveInteger("concurrency", options.concurrency, 8);
    this.#sweepMs = positiveInteger("sweepMs", options.sweepMs, 2000);
    this.#claimMs = positiveInteger("claimMs", options.claimMs, 30_000);
    this.#backoffBaseMs = positiveInteger("backoffBaseMs", options.backoffBaseMs, 1000);
    this.#backoffCapMs = positiveInteger("backoffCapMs", options.backoffCapMs, 300_000);
    this.#stopGraceMs = positiveInteger("stopGraceMs", options.stopGraceMs, 10_000);
    this.#abortWaitMs = positiveInteger("abortWaitMs", options.abortWaitMs, 1000);
    this.ownerId = options.ownerId ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
    this.#logger = options.logger ?? defaultLogger;
    this.#onOutcome = options.onOutcome;
  }

  /** How many handlers are running now. */
  get running(): number {
    return this.#running.size;
  }

  /** LISTENs, claims what is due already, and starts the sweep. */
  async start(): Promise<void> {
    if (this.#state !== "idle") throw new Error(`EffectRunner: cannot start a runner that is ${this.#state}`);
    this.#state = "running";
    try {
      this.#listener = await this.#db.listen(
        Channels.effects,
        () => this.#poke(),
        () => this.#poke(),
      );
    } catch (error) {
      this.#state = "stopped";
      throw error;
    }
    if (this.#state !== "running") {
      // stop() was called while LISTEN was being set up.
      await this.#listener.close();
      this.#listener = undefined;
      return;
    }
    this.#sweepTimer = setInterval(() => this.#poke(), this.#sweepMs);
    this.#poke();
    await this.#claiming;
  }

  /**
   * Stops claiming, waits up to `graceMs` (default stopGraceMs) for running
   * handlers, then aborts the rest and waits up to abortWaitMs for them to
   * settle. A handler that ignores its signal is left behind: its effect is
   * taken over by another runner when the claim expires.
   */
  stop(options: { graceMs?: number } = {}): Promise<void> {
    if (this.#state === "idle") this.#state = "stopped";
    if (this.#state === "running") {
      this.#state = "stopping";
      this.#stopped = this.#shutDown(options.graceMs ?? this.#stopGraceMs);
    }
    return this.#stopped;
  }

  async #shutDown(graceMs: number): Promise<void> {
    clearInterval(this.#sweepTimer);
    for (const timer of this.#retryTimers) clearTimeout(timer);
    this.#retryTimers.clear();
    const listener = this.#listener;
    this.#listener = undefined;
    try {
      await listener?.close();
    } catch (error) {
      this.#logger.warn({ err: error }, "closing the effects listener failed");
    }
    await this.#claiming;
    await settledWithin(
      [...this.#running].map((r) => r.done),
      graceMs,
    );
    if (this.#running.size > 0) {
      for (const r of this.#running) r.controller.abort(new Error("the effect runner is stopping"));
      await settledWithin(
        [...this.#running].map((r) => r.done),
        this.#abortWaitMs,
      );
    }
    this.#state = "stopped";
  }

  #poke(): void {
    if (this.#state !== "running") return;
    if (this.#claiming) {
      this.#again = true;
      return;
    }
    this.#claiming = this.#claimLoop().finally(() => {
      this.#claiming = undefined;
    });
  }

  async #claimLoop(): Promise<void> {
    do {
      this.#again = false;
      const free = this.#concurrency - this.#running.size;
      if (free <= 0 || this.#types.length === 0 || this.#state !== "running") return;
      this.#claims += 1;
      const token = `${this.ownerId}#${this.#claims}`;
      // The database's claim expiry is at least this far away from this instant.
      const claimedAt = performance.now();
      let rows: EffectRow[];
      try {
        rows = await this.#db.query<EffectRow>("select * from sessiond.claim_effects($1, $2, $3, $4)", [
          token,
          this.#types,
          free,
          this.#claimMs,
        ]);
      } catch (error) {
        // The sweep tries again; looping here would spin while the database is away.
        this.#logger.error({ err: error }, "claiming effects failed");
        return;
      }
      for (const row of rows) this.#run(row, claimedAt + this.#claimMs);
      if (rows.length === free) this.#again = true;
    } while (this.#again);
  }

  #run(row: EffectRow, claimDeadline: number): void {
    const effect: EffectRecord = {
      id: row.id,
      sessionKey: row.session_key,
      seq: row.seq,
      eventSeq: row.event_seq,
      type: row.type,
      payload: row.payload,
      dedupeKey: row.dedupe_key,
      attempts: row.attempts,
      maxAttempts: row.max_attempts,
    };
    const controller = new AbortController();
    // Abort a little before the database lets another runner take the effect over.
    const margin = Math.min(1000, Math.ceil(this.#claimMs / 10));
    const expiry = setTimeout(
      () => controller.abort(new Error(`the claim of effect ${effect.id} is about to expire`)),
      Math.max(0, claimDeadline - margin - performance.now()),
    );
    const running: Running = { controller, done: Promise.resolve() };
    running.done = this.#execute(effect, row.claimed_by, controller.signal)
      .catch((error: unknown) => console.error("sessiond effects: the effect logger threw", error))
      .finally(() => {
        clearTimeout(expiry);
        this.#running.delete(running);
        this.#poke();
      });
    this.#running.add(running);
  }

  async #execute(effect: EffectRecord, token: string, signal: AbortSignal): Promise<void> {
    let outcome: EffectOutcome;
    try {
      const handler = this.#registry.get(effect.type)?.handler;
      if (!handler) throw new PermanentEffectError(`no handler is registered for effect type ${effect.type}`);
      await handler(effect, { db: this.#db, signal });
      outcome = await this.#complete(effect, token);
    } catch (error) {
      outcome = await this.#fail(effect, token, error);
    }
    if (outcome.status === "lost") {
      this.#logger.warn(
        { effectId: effect.id, sessionKey: effect.sessionKey, seq: effect.seq, err: outcome.error },
        "effect outcome not recorded (claim lost or database error)",
      );
    } else if (outcome.status !== "completed") {
      this.#logger.warn(
        {
          effectId: effect.id,
          type: effect.type,
          attempts: effect.attempts,
          status: outcome.status,
          err: outcome.error,
        },
        "effect handler failed",
      );
    }
    try {
      this.#onOutcome?.(outcome);
    } catch (error) {
      this.#logger.error({ err: error }, "onOutcome threw");
    }
  }

  async #complete(effect: EffectRecord, token: string): Promise<EffectOutcome> {
    try {
      const [row] = await this.#db.query<{ done: boolean }>("select sessiond.complete_effect($1, $2, $3) as done", [
        effect.sessionKey,
        effect.seq,
        token,
      ]);
      return row?.done
        ? { effect, status: "completed" }
        : { effect, status: "lost", error: new Error("the claim expired and was taken over before completion") };
    } catch (error) {
      return { effect, status: "lost", error };
    }
  }

  async #fail(effect: EffectRecord, token: string, error: unknown): Promise<EffectOutcome> {
    const permanent = error instanceof PermanentEffectError;
    try {
      const [row] = await this.#db.query<{ status: string | null }>(
        "select sessiond.fail_effect($1, $2, $3, $4, $5, $6, $7) as status",
        [effect.sessionKey, effect.seq, token, errorMessage(error), permanent, this.#backoffBaseMs, this.#backoffCapMs],
      );
      const status = row?.status;
      if (status === "failed") {
        this.#wakeAfterBackoff(effect.attempts);
        return { effect, status: "failed", error };
      }
      if (status === "dead") return { effect, status: "dead", error };
      return { effect, status: "lost", error };
    } catch (dbError) {
      return { effect, status: "lost", error: dbError };
    }
  }

  /** Pokes once the backoff fail_effect chose has surely passed (when that beats the sweep). */
  #wakeAfterBackoff(attempts: number): void {
    if (this.#state !== "running") return;
    const longest = Math.min(this.#backoffCapMs, this.#backoffBaseMs * 2 ** Math.max(attempts - 1, 0));
    const delay = Math.ceil(longest) + 5;
    if (delay >= this.#sweepMs) return;
    const timer = setTimeout(() => {
      this.#retryTimers.delete(timer);
      this.#poke();
    }, delay);
    this.#retryTimers.add(timer);
  }
}
