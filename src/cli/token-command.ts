/**
 * `sessiond token <sessionKey> [--ttl 24h]`: prints a client token for one
 * session, signed with SESSIOND_SECRET (or, in the embedded default, the
 * secret kept in the data directory, created on first use).
 */
import { mkdir } from "node:fs/promises";
import { parseArgs } from "node:util";
import { loadOrCreateSecret, mintToken, parseTtl } from "../server/auth.js";
import { ConfigError, configFromEnv } from "../server/config.js";
import { isSessionKey } from "../server/protocol.js";
import { type CliIo, ExitCode } from "./command.js";

export const TOKEN_USAGE = "usage: sessiond token <sessionKey> [--ttl <seconds | 15m | 24h | 7d>]";

export async function runTokenCommand(argv: string[], io: CliIo): Promise<number> {
  let sessionKey: string;
  let ttlSeconds: number;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ttl: { type: "string", default: "24h" } },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length !== 1) throw new Error("expected exactly one session key");
    sessionKey = positionals[0] as string;
    if (!isSessionKey(sessionKey)) {
      throw new Error("a session key is 1..200 characters of [A-Za-z0-9._:@-], starting with a letter or digit");
    }
    ttlSeconds = parseTtl(values.ttl);
  } catch (error) {
    io.err(`sessiond token: ${(error as Error).message}\n${TOKEN_USAGE}`);
    return ExitCode.usage;
  }
  const config = configFromEnv(io.env);
  let secret = config.secret;
  if (!secret) {
    if (config.databaseUrl) {
      throw new ConfigError([{ name: "SESSIOND_SECRET", message: "required with DATABASE_URL (the servers' secret)" }]);
    }
    await mkdir(config.dataDir, { recursive: true });
    secret = (await loadOrCreateSecret(config.dataDir)).secret;
  }
  io.out(mintToken(secret, sessionKey, { ttlSeconds }));
  return ExitCode.ok;
}
