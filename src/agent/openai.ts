/**
 * The OpenAI provider: LangChain's ChatOpenAI pointed at any server that
 * speaks OpenAI's Chat Completions API (OpenAI itself, vLLM, llama.cpp,
 * Ollama, LiteLLM, …), with streaming on so tokens flow as they arrive.
 *
 * `useResponsesApi` stays off: compatible servers implement
 * `/v1/chat/completions`, not the Responses API. (ChatOpenAI still switches to
 * the Responses API for a few OpenAI model names, e.g. "*codex*".)
 */
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

/** A streaming ChatOpenAI for an OpenAI-compatible server. */
export function createOpenAiModel(config: OpenAiModelConfig): ChatOpenAI {
  return new ChatOpenAI({
    model: config.model ?? DEFAULT_OPENAI_MODEL,
    apiKey: config.apiKey,
    streaming: true,
    useResponsesApi: false,
    maxRetries: config.maxRetries ?? 2,
    ...(config.timeoutMs !== undefined ? { timeout: config.timeoutMs } : {}),
    ...(config.baseUrl !== undefined ? { configuration: { baseURL: config.baseUrl } } : {}),
  });
}
