/**
 * The session processor: turns each session's events into agent output, in
 * order, exactly once, across any number of processes sharing one Postgres.
 *
 * States of a session, as seen from one process:
 *   idle ──notify: claim_session_work (lease + events, one statement)──▶ active
 *   idle ──sweep: claim_sessions, then next_session_work──▶ active (token T)
 *   active: loop { run next batch; commit_run(T); next_session_work(T) }
 *   active ──next_session_work finds no work: it released the lease──▶ idle
 *           (then re-check: a NOTIFY that arrived while we were finishing
 *           must not be lost)
 *   active ──heartbeat false / SDL01──▶ lost: abort the run, commit nothing,
 *           do not release (the new owner holds the lease now)
 *
 * Invariants:
 * - A run commits only inside commit_run's fencing check, in one transaction
 *   with the checkpoint (the checkpointer buffers the run's writes in memory
 *   until then). A crash or a lost lease before that leaves nothing behind;
 *   whoever holds the lease next redoes the event.
 * - Events are processed strictly in seq order (commit_run refuses anything
 *   else), one run per session at a time (the lease), and at most
 *   `concurrency` sessions at a time in this process.
 * - next_session_work releases only when nothing is pending, in the same
 *   statement that looks: an event committed before it is returned as work,
 *   one committed after it notifies a session whose lease is free. That
 *   NOTIFY may still find the session in #active here (marked dirty): the
 *   loop's finally claims again.
 * - Dispatch is push: a NOTIFY on sessiond_events starts work at once. The
 *   sweep (claim_sessions, every sweepMs and right after the listener
 *   reconnects) is only the fallback; in poll-only mode it is all there is.
 */
import { randomUUID } from "node:crypto";
import { Channels, type Db, DbError, isConnectionError, type Listener, parseSeqPairs } from "../db/index.js";
import type { PendingEffect } from "../effects/emit.js";
import type { SessionEvent } from "../events/index.js";
import type { RowBatch } from "./checkpoint-rows.js";
import {
  claimSessions,
  claimSessionWork,
  commitRun,
  heartbeatSession,
  LEASE_LOST,
  nextSessionWork,
  type RunOutcome,
  releaseSession,
} from "./leases.js";
import { type GraphRunner, UnsupportedEventError } from "./run.js";
import { chooseBatch, describeError, isPermanent } from "./run-policy.js";

/** What the processor needs of the checkpointer: per-thread write buffering. */
export interface RunCheckpointer {
  beginRun(threadId: string): string;
  /** Ends the run and returns its buffered rows, which the processor writes with commit_run. */
  takeRun(threadId: string): Promise<RowBatch>;
  discardRun(threadId: string): void;
}

/** A pino-compatible logger subset. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export interface ProcessorHooks {
  /** A run is about to start (dispatch latency is measured from commit to here). */
  onRunStart?(sessionKey: string, seq: number): void;
  /** Called right before the commit transaction; throwing simulates a crash there. */
  beforeCommit?(sessionKey: string, seq: number): void | Promise<void>;
  /** A run committed. */
  onCommitted?(sessionKey: string, seqs: number[]): void;
  /** A notification for the session reached this processor (after it was acted on). */
  onNotified?(sessionKey: string, seq: number): void;
  /**
   * The session had no more work and its lease was given back; it still counts as active here
   * until this returns (tests hold it to reproduce a NOTIFY arriving while a session finishes).
   */
  afterRelease?(sessionKey: string): void | Promise<void>;
}

export interface ProcessorOptions {
  db: Db;
  runner: GraphRunner;
  checkpointer: RunCheckpointer;
  /** Unique per process instance (default: a random id). */
  owner?: string;
  /** Sessions processed at once by this process (default 16). */
  concurrency?: number;
  /** Lease time-to-live (default 15 s); heartbeats every third of it. */
  leaseMs?: number;
  /** Fallback sweep interval (default 2 s). */
  sweepMs?: number;
  /** `notify` (default): LISTEN + sweep. `poll-only`: sweep only (transaction-mode PgBouncer). */
  mode?: "notify" | "poll-only";
  /** Attempts for a run failing with a transient error (default 3). */
  maxAttempts?: number;
  /** Base of the exponential backoff between attempts (default 250 ms). */
  retryBaseMs?: number;
  logger?: Logger;
  hooks?: ProcessorHooks;
  /**
   * True when this process holds a client connection of the session. Sessions
   * without a local client are claimed after `remoteClaimDelayMs`, so that a
   * process holding the session's socket wins the claim and streams tokens
   * without a relay.
   */
  isLocal?: (sessionKey: string) => boolean;
  /** Delay before claiming a notified session with no local client (default 15 ms; 0 = off). */
  remoteClaimDelayMs?: number;
}

/** Unprocessed events read per claim or look (a batch takes what chooseBatch picks of them). */
const BATCH_READ = 64;

class LeaseLostError extends Error {
  constructor(sessionKey: string) {
    super(`lease lost on session ${sessionKey}`);
  }
}

interface ActiveSession {
  token: number;
  abort: AbortController | undefined;
  /** The seq of the last event in the running batch. */
  runningSeq: number;
  lost: boolean;
  /** A newer event asked to interrupt the running one. */
  interrupting: boolean;
  /** A notification arrived since the last look at the pending events: look again before leaving. */
  dirty: boolean;
  /** Looks at the pending events begun (next_session_work); a look may release the lease. */
  looks: number;
  /** A look is in flight. */
  looking: boolean;
  /** The loop is leaving the session (it released the lease, lost it, or stopped): nothing more to adopt. */
  ending: boolean;
  heartbeat: NodeJS.Timeout | undefined;
}

export class SessionProcessor {
  readonly owner: string;
  readonly #db: Db;
  readonly #runner: GraphRunner;
  readonly #checkpointer: RunCheckpointer;
  readonly #concurrency: number;
  readonly #leaseMs: number;
  readonly #sweepMs: number;
  readonly #mode: "notify" | "poll-only";
  readonly #maxAttempts: number;
  readonly #retryBaseMs: number;
  readonly #log: Logger;
  readonly #hooks: ProcessorHooks;
  readonly #isLocal: ((sessionKey: string) => boolean) | undefined;
  readonly #remoteClaimDelayMs: number;

  readonly #active = new Map<string, ActiveSession>();
  readonly #loops = new Set<Promise<void>>();
  readonly #wanted = new Set<string>();
  readonly #claiming = new Set<string>();
  #listener: Listener | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #started = false;
  #stopping = false;
  #stopController = new AbortController();

  constructor(options: ProcessorOptions) {
    this.owner = options.owner ?? `sessiond-${randomUUID()}`;
    this.#db = options.db;
    this.#runner = options.runner;
    this.#checkpointer = options.checkpointer;
    this.#concurrency = options.concurrency ?? 16;
    this.#leaseMs = options.leaseMs ?? 15_000;
    this.#sweepMs = options.sweepMs ?? 2_000;
    this.#mode = options.mode ?? "notify";
    this.#maxAttempts = options.maxAttempts ?? 3;
    this.#retryBaseMs = options.retryBaseMs ?? 250;
    this.#log = options.logger ?? silentLogger;
    this.#hooks = options.hooks ?? {};
    this.#isLocal = options.isLocal;
    this.#remoteClaimDelayMs = options.remoteClaimDelayMs ?? 15;
  }

  /** Sessions this process holds a lease on right now. */
  get activeSessions(): number {
    return this.#active.size;
  }

  /** True while the LISTEN connection is established (always true in poll-only mode once started). */
  get listening(): boolean {
    return this.#mode === "poll-only" ? this.#started : this.#listener !== undefined;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    if (this.#mode === "notify") {
      this.#listener = await this.#db.listen(
        Channels.events,
        (payload) => this.#onNotify(payload),
        () => {
          this.#log.warn({ owner: this.owner }, "events listener reconnected; sweeping");
          void this.sweep();
        },
      );
    }
    this.#sweepTimer = setInterval(() => void this.sweep(), this.#sweepMs);
    this.#sweepTimer.unref();
    void this.sweep();
  }

  /**
   * Stops taking work; lets running sessions finish their current run for up
   * to `graceMs`, then aborts them (nothing of an aborted run commits) and
   * releases their leases so another process takes over at once.
   */
  async stop(options: { graceMs?: number } = {}): Promise<void> {
    if (this.#stopping) {
      await Promise.allSettled([...this.#loops]);
      return;
    }
    this.#stopping = true;
    clearInterval(this.#sweepTimer);
    await this.#listener?.close().catch(() => {});
    this.#listener = undefined;
    const graceMs = options.graceMs ?? 10_000;
    const all = Promise.allSettled([...this.#loops]);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.#stopController.abort();
      for (const state of this.#active.values()) state.abort?.abort(new Error("processor stopping"));
      await all;
    }
    await this.#sweeping;
  }

  /**
   * Claims and starts sessions with unprocessed events and no live lease, up to free capacity.
   * Resolves when this sweep (or the one already under way) has claimed; it never rejects.
   */
  sweep(): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    if (this.#sweeping) return this.#sweeping;
    const free = this.#concurrency - this.#busy;
    if (free <= 0) return Promise.resolve();
    this.#sweeping = (async () => {
      // Let the assignment above happen before this body can finish: a finally
      // that ran first would leave #sweeping set for ever (no sweep again).
      await null;
      try {
        // Never claim a session this process runs: its loop would not know the new token, and the
        // lease would sit unused and unrenewed until it expired (its own heartbeat renews it instead).
        const claimed = await claimSessions(this.#db, this.owner, this.#leaseMs, free, [...this.#active.keys()]);
        // Notifications handled while the claim was in flight may have filled the free slots: start
        // what still fits, give the rest back and start it when a slot frees (#wanted).
        const surplus: typeof claimed = [];
        for (const claim of claimed) {
          const active = this.#active.get(claim.session_key);
          if (active) {
            // Started here while the claim was in flight, and its lease expired since (the skip list
            // predates it): the running loop goes on under the new token.
            if (!this.#adopt(claim.session_key, active, claim.lease_token)) surplus.push(claim);
          } else if (this.#busy >= this.#concurrency) surplus.push(claim);
          else this.#startLoop(claim.session_key, claim.lease_token);
        }
        for (const { session_key, lease_token } of surplus) {
          await releaseSession(this.#db, session_key, this.owner, lease_token).catch(() => {});
          if (!this.#active.has(session_key)) this.#wanted.add(session_key);
        }
      } catch (error) {
        if (!this.#stopping) this.#log.error({ err: error }, "sweep failed");
      } finally {
        this.#sweeping = undefined;
        this.#pumpWanted();
      }
    })();
    return this.#sweeping;
  }

  #onNotify(payload: string): void {
    const pairs = parseSeqPairs(payload);
    if (pairs === null) {
      void this.sweep();
      return;
    }
    for (const [sessionKey, seq] of pairs) {
      const active = this.#active.get(sessionKey);
      if (active) {
        active.dirty = true;
        if (active.abort && seq > active.runningSeq) void this.#checkInterrupt(sessionKey, active);
      } else if (this.#isLocal && this.#remoteClaimDelayMs > 0 && !this.#isLocal(sessionKey)) {
        setTimeout(() => void this.#tryStart(sessionKey), this.#remoteClaimDelayMs).unref();
      } else {
        void this.#tryStart(sessionKey);
      }
      this.#hooks.onNotified?.(sessionKey, seq);
    }
  }

  async #checkInterrupt(sessionKey: string, state: ActiveSession): Promise<void> {
    const runningSeq = state.runningSeq;
    try {
      const rows = await this.#db.query(
        "select 1 from sessiond.events where session_key = $1 and seq > $2 and payload->>'strategy' = 'interrupt' limit 1",
        [sessionKey, runningSeq],
      );
      if (rows.length > 0 && state.runningSeq === runningSeq && state.abort) {
        state.interrupting = true;
        state.abort.abort(new Error("interrupted by a newer message"));
      }
    } catch (error) {
      this.#log.warn({ sessionKey, err: error }, "interrupt check failed");
    }
  }

  /** Sessions running here plus claims in flight: what counts against `concurrency`. */
  get #busy(): number {
    return this.#active.size + this.#claiming.size;
  }

  async #tryStart(sessionKey: string): Promise<void> {
    if (this.#stopping || this.#active.has(sessionKey) || this.#claiming.has(sessionKey)) return;
    if (this.#busy >= this.#concurrency) {
      this.#wanted.add(sessionKey);
      return;
    }
    // Reserve the slot before awaiting the claim, so notifications arriving together
    // cannot all pass the check above.
    this.#claiming.add(sessionKey);
    try {
      // The lease and the events to run, in one round trip; nothing when there is no work.
      const claimed = await claimSessionWork(this.#db, sessionKey, this.owner, this.#leaseMs, BATCH_READ).finally(() =>
        this.#claiming.delete(sessionKey),
      );
      if (!claimed) return;
      const active = this.#active.get(sessionKey);
      if (active) {
        if (!this.#adopt(sessionKey, active, claimed.token)) {
          await releaseSession(this.#db, sessionKey, this.owner, claimed.token);
        }
        return;
      }
      if (this.#stopping) {
        await releaseSession(this.#db, sessionKey, this.owner, claimed.token);
        return;
      }
      this.#startLoop(sessionKey, claimed.token, claimed.events);
    } catch (error) {
      if (!this.#stopping) this.#log.error({ sessionKey, err: error }, "claim failed");
    }
  }

  /** Starts the session's loop with the lease `token`, on `events` if the claim read them already. */
  #startLoop(sessionKey: string, token: number, events?: SessionEvent[]): void {
    const state: ActiveSession = {
      token,
      abort: undefined,
      runningSeq: 0,
      lost: false,
      interrupting: false,
      dirty: false,
      looks: 0,
      looking: false,
      ending: false,
      heartbeat: undefined,
    };
    this.#active.set(sessionKey, state);
    state.heartbeat = setInterval(() => void this.#heartbeat(sessionKey, state), Math.max(50, this.#leaseMs / 3));
    state.heartbeat.unref();
    const loop = this.#loop(sessionKey, state, events).finally(() => {
      this.#loops.delete(loop);
    });
    this.#loops.add(loop);
  }

  /**
   * A claim of this process returned a session that this process is running: the running loop's
   * lease had expired (a claim takes only free or expired leases) and the claim took it again with
   * `token`. The loop goes on under that token instead of being fenced out of its own session by
   * it. When the new token is the next one, nobody held the lease in between and the running run
   * stands; otherwise another owner did and may have committed newer events, so the run is
   * interrupted and the loop reads again from the processed cursor. False when the claim is of no
   * use to the loop (it has lost the lease, or holds a newer token): the caller gives it back.
   */
  #adopt(sessionKey: string, state: ActiveSession, token: number): boolean {
    if (state.lost || state.ending || token <= state.token) return false;
    const heldBetween = token !== state.token + 1;
    this.#log.warn(
      { sessionKey, token: state.token, newToken: token, heldBetween },
      "lease expired under a running session; renewed",
    );
    state.token = token;
    if (heldBetween) {
      state.interrupting = true;
      state.abort?.abort(new Error("lease taken again after another owner held it"));
    }
    return true;
  }

  async #heartbeat(sessionKey: string, state: ActiveSession): Promise<void> {
    // A look in flight renews nothing but tells the loop itself whether it still holds the lease,
    // and may release it: a heartbeat now would only race it.
    if (state.looking) return;
    const token = state.token;
    const looks = state.looks;
    try {
      const ok = await heartbeatSession(this.#db, sessionKey, this.owner, token, this.#leaseMs);
      // A refusal is a loss only if nothing of the loop's own could explain it: a look begun since
      // may have given the lease back (the heartbeat ran after it in the database, on another
      // connection), and a token the loop has replaced (#adopt) says nothing about the new one.
      // A real loss is found by the look or the commit then.
      if (!ok && state.token === token && state.looks === looks) this.#markLost(sessionKey, state, "heartbeat");
      else if (this.#mode === "poll-only" && state.abort) await this.#checkInterrupt(sessionKey, state);
    } catch (error) {
      this.#log.warn({ sessionKey, err: error }, "heartbeat failed");
    }
  }

  #markLost(sessionKey: string, state: ActiveSession, via: "heartbeat" | "look" | "commit"): void {
    if (state.lost) return;
    state.lost = true;
    this.#log.warn({ sessionKey, token: state.token, via }, "lease lost; abandoning the run");
    state.abort?.abort(new LeaseLostError(sessionKey));
  }

  async #loop(sessionKey: string, state: ActiveSession, claimed: SessionEvent[] | undefined): Promise<void> {
    let released = false;
    try {
      let events = claimed;
      while (!this.#stopping && !state.lost) {
        if (!events?.length) {
          // Any NOTIFY from here on may be for an event this statement does not see.
          state.dirty = false;
          const token = state.token;
          state.looks += 1;
          state.looking = true;
          const next = await nextSessionWork(this.#db, sessionKey, this.owner, token, BATCH_READ).finally(() => {
            state.looking = false;
          });
          // A token adopted while the look was in flight holds the lease now, whatever the look
          // found under the old one (refused, or released just before the claim): look again.
          if (state.token !== token) continue;
          if (next.kind === "lost") {
            this.#markLost(sessionKey, state, "look");
            break;
          }
          if (next.kind === "released") {
            released = true;
            state.ending = true;
            clearInterval(state.heartbeat); // nothing left to renew
            await this.#hooks.afterRelease?.(sessionKey);
            break;
          }
          events = next.events;
        }
        await this.#processBatch(sessionKey, state, chooseBatch(events));
        events = undefined;
      }
    } catch (error) {
      if (isConnectionError(error)) {
        this.#log.warn({ sessionKey, err: error }, "database unreachable; the session is left to the sweep");
      } else if (!(error instanceof LeaseLostError) && !this.#stopping) {
        this.#log.error({ sessionKey, err: error }, "session loop failed");
      }
    } finally {
      state.ending = true;
      clearInterval(state.heartbeat);
      this.#active.delete(sessionKey);
      if (!state.lost && !released) {
        await releaseSession(this.#db, sessionKey, this.owner, state.token).catch(() => {});
      }
      // A notification that came after the last look at the pending events found the
      // session still active and only marked it dirty: look again now that it is not.
      if (state.dirty && !state.lost && !this.#stopping) void this.#tryStart(sessionKey);
      this.#pumpWanted();
    }
  }

  #pumpWanted(): void {
    for (const sessionKey of this.#wanted) {
      if (this.#busy >= this.#concurrency) return;
      this.#wanted.delete(sessionKey);
      void this.#tryStart(sessionKey);
    }
  }

  async #processBatch(sessionKey: string, state: ActiveSession, batch: SessionEvent[]): Promise<void> {
    const last = batch[batch.length - 1] as SessionEvent;
    const superseded = batch.slice(0, -1);
    const startedAt = new Date();
    state.runningSeq = last.seq;
    state.interrupting = false;
    for (let attempt = 1; ; attempt++) {
      const abort = new AbortController();
      state.abort = abort;
      const runId = this.#checkpointer.beginRun(sessionKey);
      try {
        this.#hooks.onRunStart?.(sessionKey, last.seq);
        const { effects } = await this.#runner.run({ sessionKey, events: batch, signal: abort.signal, runId });
        await this.#hooks.beforeCommit?.(sessionKey, last.seq);
        if (state.lost) throw new LeaseLostError(sessionKey);
        await this.#commit(sessionKey, state, [
          ...superseded.map((e) => this.#supersededOutcome(e, startedAt)),
          { outcome: { seq: last.seq, status: "processed", attempts: attempt, startedAt }, effects },
        ]);
        return;
      } catch (error) {
        this.#checkpointer.discardRun(sessionKey);
        if (state.lost || (error instanceof DbError && error.code === LEASE_LOST)) {
          this.#markLost(sessionKey, state, "commit");
          throw new LeaseLostError(sessionKey);
        }
        if (this.#stopping) throw error;
        // The database failed, not the run: no attempt is spent and no failure is recorded.
        // The loop ends; whoever holds the lease once the database is back redoes the event.
        if (isConnectionError(error)) throw error;
        if (state.interrupting) return; // the loop re-reads and runs the newer message with this one
        const permanent = isPermanent(error);
        this.#log.warn({ sessionKey, seq: last.seq, attempt, err: error, permanent }, "run failed");
        if (permanent || attempt >= this.#maxAttempts) {
          await this.#commitFailure(sessionKey, state, batch, error, attempt, startedAt);
          return;
        }
        await this.#backoff(attempt);
      } finally {
        state.abort = undefined;
      }
    }
  }

  #supersededOutcome(event: SessionEvent, startedAt: Date) {
    const effect = {
      eventSeq: event.seq,
      ...this.#errorEffect(event, "superseded", "a newer message interrupted this one"),
    };
    return { outcome: { seq: event.seq, status: "superseded" as const, startedAt }, effects: [effect] };
  }

  #errorEffect(event: SessionEvent, code: string, message: string): PendingEffect {
    return this.#runner.registry.validate("error", { requestId: event.requestId, code, message });
  }

  async #commitFailure(
    sessionKey: string,
    state: ActiveSession,
    batch: SessionEvent[],
    error: unknown,
    attempts: number,
    startedAt: Date,
  ): Promise<void> {
    const last = batch[batch.length - 1] as SessionEvent;
    const unsupported = error instanceof UnsupportedEventError;
    const detail = describeError(error).slice(0, 2000);
    // The client is told what happened, never the internals (error classes, driver or model
    // texts): those stay in event_outcomes.error for operators (`sessiond audit`).
    const message = unsupported ? "this kind of event cannot be answered" : "the agent could not answer this message";
    await this.#commit(sessionKey, state, [
      ...batch.slice(0, -1).map((e) => this.#supersededOutcome(e, startedAt)),
      {
        outcome: { seq: last.seq, status: "failed", error: detail, attempts, startedAt },
        effects: [this.#errorEffect(last, unsupported ? "unsupported_event" : "run_failed", message)],
      },
    ]);
  }

  async #commit(
    sessionKey: string,
    state: ActiveSession,
    parts: Array<{ outcome: RunOutcome; effects: PendingEffect[] }>,
  ): Promise<void> {
    const outcomes = parts.map((p) => p.outcome);
    const effects = parts.flatMap((p) => p.effects.map((e) => ({ ...e, eventSeq: p.outcome.seq })));
    const processed = parts.at(-1)?.outcome.status === "processed";
    // Outcomes, effects, cursor and checkpoint in one statement: one round trip, one transaction.
    const checkpoint = processed ? await this.#checkpointer.takeRun(sessionKey) : undefined;
    for (;;) {
      const token = state.token;
      try {
        await commitRun(this.#db, sessionKey, token, outcomes, effects, checkpoint);
        break;
      } catch (error) {
        // Refused for a token the loop replaced while the commit was in flight (#adopt): nothing
        // was written; commit again under the new one (which checks order again).
        const replaced = error instanceof DbError && error.code === LEASE_LOST && state.token !== token;
        if (!replaced || state.lost) throw error;
      }
    }
    this.#hooks.onCommitted?.(
      sessionKey,
      outcomes.map((o) => o.seq),
    );
    this.#log.debug({ sessionKey, seq: outcomes.at(-1)?.seq }, "run committed");
  }

  async #backoff(attempt: number): Promise<void> {
    const delay = this.#retryBaseMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delay);
      this.#stopController.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
