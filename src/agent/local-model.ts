/**
 * The built-in local model: a LangChain chat model that needs no network and
 * answers deterministically, so a fresh checkout chats out of the box and the
 * tests can assert exact replies.
 *
 * The reply names itself, echoes the last user message and states its own
 * position in the conversation, so memory across turns is visible from the
 * outside (turn 1 answers "message 2", turn 2 answers "message 4", …).
 *
 * It streams the reply as word-ish tokens through `_streamResponseChunks`
 * (what LangGraph's `streamMode: "messages"` listens to); `_generate` consumes
 * the same stream, so delay, abort and failure behave alike on both paths.
 * An aborted call rejects with LangChain's `ModelAbortError` carrying the
 * partial output — the same error core throws when it notices the abort first.
 */
import type { CallbackManagerForLLMRun } from "@langchain/core/callbacks/manager";
import { ModelAbortError } from "@langchain/core/errors";
import { BaseChatModel, type BaseChatModelParams } from "@langchain/core/language_models/chat_models";
import { AIMessage, AIMessageChunk, type BaseMessage } from "@langchain/core/messages";
import { ChatGenerationChunk, type ChatResult } from "@langchain/core/outputs";
import { lastUserText } from "./history.js";

/** What a behaviour sees of one model call. */
export interface LocalModelTurn {
  /** The history the model was called with. */
  messages: readonly BaseMessage[];
  /** 1 on this model instance's first call, 2 on its second, … */
  call: number;
  signal?: AbortSignal;
}

/** A scripted reply: stream `text`, or fail after streaming `failAfterTokens` of its tokens. */
export interface LocalReply {
  text: string;
  /** Stream this many tokens, then throw `error` (tests of a run dying mid-stream). */
  failAfterTokens?: number;
  error?: Error;
}

/**
 * Replaces the default reply, for tests. Throwing (or rejecting) fails the
 * call before any token streams; returning a string streams that string.
 */
export type LocalModelBehaviour = (turn: LocalModelTurn) => string | LocalReply | Promise<string | LocalReply>;

export interface LocalChatModelOptions extends BaseChatModelParams {
  /** Wait this long before each token (default 0). An abort cuts the wait short. */
  tokenDelayMs?: number;
  behaviour?: LocalModelBehaviour;
}

/** The thrown error of a scripted mid-stream failure that names no error of its own. */
export class LocalModelFailure extends Error {
  override readonly name = "LocalModelFailure";
}

/** The default reply to a history: deterministic, self-describing, history-aware. */
export function localReply(messages: readonly BaseMessage[]): string {
  return `[local model] You said: "${lastUserText(messages)}". (message ${messages.length + 1} in this conversation)`;
}

/**
 * Splits text into word-ish tokens: each token is a run of non-space followed
 * by the space after it (leading space sticks to the first token). The tokens
 * join back into exactly the input.
 */
export function splitTokens(text: string): string[] {
  const tokens = text.match(/\S+\s*/g) ?? [];
  const lead = /^\s+/.exec(text)?.[0] ?? "";
  if (lead) {
    if (tokens.length === 0) return [lead];
    tokens[0] = lead + tokens[0];
  }
  return tokens;
}

/** A network-free, deterministic chat model that streams token by token. */
export class LocalChatModel extends BaseChatModel {
  readonly tokenDelayMs: number;
  readonly #behaviour: LocalModelBehaviour | undefined;
  #calls = 0;

  static override lc_name(): string {
    return "LocalChatModel";
  }

  constructor(options: LocalChatModelOptions = {}) {
    const { tokenDelayMs = 0, behaviour, ...params } = options;
    super(params);
    if (!Number.isFinite(tokenDelayMs) || tokenDelayMs < 0) {
      throw new RangeError(`tokenDelayMs must be a finite number >= 0, got ${tokenDelayMs}`);
    }
    this.tokenDelayMs = tokenDelayMs;
    this.#behaviour = behaviour;
  }

  /** How many times this model has been called. */
  get calls(): number {
    return this.#calls;
  }

  override _llmType(): string {
    return "sessiond-local";
  }

  override async *_streamResponseChunks(
    messages: BaseMessage[],
    options: this["ParsedCallOptions"],
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    const signal = options.signal;
    throwIfAborted(signal, "");
    const call = ++this.#calls;
    const scripted = this.#behaviour ? await this.#behaviour({ messages, call, signal }) : localReply(messages);
    const reply: LocalReply = typeof scripted === "string" ? { text: scripted } : scripted;
    // An empty reply is still a reply: one empty token (LangChain rejects a stream with no chunks).
    const tokens = reply.text === "" ? [""] : splitTokens(reply.text);
    let streamed = "";
    for (const [index, token] of tokens.entries()) {
      if (reply.failAfterTokens !== undefined && index >= reply.failAfterTokens) {
        throw reply.error ?? new LocalModelFailure(`local model failed after ${index} tokens (scripted)`);
      }
      if (this.tokenDelayMs > 0) await abortableDelay(this.tokenDelayMs, signal, streamed);
      throwIfAborted(signal, streamed);
      const chunk = new ChatGenerationChunk({ text: token, message: new AIMessageChunk({ content: token }) });
      streamed += token;
      yield chunk;
      await runManager?.handleLLMNewToken(token, { prompt: 0, completion: index }, undefined, undefined, undefined, {
        chunk,
      });
    }
    if (reply.failAfterTokens !== undefined && reply.failAfterTokens >= tokens.length) {
      throw reply.error ?? new LocalModelFailure(`local model failed after ${tokens.length} tokens (scripted)`);
    }
  }

  override async _generate(
    messages: BaseMessage[],
    options: this["ParsedCallOptions"],
    runManager?: CallbackManagerForLLMRun,
  ): Promise<ChatResult> {
    let text = "";
    for await (const chunk of this._streamResponseChunks(messages, options, runManager)) text += chunk.text;
    return { generations: [{ text, message: new AIMessage({ content: text }) }] };
  }
}

function abortError(partial: string): ModelAbortError {
  return new ModelAbortError(
    "local model call aborted",
    partial ? new AIMessageChunk({ content: partial }) : undefined,
  );
}

function throwIfAborted(signal: AbortSignal | undefined, partial: string): void {
  if (signal?.aborted) throw abortError(partial);
}

function abortableDelay(ms: number, signal: AbortSignal | undefined, partial: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(partial));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(partial));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** True for the errors a model call rejects with when its signal aborts. */
export function isAbortError(error: unknown): boolean {
  return (
    ModelAbortError.isInstance(error) ||
    (error instanceof Error && (error.name === "AbortError" || error.name === "APIUserAbortError"))
  );
}
