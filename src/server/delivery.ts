/**
 * Durable delivery: pull by cursor, woken by NOTIFY.
 *
 * Each subscriber (a WebSocket or an SSE stream) has a Feed with a cursor:
 * the seq of the last durable frame it was sent. Frames come from one place
 * only, `sessiond.effects_after(key, cursor)`, in seq order. A feed's pump
 * runs that query and sends what it got, and repeats while it was woken again
 * meanwhile. A NOTIFY on sessiond_effects wakes the feeds of the sessions it
 * names (an empty payload, or a LISTEN reconnect, wakes every feed); the
 * process that committed a run also wakes its own feeds of that session at
 * once (`committedLocally`), unless the run's NOTIFY already came back.
 *
 * Why this has no gap and no duplicate at the replay → live seam: the LISTEN
 * is up before any feed exists, and a NOTIFY is delivered only after its
 * transaction commits. So an effect either committed before a pump query
 * began (the query returns it) or its NOTIFY arrives after the query began,
 * and the pump queries once more from the advanced cursor. Effects of one
 * session become visible in seq order (enqueue_effects holds the session lock
 * until commit), so a cursor never skips one; the cursor only moves forward
 * past frames actually sent, so nothing is sent twice — except when the
 * client explicitly rewinds with `resume`.
 *
 * What "woken again" means, exactly. A wake without a seq (a sweep, a LISTEN
 * reconnect, a local commit) sets `again`, cleared when a query is issued:
 * that query began after the wake. A NOTIFY names the highest seq it
 * committed, kept in `wanted`. `covered` is a seq up to which every client
 * effect has been sent: the last row of a delivered batch (visibility in seq
 * order), and, after a batch that was not full, whatever `wanted` was when its
 * query was issued (those commits were visible to it). The pump reads again
 * while `again` or `wanted > covered`; so a NOTIFY for effects the running
 * query already returned costs no second query.
 *
 * Pipelining and backpressure. Rows are read `batchSize` (1,000) at a time;
 * when a batch comes back full, the next one is read while this one is sent
 * and drains, so reads and sends overlap (a prefetched batch is dropped if a
 * rewind made it stale). A batch is written corked (one write for many
 * frames); when the target says it is congested (its buffer is half full)
 * the pump waits until what it sent has flushed before sending more, and it
 * waits for that after every batch too. So a feed holds at most two batches
 * in memory and at most about half the outbound limit in the socket buffer:
 * a slow reader stalls its own pump and nothing else, and the slow-consumer
 * cut (4408) stays for frames outside the pump. Database errors are retried
 * with a backoff while the subscriber is open.
 */
import { randomUUID } from "node:crypto";
import { Channels, type Db, type Listener, parseSeqPairs, type Queryable } from "../db/index.js";
import { errorPayload, interruptPayload, sendMessagePayload } from "../effects/registry.js";
import type { Logger } from "../session/processor.js";
import type { Metrics } from "./metrics.js";
import type { DurableFrame } from "./protocol.js";

/** A row of sessiond.effects_after, as the drivers return it. */
export interface EffectRow {
  seq: number;
  event_seq: number | null;
  type: string;
  payload: Record<string, unknown>;
  created_at: Date;
}

/** Maps a client-delivered effect to its frame. */
export function effectFrame(row: EffectRow): DurableFrame {
  const base = { seq: row.seq, eventSeq: row.event_seq };
  if (row.type === "send_message") {
    const p = sendMessagePayload.safeParse(row.payload);
    if (p.success) {
      return { type: "message", ...base, requestId: p.data.requestId, role: p.data.role, content: p.data.content };
    }
  } else if (row.type === "interrupt") {
    const p = interruptPayload.safeParse(row.payload);
    if (p.success) return { type: "interrupt", ...base, requestId: p.data.requestId, value: p.data.value ?? null };
  } else if (row.type === "error") {
    const p = errorPayload.safeParse(row.payload);
    if (p.success) {
      return {
        type: "failure",
        ...base,
        requestId: p.data.requestId ?? null,
        code: p.data.code,
        message: p.data.message,
      };
    }
  }
  return { type: "effect", ...base, effectType: row.type, payload: row.payload };
}

/** Client-delivered effects of a session after a cursor, in seq order. */
export async function effectsAfter(
  db: Queryable,
  sessionKey: string,
  after: number,
  limit: number,
): Promise<EffectRow[]> {
  return db.query<EffectRow>(
    "select seq, event_seq, type, payload, created_at from sessiond.effects_after($1, $2, $3)",
    [sessionKey, after, limit],
  );
}

/** The session's effect head (effect_seq) and acked cursor; zeros for a session that does not exist yet. */
export async function sessionHead(db: Queryable, sessionKey: string): Promise<{ head: number; acked: number }> {
  const [row] = await db.query<{ effect_seq: number; acked_seq: number }>(
    "select effect_seq, acked_seq from sessiond.sessions where session_key = $1",
    [sessionKey],
  );
  return { head: row?.effect_seq ?? 0, acked: row?.acked_seq ?? 0 };
}

/** Where a feed sends. */
export interface DeliveryTarget {
  readonly sessionKey: string;
  /** False once the subscriber is gone; the pump stops. */
  readonly isOpen: boolean;
  /** Sends one durable frame; false if it could not (the target closes itself). */
  deliver(frame: DurableFrame): boolean;
  /** Resolves when what was sent so far has left this process's buffers. */
  flushed(): Promise<void>;
  /** True when enough is buffered that the pump should wait for `flushed()` before sending more. */
  readonly congested?: boolean;
  /** Frames delivered between cork() and uncork() may leave in one write. */
  cork?(): void;
  uncork?(): void;
}

/** Test seams. @internal */
export interface DeliveryHooks {
  /** After a pump query returned, before its rows are sent. */
  afterQuery?(sessionKey: string, after: number, rows: number): void | Promise<void>;
  /** A NOTIFY on sessiond_effects was received. */
  onNotify?(payload: string): void;
}

export interface DeliveryHubOptions {
  db: Db;
  metrics: Metrics;
  logger: Logger;
  /** notify: LISTEN sessiond_effects. poll-only: wake every feed every pollMs. */
  mode: "notify" | "poll-only";
  pollMs: number;
  /** Rows per pump query (default 1,000). */
  batchSize?: number;
  hooks?: DeliveryHooks;
}

/** Rows per pump query unless the hub is told otherwise. */
export const DEFAULT_BATCH_SIZE = 1_000;

/** One pump query's answer, with what was known when it was issued. */
interface Batch {
  generation: number;
  after: number;
  /** `wanted` when the query was issued: every commit it names was visible to the query. */
  wanted: number;
  rows: EffectRow[];
}

export class Feed {
  /** The seq of the last durable frame sent to the target. */
  cursor: number;
  readonly target: DeliveryTarget;
  readonly #hub: DeliveryHub;
  #generation = 0;
  #running = false;
  /** Woken without a seq since the last query was issued. */
  #again = false;
  /** The highest seq a NOTIFY named. */
  #wanted = 0;
  /** Every client effect with a seq up to this one has been sent (see the design note). */
  #covered: number;
  #retry: NodeJS.Timeout | undefined;
  #failures = 0;

  constructor(hub: DeliveryHub, target: DeliveryTarget, after: number) {
    this.#hub = hub;
    this.target = target;
    this.cursor = after;
    this.#covered = after;
  }

  /** Something was committed (with seq ≤ maxSeq, if known): read again. */
  wake(maxSeq?: number): void {
    if (maxSeq === undefined) this.#again = true;
    else if (maxSeq > this.#wanted) this.#wanted = maxSeq;
    if (this.#wantsRead && !this.#running && !this.#retry) void this.#pump();
  }

  /** Moves the cursor (resume); a batch in flight from the old cursor is dropped. */
  rewind(after: number): void {
    this.#generation += 1;
    this.cursor = after;
    this.#covered = after;
    this.wake();
  }

  /** True while the pump is reading or sending, or has a read to do (tests wait for idle). */
  get busy(): boolean {
    return this.#running || this.#wantsRead;
  }

  stop(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  get #wantsRead(): boolean {
    return this.#again || this.#wanted > this.#covered;
  }

  /** Issues a query from `after`; whatever was woken before this moment is visible to it. */
  #read(after: number): Promise<Batch> {
    this.#again = false;
    const generation = this.#generation;
    const wanted = this.#wanted;
    const { db, batchSize } = this.#hub.deps;
    const read = effectsAfter(db, this.target.sessionKey, after, batchSize).then((rows) => ({
      generation,
      after,
      wanted,
      rows,
    }));
    // A prefetch may be dropped unawaited (the subscriber left); its failure then matters to no one.
    read.catch(() => {});
    return read;
  }

  async #pump(): Promise<void> {
    this.#running = true;
    const { batchSize, hooks, logger } = this.#hub.deps;
    const key = this.target.sessionKey;
    let next: Promise<Batch> | undefined;
    try {
      while (this.target.isOpen) {
        if (!next) {
          if (!this.#wantsRead) break;
          next = this.#read(this.cursor);
        }
        const batch = await next;
        next = undefined;
        await hooks?.afterQuery?.(key, batch.after, batch.rows.length);
        if (batch.generation !== this.#generation || batch.after !== this.cursor) {
          // A rewind moved the cursor while this batch was read: it is stale.
          this.#again = true;
          continue;
        }
        const last = batch.rows.at(-1);
        const full = batch.rows.length === batchSize;
        // Read the next batch while this one is sent and drains.
        if (full && last) next = this.#read(last.seq);
        const sent = await this.#send(batch);
        if (sent === "refused") break;
        if (sent === "stale") continue;
        this.#covered = Math.max(this.#covered, last?.seq ?? 0, full ? 0 : batch.wanted);
        if (last) logger.debug({ sessionKey: key, from: batch.rows[0]?.seq, to: last.seq }, "delivered");
      }
      this.#failures = 0;
    } catch (error) {
      if (this.target.isOpen) {
        this.#failures += 1;
        const delay = Math.min(5_000, 100 * 2 ** Math.min(this.#failures, 6));
        logger.warn({ sessionKey: key, seq: this.cursor, err: error, retryInMs: delay }, "delivery query failed");
        this.#again = true;
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          void this.#pump();
        }, delay);
        this.#retry.unref();
      }
    } finally {
      this.#running = false;
    }
    // Woken while the last send was being flushed, after the loop checked.
    if (this.#wantsRead && this.target.isOpen && !this.#retry) void this.#pump();
  }

  /**
   * Sends a batch corked, pausing whenever the target is congested, then waits until it flushed.
   * "stale": a rewind came while it waited; "refused": the target could not take a frame (it closes).
   */
  async #send(batch: Batch): Promise<"sent" | "stale" | "refused"> {
    const target = this.target;
    const { metrics } = this.#hub.deps;
    target.cork?.();
    try {
      for (const row of batch.rows) {
        if (target.congested) {
          target.uncork?.();
          await target.flushed();
          target.cork?.();
        }
        if (batch.generation !== this.#generation) return "stale";
        if (!target.isOpen || !target.deliver(effectFrame(row))) return "refused";
        this.cursor = row.seq;
        metrics.delivered(row.created_at);
      }
    } finally {
      target.uncork?.();
    }
    if (batch.rows.length > 0) await target.flushed();
    return batch.generation === this.#generation ? "sent" : "stale";
  }
}

export class DeliveryHub {
  readonly deps: Required<Omit<DeliveryHubOptions, "hooks" | "mode" | "pollMs">> & { hooks: DeliveryHooks | undefined };
  readonly #mode: "notify" | "poll-only";
  readonly #pollMs: number;
  readonly #feeds = new Map<string, Set<Feed>>();
  /** Sessions with a commit of this process in progress: true once a NOTIFY named the session meanwhile. */
  readonly #committing = new Map<string, boolean>();
  #listener: Listener | undefined;
  /** The LISTEN for readiness probes, opened by the first probe. */
  #pingListener: Promise<Listener> | undefined;
  /** Readiness probes waiting for their nonce to come back, by nonce. */
  readonly #probes = new Map<string, () => void>();
  #poll: NodeJS.Timeout | undefined;
  #started = false;

  constructor(options: DeliveryHubOptions) {
    this.deps = {
      db: options.db,
      metrics: options.metrics,
      logger: options.logger,
      batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
      hooks: options.hooks,
    };
    this.#mode = options.mode;
    this.#pollMs = options.pollMs;
  }

  /** True once the LISTEN is up (always, once started, in poll-only mode). */
  get listening(): boolean {
    return this.#mode === "poll-only" ? this.#started : this.#listener !== undefined;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    if (this.#mode === "notify") {
      this.#listener = await this.deps.db.listen(
        Channels.effects,
        (payload) => this.#onNotify(payload),
        () => {
          this.deps.metrics.listenerReconnects += 1;
          this.deps.logger.warn({}, "effects listener reconnected; waking every feed");
          this.wakeAll();
        },
      );
    } else {
      this.#poll = setInterval(() => this.wakeAll(), this.#pollMs);
      this.#poll.unref();
    }
    this.#started = true;
  }

  /**
   * True when a NOTIFY sent now comes back through this process's LISTEN
   * connection within `ms` (always true in poll-only mode once started). The
   * connection can be down while `listening` still holds: postgres.js
   * re-LISTENs by itself, and until it manages to, no notification arrives.
   */
  async listenerAlive(ms: number): Promise<boolean> {
    if (this.#mode === "poll-only") return this.#started;
    if (!this.#listener) return false;
    const nonce = randomUUID();
    let timer: NodeJS.Timeout | undefined;
    try {
      // Bounded as a whole: while the database is away, LISTEN and NOTIFY may wait for a connection.
      return await Promise.race([
        this.#probe(nonce),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.#probes.delete(nonce);
    }
  }

  async #probe(nonce: string): Promise<boolean> {
    this.#pingListener ??= this.deps.db.listen(Channels.ping, (payload) => this.#probes.get(payload)?.());
    try {
      await this.#pingListener;
    } catch {
      this.#pingListener = undefined;
      return false;
    }
    const arrived = new Promise<true>((resolve) => this.#probes.set(nonce, () => resolve(true)));
    try {
      await this.deps.db.query("select pg_notify($1, $2)", [Channels.ping, nonce]);
    } catch {
      return false;
    }
    return arrived;
  }

  async stop(): Promise<void> {
    clearInterval(this.#poll);
    for (const feeds of this.#feeds.values()) for (const feed of feeds) feed.stop();
    this.#feeds.clear();
    const listener = this.#listener;
    this.#listener = undefined;
    const ping = this.#pingListener;
    this.#pingListener = undefined;
    await ping?.then((l) => l.close()).catch(() => {});
    await listener?.close().catch(() => {});
  }

  /** Starts a feed for `target` from cursor `after` (it pumps at once). */
  attach(target: DeliveryTarget, after: number): Feed {
    const feed = new Feed(this, target, after);
    let set = this.#feeds.get(target.sessionKey);
    if (!set) {
      set = new Set();
      this.#feeds.set(target.sessionKey, set);
    }
    set.add(feed);
    feed.wake();
    return feed;
  }

  detach(feed: Feed): void {
    feed.stop();
    const set = this.#feeds.get(feed.target.sessionKey);
    if (!set) return;
    set.delete(feed);
    if (set.size === 0) {
      this.#feeds.delete(feed.target.sessionKey);
      this.#committing.delete(feed.target.sessionKey);
    }
  }

  /** True when a subscriber of the session is attached here. */
  hasSubscribers(sessionKey: string): boolean {
    return this.#feeds.has(sessionKey);
  }

  /** Resolves once no feed is reading or sending, or after `ms` (shutdown uses it). */
  async idle(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    const busy = () =>
      [...this.#feeds.values()].some((feeds) => [...feeds].some((feed) => feed.busy && feed.target.isOpen));
    while (busy() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  wakeSession(sessionKey: string, maxSeq?: number): void {
    for (const feed of this.#feeds.get(sessionKey) ?? []) feed.wake(maxSeq);
  }

  /** A run of the session is about to commit in this process (see committedLocally). */
  commitStarting(sessionKey: string): void {
    if (this.#feeds.has(sessionKey)) this.#committing.set(sessionKey, false);
  }

  /**
   * A run of the session committed in this process: its feeds here read at once instead of
   * waiting for the NOTIFY to come back — unless a NOTIFY naming the session arrived since
   * commitStarting (most likely this commit's own, so the feeds already read after it; waking
   * them again would cost an empty query). Either way the NOTIFY stays the guarantee.
   */
  committedLocally(sessionKey: string): void {
    const notified = this.#committing.get(sessionKey);
    this.#committing.delete(sessionKey);
    if (!notified) this.wakeSession(sessionKey);
  }

  wakeAll(): void {
    for (const feeds of this.#feeds.values()) for (const feed of feeds) feed.wake();
  }

  #onNotify(payload: string): void {
    this.deps.hooks?.onNotify?.(payload);
    const pairs = parseSeqPairs(payload);
    if (pairs === null) {
      for (const sessionKey of this.#committing.keys()) this.#committing.set(sessionKey, true);
      this.wakeAll();
      return;
    }
    for (const [sessionKey, maxSeq] of pairs) {
      if (this.#committing.has(sessionKey)) this.#committing.set(sessionKey, true);
      this.wakeSession(sessionKey, maxSeq);
    }
  }
}
