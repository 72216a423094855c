/**
 * Server-Sent Events: the durable frames of a session (and its live tokens)
 * for clients without WebSocket. Each durable frame is one event whose `id` is
 * its seq, so EventSource resumes with `Last-Event-ID` by itself; tokens carry
 * no id (they do not move the resume point). The stream is a ReadableStream
 * with a byte budget: a reader that falls behind by more than the outbound
 * buffer limit is cut off, like a slow WebSocket.
 */

import type { TokenBus } from "../session/token-bus.js";
import type { DeliveryHub, DeliveryTarget, Feed } from "./delivery.js";
import type { Metrics } from "./metrics.js";
import type { DurableFrame, ServerFrame } from "./protocol.js";

const HEARTBEAT_MS = 15_000;
const encoder = new TextEncoder();

export interface SseOptions {
  sessionKey: string;
  after: number;
  expiresAt: number;
  hub: DeliveryHub;
  tokens: TokenBus;
  metrics: Metrics;
  outboundBufferBytes: number;
  /** Aborted when the HTTP request goes away. */
  signal: AbortSignal;
  /** Open streams: the stream adds its closer while open (the server ends them on shutdown). */
  open: Set<() => void>;
}

/** Formats one SSE event. */
export function sseEvent(frame: ServerFrame): string {
  const id = "seq" in frame ? `id: ${frame.seq}\n` : "";
  return `${id}event: ${frame.type}\ndata: ${JSON.stringify(frame)}\n\n`;
}

class SseTarget implements DeliveryTarget {
  readonly sessionKey: string;
  controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  closed = false;
  readonly #limit: number;
  readonly #onClose: () => void;
  #drainWaiters: Array<() => void> = [];

  constructor(sessionKey: string, limit: number, onClose: () => void) {
    this.sessionKey = sessionKey;
    this.#limit = limit;
    this.#onClose = onClose;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  deliver(frame: DurableFrame): boolean {
    return this.write(sseEvent(frame));
  }

  write(text: string): boolean {
    const controller = this.controller;
    if (this.closed || !controller) return false;
    const bytes = encoder.encode(text);
    // desiredSize = highWaterMark − queued bytes: below −limit the reader is too slow.
    if ((controller.desiredSize ?? 0) - bytes.byteLength < -this.#limit) {
      this.close();
      return false;
    }
    controller.enqueue(bytes);
    return true;
  }

  /** Half the limit queued: the delivery pump waits for the reader before sending more. */
  get congested(): boolean {
    return (this.controller?.desiredSize ?? 0) <= -this.#limit / 2;
  }

  flushed(): Promise<void> {
    if (this.closed || (this.controller?.desiredSize ?? 1) > 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** The reader pulled: the queue drained below its high-water mark. */
  drained(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.controller?.close();
    } catch {
      // already closed or errored by the reader going away
    }
    this.drained();
    this.#onClose();
  }
}

/** A text/event-stream body for one session from cursor `after`. */
export function sessionEventStream(options: SseOptions): ReadableStream<Uint8Array> {
  let feed: Feed | undefined;
  let unsubscribe: (() => void) | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let expiry: NodeJS.Timeout | undefined;
  const closer = () => target.close();
  const target = new SseTarget(options.sessionKey, options.outboundBufferBytes, () => {
    options.open.delete(closer);
    clearInterval(heartbeat);
    clearTimeout(expiry);
    unsubscribe?.();
    if (feed) options.hub.detach(feed);
    options.metrics.openStreams -= 1;
  });
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        target.controller = controller;
        options.metrics.openStreams += 1;
        options.open.add(closer);
        controller.enqueue(
          encoder.encode(`retry: 2000\n: sessiond stream of ${options.sessionKey} after ${options.after}\n\n`),
        );
        unsubscribe = options.tokens.subscribe(options.sessionKey, (token) => {
          target.write(
            sseEvent({
              type: "token",
              requestId: token.requestId,
              eventSeq: token.eventSeq,
              index: token.index,
              text: token.text,
            }),
          );
        });
        heartbeat = setInterval(() => target.write(": ping\n\n"), HEARTBEAT_MS);
        heartbeat.unref();
        const untilExpiry = options.expiresAt - Date.now();
        expiry = setTimeout(() => target.close(), Math.min(Math.max(untilExpiry, 0), 2 ** 31 - 1));
        expiry.unref();
        options.signal.addEventListener("abort", () => target.close(), { once: true });
        if (options.signal.aborted) {
          target.close();
          return;
        }
        feed = options.hub.attach(target, options.after);
      },
      pull() {
        target.drained();
      },
      cancel() {
        target.close();
      },
    },
    { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength },
  );
}
