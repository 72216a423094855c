/**
 * Live tokens across processes. Durable frames reach every process through
 * NOTIFY on sessiond_effects; live tokens live only in the memory of the
 * process running the session. When that process has no local subscriber of
 * the session (the socket is on another process), it relays the run's tokens
 * over NOTIFY sessiond_tokens; processes holding subscribers of that session
 * republish them locally.
 *
 * Cost control: tokens of one run are coalesced — the first goes out at once,
 * later ones at most once per `intervalMs` (default 50 ms: ~20 NOTIFYs per
 * second per run), in batches kept under `maxBytes` (default 6000, well below
 * NOTIFY's 8000-byte limit). A single token too large for a batch is not
 * relayed (the durable message carries the full text anyway).
 *
 * Payload: {"o": origin, "k": sessionKey, "r": requestId, "e": eventSeq,
 * "t": [[index, text], …]}. A process ignores its own relays.
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { Channels, type Db, type Listener } from "../db/index.js";
import type { Logger } from "../session/processor.js";
import type { TokenBus, TokenFrame } from "../session/token-bus.js";
import type { Metrics } from "./metrics.js";

const RelaySchema = z.object({
  o: z.string(),
  k: z.string(),
  r: z.string(),
  e: z.number().int(),
  t: z.array(z.tuple([z.number().int().min(0), z.string()])),
});

interface RunBuffer {
  sessionKey: string;
  requestId: string;
  eventSeq: number;
  pending: Array<[number, string]>;
  /** The cool-down timer after a flush; while set, new tokens wait for it. */
  timer: NodeJS.Timeout | undefined;
}

export interface TokenRelayOptions {
  db: Db;
  tokens: TokenBus;
  metrics: Metrics;
  logger: Logger;
  intervalMs?: number;
  maxBytes?: number;
}

export class TokenRelay {
  readonly origin = randomUUID();
  readonly #db: Db;
  readonly #tokens: TokenBus;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #maxBytes: number;
  readonly #runs = new Map<string, RunBuffer>();
  #listener: Listener | undefined;
  #unsubscribe: (() => void) | undefined;
  #stopped = false;

  constructor(options: TokenRelayOptions) {
    this.#db = options.db;
    this.#tokens = options.tokens;
    this.#metrics = options.metrics;
    this.#log = options.logger;
    this.#intervalMs = options.intervalMs ?? 50;
    this.#maxBytes = options.maxBytes ?? 6000;
  }

  /** Starts relaying this process's tokens out (`send`) and others' in (`receive`). */
  async start(options: { send: boolean; receive: boolean }): Promise<void> {
    if (options.receive) {
      this.#listener = await this.#db.listen(Channels.tokens, (payload) => this.#onNotify(payload));
    }
    if (options.send) this.#unsubscribe = this.#tokens.subscribeAll((frame) => this.#onToken(frame));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe?.();
    for (const run of this.#runs.values()) {
      clearTimeout(run.timer);
      this.#flush(run);
    }
    this.#runs.clear();
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.close().catch(() => {});
  }

  #onToken(frame: TokenFrame): void {
    if (this.#stopped || this.#tokens.hasSubscribers(frame.sessionKey)) return;
    const id = `${frame.sessionKey}\u0000${frame.eventSeq}`;
    let run = this.#runs.get(id);
    if (!run) {
      run = {
        sessionKey: frame.sessionKey,
        requestId: frame.requestId,
        eventSeq: frame.eventSeq,
        pending: [],
        timer: undefined,
      };
      this.#runs.set(id, run);
    }
    run.pending.push([frame.index, frame.text]);
    if (!run.timer) this.#flushAndCoolDown(id, run);
  }

  #flushAndCoolDown(id: string, run: RunBuffer): void {
    this.#flush(run);
    run.timer = setTimeout(() => {
      run.timer = undefined;
      if (run.pending.length > 0 && !this.#stopped) this.#flushAndCoolDown(id, run);
      else this.#runs.delete(id);
    }, this.#intervalMs);
    run.timer.unref();
  }

  #flush(run: RunBuffer): void {
    if (run.pending.length === 0) return;
    const head = { o: this.origin, k: run.sessionKey, r: run.requestId, e: run.eventSeq };
    const empty = Buffer.byteLength(JSON.stringify({ ...head, t: [] }));
    let batch: Array<[number, string]> = [];
    let size = empty;
    const send = () => {
      if (batch.length === 0) return;
      const payload = JSON.stringify({ ...head, t: batch });
      batch = [];
      size = empty;
      this.#metrics.relayNotifiesSent += 1;
      this.#db.query("select pg_notify($1, $2)", [Channels.tokens, payload]).catch((error: unknown) => {
        this.#log.warn({ sessionKey: run.sessionKey, err: error }, "token relay notify failed");
      });
    };
    for (const item of run.pending) {
      const itemSize = Buffer.byteLength(JSON.stringify(item)) + 1;
      if (empty + itemSize > this.#maxBytes) {
        this.#log.debug({ sessionKey: run.sessionKey, index: item[0] }, "token too large to relay; skipped");
        continue;
      }
      if (size + itemSize > this.#maxBytes) send();
      batch.push(item);
      size += itemSize;
    }
    send();
    run.pending = [];
  }

  #onNotify(payload: string): void {
    let parsed: z.infer<typeof RelaySchema>;
    try {
      const result = RelaySchema.safeParse(JSON.parse(payload));
      if (!result.success) return;
      parsed = result.data;
    } catch {
      return;
    }
    if (parsed.o === this.origin || !this.#tokens.hasSubscribers(parsed.k)) return;
    for (const [index, text] of parsed.t) {
      this.#metrics.relayTokensReceived += 1;
      this.#tokens.publish(
        { sessionKey: parsed.k, requestId: parsed.r, eventSeq: parsed.e, index, text },
        { local: true },
      );
    }
  }
}
