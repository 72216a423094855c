/**
 * A WebSocket client that behaves the way docs/protocol.md tells clients to,
 * and keeps the books the chaos suites check:
 *
 * - it keeps `lastSeq`, drops every durable frame whose seq is not above it
 *   (counted in `duplicatesDropped`), records any jump past `lastSeq + 1` as a
 *   gap, and acks every frame it keeps;
 * - when its socket closes for any reason it reconnects (to whatever server
 *   `url()` names at that moment) with `?after=<lastSeq>` and resends every
 *   message whose `accepted` it has not seen, with the same requestId;
 * - a message refused with a retryable error (`internal`, `shutting_down`)
 *   is resent after a short pause on the same socket.
 *
 * Nothing in here asserts: the suites read the books at the end.
 */
import WebSocket from "ws";
import type { Rng } from "./prng.js";

export type Frame = { type: string; seq?: number; requestId?: string; [key: string]: unknown };

export interface SentMessage {
  requestId: string;
  text: string;
  /** Date.now() of the first send. */
  sentAt: number;
  /** The event seq from the first `accepted`. */
  eventSeq?: number;
  /** How many frames carried this message (first send + resends). */
  sends: number;
  /** `accepted` frames with `duplicate: true` (a resend of a stored message). */
  duplicateAccepts: number;
  /** Date.now() when its reply (a durable frame for this requestId) arrived. */
  repliedAt?: number;
}

export interface ChaosClientOptions {
  sessionKey: string;
  token: string;
  /** The server to (re)connect to now; undefined while none is up. */
  url: () => string | undefined;
  rng: Rng;
  /** Cap of the reconnect backoff (default 400 ms). */
  maxBackoffMs?: number;
  /** Prefix of this client's requestIds (default: the session key). */
  idPrefix?: string;
}

/** Error codes after which a client resends the same message. */
const RETRYABLE = new Set(["internal", "shutting_down"]);

export class ChaosClient {
  readonly sessionKey: string;
  /** The highest seq kept. */
  lastSeq = 0;
  /** Durable frames kept (after dedupe), in arrival order. */
  readonly durable: Frame[] = [];
  /** Messages sent, by requestId, in send order. */
  readonly sent = new Map<string, SentMessage>();
  /** Reply frames (message, failure, interrupt) kept per requestId. */
  readonly replies = new Map<string, Frame[]>();
  duplicatesDropped = 0;
  /** Jumps in seq (must stay empty). */
  readonly gaps: string[] = [];
  /** Sockets opened. */
  connects = 0;
  /** Close codes seen, in order. */
  readonly closeCodes: number[] = [];
  /** HTTP statuses of refused upgrades. */
  readonly refusals: number[] = [];
  /** Error frames received. */
  readonly errors: Frame[] = [];
  tokens = 0;

  readonly #token: string;
  readonly #url: () => string | undefined;
  /** The base URL #ws was opened to. */
  #wsBase: string | undefined;
  readonly #rng: Rng;
  readonly #maxBackoffMs: number;
  readonly #idPrefix: string;
  #ws: WebSocket | undefined;
  #stopped = false;
  #attempt = 0;
  #reconnect: NodeJS.Timeout | undefined;
  readonly #resends = new Set<NodeJS.Timeout>();
  #counter = 0;
  readonly #listeners = new Set<(frame: Frame) => void>();
  readonly #waiters = new Set<() => void>();

  constructor(options: ChaosClientOptions) {
    this.sessionKey = options.sessionKey;
    this.#token = options.token;
    this.#url = options.url;
    this.#rng = options.rng;
    this.#maxBackoffMs = options.maxBackoffMs ?? 400;
    this.#idPrefix = options.idPrefix ?? options.sessionKey;
  }

  /** Connects (and keeps reconnecting until stop()). */
  start(): void {
    this.#connect();
  }

  get connected(): boolean {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  /** The server URL the open socket was made to (undefined while not connected). */
  get connectedTo(): string | undefined {
    return this.connected ? this.#wsBase : undefined;
  }

  /** Sends a new message now (or on the next connect); returns its requestId. */
  send(text: string): string {
    this.#counter += 1;
    const requestId = `${this.#idPrefix}/m${this.#counter}`;
    const message: SentMessage = { requestId, text, sentAt: Date.now(), sends: 0, duplicateAccepts: 0 };
    this.sent.set(requestId, message);
    this.#sendMessage(message);
    this.#notify();
    return requestId;
  }

  /** Messages sent that have no reply yet. */
  outstanding(): number {
    let n = 0;
    for (const message of this.sent.values()) if (message.repliedAt === undefined) n += 1;
    return n;
  }

  /** Messages with a reply. */
  answered(): number {
    return this.sent.size - this.outstanding();
  }

  /** Calls `listener` with every frame received (duplicates included); returns the unsubscribe. */
  onFrame(listener: (frame: Frame) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once `predicate()` holds (re-checked on every frame and socket change); rejects after `ms`. */
  async until(predicate: () => boolean, options: { ms?: number; what?: string } = {}): Promise<void> {
    const deadline = Date.now() + (options.ms ?? 30_000);
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `${this.sessionKey}: no ${options.what ?? "condition"} within ${options.ms ?? 30_000} ms ` +
            `(sent ${this.sent.size}, answered ${this.answered()}, lastSeq ${this.lastSeq}, connected ${this.connected})`,
        );
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 250));
        this.#waiters.add(done);
      });
    }
  }

  /** Stops reconnecting and closes the socket. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#reconnect);
    for (const timer of this.#resends) clearTimeout(timer);
    this.#resends.clear();
    const ws = this.#ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once("close", () => resolve());
      ws.terminate();
    });
  }

  #connect(): void {
    if (this.#stopped) return;
    const base = this.#url();
    if (!base) {
      this.#scheduleReconnect();
      return;
    }
    const url = `${base.replace(/^http/, "ws")}/v1/sessions/${encodeURIComponent(this.sessionKey)}/ws?after=${this.lastSeq}`;
    const ws = new WebSocket(url, ["sessiond.v1"], {
      headers: { authorization: `Bearer ${this.#token}` },
      handshakeTimeout: 5_000,
    });
    this.#ws = ws;
    this.#wsBase = base;
    ws.on("open", () => {
      this.connects += 1;
      this.#attempt = 0;
      for (const message of this.sent.values()) if (message.eventSeq === undefined) this.#sendMessage(message);
      this.#notify();
    });
    ws.on("message", (data) => {
      let frame: Frame;
      try {
        frame = JSON.parse(data.toString()) as Frame;
      } catch {
        this.errors.push({ type: "client_parse_error", raw: data.toString().slice(0, 200) });
        return;
      }
      this.#onFrame(ws, frame);
    });
    ws.on("unexpected-response", (_request, response) => {
      this.refusals.push(response.statusCode ?? 0);
      response.resume();
      ws.terminate();
    });
    ws.on("error", () => {});
    ws.on("close", (code) => {
      this.closeCodes.push(code);
      if (this.#ws === ws) this.#ws = undefined;
      this.#notify();
      this.#scheduleReconnect();
    });
  }

  #scheduleReconnect(): void {
    if (this.#stopped || this.#reconnect) return;
    this.#attempt += 1;
    const delay = Math.min(this.#maxBackoffMs, 20 * 2 ** Math.min(this.#attempt, 6)) * (0.5 + this.#rng.next() / 2);
    this.#reconnect = setTimeout(() => {
      this.#reconnect = undefined;
      this.#connect();
    }, delay);
  }

  #sendMessage(message: SentMessage): void {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    message.sends += 1;
    ws.send(JSON.stringify({ type: "message", requestId: message.requestId, text: message.text }));
  }

  #onFrame(ws: WebSocket, frame: Frame): void {
    if (typeof frame.seq === "number") {
      if (frame.seq <= this.lastSeq) {
        this.duplicatesDropped += 1;
      } else {
        if (frame.seq !== this.lastSeq + 1) this.gaps.push(`expected seq ${this.lastSeq + 1}, got ${frame.seq}`);
        this.lastSeq = frame.seq;
        this.durable.push(frame);
        if (typeof frame.requestId === "string" && ["message", "failure", "interrupt"].includes(frame.type)) {
          const list = this.replies.get(frame.requestId) ?? [];
          list.push(frame);
          this.replies.set(frame.requestId, list);
          const message = this.sent.get(frame.requestId);
          if (message && message.repliedAt === undefined) message.repliedAt = Date.now();
        }
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ack", seq: frame.seq }));
      }
    } else if (frame.type === "accepted" && typeof frame.requestId === "string") {
      const message = this.sent.get(frame.requestId);
      if (message) {
        if (frame.duplicate === true) message.duplicateAccepts += 1;
        message.eventSeq ??= frame.eventSeq as number;
      }
    } else if (frame.type === "error") {
      this.errors.push(frame);
      const message = typeof frame.requestId === "string" ? this.sent.get(frame.requestId) : undefined;
      if (message && message.eventSeq === undefined && RETRYABLE.has(String(frame.code))) {
        const timer = setTimeout(
          () => {
            this.#resends.delete(timer);
            if (message.eventSeq === undefined) this.#sendMessage(message);
          },
          this.#rng.int(100, 300),
        );
        this.#resends.add(timer);
      }
    } else if (frame.type === "token") {
      this.tokens += 1;
    }
    for (const listener of this.#listeners) listener(frame);
    this.#notify();
  }

  #notify(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}
