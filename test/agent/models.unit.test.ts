import { ChatOpenAI } from "@langchain/openai";
import { describe, expect, it } from "vitest";
import {
  createModel,
  DEFAULT_OPENAI_MODEL,
  LocalChatModel,
  ModelConfigError,
  modelConfigFromEnv,
  parseModelConfig,
} from "../../src/agent/index.js";

function configError(fn: () => unknown): ModelConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught, "expected a ModelConfigError").toBeInstanceOf(ModelConfigError);
  return caught as ModelConfigError;
}

describe("modelConfigFromEnv", () => {
  it("defaults to the local model", () => {
    expect(modelConfigFromEnv({})).toEqual({ provider: "local" });
    expect(modelConfigFromEnv({ SESSIOND_MODEL: "", OPENAI_API_KEY: "ignored" })).toEqual({ provider: "local" });
  });

  it("reads the token delay", () => {
    expect(modelConfigFromEnv({ SESSIOND_TOKEN_DELAY_MS: "25" })).toEqual({ provider: "local", tokenDelayMs: 25 });
  });

  it("reads the OpenAI settings", () => {
    expect(
      modelConfigFromEnv({
        SESSIOND_MODEL: "openai",
        OPENAI_BASE_URL: "http://127.0.0.1:8000/v1",
        OPENAI_API_KEY: "sk-test",
        OPENAI_MODEL: "llama-3",
      }),
    ).toEqual({ provider: "openai", baseUrl: "http://127.0.0.1:8000/v1", apiKey: "sk-test", model: "llama-3" });
  });

  it("names SESSIOND_MODEL when the provider is unknown", () => {
    const error = configError(() => modelConfigFromEnv({ SESSIOND_MODEL: "anthropic" }));
    expect(error.issues.map((i) => i.key)).toEqual(["SESSIOND_MODEL"]);
    expect(error.message).toMatch(/^Invalid model configuration: SESSIOND_MODEL: .*"anthropic"/);
  });

  it("names SESSIOND_TOKEN_DELAY_MS when the delay is not a whole number in range", () => {
    for (const value of ["abc", "-5", "1.5", "999999"]) {
      const error = configError(() => modelConfigFromEnv({ SESSIOND_TOKEN_DELAY_MS: value }));
      expect(error.issues.map((i) => i.key)).toEqual(["SESSIOND_TOKEN_DELAY_MS"]);
      expect(error.message).toContain(JSON.stringify(value));
    }
  });

  it("names OPENAI_API_KEY when openai has no key", () => {
    const error = configError(() => modelConfigFromEnv({ SESSIOND_MODEL: "openai" }));
    expect(error.issues.map((i) => i.key)).toEqual(["OPENAI_API_KEY"]);
    expect(error.message).toContain("OPENAI_API_KEY: required");
  });

  it("names OPENAI_BASE_URL when it is not an http(s) URL, and never prints the key", () => {
    const error = configError(() =>
      modelConfigFromEnv({ SESSIOND_MODEL: "openai", OPENAI_BASE_URL: "ftp://x", OPENAI_API_KEY: "sk-secret" }),
    );
    expect(error.issues.map((i) => i.key)).toEqual(["OPENAI_BASE_URL"]);
    expect(error.message).not.toContain("sk-secret");
  });
});

describe("createModel", () => {
  it("makes the local model with its delay", () => {
    const model = createModel({ provider: "local", tokenDelayMs: 7 });
    expect(model).toBeInstanceOf(LocalChatModel);
    expect((model as LocalChatModel).tokenDelayMs).toBe(7);
  });

  it("makes a streaming ChatOpenAI for openai", () => {
    const model = createModel({ provider: "openai", apiKey: "k", baseUrl: "http://127.0.0.1:1/v1" });
    expect(model).toBeInstanceOf(ChatOpenAI);
    expect((model as ChatOpenAI).model).toBe(DEFAULT_OPENAI_MODEL);
    expect((model as ChatOpenAI).streaming).toBe(true);
    expect((createModel({ provider: "openai", apiKey: "k", model: "m-1" }) as ChatOpenAI).model).toBe("m-1");
  });

  it("rejects a bad config, naming each key", () => {
    const error = configError(() => createModel({ provider: "openai", tokenDelayMs: -1, model: "" }));
    expect(error.issues.map((i) => i.key).sort()).toEqual(["apiKey", "model", "tokenDelayMs"]);
    expect(configError(() => parseModelConfig({ provider: "local", extra: 1 })).message).toContain("extra");
    expect(configError(() => parseModelConfig(null)).issues).toHaveLength(1);
  });
});
