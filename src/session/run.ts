/**
 * One LangGraph run over a batch of a session's events (usually one event; a
 * message that interrupted earlier ones brings them along as superseded).
 *
 * The run streams tokens to the TokenBus as the model produces them and
 * collects what must become durable: the new assistant messages (one
 * send_message effect each, whole content, final: true), an interrupt effect
 * when the graph paused for a human, and whatever the graph emitted through
 * emitEffect. Nothing here touches the database except through the
 * checkpointer, which buffers the run's writes until the processor commits.
 */
import { type BaseMessage, HumanMessage, isAIMessage, isBaseMessage } from "@langchain/core/messages";
import { Command } from "@langchain/langgraph";
import type { BaseCheckpointSaver } from "@langchain/langgraph-checkpoint";
import { EFFECTS_CONFIG_KEY, EffectCollector, type PendingEffect } from "../effects/emit.js";
import type { EffectRegistry } from "../effects/registry.js";
import type { SessionEvent } from "../events/index.js";
import { RUN_CONFIG_KEY } from "./checkpointer.js";
import type { TokenBus } from "./token-bus.js";

/** The parts of a compiled LangGraph graph that sessiond uses. */
export interface RunnableGraph {
  checkpointer?: BaseCheckpointSaver | boolean | undefined;
  stream(input: unknown, options: Record<string, unknown>): Promise<AsyncIterable<unknown>>;
  getState(config: { configurable: Record<string, unknown> }): Promise<{ values: unknown }>;
}

export interface RunInput {
  sessionKey: string;
  /** The events of this run, in seq order; the last one is answered. */
  events: SessionEvent[];
  signal: AbortSignal;
  /** The checkpointer's id for this run (beginRun): its writes after the run ended are dropped. */
  runId?: string;
}

export interface RunResult {
  /** Effects for the last event, in order: replies, interrupt, emitted ones. */
  effects: PendingEffect[];
}

/** Thrown for an event sessiond does not know how to feed to a graph. */
export class UnsupportedEventError extends Error {
  readonly code = "unsupported_event";
}

export function messageText(message: BaseMessage): string {
  const content = message.content;
  if (typeof content === "string") return content;
  return content
    .map((part) => (typeof part === "string" ? part : part.type === "text" && "text" in part ? String(part.text) : ""))
    .join("");
}

function messagesOf(values: unknown): BaseMessage[] {
  if (values && typeof values === "object" && "messages" in values && Array.isArray(values.messages)) {
    return values.messages.filter(isBaseMessage);
  }
  return [];
}

/** The graph input for a batch of events. */
function graphInput(events: SessionEvent[]): unknown {
  const last = events[events.length - 1];
  if (!last) throw new Error("empty run");
  if (last.type === "resume") return new Command({ resume: last.payload.value });
  const messages = events.map((event) => {
    if (event.type !== "user_message") {
      throw new UnsupportedEventError(`event type ${JSON.stringify(event.type)} cannot be run by the graph`);
    }
    return new HumanMessage({ content: String(event.payload.text ?? ""), id: `sessiond:${event.seq}` });
  });
  return { messages };
}

export class GraphRunner {
  constructor(
    readonly graph: RunnableGraph,
    readonly tokens: TokenBus,
    readonly registry: EffectRegistry,
  ) {}

  /** Runs the graph for `input.events`; throws on graph/model errors and on abort. */
  async run(input: RunInput): Promise<RunResult> {
    const last = input.events[input.events.length - 1];
    if (!last) throw new Error("empty run");
    const collector = new EffectCollector(this.registry);
    const configurable = {
      thread_id: input.sessionKey,
      [EFFECTS_CONFIG_KEY]: collector,
      ...(input.runId === undefined ? {} : { [RUN_CONFIG_KEY]: input.runId }),
    };
    const stream = await this.graph.stream(graphInput(input.events), {
      configurable,
      streamMode: ["messages", "values"],
      signal: input.signal,
    });
    let index = 0;
    // The first "values" chunk is the state the run starts from (input applied);
    // the last is the state it ends with. A chunk holding `__interrupt__` is not
    // state: it carries the interrupts the graph raised.
    let initial: BaseMessage[] | undefined;
    let final: BaseMessage[] = [];
    const interrupts: unknown[] = [];
    for await (const item of stream) {
      if (!Array.isArray(item)) continue;
      const [mode, chunk] = item as [string, unknown];
      if (mode === "values") {
        if (chunk && typeof chunk === "object" && "__interrupt__" in chunk) {
          const raised = (chunk as { __interrupt__: unknown }).__interrupt__;
          for (const interrupt of Array.isArray(raised) ? raised : [raised]) {
            interrupts.push((interrupt as { value?: unknown } | null)?.value ?? null);
          }
          continue;
        }
        final = messagesOf(chunk);
        initial ??= final;
      } else if (mode === "messages" && Array.isArray(chunk)) {
        const message = chunk[0] as BaseMessage;
        if (isBaseMessage(message) && message.getType() === "ai") {
          const text = messageText(message);
          if (text) {
            this.tokens.publish({
              sessionKey: input.sessionKey,
              requestId: last.requestId,
              eventSeq: last.seq,
              index,
              text,
            });
            index += 1;
          }
        }
      }
    }
    input.signal.throwIfAborted();

    // One send_message per new assistant message, whole content; the last one
    // is the final reply unless the run ended in an interrupt (then that is).
    const replies: string[] = [];
    const before = initial ?? [];
    const seen = new Set(before.map((m) => m.id).filter((id) => id !== undefined));
    for (const [position, message] of final.entries()) {
      const old = message.id !== undefined ? seen.has(message.id) : position < before.length;
      if (old || !isAIMessage(message)) continue;
      const content = messageText(message);
      if (content) replies.push(content);
    }
    const effects: PendingEffect[] = replies.map((content, i) =>
      this.registry.validate("send_message", {
        requestId: last.requestId,
        role: "assistant",
        content,
        final: i === replies.length - 1 && interrupts.length === 0,
      }),
    );
    for (const value of interrupts) {
      effects.push(this.registry.validate("interrupt", { requestId: last.requestId, value }));
    }
    effects.push(...collector.effects);
    return { effects };
  }
}
