/**
 * startServer: one process that serves HTTP and WebSocket, runs sessions and
 * delivers effects. Start order: database → runtime → delivery (LISTEN) and
 * token relay → HTTP listener → processing. Shutdown (close): stop accepting,
 * let in-flight runs finish within the grace period (or abort them and release
 * their leases, see SessionProcessor.stop), deliver what they committed, close
 * the sockets with 1012, stop listening, close the database.
 */
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { pino } from "pino";
import { WebSocketServer } from "ws";
import { createModel } from "../agent/models.js";
import { type Db, openDb } from "../db/index.js";
import type { EffectRegistry } from "../effects/registry.js";
import { createRuntime, type GraphLike, type Runtime, type RuntimeOptions } from "../session/runtime.js";
import { createApp } from "./app.js";
import { loadOrCreateSecret, mintToken } from "./auth.js";
import { parseServerConfig, pgliteDir, type ServerConfig, type ServerConfigInput } from "./config.js";
import type { ClientConnection } from "./connection.js";
import { type DeliveryHooks, DeliveryHub } from "./delivery.js";
import { Metrics } from "./metrics.js";
import { CloseCode, SUBPROTOCOL } from "./protocol.js";
import { TokenRelay } from "./token-relay.js";

/** How long /readyz waits for the database to answer `select 1` before it reports it down. */
const READINESS_PROBE_MS = 2_000;
/** A statement of the server's pending this long means a wedged connection pool (see src/db/postgres.ts). */
const DB_STUCK_AFTER_MS = 10_000;

export interface StartServerOptions extends ServerConfigInput {
  /** Use this open database (it is not closed by close()); else one is opened from the config. */
  db?: Db;
  /** The chat model of the default graph; overrides `modelConfig`. */
  model?: BaseChatModel;
  /** A LangGraph graph instead of the default one. */
  graph?: GraphLike;
  registry?: EffectRegistry;
  /** A pino logger (default: a new one at `logLevel`). */
  logger?: pino.Logger;
  /** Extra runtime options (e.g. retryBaseMs, remoteClaimDelayMs). */
  runtimeOptions?: Partial<
    Omit<RuntimeOptions, "db" | "model" | "graph" | "registry" | "isLocal" | "hooks" | "logger">
  >;
  /** Rows per delivery query (default 1,000). @internal */
  deliveryBatchSize?: number;
  /** @internal test seams of the delivery pump. */
  deliveryHooks?: DeliveryHooks;
}

export interface SessiondServer {
  /** http://host:port */
  readonly url: string;
  readonly port: number;
  readonly config: ServerConfig;
  readonly runtime: Runtime;
  readonly metrics: Metrics;
  /** Mints a token for a session key with this server's secret. */
  mintToken(sessionKey: string, ttlSeconds?: number): string;
  /** Graceful shutdown (idempotent); `graceMs` overrides the configured grace for runs. */
  close(options?: { graceMs?: number }): Promise<void>;
}

export function createLogger(level: ServerConfig["logLevel"]): pino.Logger {
  return pino({ level, base: { service: "sessiond", pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}

function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** Starts a sessiond server; resolves once it listens. */
export async function startServer(options: StartServerOptions = {}): Promise<SessiondServer> {
  const {
    db: givenDb,
    model,
    graph,
    registry,
    logger: givenLogger,
    runtimeOptions,
    deliveryBatchSize,
    deliveryHooks,
    ...configInput
  } = options;
  const config = parseServerConfig(configInput);
  const logger = givenLogger ?? createLogger(config.logLevel);
  const ownsDb = !givenDb;

  let secret = config.secret;
  if (!secret) {
    const { mkdir } = await import("node:fs/promises");
    await mkdir(config.dataDir, { recursive: true });
    const loaded = await loadOrCreateSecret(config.dataDir);
    secret = loaded.secret;
    if (loaded.created) logger.info({ dataDir: config.dataDir }, "generated a token secret in the data directory");
  }

  const db =
    givenDb ??
    (await openDb({
      databaseUrl: config.databaseUrl,
      dataDir: pgliteDir(config),
      migrate: config.migrate,
      postgres: { applicationName: "sessiond", stuckAfterMs: DB_STUCK_AFTER_MS },
    }));
  const cleanups: Array<() => Promise<void>> = [];
  if (ownsDb) cleanups.push(() => db.close());

  try {
    const metrics = new Metrics();
    const hub = new DeliveryHub({
      db,
      metrics,
      logger,
      mode: config.mode,
      pollMs: config.pollMs,
      ...(deliveryBatchSize ? { batchSize: deliveryBatchSize } : {}),
      ...(deliveryHooks ? { hooks: deliveryHooks } : {}),
    });
    const runtime = await createRuntime({
      ...runtimeOptions,
      db,
      model: model ?? createModel(config.modelConfig),
      ...(graph ? { graph } : {}),
      ...(registry ? { registry } : {}),
      concurrency: config.concurrency,
      leaseMs: config.leaseMs,
      sweepMs: config.sweepMs,
      mode: config.mode,
      logger,
      isLocal: (sessionKey) => hub.hasSubscribers(sessionKey),
      hooks: {
        onRunStart: () => {
          metrics.runsStarted += 1;
        },
        beforeCommit: (sessionKey) => hub.commitStarting(sessionKey),
        onCommitted: (sessionKey) => {
          metrics.runsCommitted += 1;
          // This process's own subscribers read the run's effects now, not when its NOTIFY comes
          // back; the NOTIFY still wakes other processes, and a feed that already read them skips it.
          hub.committedLocally(sessionKey);
        },
      },
    });
    cleanups.unshift(() => runtime.stop({ graceMs: 0 }));

    await hub.start();
    cleanups.unshift(() => hub.stop());
    const relay = new TokenRelay({ db, tokens: runtime.tokens, metrics, logger });
    const relayWanted = db.kind === "postgres" && config.mode === "notify";
    await relay.start({ send: relayWanted && config.processing, receive: relayWanted });
    cleanups.unshift(() => relay.stop());

    const connections = new Set<ClientConnection>();
    const streams = new Set<() => void>();
    let draining = false;
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: config.maxPayloadBytes,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    const app = createApp({
      runtime,
      hub,
      metrics,
      config,
      secret,
      logger,
      connections,
      streams,
      draining: () => draining,
      async readiness() {
        // Bounded: while the database refuses connections, the driver queues a query
        // behind its reconnect backoff (up to 20 s), and /readyz must say "not ready" now.
        let timer: NodeJS.Timeout | undefined;
        const databaseProbe = Promise.race([
          runtime.db.query("select 1").then(
            () => true,
            () => false,
          ),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(false), READINESS_PROBE_MS);
          }),
        ]);
        // The LISTEN connection is checked end to end: it may be down (and the driver still
        // trying to re-LISTEN) while the pool answers, and then nothing is pushed to clients.
        const [database, notified] = await Promise.all([databaseProbe, hub.listenerAlive(READINESS_PROBE_MS)]);
        clearTimeout(timer);
        return {
          database,
          listener: notified && hub.listening && (!config.processing || runtime.processor.listening),
          accepting: !draining,
        };
      },
    });
    const server = createAdaptorServer({ fetch: app.fetch, websocket: { server: wss } });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    const url = `http://${hostForUrl(config.host)}:${port}`;
    cleanups.unshift(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          if ("closeAllConnections" in server) server.closeAllConnections();
        }),
    );
    if (config.processing) await runtime.start();
    logger.info(
      { url, database: db.kind, processing: config.processing, mode: config.mode, owner: runtime.owner },
      "sessiond listening",
    );

    let closing: Promise<void> | undefined;
    const close = async (closeOptions: { graceMs?: number } = {}) => {
      draining = true;
      // Stop accepting connections; open ones keep going until the runs settle.
      if ("closeIdleConnections" in server) server.closeIdleConnections();
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      await runtime.stop({ graceMs: closeOptions.graceMs ?? config.graceMs });
      // Deliver what the last runs committed before saying goodbye.
      hub.wakeAll();
      await hub.idle(2_000);
      for (const connection of connections) connection.close(CloseCode.serviceRestart, "server shutting down");
      connections.clear();
      for (const closeStream of [...streams]) closeStream();
      wss.close();
      if ("closeAllConnections" in server) server.closeAllConnections();
      await stopped;
      await relay.stop();
      await hub.stop();
      if (ownsDb) await db.close();
      logger.info({ url }, "sessiond stopped");
    };

    return {
      url,
      port,
      config,
      runtime,
      metrics,
      mintToken: (sessionKey, ttlSeconds) =>
        mintToken(secret, sessionKey, ttlSeconds !== undefined ? { ttlSeconds } : {}),
      close(closeOptions) {
        closing ??= close(closeOptions);
        return closing;
      },
    };
  } catch (error) {
    for (const cleanup of cleanups) await cleanup().catch(() => {});
    throw error;
  }
}
