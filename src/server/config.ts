/**
 * Server configuration: one zod schema (ServerConfigSchema) for the typed
 * config that startServer takes, and a reader that builds it from environment
 * variables and command-line flags. A wrong value fails at start with a
 * message naming the variable (or flag); docs/configuration.md lists them all.
 */
import { resolve } from "node:path";
import { z } from "zod";
import { type ModelConfig, ModelConfigError, modelConfigFromEnv } from "../agent/models.js";

const int = (min: number, max: number) => z.number().int().min(min).max(max);

export const ServerConfigSchema = z.strictObject({
  /** Postgres URL; absent = embedded PGlite in `<dataDir>/data`. */
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "expected a postgres:// or postgresql:// URL")
    .optional(),
  port: int(0, 65535).default(8787),
  host: z.string().min(1).default("127.0.0.1"),
  /** HMAC secret for session tokens (at least 32 characters). */
  secret: z.string().min(32, "must be at least 32 characters").optional(),
  /** sessiond's own directory: the PGlite data (`data/`) and the generated secret (`secret`). */
  dataDir: z.string().min(1).default(".sessiond"),
  /** Apply the committed migrations at start. */
  migrate: z.boolean().default(true),
  /** Run sessions in this process (off: serve clients only, other processes run). */
  processing: z.boolean().default(true),
  /** The model of the default graph (see src/agent/models.ts). */
  modelConfig: z.custom<ModelConfig>((v) => typeof v === "object" && v !== null).default({ provider: "local" }),
  concurrency: int(1, 10_000).default(16),
  leaseMs: int(100, 3_600_000).default(15_000),
  sweepMs: int(10, 3_600_000).default(2_000),
  /** notify: LISTEN/NOTIFY (default). poll-only: no LISTEN (e.g. behind transaction-mode PgBouncer). */
  mode: z.enum(["notify", "poll-only"]).default("notify"),
  /** Delivery poll interval in poll-only mode. */
  pollMs: int(10, 60_000).default(250),
  /** Shutdown grace for in-flight runs. */
  graceMs: int(0, 600_000).default(10_000),
  /** Largest inbound WebSocket frame or HTTP body. */
  maxPayloadBytes: int(1024, 16 * 1024 * 1024).default(64 * 1024),
  /** Inbound `message`/`answer` frames per second per connection (token bucket refill rate). */
  rateLimitPerSec: z.number().positive().max(100_000).default(5),
  /** Token bucket size: the burst a connection may send at once. */
  rateLimitBurst: int(1, 100_000).default(20),
  /** Rejected frames tolerated per minute before the socket is closed (4400). */
  maxBadFrames: int(1, 100_000).default(20),
  /** Per-socket outbound buffer limit; over it the socket is closed (4408). */
  outboundBufferBytes: int(1024, 1024 * 1024 * 1024).default(1024 * 1024),
  /** Browser origins allowed to open sockets and streams; empty = any. */
  allowedOrigins: z.array(z.string().min(1)).default([]),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type ServerConfig = z.output<typeof ServerConfigSchema>;
export type ServerConfigInput = z.input<typeof ServerConfigSchema>;

/** One problem with the configuration, named by its variable or flag. */
export interface ConfigIssue {
  name: string;
  message: string;
}

/** The configuration is invalid; the message names each bad variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super(`Invalid configuration: ${issues.map((i) => `${i.name}: ${i.message}`).join("; ")}`);
    this.issues = issues;
  }
}

type Kind = "string" | "int" | "number" | "bool" | "list";

/** Environment variable → config key, and how to read it. */
export const ENV_VARS = {
  DATABASE_URL: ["databaseUrl", "string"],
  PORT: ["port", "int"],
  HOST: ["host", "string"],
  SESSIOND_SECRET: ["secret", "string"],
  SESSIOND_DATA_DIR: ["dataDir", "string"],
  SESSIOND_MIGRATE: ["migrate", "bool"],
  SESSIOND_PROCESSING: ["processing", "bool"],
  SESSIOND_CONCURRENCY: ["concurrency", "int"],
  SESSIOND_LEASE_MS: ["leaseMs", "int"],
  SESSIOND_SWEEP_MS: ["sweepMs", "int"],
  SESSIOND_MODE: ["mode", "string"],
  SESSIOND_POLL_MS: ["pollMs", "int"],
  SESSIOND_GRACE_MS: ["graceMs", "int"],
  SESSIOND_MAX_PAYLOAD_BYTES: ["maxPayloadBytes", "int"],
  SESSIOND_RATE_LIMIT: ["rateLimitPerSec", "number"],
  SESSIOND_RATE_BURST: ["rateLimitBurst", "int"],
  SESSIOND_MAX_BAD_FRAMES: ["maxBadFrames", "int"],
  SESSIOND_OUTBOUND_BUFFER_BYTES: ["outboundBufferBytes", "int"],
  SESSIOND_ALLOWED_ORIGINS: ["allowedOrigins", "list"],
  SESSIOND_LOG_LEVEL: ["logLevel", "string"],
} as const satisfies Record<string, readonly [keyof ServerConfigInput, Kind]>;

/** Command-line flags of `sessiond serve` → environment variable. */
export const FLAGS = {
  "database-url": "DATABASE_URL",
  port: "PORT",
  host: "HOST",
  "data-dir": "SESSIOND_DATA_DIR",
  "log-level": "SESSIOND_LOG_LEVEL",
  mode: "SESSIOND_MODE",
} as const satisfies Record<string, keyof typeof ENV_VARS>;

const SECRET_VARS = new Set(["SESSIOND_SECRET", "DATABASE_URL"]);

function convert(kind: Kind, value: string): unknown {
  switch (kind) {
    case "string":
      return value;
    case "int":
      return /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
    case "number":
      return /^\d+(\.\d+)?$/.test(value) ? Number(value) : Number.NaN;
    case "bool":
      if (/^(1|true|on|yes)$/i.test(value)) return true;
      if (/^(0|false|off|no)$/i.test(value)) return false;
      return value;
    case "list":
      return value
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
  }
}

/**
 * Reads the configuration from `env` (and `flags`, named as in FLAGS, which
 * win over the environment). Empty variables count as unset. Throws
 * ConfigError naming every bad variable or flag.
 */
export function configFromEnv(
  env: Record<string, string | undefined> = process.env,
  flags: Partial<Record<keyof typeof FLAGS, string>> = {},
): ServerConfig {
  const merged: Record<string, string | undefined> = { ...env };
  const source: Record<string, string> = {};
  for (const [flag, variable] of Object.entries(FLAGS)) {
    const value = flags[flag as keyof typeof FLAGS];
    if (value !== undefined) {
      merged[variable] = value;
      source[variable] = `--${flag}`;
    }
  }
  const raw: Record<string, unknown> = {};
  const keyToVar = new Map<string, string>();
  for (const [variable, [key, kind]] of Object.entries(ENV_VARS)) {
    keyToVar.set(key, source[variable] ?? variable);
    const value = merged[variable]?.trim();
    if (value) raw[key] = convert(kind, value);
  }
  const issues: ConfigIssue[] = [];
  try {
    raw.modelConfig = modelConfigFromEnv(merged);
  } catch (error) {
    if (!(error instanceof ModelConfigError)) throw error;
    for (const issue of error.issues) issues.push({ name: issue.key, message: issue.message });
  }
  const result = ServerConfigSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const key = String(issue.path[0] ?? "");
      const name = keyToVar.get(key) ?? key;
      const variable = Object.entries(source).find(([, flag]) => flag === name)?.[0] ?? name;
      const given = merged[variable];
      const shown = given === undefined || SECRET_VARS.has(variable) ? "" : ` (got ${JSON.stringify(given)})`;
      const kind = ENV_VARS[variable as keyof typeof ENV_VARS]?.[1];
      const message =
        (kind === "int" || kind === "number") && Number.isNaN(raw[key])
          ? `expected a ${kind === "int" ? "whole " : ""}number`
          : kind === "bool" && typeof raw[key] === "string"
            ? "expected on/off, true/false, 1/0 or yes/no"
            : issue.message;
      issues.push({ name, message: `${message}${shown}` });
    }
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return (result as { data: ServerConfig }).data;
}

/** Cross-field rules of a server (startServer applies them; other commands need not). */
export function checkConfig(config: ServerConfig): ServerConfig {
  if (config.databaseUrl && !config.secret) {
    throw new ConfigError([
      {
        name: "SESSIOND_SECRET",
        message: "required with DATABASE_URL (every process of a deployment must share it; at least 32 characters)",
      },
    ]);
  }
  return config;
}

/** Validates a typed config (startServer's input); errors name the config keys. */
export function parseServerConfig(input: ServerConfigInput): ServerConfig {
  const result = ServerConfigSchema.safeParse(input);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => ({ name: issue.path.join(".") || "(config)", message: issue.message })),
    );
  }
  return checkConfig(result.data);
}

/** Where the embedded PGlite database lives. */
export function pgliteDir(config: Pick<ServerConfig, "dataDir">): string {
  return resolve(config.dataDir, "data");
}
