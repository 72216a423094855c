/**
 * A WebSocket test client over the real `ws` client: records every frame,
 * waits for frames with a deadline (never a sleep), and reports how the
 * socket closed or why the upgrade was refused.
 */
import WebSocket from "ws";

export type Frame = { type: string; seq?: number; requestId?: string; [key: string]: unknown };

export interface ConnectOptions {
  /** Sent as `Authorization: Bearer` unless `via` is "protocol". */
  token?: string;
  via?: "header" | "protocol";
  after?: number;
  origin?: string;
  /** Raw subprotocols (overrides the default `sessiond.v1` [+ bearer]). */
  protocols?: string[];
}

export class TestClient {
  readonly frames: Frame[] = [];
  readonly ws: WebSocket;
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters = new Set<() => void>();

  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.#notify();
      });
    });
    ws.on("message", (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame);
      this.#notify();
    });
    ws.on("error", () => {});
  }

  static url(base: string, sessionKey: string, after?: number): string {
    const query = after === undefined ? "" : `?after=${after}`;
    return `${base.replace(/^http/, "ws")}/v1/sessions/${encodeURIComponent(sessionKey)}/ws${query}`;
  }

  /** Opens a socket; rejects with `{ status }` when the upgrade is refused. */
  static connect(base: string, sessionKey: string, options: ConnectOptions = {}): Promise<TestClient> {
    const protocols =
      options.protocols ??
      (options.via === "protocol" && options.token ? ["sessiond.v1", `bearer.${options.token}`] : ["sessiond.v1"]);
    const headers: Record<string, string> = {};
    if (options.token && options.via !== "protocol") headers.authorization = `Bearer ${options.token}`;
    if (options.origin) headers.origin = options.origin;
    const ws = new WebSocket(TestClient.url(base, sessionKey, options.after), protocols, { headers });
    const client = new TestClient(ws);
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(client));
      ws.once("unexpected-response", (_req, res) => {
        reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode }));
        res.resume();
        ws.terminate();
      });
      ws.once("error", reject);
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** The first frame (from index `from`) matching `predicate`, waiting up to `ms`. */
  async waitFor(
    predicate: (frame: Frame) => boolean,
    options: { ms?: number; from?: number; what?: string } = {},
  ): Promise<Frame> {
    const deadline = Date.now() + (options.ms ?? 20_000);
    let index = options.from ?? 0;
    for (;;) {
      for (; index < this.frames.length; index++) {
        const frame = this.frames[index] as Frame;
        if (predicate(frame)) return frame;
      }
      if (this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(
          `socket closed while waiting for ${options.what ?? "a frame"}; got ${JSON.stringify(this.frames.slice(-5))}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `no ${options.what ?? "matching frame"} within the deadline; last frames: ${JSON.stringify(this.frames.slice(-5))}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        const waiters = this.#waiters;
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  }

  /** Waits for a frame of `type` (and requestId, if given). */
  waitForType(type: string, requestId?: string, ms?: number): Promise<Frame> {
    return this.waitFor((f) => f.type === type && (requestId === undefined || f.requestId === requestId), {
      ...(ms ? { ms } : {}),
      what: `a ${type} frame${requestId ? ` for ${requestId}` : ""}`,
    });
  }

  /** Durable frames (with a seq) received so far, duplicates included. */
  durable(): Frame[] {
    return this.frames.filter((f) => typeof f.seq === "number");
  }

  /** The highest seq received so far (0 if none). */
  lastSeq(): number {
    return Math.max(0, ...this.durable().map((f) => f.seq as number));
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    await this.closed;
  }

  terminate(): Promise<{ code: number; reason: string }> {
    this.ws.terminate();
    return this.closed;
  }

  #notify(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** Expects the upgrade to be refused; returns the HTTP status. */
export async function refusedStatus(promise: Promise<TestClient>): Promise<number> {
  try {
    const client = await promise;
    await client.close();
  } catch (error) {
    const status = (error as { status?: number }).status;
    if (status !== undefined) return status;
    throw error;
  }
  throw new Error("the upgrade was accepted");
}
