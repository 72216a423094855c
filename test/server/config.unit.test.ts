import { describe, expect, it } from "vitest";
import { ConfigError, configFromEnv, parseServerConfig } from "../../src/server/config.js";

function issues(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map((i) => `${i.name}: ${i.message}`);
    throw error;
  }
  throw new Error("no ConfigError");
}

describe("server configuration", () => {
  it("has working defaults with an empty environment", () => {
    const config = configFromEnv({});
    expect(config).toMatchObject({
      port: 8787,
      host: "127.0.0.1",
      dataDir: ".sessiond",
      migrate: true,
      processing: true,
      mode: "notify",
      maxPayloadBytes: 65_536,
      outboundBufferBytes: 1_048_576,
      allowedOrigins: [],
      logLevel: "info",
      modelConfig: { provider: "local" },
    });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.secret).toBeUndefined();
  });

  it("reads every kind of variable, and flags win over the environment", () => {
    const config = configFromEnv(
      {
        PORT: "9000",
        SESSIOND_MIGRATE: "off",
        SESSIOND_RATE_LIMIT: "2.5",
        SESSIOND_ALLOWED_ORIGINS: "https://a.example, https://b.example",
        SESSIOND_MODE: "poll-only",
        SESSIOND_TOKEN_DELAY_MS: "20",
        HOST: "  ",
      },
      { port: "9100", "data-dir": "/tmp/x" },
    );
    expect(config).toMatchObject({
      port: 9100,
      migrate: false,
      rateLimitPerSec: 2.5,
      allowedOrigins: ["https://a.example", "https://b.example"],
      mode: "poll-only",
      dataDir: "/tmp/x",
      host: "127.0.0.1",
      modelConfig: { provider: "local", tokenDelayMs: 20 },
    });
  });

  it("fails fast naming each bad variable (and never echoing secrets)", () => {
    expect(
      issues(() =>
        configFromEnv({
          PORT: "eighty",
          SESSIOND_MIGRATE: "maybe",
          SESSIOND_MODE: "push",
          DATABASE_URL: "mysql://secret@host/db",
          SESSIOND_SECRET: "too-short",
          SESSIOND_MODEL: "gpt",
        }),
      ),
    ).toEqual([
      expect.stringMatching(/^SESSIOND_MODEL: /),
      "DATABASE_URL: expected a postgres:// or postgresql:// URL",
      'PORT: expected a whole number (got "eighty")',
      "SESSIOND_SECRET: must be at least 32 characters",
      'SESSIOND_MIGRATE: expected on/off, true/false, 1/0 or yes/no (got "maybe")',
      expect.stringMatching(/^SESSIOND_MODE: .*\(got "push"\)$/),
    ]);
    expect(issues(() => configFromEnv({}, { port: "70000" }))).toEqual([expect.stringMatching(/^--port: /)]);
  });

  it("a server with DATABASE_URL needs SESSIOND_SECRET", () => {
    expect(issues(() => parseServerConfig({ databaseUrl: "postgres://localhost/x" }))).toEqual([
      expect.stringMatching(/^SESSIOND_SECRET: required with DATABASE_URL/),
    ]);
  });
});
