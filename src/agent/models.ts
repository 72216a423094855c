/**
 * Choosing the model: one zod schema for the provider config, and a reader
 * that builds that config from the environment. Env errors name the variable
 * (`SESSIOND_MODEL: …`), config errors name the key (`provider: …`); either
 * way the process refuses to start rather than chat with the wrong model.
 */
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { z } from "zod";
import { LocalChatModel } from "./local-model.js";
import { createOpenAiModel } from "./openai.js";

export const ModelConfigSchema = z
  .strictObject({
    provider: z.enum(["local", "openai"]),
    /** Local model only: wait before each token. */
    tokenDelayMs: z.number().int().min(0).max(60_000).optional(),
    baseUrl: z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }).optional(),
    apiKey: z.string().min(1).optional(),
    model: z.string().min(1).optional(),
    maxRetries: z.number().int().min(0).max(10).optional(),
  })
  .superRefine((config, ctx) => {
    if (config.provider === "openai" && config.apiKey === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["apiKey"],
        message: "required for the openai provider (any value for a server that checks none)",
      });
    }
  });

/** Which model to chat with, and how to reach it. */
export type ModelConfig = z.input<typeof ModelConfigSchema>;

/** One problem with a model config: `key` is the config key or the environment variable. */
export interface ModelConfigIssue {
  key: string;
  message: string;
}

/** A model config (or the environment it came from) is invalid. */
export class ModelConfigError extends Error {
  override readonly name = "ModelConfigError";
  readonly issues: readonly ModelConfigIssue[];

  constructor(issues: readonly ModelConfigIssue[]) {
    super(`Invalid model configuration: ${issues.map((i) => `${i.key}: ${i.message}`).join("; ")}`);
    this.issues = issues;
  }
}

/** Validates a model config; throws ModelConfigError naming each bad key. */
export function parseModelConfig(config: unknown): z.output<typeof ModelConfigSchema> {
  const result = ModelConfigSchema.safeParse(config);
  if (result.success) return result.data;
  throw new ModelConfigError(
    result.error.issues.map((issue) => ({ key: issue.path.join(".") || "(config)", message: issue.message })),
  );
}

/** The chat model a config describes. */
export function createModel(config: ModelConfig): BaseChatModel {
  const valid = parseModelConfig(config);
  if (valid.provider === "local") return new LocalChatModel({ tokenDelayMs: valid.tokenDelayMs ?? 0 });
  return createOpenAiModel({
    apiKey: valid.apiKey!,
    ...(valid.baseUrl !== undefined ? { baseUrl: valid.baseUrl } : {}),
    ...(valid.model !== undefined ? { model: valid.model } : {}),
    ...(valid.maxRetries !== undefined ? { maxRetries: valid.maxRetries } : {}),
  });
}

/** Config key → the environment variable it is read from. */
const ENV_NAMES = {
  provider: "SESSIOND_MODEL",
  tokenDelayMs: "SESSIOND_TOKEN_DELAY_MS",
  baseUrl: "OPENAI_BASE_URL",
  apiKey: "OPENAI_API_KEY",
  model: "OPENAI_MODEL",
} as const satisfies Partial<Record<keyof ModelConfig, string>>;

/** Variables whose value must never appear in an error message. */
const SECRET = new Set<string>([ENV_NAMES.apiKey]);

/**
 * Reads the model config from the environment: SESSIOND_MODEL (local|openai,
 * default local), SESSIOND_TOKEN_DELAY_MS, and for openai OPENAI_BASE_URL,
 * OPENAI_API_KEY, OPENAI_MODEL. Empty variables count as unset. Throws
 * ModelConfigError naming the variable of each bad value.
 */
export function modelConfigFromEnv(env: Record<string, string | undefined> = process.env): ModelConfig {
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value ? value : undefined;
  };
  const provider = read(ENV_NAMES.provider) ?? "local";
  const delay = read(ENV_NAMES.tokenDelayMs);
  const raw: Record<string, unknown> = { provider };
  if (delay !== undefined) raw.tokenDelayMs = /^\d+$/.test(delay) ? Number(delay) : Number.NaN;
  if (provider === "openai") {
    for (const key of ["baseUrl", "apiKey", "model"] as const) {
      const value = read(ENV_NAMES[key]);
      if (value !== undefined) raw[key] = value;
    }
  }
  const result = ModelConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new ModelConfigError(
    result.error.issues.map((issue) => {
      const configKey = String(issue.path[0] ?? "");
      const name = configKey in ENV_NAMES ? ENV_NAMES[configKey as keyof typeof ENV_NAMES] : configKey;
      const value = env[name];
      const shown = value === undefined || SECRET.has(name) ? "" : ` (got ${JSON.stringify(value)})`;
      const message =
        configKey === "tokenDelayMs" && Number.isNaN(raw.tokenDelayMs)
          ? "expected a whole number of milliseconds"
          : issue.message;
      return { key: name, message: `${message}${shown}` };
    }),
  );
}
