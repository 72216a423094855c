/**
 * The bench's WebSocket client: one authenticated socket of one session,
 * speaking sessiond's protocol. Every inbound frame is stamped with
 * performance.now() as the `message` event fires (before JSON parsing), and
 * either resolves the waiter of its requestId (a durable `message`/`failure`)
 * or goes to the socket's frame handler.
 */
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { mintToken } from "../server/auth.js";
import { BEARER_SUBPROTOCOL_PREFIX, type ServerFrame, SUBPROTOCOL } from "../server/protocol.js";

/** A server under test. */
export interface Target {
  /** The mode it stands for in the results ("sessiond", "direct", "sessiond-pglite"). */
  mode: string;
  /** http://127.0.0.1:port */
  url: string;
  secret: string;
  /** The bench host's id of the server. */
  serverId?: string;
}

export interface Reply {
  /** When the durable reply arrived. */
  at: number;
  /** When each token of the reply arrived, by index. */
  tokens: number[];
  frame: ServerFrame;
}

type FrameHandler = (frame: ServerFrame, at: number) => void;

interface Waiter {
  resolve(reply: Reply): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
  tokens: number[];
}

export class BenchSocket {
  readonly sessionKey: string;
  readonly #ws: WebSocket;
  readonly #waiters = new Map<string, Waiter>();
  /** Frames nobody waits for (tokens of unawaited requests, accepted, errors…). */
  onFrame: FrameHandler | undefined;
  closeCode: number | undefined;

  private constructor(ws: WebSocket, sessionKey: string) {
    this.#ws = ws;
    this.sessionKey = sessionKey;
    ws.on("message", (data) => {
      const at = performance.now();
      const frame = JSON.parse(data.toString()) as ServerFrame;
      this.#dispatch(frame, at);
    });
    ws.on("close", (code) => {
      this.closeCode = code;
      for (const [id, waiter] of this.#waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error(`socket closed (${code}) while waiting for ${id}`));
      }
      this.#waiters.clear();
    });
    ws.on("error", () => {});
  }

  /** Opens an authenticated socket of `sessionKey` (optionally resuming after seq `after`). */
  static open(
    target: Target,
    sessionKey: string,
    options: { after?: number; timeoutMs?: number; onFrame?: FrameHandler } = {},
  ): Promise<BenchSocket> {
    const token = mintToken(target.secret, sessionKey, { ttlSeconds: 6 * 3600 });
    const url = new URL(`/v1/sessions/${encodeURIComponent(sessionKey)}/ws`, target.url.replace(/^http/, "ws"));
    if (options.after !== undefined) url.searchParams.set("after", String(options.after));
    const ws = new WebSocket(url, [SUBPROTOCOL, `${BEARER_SUBPROTOCOL_PREFIX}${token}`], {
      perMessageDeflate: false,
      handshakeTimeout: options.timeoutMs ?? 30_000,
    });
    const socket = new BenchSocket(ws, sessionKey);
    if (options.onFrame) socket.onFrame = options.onFrame;
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      ws.once("error", onError);
      ws.once("unexpected-response", (_req, res) => {
        reject(new Error(`upgrade refused: HTTP ${res.statusCode}`));
        res.resume();
      });
      ws.once("open", () => {
        ws.off("error", onError);
        resolve(socket);
      });
    });
  }

  get isOpen(): boolean {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  send(frame: object): void {
    this.#ws.send(JSON.stringify(frame));
  }

  /** Sends a message and resolves with its durable reply (or rejects after `timeoutMs`). */
  ask(requestId: string, text: string, timeoutMs = 60_000): Promise<Reply> {
    const reply = this.expect(requestId, timeoutMs);
    this.send({ type: "message", requestId, text });
    return reply;
  }

  /** Waits for the durable reply to `requestId` (register before sending). */
  expect(requestId: string, timeoutMs = 60_000): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(requestId);
        reject(new Error(`no reply to ${requestId} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.set(requestId, { resolve, reject, timer, tokens: [] });
    });
  }

  /** Closes the socket and resolves once it is closed (or terminated after `ms`). */
  close(ms = 5_000): Promise<void> {
    if (this.#ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#ws.terminate();
        resolve();
      }, ms);
      this.#ws.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.#ws.close(1000);
    });
  }

  #dispatch(frame: ServerFrame, at: number): void {
    if (frame.type === "token") {
      const waiter = this.#waiters.get(frame.requestId);
      if (waiter) {
        waiter.tokens[frame.index] = at;
        return;
      }
    } else if ((frame.type === "message" || frame.type === "failure") && frame.requestId) {
      const waiter = this.#waiters.get(frame.requestId);
      if (waiter) {
        this.#waiters.delete(frame.requestId);
        clearTimeout(waiter.timer);
        if (frame.type === "failure") waiter.reject(new Error(`run failed: ${frame.code}: ${frame.message}`));
        else waiter.resolve({ at, tokens: waiter.tokens, frame });
        this.onFrame?.(frame, at);
        return;
      }
    }
    this.onFrame?.(frame, at);
  }
}

/** Opens `keys.length` sockets, at most `parallel` handshakes at a time. */
export async function openMany(
  target: Target,
  keys: readonly string[],
  options: {
    parallel?: number;
    onProgress?: (opened: number) => void;
    onFrame?: (s: BenchSocket) => FrameHandler;
  } = {},
): Promise<BenchSocket[]> {
  const sockets: BenchSocket[] = [];
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined) {
      const i = next++;
      if (i >= keys.length) return;
      try {
        const socket = await BenchSocket.open(target, keys[i] as string);
        if (options.onFrame) socket.onFrame = options.onFrame(socket);
        sockets[i] = socket;
      } catch (error) {
        failure ??= error;
        return;
      }
      if (i > 0 && i % 500 === 0) options.onProgress?.(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.parallel ?? 100, keys.length) }, worker));
  if (failure !== undefined) {
    await closeAll(sockets.filter(Boolean));
    throw failure;
  }
  return sockets;
}

/** Closes every socket (in parallel batches). */
export async function closeAll(sockets: readonly BenchSocket[], parallel = 500): Promise<void> {
  for (let i = 0; i < sockets.length; i += parallel) {
    await Promise.all(sockets.slice(i, i + parallel).map((s) => s.close()));
  }
}
