/**
 * Raw I/O for the fuzzer: HTTP requests through node:http (the path goes out
 * exactly as written: no URL normalisation of `..` or percent escapes), raw
 * bytes over TCP for requests no HTTP client would send, WebSocket upgrades
 * that report the refusal status, and a WebSocket that sends one hostile frame
 * at a time and waits until the server has handled it.
 */
import { Agent, request as httpRequest } from "node:http";
import { connect } from "node:net";
import WebSocket from "ws";

/** Percent-encodes every byte of `text` (UTF-8; a lone surrogate becomes U+FFFD) but the unreserved ones. */
export function pct(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export interface HttpResult {
  status: number;
  contentType: string;
  body: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 4 });

/**
 * One HTTP request. An event stream is read for `streamMs` and then cut (it
 * would stay open); other bodies are read whole. Rejects after 10 s.
 */
export function http(
  base: string,
  options: {
    method: string;
    path: string;
    headers?: Record<string, string>;
    body?: Buffer | string;
    streamMs?: number;
  },
): Promise<HttpResult> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        agent,
        host: url.hostname,
        port: url.port,
        method: options.method,
        path: options.path,
        headers: options.headers,
        timeout: 10_000,
      },
      (res) => {
        const contentType = String(res.headers["content-type"] ?? "");
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        const done = () =>
          resolve({ status: res.statusCode ?? 0, contentType, body: Buffer.concat(chunks).toString() });
        if (contentType.includes("text/event-stream")) {
          setTimeout(() => {
            done();
            req.destroy();
          }, options.streamMs ?? 20);
          res.on("error", () => {});
        } else {
          res.on("end", done);
          res.on("error", reject);
        }
      },
    );
    req.on("timeout", () =>
      req.destroy(new Error(`no answer within 10 s: ${options.method} ${options.path.slice(0, 100)}`)),
    );
    req.on("error", reject);
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

/**
 * Writes raw bytes to the server and collects what comes back until it
 * closes, until 100 ms pass without more data once something came, or 1 s
 * in all (a server may keep a connection open after answering).
 */
export function rawTcp(base: string, bytes: Buffer | string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString("latin1"));
    };
    let timer = setTimeout(finish, 1_000);
    socket.on("data", (chunk) => {
      chunks.push(chunk);
      clearTimeout(timer);
      timer = setTimeout(finish, 100);
    });
    socket.on("close", finish);
    socket.on("error", finish);
    socket.write(bytes);
  });
}

/** Tries a WebSocket upgrade; resolves with the refusal status, or 101 if it opened (the socket is closed again). */
export function upgrade(
  url: string,
  protocols: string[],
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, protocols, { headers, handshakeTimeout: 10_000 });
    ws.on("open", () => {
      ws.terminate();
      resolve({ status: 101, body: "" });
    });
    ws.on("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() });
        ws.terminate();
      });
    });
    ws.on("error", (error) => resolve({ status: -1, body: String(error) }));
  });
}

/**
 * A WebSocket for one session that sends one frame at a time. After each
 * frame it sends `resume {after: head}` and waits for the `resumed`: frames
 * are handled in order, so by then the server has handled the hostile one
 * (or closed the socket over it). It reopens when closed.
 */
export class FuzzSocket {
  /** Every text the server sent, in order. */
  readonly received: string[] = [];
  /** Close codes, in order. */
  readonly closeCodes: number[] = [];
  head = 0;
  #ws: WebSocket | undefined;
  #resumed = 0;
  #waiters = new Set<() => void>();

  constructor(
    readonly url: string,
    readonly token: string,
  ) {}

  async #open(): Promise<WebSocket> {
    if (this.#ws?.readyState === WebSocket.OPEN) return this.#ws;
    const ws = new WebSocket(`${this.url}?after=${this.head}`, ["sessiond.v1"], {
      headers: { authorization: `Bearer ${this.token}` },
    });
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? `<binary ${(data as Buffer).length}>` : data.toString();
      this.received.push(text);
      try {
        const frame = JSON.parse(text) as { type?: string; seq?: number; head?: number };
        if (typeof frame.seq === "number") this.head = Math.max(this.head, frame.seq);
        if (frame.type === "resumed") {
          this.head = Math.max(this.head, frame.head ?? 0);
          this.#resumed += 1;
        }
      } catch {
        // Kept in `received`; the suite scans it.
      }
      this.#wake();
    });
    ws.on("close", (code) => {
      this.closeCodes.push(code);
      this.#wake();
    });
    ws.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("unexpected-response", (_req, res) => reject(new Error(`fuzz socket refused: ${res.statusCode}`)));
      ws.once("error", reject);
    });
    this.#ws = ws;
    return ws;
  }

  /** Sends one frame and waits until it was handled (or the socket closed over it). */
  async send(data: string | Buffer, binary = false): Promise<void> {
    const ws = await this.#open();
    const before = this.#resumed;
    ws.send(data, { binary });
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "resume", after: this.head }));
    const deadline = Date.now() + 10_000;
    while (this.#resumed === before && ws.readyState !== WebSocket.CLOSED) {
      if (Date.now() > deadline) throw new Error("the server handled no frame for 10 s");
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, 100);
        this.#waiters.add(done);
      });
    }
  }

  close(): void {
    this.#ws?.terminate();
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}
