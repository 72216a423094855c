/**
 * `sessiond serve [--port N] [--host H] [--data-dir D] [--database-url URL]
 * [--log-level L] [--mode notify|poll-only]`: runs the server until SIGTERM or
 * SIGINT, then shuts down gracefully (a second signal exits at once).
 */
import { parseArgs } from "node:util";
import { configFromEnv, FLAGS, pgliteDir } from "../server/config.js";
import { startServer } from "../server/server.js";
import { type CliIo, ExitCode } from "./command.js";

export const SERVE_USAGE = `usage: sessiond serve [${Object.keys(FLAGS)
  .map((flag) => `--${flag} <value>`)
  .join("] [")}]`;

export async function runServeCommand(argv: string[], io: CliIo): Promise<number> {
  let flags: Record<string, string>;
  try {
    const options = Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: "string" as const }]));
    flags = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string>;
  } catch (error) {
    io.err(`sessiond serve: ${(error as Error).message}\n${SERVE_USAGE}`);
    return ExitCode.usage;
  }
  const config = configFromEnv(io.env, flags);
  const server = await startServer(config);
  const wsUrl = server.url.replace(/^http/, "ws");
  const database = config.databaseUrl ? "Postgres (DATABASE_URL)" : `embedded PGlite in ${pgliteDir(config)}`;
  io.out(`sessiond listening on ${server.url} (database: ${database})`);
  io.out(`  WebSocket: ${wsUrl}/v1/sessions/<sessionKey>/ws   HTTP: ${server.url}/v1/sessions/<sessionKey>/messages`);
  io.out(`  token:     npx sessiond token <sessionKey>   (send it as "Authorization: Bearer <token>")`);

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        io.err(`sessiond: ${signal} again; exiting now`);
        process.exit(ExitCode.failed);
      }
      stopping = true;
      io.out(`sessiond: ${signal}; shutting down (grace ${config.graceMs} ms)`);
      server.close().then(resolve, (error: unknown) => {
        io.err(`sessiond: shutdown failed: ${(error as Error).message}`);
        resolve();
      });
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
  return ExitCode.ok;
}
