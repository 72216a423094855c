/**
 * The `sessiond` command line: `sessiond <command> [arguments]`. The table of
 * commands is in commands.ts; this file only dispatches, opens the database
 * for database commands, and turns configuration errors into a clear message
 * and exit code 2.
 */
import { isConnectionError } from "../db/index.js";
import { ConfigError, configFromEnv, pgliteDir } from "../server/config.js";
import { type CliIo, ExitCode } from "./command.js";
import { commands } from "./commands.js";

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = Object.entries(commands).map(([name, spec]) => `  ${name.padEnd(width)}  ${spec.summary}`);
  return [
    "usage: sessiond <command> [arguments]",
    "",
    "commands:",
    ...lines,
    "",
    "Configuration comes from the environment (see docs/configuration.md).",
  ].join("\n");
}

/** Runs one command line; returns the exit code. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    (name === undefined ? io.err : io.out)(usage());
    return name === undefined ? ExitCode.usage : ExitCode.ok;
  }
  const spec = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!spec) {
    io.err(`sessiond: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return ExitCode.usage;
  }
  try {
    if (spec.kind === "standalone") return await (await spec.load())(rest, io);
    const config = configFromEnv(io.env);
    const run = await spec.load();
    const { openDb } = await import("../db/index.js");
    const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: pgliteDir(config), migrate: config.migrate });
    try {
      return await run(db, rest, io.out);
    } finally {
      await db.close();
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      io.err(`sessiond: ${error.message}`);
      return ExitCode.usage;
    }
    io.err(`sessiond ${name}: ${error instanceof Error ? error.message : String(error)}`);
    return ExitCode.failed;
  }
}

/**
 * The process's handler of unhandled rejections. postgres.js 3.4.9 leaves some
 * of its own promises unawaited when a connection dies while it is being set
 * up (its type query on connect): a database connection error that nothing
 * can handle, and no reason to stop serving (found by test/chaos). Anything
 * else still ends the process, as Node would.
 */
export function unhandledRejectionHandler(io: Pick<CliIo, "err">): (reason: unknown) => void {
  return (reason) => {
    if (isConnectionError(reason)) {
      io.err(`sessiond: ignored a database connection error nothing awaited: ${(reason as Error).message}`);
      return;
    }
    throw reason;
  };
}

/** Runs this process's command line (`bin.mjs` calls it) and sets the exit code. */
export async function runProcess(): Promise<void> {
  const io: CliIo = {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
  };
  process.on("unhandledRejection", unhandledRejectionHandler(io));
  process.exitCode = await main(process.argv.slice(2), io);
}

// Run directly (`tsx src/cli/main.ts`, or the tests' transpiled main.js). Not how bin.mjs runs it:
// through npm's link in node_modules/.bin, argv[1] is the link's path, which names neither file.
if (process.argv[1] !== undefined && /[\\/]cli[\\/]main\.[jt]s$/.test(process.argv[1])) await runProcess();
