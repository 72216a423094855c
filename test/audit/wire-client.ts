/**
 * A minimal Postgres wire-protocol client for the psql-port tests: it sends
 * extended-protocol messages one at a time, which no driver lets a test do,
 * so a test can act between a client's Parse and its Sync.
 */
import { connect, type Socket } from "node:net";

export interface WireMessage {
  type: string;
  body: Buffer;
}

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, "latin1");
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstring = (text: string) => Buffer.from(`${text}\0`, "utf8");
const int16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

export const wire = {
  /** Parse into the unnamed statement, no parameter types. */
  parse: (sql: string) => message("P", Buffer.concat([cstring(""), cstring(sql), int16(0)])),
  /** Bind the unnamed statement to the unnamed portal, no parameters, text results. */
  bind: () => message("B", Buffer.concat([cstring(""), cstring(""), int16(0), int16(0), int16(0)])),
  execute: () => message("E", Buffer.concat([cstring(""), int32(0)])),
  flush: () => message("H", Buffer.alloc(0)),
  /** A simple query (one or more statements). */
  query: (sql: string) => message("Q", cstring(sql)),
  sync: () => message("S", Buffer.alloc(0)),
};

export class WireClient {
  readonly #socket: Socket;
  #buffer = Buffer.alloc(0);
  readonly #messages: WireMessage[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (data: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, data]);
      while (this.#buffer.length >= 5) {
        const length = this.#buffer.readInt32BE(1);
        if (this.#buffer.length < 1 + length) break;
        this.#messages.push({
          type: String.fromCharCode(this.#buffer[0] ?? 0),
          body: this.#buffer.subarray(5, 1 + length),
        });
        this.#buffer = this.#buffer.subarray(1 + length);
      }
      this.#wake?.();
    });
    socket.on("close", () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  /** Connects and completes the startup handshake (user and database postgres). */
  static async connect(port: number): Promise<WireClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(port, "127.0.0.1", () => resolve(s));
      s.once("error", reject);
    });
    const client = new WireClient(socket);
    const params = Buffer.concat([
      cstring("user"),
      cstring("postgres"),
      cstring("database"),
      cstring("postgres"),
      cstring(""),
    ]);
    socket.write(Buffer.concat([int32(8 + params.length), int32(196_608), params]));
    await client.until("Z");
    return client;
  }

  send(...messages: Buffer[]): void {
    this.#socket.write(Buffer.concat(messages));
  }

  /** Resolves with every message received up to and including the first of `type` (rejects after `ms`). */
  async until(type: string, ms = 5000): Promise<WireMessage[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const at = this.#messages.findIndex((m) => m.type === type);
      if (at >= 0) return this.#messages.splice(0, at + 1);
      if (this.#closed) throw new Error(`connection closed before a ${type} message`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type} message within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#socket.write(message("X", Buffer.alloc(0)));
    this.#socket.end();
    await new Promise<void>((resolve) => {
      if (this.#closed) resolve();
      else this.#socket.once("close", () => resolve());
    });
  }
}

/** The text of the first column of each DataRow in `messages`. */
export function firstColumns(messages: WireMessage[]): string[] {
  return messages
    .filter((m) => m.type === "D")
    .map((m) => {
      const length = m.body.readInt32BE(2);
      return m.body.subarray(6, 6 + length).toString("utf8");
    });
}

/** The message of each ErrorResponse in `messages`. */
export function errors(messages: WireMessage[]): string[] {
  return messages
    .filter((m) => m.type === "E")
    .map((m) => {
      const fields = m.body.toString("utf8").split("\0");
      return fields.find((f) => f.startsWith("M"))?.slice(1) ?? "(no message)";
    });
}
