/**
 * The Hono app: health, metrics, and the session endpoints (WebSocket, HTTP,
 * SSE). Every session route validates the key first, then the origin, then
 * the token, before touching anything else. Errors are JSON bodies shaped like
 * the WebSocket error frame ({type: "error", code, message}) — never a stack.
 */
import { type HttpBindings, upgradeWebSocket } from "@hono/node-server";
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import type { Logger } from "../session/processor.js";
import type { Runtime } from "../session/runtime.js";
import { authorize, tokenFromRequest } from "./auth.js";
import type { ServerConfig } from "./config.js";
import { appendErrorCode, ClientConnection } from "./connection.js";
import { type DeliveryHub, effectFrame, effectsAfter, sessionHead } from "./delivery.js";
import type { Metrics } from "./metrics.js";
import { pageRoutes } from "./page/routes.js";
import {
  AckBodySchema,
  AnswerBodySchema,
  describeIssues,
  ErrorCode,
  errorFrame,
  isSessionKey,
  MessageBodySchema,
} from "./protocol.js";
import { sessionEventStream } from "./sse.js";

type Env = { Variables: { sessionKey: string; expiresAt: number } };

export interface AppDeps {
  runtime: Runtime;
  hub: DeliveryHub;
  metrics: Metrics;
  config: ServerConfig;
  secret: string;
  logger: Logger & { child?(bindings: object): Logger };
  /** Open WebSocket connections (the server closes them on shutdown). */
  connections: Set<ClientConnection>;
  /** Closers of open SSE streams (the server ends them on shutdown). */
  streams: Set<() => void>;
  draining(): boolean;
  /** Readiness checks by name. */
  readiness(): Promise<Record<string, boolean>>;
}

function fail(c: Context, status: ContentfulStatusCode, code: ErrorCode, message: string, requestId?: string) {
  return c.json(errorFrame(code, message, requestId), status);
}

/** The socket of an upgrade request on @hono/node-server (`c.env.incoming`), if this is one. */
function upgradeSocket(c: Context): HttpBindings["incoming"]["socket"] | undefined {
  return (c.env as Partial<HttpBindings> | undefined)?.incoming?.socket;
}

/** Parses a cursor (`after`, `Last-Event-ID`): a whole number ≥ 0, or an error message. */
function parseCursor(value: string | undefined, name: string): number | string | undefined {
  if (value === undefined || value === "") return undefined;
  if (!/^\d{1,15}$/.test(value)) return `${name} must be a whole number ≥ 0`;
  return Number(value);
}

async function readJson<S extends z.ZodType>(
  c: Context,
  schema: S,
): Promise<{ ok: true; value: z.output<S> } | { ok: false; response: Response }> {
  let raw: unknown;
  try {
    raw = JSON.parse(await c.req.text());
  } catch {
    return { ok: false, response: fail(c, 400, ErrorCode.badJson, "the body is not valid JSON") };
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    return { ok: false, response: fail(c, 400, ErrorCode.badFrame, `invalid body: ${describeIssues(parsed.error)}`) };
  }
  return { ok: true, value: parsed.data };
}

export function createApp(deps: AppDeps): Hono<Env> {
  const { runtime, hub, metrics, config, logger } = deps;
  const app = new Hono<Env>();

  app.use(
    "*",
    cors({
      origin: config.allowedOrigins.length > 0 ? config.allowedOrigins : "*",
      allowHeaders: ["Authorization", "Content-Type", "Last-Event-ID"],
      allowMethods: ["GET", "POST", "OPTIONS"],
      maxAge: 600,
    }),
  );

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  app.get("/readyz", async (c) => {
    const checks = await deps.readiness();
    const ready = Object.values(checks).every(Boolean);
    return c.json({ status: ready ? "ready" : "unavailable", checks }, ready ? 200 : 503);
  });

  app.get("/metrics", async (c) =>
    c.body(await metrics.render(runtime.db), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" }),
  );

  // Session routes: key, then origin, then token.
  app.use("/v1/sessions/:key/*", async (c, next) => {
    const sessionKey = c.req.param("key");
    if (!isSessionKey(sessionKey)) {
      return fail(
        c,
        400,
        ErrorCode.badSessionKey,
        "a session key is 1..200 characters of [A-Za-z0-9._:@-], starting with a letter or digit",
      );
    }
    const origin = c.req.header("origin");
    if (origin && config.allowedOrigins.length > 0 && !config.allowedOrigins.includes(origin)) {
      return fail(c, 403, ErrorCode.forbidden, "this origin is not allowed");
    }
    const auth = authorize(
      deps.secret,
      tokenFromRequest(c.req.raw.headers, new URL(c.req.url), c.req.method),
      sessionKey,
    );
    if (!auth.ok) {
      return fail(
        c,
        auth.status,
        auth.code === "forbidden" ? ErrorCode.forbidden : ErrorCode.unauthorized,
        auth.message,
      );
    }
    c.set("sessionKey", sessionKey);
    c.set("expiresAt", auth.expiresAt);
    await next();
  });

  // The browser page, its dev token and the session timeline (after the session middleware).
  app.route("/", pageRoutes({ db: runtime.db, config, secret: deps.secret }));

  const limitBody = bodyLimit({
    maxSize: config.maxPayloadBytes,
    onError: (c) => fail(c, 413, ErrorCode.tooLarge, `the body is larger than ${config.maxPayloadBytes} bytes`),
  });

  app.get("/v1/sessions/:key/ws", async (c) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      return fail(c, 426 as ContentfulStatusCode, ErrorCode.badFrame, "this endpoint needs a WebSocket upgrade");
    }
    const sessionKey = c.get("sessionKey");
    const expiresAt = c.get("expiresAt");
    if (deps.draining()) return fail(c, 503, ErrorCode.shuttingDown, "the server is shutting down");
    const after = parseCursor(c.req.query("after"), "after");
    if (typeof after === "string") return fail(c, 400, ErrorCode.badFrame, after);
    const { head, acked } = await sessionHead(runtime.db, sessionKey);
    // An `after` beyond the head opens the socket but delivers nothing until a valid resume.
    const start = after === undefined ? acked : after <= head ? after : null;
    let connection: ClientConnection | undefined;
    return upgradeWebSocket(
      c,
      {
        onOpen(_event, ws) {
          connection = new ClientConnection(
            ws.raw as import("ws").WebSocket,
            sessionKey,
            start,
            expiresAt,
            { runtime, hub, metrics, config, logger, draining: deps.draining },
            // ws adopts the upgrade request's socket; corking it lets a replay batch leave in one write.
            upgradeSocket(c),
          );
          deps.connections.add(connection);
          if (start === null) {
            connection.refuseStart(`cannot resume after seq ${after}: the session's head is ${head}`);
          }
        },
        onMessage(event) {
          connection?.onMessage(event.data);
        },
        onClose(event) {
          if (event.code === 1009) metrics.rejected(ErrorCode.tooLarge);
          if (connection) {
            connection.onClose(event.code);
            deps.connections.delete(connection);
          }
        },
        onError(event) {
          logger.debug({ sessionKey, err: (event as Event & { error?: unknown }).error }, "socket error");
        },
      },
      { onError: (error: unknown) => logger.error({ sessionKey, err: error }, "socket handler failed") },
    );
  });

  app.post("/v1/sessions/:key/messages", limitBody, async (c) => {
    const body = await readJson(c, MessageBodySchema);
    if (!body.ok) return body.response;
    return append(c, "message", body.value.requestId, () =>
      runtime.sendMessage({
        sessionKey: c.get("sessionKey"),
        requestId: body.value.requestId,
        text: body.value.text,
        ...(body.value.strategy ? { strategy: body.value.strategy } : {}),
      }),
    );
  });

  app.post("/v1/sessions/:key/answers", limitBody, async (c) => {
    const body = await readJson(c, AnswerBodySchema);
    if (!body.ok) return body.response;
    return append(c, "answer", body.value.requestId, () =>
      runtime.resume({ sessionKey: c.get("sessionKey"), requestId: body.value.requestId, value: body.value.value }),
    );
  });

  async function append(
    c: Context<Env>,
    what: string,
    requestId: string,
    run: () => Promise<{ seq: number; duplicate: boolean }>,
  ): Promise<Response> {
    if (deps.draining()) return fail(c, 503, ErrorCode.shuttingDown, "the server is shutting down", requestId);
    try {
      const event = await run();
      if (event.duplicate) metrics.duplicateEvents += 1;
      else metrics.eventsAppended += 1;
      logger.debug({ sessionKey: c.get("sessionKey"), seq: event.seq, requestId, what }, "event appended over HTTP");
      return c.json({ type: "accepted", requestId, eventSeq: event.seq, duplicate: event.duplicate }, 202);
    } catch (error) {
      const code = appendErrorCode(error);
      if (!code) throw error;
      metrics.rejected(code);
      const status = code === ErrorCode.busy ? 409 : code === ErrorCode.tooLarge ? 413 : 400;
      const message =
        code === ErrorCode.busy
          ? "the session is busy (strategy reject); retry later or use enqueue"
          : code === ErrorCode.tooLarge
            ? "the message is too large"
            : "the message was refused by the database's validation";
      return fail(c, status, code, message, requestId);
    }
  }

  app.get("/v1/sessions/:key/messages", async (c) => {
    const sessionKey = c.get("sessionKey");
    const fromQuery = parseCursor(c.req.query("after"), "after");
    if (typeof fromQuery === "string") return fail(c, 400, ErrorCode.badFrame, fromQuery);
    const wantsStream = (c.req.header("accept") ?? "").includes("text/event-stream");
    const fromHeader = wantsStream ? parseCursor(c.req.header("last-event-id"), "Last-Event-ID") : undefined;
    if (typeof fromHeader === "string") return fail(c, 400, ErrorCode.badFrame, fromHeader);
    const after = fromHeader ?? fromQuery ?? 0;
    const beyond = (head: number) =>
      fail(c, 400, ErrorCode.resumeBeyondHead, `cannot read after seq ${after}: the session's head is ${head}`);
    if (wantsStream) {
      const { head } = await sessionHead(runtime.db, sessionKey);
      if (after > head) return beyond(head);
      if (deps.draining()) return fail(c, 503, ErrorCode.shuttingDown, "the server is shutting down");
      const body = sessionEventStream({
        sessionKey,
        after,
        expiresAt: c.get("expiresAt"),
        hub,
        tokens: runtime.tokens,
        metrics,
        outboundBufferBytes: config.outboundBufferBytes,
        signal: c.req.raw.signal,
        open: deps.streams,
      });
      return new Response(body, {
        status: 200,
        headers: {
          "Content-Type": "text/event-stream; charset=utf-8",
          "Cache-Control": "no-cache, no-transform",
          "X-Accel-Buffering": "no",
        },
      });
    }
    const limitParam = c.req.query("limit");
    const limit = limitParam === undefined ? 100 : Number(limitParam);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      return fail(c, 400, ErrorCode.badFrame, "limit must be a whole number from 1 to 1000");
    }
    const rows = await effectsAfter(runtime.db, sessionKey, after, limit);
    // The head is read after the frames, so it is never below the last of them.
    const { head } = await sessionHead(runtime.db, sessionKey);
    if (after > head) return beyond(head);
    return c.json({ after, head, frames: rows.map(effectFrame) });
  });

  app.post("/v1/sessions/:key/ack", limitBody, async (c) => {
    const body = await readJson(c, AckBodySchema);
    if (!body.ok) return body.response;
    const sessionKey = c.get("sessionKey");
    const { head, acked } = await sessionHead(runtime.db, sessionKey);
    if (body.value.seq > head) {
      return fail(c, 400, ErrorCode.ackBeyondHead, `cannot ack seq ${body.value.seq}: the session's head is ${head}`);
    }
    if (body.value.seq <= acked) return c.json({ acked });
    try {
      const [row] = await runtime.db.query<{ acked: number }>("select sessiond.ack_effects($1, $2) as acked", [
        sessionKey,
        body.value.seq,
      ]);
      return c.json({ acked: row?.acked ?? body.value.seq });
    } catch (error) {
      const { head: now } = await sessionHead(runtime.db, sessionKey);
      if (body.value.seq > now) {
        return fail(c, 400, ErrorCode.ackBeyondHead, `cannot ack seq ${body.value.seq}: the session's head is ${now}`);
      }
      throw error;
    }
  });

  app.notFound((c) => fail(c, 404, ErrorCode.notFound, `no route for ${c.req.method} ${new URL(c.req.url).pathname}`));

  app.onError((error, c) => {
    logger.error({ err: error, path: new URL(c.req.url).pathname }, "request failed");
    return fail(c, 500, ErrorCode.internal, "internal error");
  });

  return app;
}
