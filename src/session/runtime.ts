/**
 * The library's face: `createRuntime({ graph })` gives a durable session
 * runtime over a Db — append messages, watch live tokens, and let the
 * processor (and the effect runner) do the rest.
 */
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import type { BaseCheckpointSaver } from "@langchain/langgraph-checkpoint";
import { compileDefaultGraph } from "../agent/default-graph.js";
import { LocalChatModel } from "../agent/local-model.js";
import { type Db, DbError, openDb, SqlState } from "../db/index.js";
import { createEffectRegistry, type EffectRegistry } from "../effects/registry.js";
import { EffectRunner, type EffectRunnerOptions } from "../effects/runner.js";
import { type AppendedEvent, appendEvent } from "../events/index.js";
import { SessiondCheckpointer } from "./checkpointer.js";
import { type ProcessorOptions, SessionProcessor } from "./processor.js";
import { GraphRunner, type RunnableGraph } from "./run.js";
import { TokenBus } from "./token-bus.js";

/** What to do with a message that arrives while the session is busy. */
export type DoubleTextStrategy = "enqueue" | "reject" | "interrupt";

/** A compiled graph, or a builder with `compile({ checkpointer })`. */
export type GraphLike = RunnableGraph | { compile(options: { checkpointer: BaseCheckpointSaver }): unknown };

/** The processor's options that createRuntime passes through (owner, concurrency, lease, sweep, mode, retries, hooks…). */
export type ProcessingOptions = Omit<ProcessorOptions, "db" | "runner" | "checkpointer">;

export interface RuntimeOptions extends ProcessingOptions {
  /** An open Db (the runtime does not close it). Else databaseUrl/dataDir are used. */
  db?: Db;
  /** Postgres URL; absent (and no db) = embedded PGlite. */
  databaseUrl?: string;
  /** PGlite data directory (absent = in memory). */
  dataDir?: string;
  /** Apply migrations when the runtime opens the database itself (default true). */
  migrate?: boolean;
  /** The LangGraph graph; default: one model node over the history with `model`. */
  graph?: GraphLike;
  /** The model of the default graph (default: the built-in local model). */
  model?: BaseChatModel;
  /** Effect types (default: send_message, error, interrupt). */
  registry?: EffectRegistry;
  /** Default double-texting strategy (default "enqueue"). */
  defaultStrategy?: DoubleTextStrategy;
  /** Run handler effects in this process (default true when the registry has handler types). */
  effectRunner?: boolean | EffectRunnerOptions;
}

/** Thrown when a `reject` message finds its session busy. */
export class SessionBusyError extends Error {
  readonly code = "busy";
  constructor(sessionKey: string) {
    super(`session ${sessionKey} is busy`);
    this.name = "SessionBusyError";
  }
}

export interface SendMessageInput {
  sessionKey: string;
  requestId: string;
  text: string;
  strategy?: DoubleTextStrategy;
}

export interface ResumeInput {
  sessionKey: string;
  requestId: string;
  value: unknown;
}

export interface Runtime {
  readonly db: Db;
  readonly tokens: TokenBus;
  readonly registry: EffectRegistry;
  readonly checkpointer: SessiondCheckpointer;
  readonly processor: SessionProcessor;
  readonly effectRunner: EffectRunner | undefined;
  /** The compiled graph the runtime runs (with the runtime's checkpointer). */
  readonly graph: RunnableGraph;
  readonly owner: string;
  /** Appends a user message (idempotent by requestId); see DoubleTextStrategy. */
  sendMessage(input: SendMessageInput): Promise<AppendedEvent>;
  /** Appends a `resume` event answering the graph's interrupt. */
  resume(input: ResumeInput): Promise<AppendedEvent>;
  start(): Promise<void>;
  /** Stops processing (see SessionProcessor.stop), the effect runner, and the Db if the runtime opened it. */
  stop(options?: { graceMs?: number }): Promise<void>;
}

function compileGraph(graph: GraphLike, checkpointer: SessiondCheckpointer): RunnableGraph {
  if ("compile" in graph && typeof graph.compile === "function") {
    return graph.compile({ checkpointer }) as RunnableGraph;
  }
  const compiled = graph as RunnableGraph;
  compiled.checkpointer = checkpointer;
  return compiled;
}

/** Creates a runtime (not started). */
export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const ownsDb = !options.db;
  const db =
    options.db ??
    (await openDb({ databaseUrl: options.databaseUrl, dataDir: options.dataDir, migrate: options.migrate ?? true }));
  const registry = options.registry ?? createEffectRegistry();
  const tokens = new TokenBus();
  const checkpointer = new SessiondCheckpointer(db);
  const graph = options.graph
    ? compileGraph(options.graph, checkpointer)
    : (compileDefaultGraph(options.model ?? new LocalChatModel(), checkpointer) as unknown as RunnableGraph);
  const {
    db: _db,
    databaseUrl: _url,
    dataDir: _dir,
    migrate: _migrate,
    graph: _graph,
    model: _model,
    registry: _registry,
    defaultStrategy: _strategy,
    effectRunner: _runner,
    ...processing
  } = options;
  const processor = new SessionProcessor({
    ...processing,
    db,
    runner: new GraphRunner(graph, tokens, registry),
    checkpointer,
  });
  const runnerWanted = options.effectRunner ?? registry.handlerTypes().length > 0;
  const effectRunner = runnerWanted
    ? new EffectRunner(db, registry, typeof options.effectRunner === "object" ? options.effectRunner : {})
    : undefined;
  const defaultStrategy = options.defaultStrategy ?? "enqueue";

  return {
    db,
    tokens,
    registry,
    checkpointer,
    processor,
    effectRunner,
    graph,
    owner: processor.owner,
    async sendMessage(input) {
      const strategy = input.strategy ?? defaultStrategy;
      try {
        return await appendEvent(db, {
          sessionKey: input.sessionKey,
          type: "user_message",
          payload: { text: input.text, ...(strategy !== "enqueue" ? { strategy } : {}) },
          requestId: input.requestId,
          onlyIfIdle: strategy === "reject",
        });
      } catch (error) {
        if (error instanceof DbError && error.code === SqlState.lockNotAvailable) {
          throw new SessionBusyError(input.sessionKey);
        }
        throw error;
      }
    },
    resume(input) {
      return appendEvent(db, {
        sessionKey: input.sessionKey,
        type: "resume",
        payload: { value: input.value ?? null },
        requestId: input.requestId,
      });
    },
    async start() {
      await processor.start();
      await effectRunner?.start();
    },
    async stop(stopOptions) {
      await processor.stop(stopOptions);
      await effectRunner?.stop();
      if (ownsDb) await db.close();
    },
  };
}
