/**
 * The OpenAI provider: LangChain's ChatOpenAI pointed at any server that
 * speaks OpenAI's Chat Completions API (OpenAI itself, vLLM, llama.cpp,
 * Ollama, LiteLLM, …), with streaming on so tokens flow as they arrive.
 *
 * `useResponsesApi` stays off: compatible servers implement
 * `/v1/chat/completions`, not the Responses API. (ChatOpenAI still switches to
 * the Responses API for a few OpenAI model names, e.g. "*codex*".)
 *
 * Every call streams, `invoke` included: `_generate` gathers the streamed
 * chunks itself. ChatOpenAI's own streaming `_generate` estimates token usage
 * with tiktoken, which downloads its encoding from tiktoken.pages.dev (with
 * retries): without internet that stalls every reply for minutes. The server's
 * own usage report (`stream_options.include_usage`) still reaches the message.
 */
import type { CallbackManagerForLLMRun } from "@langchain/core/callbacks/manager";
import type { BaseMessage } from "@langchain/core/messages";
import type { ChatGenerationChunk, ChatResult } from "@langchain/core/outputs";
import { ChatOpenAI } from "@langchain/openai";

export interface OpenAiModelConfig {
  /** The API root including `/v1`, e.g. `http://127.0.0.1:8000/v1` (default: OpenAI's). */
  baseUrl?: string;
  /** Any non-empty string for servers that check none. */
  apiKey: string;
  /** Default {@link DEFAULT_OPENAI_MODEL}. */
  model?: string;
  /** Retries of a failed request (5xx, 429, network), with backoff; default 2. */
  maxRetries?: number;
  /** Per-request timeout in milliseconds (default: the client's). */
  timeoutMs?: number;
}

export const DEFAULT_OPENAI_MODEL = "gpt-4o-mini";

/** ChatOpenAI whose every call streams and never goes to the network for anything but the reply. */
export class StreamingChatOpenAI extends ChatOpenAI {
  static override lc_name(): string {
    return "StreamingChatOpenAI";
  }

  override async _generate(
    messages: BaseMessage[],
    options: this["ParsedCallOptions"],
    runManager?: CallbackManagerForLLMRun,
  ): Promise<ChatResult> {
    let reply: ChatGenerationChunk | undefined;
    for await (const chunk of this._streamResponseChunks(messages, options, runManager)) {
      reply = reply ? reply.concat(chunk) : chunk;
    }
    if (!reply) throw new Error("the model server sent an empty reply");
    return { generations: [reply] };
  }

  /** ChatOpenAI's own withConfig builds a plain ChatOpenAI; keep this class. */
  override withConfig(config: Partial<this["ParsedCallOptions"]>) {
    const model = new StreamingChatOpenAI(this.fields);
    model.defaultOptions = { ...this.defaultOptions, ...config };
    return model;
  }
}

/** A streaming ChatOpenAI for an OpenAI-compatible server. */
export function createOpenAiModel(config: OpenAiModelConfig): ChatOpenAI {
  return new StreamingChatOpenAI({
    model: config.model ?? DEFAULT_OPENAI_MODEL,
    apiKey: config.apiKey,
    streaming: true,
    useResponsesApi: false,
    maxRetries: config.maxRetries ?? 2,
    ...(config.timeoutMs !== undefined ? { timeout: config.timeoutMs } : {}),
    ...(config.baseUrl !== undefined ? { configuration: { baseURL: config.baseUrl } } : {}),
  });
}
