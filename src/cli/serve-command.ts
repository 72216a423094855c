/**
 * `sessiond serve [--port N] [--host H] [--data-dir D] [--database-url URL]
 * [--log-level L] [--mode notify|poll-only] [--psql-port P]`: runs the server
 * until SIGTERM or SIGINT, then shuts down gracefully (a second signal exits
 * at once).
 *
 * `--psql-port` (or SESSIOND_PSQL_PORT) also exposes the embedded PGlite
 * database to psql on 127.0.0.1 (src/cli/psql-port.ts). It needs the PGlite
 * instance, so in that case this command opens the database itself and hands
 * it to startServer. Shutdown order: the psql port first (rolling back a psql
 * transaction that would otherwise hold the server's drain), then the server,
 * then the database.
 */
import { parseArgs } from "node:util";
import type { Db, PgliteDb } from "../db/index.js";
import { ConfigError, configFromEnv, FLAGS, pgliteDir, type ServerConfig } from "../server/config.js";
import { type SessiondServer, startServer } from "../server/server.js";
import { type CliIo, ExitCode } from "./command.js";
import type { PsqlPort } from "./psql-port.js";

/** Flags of `serve` that are not server configuration, with their environment variable. */
const SERVE_FLAGS = { "psql-port": "SESSIOND_PSQL_PORT" } as const;

export const SERVE_USAGE = `usage: sessiond serve [${[...Object.keys(FLAGS), ...Object.keys(SERVE_FLAGS)]
  .map((flag) => `--${flag} <value>`)
  .join("] [")}]`;

export interface ServeOptions {
  /** Stop when this aborts instead of on SIGTERM/SIGINT (tests, embedding). */
  signal?: AbortSignal;
}

/** The psql port asked for by flag or environment (undefined = none); throws ConfigError. */
function psqlPortOf(flag: string | undefined, env: CliIo["env"], config: ServerConfig): number | undefined {
  const name = flag !== undefined ? "--psql-port" : SERVE_FLAGS["psql-port"];
  const text = (flag ?? env[SERVE_FLAGS["psql-port"]])?.trim();
  if (!text) return undefined;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65_535) {
    throw new ConfigError([{ name, message: `expected a port number 0..65535 (got ${JSON.stringify(text)})` }]);
  }
  if (config.databaseUrl) {
    throw new ConfigError([
      {
        name,
        message: "the psql port exposes the embedded PGlite database; with DATABASE_URL, point psql at that URL",
      },
    ]);
  }
  return Number(text);
}

export async function runServeCommand(argv: string[], io: CliIo, options: ServeOptions = {}): Promise<number> {
  let flags: Record<string, string>;
  try {
    const names = [...Object.keys(FLAGS), ...Object.keys(SERVE_FLAGS)];
    const parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(names.map((flag) => [flag, { type: "string" as const }])),
      strict: true,
      allowPositionals: false,
    });
    flags = parsed.values as Record<string, string>;
  } catch (error) {
    io.err(`sessiond serve: ${(error as Error).message}\n${SERVE_USAGE}`);
    return ExitCode.usage;
  }
  const { "psql-port": psqlFlag, ...configFlags } = flags;
  const config = configFromEnv(io.env, configFlags);
  const psqlPort = psqlPortOf(psqlFlag, io.env, config);

  let db: PgliteDb | undefined;
  let server: SessiondServer;
  let psql: PsqlPort | undefined;
  try {
    if (psqlPort !== undefined) {
      const { openDb } = await import("../db/index.js");
      const opened: Db = await openDb({ dataDir: pgliteDir(config), migrate: config.migrate });
      db = opened as PgliteDb;
    }
    server = await startServer(db ? { ...config, db } : config);
    if (db && psqlPort !== undefined) {
      const { startPsqlPort } = await import("./psql-port.js");
      try {
        psql = await startPsqlPort(db.pglite, { port: psqlPort });
      } catch (error) {
        await server.close({ graceMs: 0 });
        throw error;
      }
    }
  } catch (error) {
    await db?.close();
    throw error;
  }

  const wsUrl = server.url.replace(/^http/, "ws");
  const database = config.databaseUrl ? "Postgres (DATABASE_URL)" : `embedded PGlite in ${pgliteDir(config)}`;
  io.out(`sessiond listening on ${server.url} (database: ${database})`);
  io.out(`  page:      ${server.url}/   (a chat page; on embedded PGlite it gets its own token on localhost)`);
  io.out(`  WebSocket: ${wsUrl}/v1/sessions/<sessionKey>/ws   HTTP: ${server.url}/v1/sessions/<sessionKey>/messages`);
  io.out(`  token:     npx sessiond token <sessionKey>   (send it as "Authorization: Bearer <token>")`);
  if (config.processing) {
    io.out(`  processor: ${server.runtime.owner}   (its leases: lease_owner in sessiond.sessions)`);
  }
  if (psql) {
    io.out(
      `  psql:      psql -h ${psql.host} -p ${psql.port} -U postgres postgres   (shares the server's one PGlite session)`,
    );
  }

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (why: string) => {
      stopping = true;
      io.out(`sessiond: ${why}; shutting down (grace ${config.graceMs} ms)`);
      (async () => {
        await psql?.stop();
        await server.close();
        await db?.close();
      })().then(resolve, (error: unknown) => {
        io.err(`sessiond: shutdown failed: ${(error as Error).message}`);
        resolve();
      });
    };
    if (options.signal) {
      if (options.signal.aborted) stop("stopped");
      else options.signal.addEventListener("abort", () => stop("stopped"), { once: true });
      return;
    }
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        io.err(`sessiond: ${signal} again; exiting now`);
        process.exit(ExitCode.failed);
      }
      stop(signal);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
  return ExitCode.ok;
}
