/**
 * One WebSocket client of one session (already authenticated on upgrade).
 *
 * Inbound frames are parsed and rate-limited as they arrive, then handled one
 * at a time in arrival order (so two messages append in the order sent).
 * Every rejected frame gets an error frame and costs a strike; too many
 * strikes in a minute close the socket (4400). Outbound, every frame checks
 * the socket's buffered amount: past the limit the client is too slow and the
 * socket is closed (4408) rather than buffering without bound — the client
 * reconnects and resumes from its last seq. The delivery pump, which can wait,
 * stops at half that limit (`congested`) until the socket has flushed, so a
 * replay of large frames does not cut a client that reads.
 */
import { randomUUID } from "node:crypto";
import type { Duplex } from "node:stream";
import { WebSocket } from "ws";
import { DbError, SqlState } from "../db/index.js";
import type { Logger } from "../session/processor.js";
import { type Runtime, SessionBusyError } from "../session/runtime.js";
import type { ServerConfig } from "./config.js";
import { type DeliveryHub, type DeliveryTarget, type Feed, sessionHead } from "./delivery.js";
import type { Metrics } from "./metrics.js";
import {
  type ClientFrame,
  CloseCode,
  type DurableFrame,
  ErrorCode,
  errorFrame,
  parseClientFrame,
  type ServerFrame,
} from "./protocol.js";
import { TokenBucket } from "./rate-limit.js";

/** Inbound frames waiting to be handled before new ones are refused. */
const MAX_QUEUED_FRAMES = 64;
/** setTimeout's ceiling. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A socket that does not answer a ping within this interval is dropped (dead peers hold no feed). */
export const PING_INTERVAL_MS = 30_000;

export interface ConnectionDeps {
  runtime: Runtime;
  hub: DeliveryHub;
  metrics: Metrics;
  config: ServerConfig;
  logger: Logger & { child?(bindings: object): Logger };
  /** True once the server is shutting down: no new messages are taken. */
  draining(): boolean;
}

/** Maps an append failure to an error frame code; undefined = unexpected. */
export function appendErrorCode(error: unknown): ErrorCode | undefined {
  if (error instanceof SessionBusyError) return ErrorCode.busy;
  if (error instanceof DbError) {
    if (error.code === SqlState.programLimitExceeded) return ErrorCode.tooLarge;
    if (
      error.code === SqlState.checkViolation ||
      error.code === SqlState.invalidParameter ||
      error.code === SqlState.invalidTextRepresentation ||
      error.code === SqlState.characterNotInRepertoire ||
      error.code === SqlState.untranslatableCharacter
    ) {
      return ErrorCode.badFrame;
    }
  }
  return undefined;
}

export class ClientConnection implements DeliveryTarget {
  readonly id = randomUUID();
  readonly sessionKey: string;
  readonly #ws: WebSocket;
  /** The socket under #ws, when known: corked while the pump writes a batch. */
  readonly #socket: Pick<Duplex, "cork" | "uncork"> | undefined;
  readonly #deps: ConnectionDeps;
  readonly #log: Logger;
  readonly #rate: TokenBucket;
  readonly #strikes: TokenBucket;
  /** Absent until a valid cursor is known (a connect `after` beyond the head waits for a resume). */
  #feed: Feed | undefined;
  readonly #unsubscribeTokens: () => void;
  #expiry: NodeJS.Timeout | undefined;
  #ping: NodeJS.Timeout | undefined;
  #alive = true;
  #queue: Promise<void> = Promise.resolve();
  #queued = 0;
  #closed = false;
  #unflushed = 0;
  #flushWaiters: Array<() => void> = [];

  constructor(
    ws: WebSocket,
    sessionKey: string,
    after: number | null,
    expiresAt: number,
    deps: ConnectionDeps,
    socket?: Pick<Duplex, "cork" | "uncork">,
  ) {
    this.#ws = ws;
    this.#socket = socket;
    this.sessionKey = sessionKey;
    this.#deps = deps;
    this.#log = deps.logger.child ? deps.logger.child({ sessionKey, conn: this.id }) : deps.logger;
    this.#rate = new TokenBucket(deps.config.rateLimitBurst, deps.config.rateLimitPerSec);
    this.#strikes = new TokenBucket(deps.config.maxBadFrames, deps.config.maxBadFrames / 60);
    deps.metrics.openSockets += 1;
    this.#unsubscribeTokens = deps.runtime.tokens.subscribe(sessionKey, (token) => {
      if (
        this.#send({
          type: "token",
          requestId: token.requestId,
          eventSeq: token.eventSeq,
          index: token.index,
          text: token.text,
        })
      ) {
        deps.metrics.tokensSent += 1;
      }
    });
    if (after !== null) this.#feed = deps.hub.attach(this, after);
    this.#armExpiry(expiresAt);
    ws.on("pong", () => {
      this.#alive = true;
    });
    this.#ping = setInterval(() => {
      if (!this.#alive) {
        this.#log.info({}, "no pong; dropping the socket");
        this.#ws.terminate();
        this.#cleanup();
        return;
      }
      this.#alive = false;
      if (this.#ws.readyState === WebSocket.OPEN) this.#ws.ping();
    }, PING_INTERVAL_MS);
    this.#ping.unref();
    this.#log.debug({ seq: after }, "socket open");
  }

  /** The connect cursor was beyond the head: say so; nothing is delivered until a valid resume. */
  refuseStart(message: string): void {
    this.#deps.metrics.rejected(ErrorCode.resumeBeyondHead);
    this.#send(errorFrame(ErrorCode.resumeBeyondHead, message));
  }

  get isOpen(): boolean {
    return !this.#closed && this.#ws.readyState === WebSocket.OPEN;
  }

  deliver(frame: DurableFrame): boolean {
    return this.#send(frame);
  }

  flushed(): Promise<void> {
    if (this.#unflushed === 0 || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#flushWaiters.push(resolve));
  }

  get congested(): boolean {
    return this.#ws.bufferedAmount >= this.#deps.config.outboundBufferBytes / 2;
  }

  cork(): void {
    this.#socket?.cork();
  }

  uncork(): void {
    this.#socket?.uncork();
  }

  /** Closes the socket from the server side with `code`. */
  close(code: number, reason: string): void {
    if (this.#closed) return;
    this.#deps.metrics.closed(code);
    this.#log.info({ code, reason }, "closing socket");
    this.#ws.close(code, reason);
    this.#cleanup();
  }

  /** The socket closed (either side). */
  onClose(code: number): void {
    if (!this.#closed) this.#log.debug({ code }, "socket closed by client");
    this.#cleanup();
  }

  /** One inbound WebSocket message. */
  onMessage(data: unknown): void {
    if (this.#closed) return;
    if (typeof data !== "string") {
      this.#reject(ErrorCode.badFrame, "binary frames are not supported; send JSON text");
      return;
    }
    const parsed = parseClientFrame(data);
    if (!parsed.ok) {
      this.#reject(parsed.code, parsed.message);
      return;
    }
    const frame = parsed.frame;
    if ((frame.type === "message" || frame.type === "answer") && !this.#rate.take()) {
      this.#reject(ErrorCode.rateLimited, "too many messages; slow down", frame.requestId);
      return;
    }
    if (this.#queued >= MAX_QUEUED_FRAMES) {
      this.#reject(ErrorCode.rateLimited, "too many frames waiting to be handled; slow down");
      return;
    }
    this.#queued += 1;
    this.#queue = this.#queue.then(async () => {
      try {
        if (!this.#closed) await this.#handle(frame);
      } catch (error) {
        this.#log.error({ err: error, frame: frame.type }, "frame handling failed");
        this.#send(
          errorFrame(ErrorCode.internal, "internal error", "requestId" in frame ? frame.requestId : undefined),
        );
      } finally {
        this.#queued -= 1;
      }
    });
  }

  async #handle(frame: ClientFrame): Promise<void> {
    const { runtime, metrics } = this.#deps;
    switch (frame.type) {
      case "message":
      case "answer": {
        if (this.#deps.draining()) {
          this.#send(errorFrame(ErrorCode.shuttingDown, "the server is shutting down; reconnect", frame.requestId));
          return;
        }
        try {
          const event =
            frame.type === "message"
              ? await runtime.sendMessage({
                  sessionKey: this.sessionKey,
                  requestId: frame.requestId,
                  text: frame.text,
                  ...(frame.strategy ? { strategy: frame.strategy } : {}),
                })
              : await runtime.resume({ sessionKey: this.sessionKey, requestId: frame.requestId, value: frame.value });
          if (event.duplicate) metrics.duplicateEvents += 1;
          else metrics.eventsAppended += 1;
          this.#log.debug({ seq: event.seq, requestId: frame.requestId, duplicate: event.duplicate }, "event appended");
          this.#send({ type: "accepted", requestId: frame.requestId, eventSeq: event.seq, duplicate: event.duplicate });
        } catch (error) {
          const code = appendErrorCode(error);
          if (!code) throw error;
          const message =
            code === ErrorCode.busy
              ? "the session is busy (strategy reject); retry later or use enqueue"
              : code === ErrorCode.tooLarge
                ? "the message is too large"
                : "the message was refused by the database's validation";
          this.#deps.metrics.rejected(code);
          this.#send(errorFrame(code, message, frame.requestId));
        }
        return;
      }
      case "ack": {
        try {
          if (frame.seq > 0) {
            await runtime.db.query("select sessiond.ack_effects($1, $2)", [this.sessionKey, frame.seq]);
          }
        } catch (error) {
          if (error instanceof DbError && error.code === SqlState.invalidParameter) {
            const { head } = await sessionHead(runtime.db, this.sessionKey);
            this.#reject(ErrorCode.ackBeyondHead, `cannot ack seq ${frame.seq}: the session's head is ${head}`);
            return;
          }
          throw error;
        }
        return;
      }
      case "resume": {
        const { head } = await sessionHead(runtime.db, this.sessionKey);
        if (frame.after > head) {
          this.#reject(
            ErrorCode.resumeBeyondHead,
            `cannot resume after seq ${frame.after}: the session's head is ${head}`,
          );
          return;
        }
        this.#send({ type: "resumed", after: frame.after, head });
        if (this.#feed) this.#feed.rewind(frame.after);
        else if (!this.#closed) this.#feed = this.#deps.hub.attach(this, frame.after);
        return;
      }
    }
  }

  #reject(code: ErrorCode, message: string, requestId?: string): void {
    this.#deps.metrics.rejected(code);
    this.#log.debug({ code }, "frame rejected");
    this.#send(errorFrame(code, message, requestId));
    if (!this.#strikes.take()) this.close(CloseCode.abuse, "too many rejected frames");
  }

  #send(frame: ServerFrame): boolean {
    if (!this.isOpen) return false;
    // Encoded once: its length is the check, and ws sends a Buffer as is (a string it would measure and encode again).
    const data = Buffer.from(JSON.stringify(frame));
    if (this.#ws.bufferedAmount + data.length > this.#deps.config.outboundBufferBytes) {
      this.close(CloseCode.slowConsumer, "outbound buffer limit reached; resume later");
      return false;
    }
    this.#unflushed += 1;
    this.#ws.send(data, { binary: false }, () => {
      this.#unflushed -= 1;
      if (this.#unflushed === 0) this.#releaseFlushWaiters();
    });
    return true;
  }

  #releaseFlushWaiters(): void {
    const waiters = this.#flushWaiters;
    this.#flushWaiters = [];
    for (const resolve of waiters) resolve();
  }

  #armExpiry(expiresAt: number): void {
    const delay = expiresAt - Date.now();
    if (delay <= 0) {
      this.close(CloseCode.tokenExpired, "token expired");
      return;
    }
    this.#expiry = setTimeout(() => this.#armExpiry(expiresAt), Math.min(delay, MAX_TIMER_MS));
    this.#expiry.unref();
  }

  #cleanup(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#expiry);
    clearInterval(this.#ping);
    this.#unsubscribeTokens();
    if (this.#feed) this.#deps.hub.detach(this.#feed);
    this.#deps.metrics.openSockets -= 1;
    this.#releaseFlushWaiters();
  }
}
