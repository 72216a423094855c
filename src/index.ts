/**
 * sessiond — a durable session runtime for LangGraph chat agents whose whole
 * truth lives in Postgres. This module is the library's face: named
 * re-exports only.
 *
 * @example
 * ```ts
 * import { createRuntime } from "sessiond";
 * const runtime = await createRuntime({ graph, databaseUrl: process.env.DATABASE_URL });
 * await runtime.start();
 * await runtime.sendMessage({ sessionKey: "user-42", requestId: crypto.randomUUID(), text: "Hello" });
 * ```
 */

/** The default graph, the built-in local model, the OpenAI-compatible provider and the model factory. */
export {
  compileDefaultGraph,
  createDefaultGraph,
  createModel,
  createOpenAiModel,
  LocalChatModel,
} from "./agent/index.js";
/** The audit helpers behind `sessiond verify` and `sessiond audit` (docs/audit.md). */
export { sessionSummary, stuck, timeline, verify } from "./audit/index.js";
/** Types of the Db interface. */
export type { Db, DbKind, Listener, Queryable } from "./db/index.js";
/** The Db interface and its two drivers (postgres.js and embedded PGlite), and migrations. */
/** A database error with its SQLSTATE, and the SQLSTATEs sessiond raises. */
/** NOTIFY channel names. */
export {
  Channels,
  createPgliteDb,
  createPostgresDb,
  DbError,
  migratePglite,
  migratePostgres,
  openDb,
  SqlState,
} from "./db/index.js";
/** Effect types. */
export type {
  EffectContext,
  EffectDefinition,
  EffectHandler,
  EffectRecord,
  EffectRunnerOptions,
} from "./effects/index.js";
/** The effect registry and its built-in client types (send_message, error, interrupt). */
/** Emits an effect from a graph node or tool; it commits with the run. */
/** The effect runner (handler effects: retries, backoff, dead letter) and the built-in webhook effect. */
/** Operator calls: retry a dead effect, list effects by status. */
export {
  createEffectRegistry,
  EffectRegistry,
  EffectRunner,
  EffectValidationError,
  emitEffect,
  listEffects,
  PermanentEffectError,
  retryEffect,
  webhookEffect,
} from "./effects/index.js";
/** Event types. */
export type { AppendEventInput, AppendedEvent, SessionEvent } from "./events/index.js";
/** Append and read events directly (thin calls of sessiond.append_event). */
export { appendEvent, readEvents } from "./events/index.js";
/** Server types. */
export type { ServerConfig, SessiondServer, StartServerOptions } from "./server/index.js";
/**
 * Starts the sessiond server in this process: HTTP + WebSocket (docs/protocol.md), session
 * processing and effect delivery, on Postgres or embedded PGlite. Returns its URL and close().
 */
/** Mint and verify the HMAC-signed tokens that bind a client to one session key. */
export { mintToken, startServer, verifyToken } from "./server/index.js";
/** A LangGraph checkpointer (BaseCheckpointSaver) over a sessiond Db, with per-run write buffering. */
export { SessiondCheckpointer } from "./session/checkpointer.js";
/** The processor, for embedding without createRuntime. @internal */
export { SessionProcessor } from "./session/processor.js";
/** Options of createRuntime, the Runtime itself, and the inputs of its calls. */
export type {
  DoubleTextStrategy,
  GraphLike,
  ResumeInput,
  Runtime,
  RuntimeOptions,
  SendMessageInput,
} from "./session/runtime.js";
/**
 * Creates a runtime over a database: append messages, watch live tokens; a
 * processor runs the graph for each session's events in order, exactly once,
 * and commits checkpoint, effects and cursor in one transaction.
 */
/** Thrown by Runtime.sendMessage with strategy "reject" while the session is busy. */
export { createRuntime, SessionBusyError } from "./session/runtime.js";
/** One streamed token of an assistant reply. */
export type { TokenFrame } from "./session/token-bus.js";
/** In-process pub/sub of live tokens by session key. */
export { TokenBus } from "./session/token-bus.js";
