/**
 * The `direct` baseline of the bench: what a non-durable chat server would
 * do with the same graph. It speaks sessiond's WebSocket protocol (same path,
 * subprotocol, bearer token, frames) and runs the same compiled default graph
 * through the same GraphRunner and TokenBus, but keeps no events, effects or
 * checkpoint rows: the conversation lives in LangGraph's in-memory saver, the
 * seqs are in-memory counters, a reply is sent the moment the run ends, acks
 * are accepted and ignored, and `resume` replays nothing (nothing is kept).
 *
 * Per session, runs are serialised (like sessiond's lease), so a session's
 * replies come in the order its messages were sent. There is no concurrency
 * limit across sessions and no database: the difference between this server
 * and sessiond is the price of durability.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { MemorySaver } from "@langchain/langgraph";
import { type WebSocket, WebSocketServer } from "ws";
import { compileDefaultGraph } from "../agent/default-graph.js";
import { createEffectRegistry } from "../effects/registry.js";
import type { SessionEvent } from "../events/index.js";
import { authorize, tokenFromRequest } from "../server/auth.js";
import { effectFrame } from "../server/delivery.js";
import {
  type ClientFrame,
  CloseCode,
  ErrorCode,
  errorFrame,
  isSessionKey,
  parseClientFrame,
  type ServerFrame,
  SUBPROTOCOL,
} from "../server/protocol.js";
import { GraphRunner, type RunnableGraph } from "../session/run.js";
import { TokenBus } from "../session/token-bus.js";

export interface DirectServerOptions {
  model: BaseChatModel;
  /** The token secret (the same one the sessiond server under test uses). */
  secret: string;
  host?: string;
  port?: number;
}

export interface DirectServer {
  readonly url: string;
  readonly port: number;
  /** Open sockets. */
  readonly sockets: number;
  close(): Promise<void>;
}

interface DirectSession {
  eventSeq: number;
  effectSeq: number;
  /** The tail of this session's run queue. */
  queue: Promise<void>;
  sockets: Set<WebSocket>;
}

const WS_PATH = /^\/v1\/sessions\/([^/]+)\/ws$/;

function headersOf(req: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === "string") headers.set(name, value);
    else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
  }
  return headers;
}

function refuse(socket: import("node:stream").Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify(errorFrame(code as ErrorCode, message));
  socket.end(
    `HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Starts a direct-mode server on loopback (port 0 = any free port). */
export async function startDirectServer(options: DirectServerOptions): Promise<DirectServer> {
  const graph = compileDefaultGraph(options.model, new MemorySaver()) as unknown as RunnableGraph;
  const tokens = new TokenBus();
  const runner = new GraphRunner(graph, tokens, createEffectRegistry());
  const sessions = new Map<string, DirectSession>();
  const sockets = new Set<WebSocket>();

  const sessionOf = (key: string): DirectSession => {
    let session = sessions.get(key);
    if (!session) {
      session = { eventSeq: 0, effectSeq: 0, queue: Promise.resolve(), sockets: new Set() };
      sessions.set(key, session);
    }
    return session;
  };

  const send = (ws: WebSocket, frame: ServerFrame) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
  };
  const broadcast = (session: DirectSession, frame: ServerFrame) => {
    for (const ws of session.sockets) send(ws, frame);
  };

  async function run(key: string, session: DirectSession, event: SessionEvent): Promise<void> {
    const controller = new AbortController();
    try {
      const { effects } = await runner.run({ sessionKey: key, events: [event], signal: controller.signal });
      for (const effect of effects) {
        if (effect.delivery !== "client") continue;
        session.effectSeq += 1;
        broadcast(
          session,
          effectFrame({
            seq: session.effectSeq,
            event_seq: event.seq,
            type: effect.type,
            payload: effect.payload,
            created_at: new Date(),
          }),
        );
      }
    } catch (error) {
      session.effectSeq += 1;
      broadcast(session, {
        type: "failure",
        seq: session.effectSeq,
        eventSeq: event.seq,
        requestId: event.requestId,
        code: "run_failed",
        message: error instanceof Error ? error.message.slice(0, 2000) : String(error),
      });
    }
  }

  function handle(ws: WebSocket, key: string, session: DirectSession, frame: ClientFrame): void {
    switch (frame.type) {
      case "message":
      case "answer": {
        session.eventSeq += 1;
        const event: SessionEvent = {
          id: randomUUID(),
          sessionKey: key,
          seq: session.eventSeq,
          type: frame.type === "message" ? "user_message" : "resume",
          payload: frame.type === "message" ? { text: frame.text } : { value: frame.value ?? null },
          requestId: frame.requestId,
          createdAt: new Date(),
        };
        send(ws, { type: "accepted", requestId: frame.requestId, eventSeq: event.seq, duplicate: false });
        session.queue = session.queue.then(() => run(key, session, event));
        return;
      }
      case "ack":
        return;
      case "resume":
        send(ws, { type: "resumed", after: frame.after, head: session.effectSeq });
        return;
    }
  }

  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  const server = createServer((req, res) => {
    res.writeHead(404, { "Content-Type": "application/json" });
    res.end(JSON.stringify(errorFrame(ErrorCode.notFound, `no route for ${req.method} ${req.url}`)));
  });
  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url ?? "/", "http://direct");
    const match = WS_PATH.exec(url.pathname);
    const key = match ? decodeURIComponent(match[1] as string) : "";
    if (!match || !isSessionKey(key)) {
      refuse(socket, 404, ErrorCode.notFound, "no such endpoint");
      return;
    }
    const auth = authorize(options.secret, tokenFromRequest(headersOf(req), url, "GET"), key);
    if (!auth.ok) {
      refuse(socket, auth.status, auth.code, auth.message);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const session = sessionOf(key);
      sockets.add(ws);
      session.sockets.add(ws);
      const unsubscribe = tokens.subscribe(key, (token) =>
        send(ws, {
          type: "token",
          requestId: token.requestId,
          eventSeq: token.eventSeq,
          index: token.index,
          text: token.text,
        }),
      );
      ws.on("message", (data, isBinary) => {
        if (isBinary) {
          send(ws, errorFrame(ErrorCode.badFrame, "binary frames are not supported; send JSON text"));
          return;
        }
        const parsed = parseClientFrame(data.toString());
        if (!parsed.ok) send(ws, errorFrame(parsed.code, parsed.message));
        else handle(ws, key, session, parsed.frame);
      });
      ws.on("close", () => {
        unsubscribe();
        sockets.delete(ws);
        session.sockets.delete(ws);
      });
      ws.on("error", () => {});
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${options.host ?? "127.0.0.1"}:${port}`,
    port,
    get sockets() {
      return sockets.size;
    },
    close() {
      closing ??= (async () => {
        for (const ws of sockets) ws.close(CloseCode.serviceRestart, "server shutting down");
        wss.close();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
        for (const ws of sockets) ws.terminate();
        await Promise.allSettled([...sessions.values()].map((s) => s.queue));
      })();
      return closing;
    },
  };
}
