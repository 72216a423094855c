/**
 * What a `sessiond` subcommand is. Two shapes:
 * - a database command, `(db, argv, out) => exit code`: the entry point opens
 *   the configured database (DATABASE_URL, else the embedded PGlite in
 *   SESSIOND_DATA_DIR), runs it, and closes the database;
 * - a standalone command, `(argv, io) => exit code`, which does its own setup
 *   (serve, migrate, token).
 * Either is loaded lazily, so `sessiond token` never loads LangChain.
 */
import type { Db } from "../db/index.js";

/** Where a command writes, and the environment it reads. */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  env: Record<string, string | undefined>;
}

export type DbCommandRun = (db: Db, argv: string[], out: (line: string) => void) => Promise<number>;
export type StandaloneCommandRun = (argv: string[], io: CliIo) => Promise<number>;

export type CommandSpec =
  | { kind: "db"; summary: string; load: () => Promise<DbCommandRun> }
  | { kind: "standalone"; summary: string; load: () => Promise<StandaloneCommandRun> };

/** A command that gets an open database. */
export function dbCommand(summary: string, load: () => Promise<DbCommandRun>): CommandSpec {
  return { kind: "db", summary, load };
}

/** A command that sets itself up. */
export function standaloneCommand(summary: string, load: () => Promise<StandaloneCommandRun>): CommandSpec {
  return { kind: "standalone", summary, load };
}

/** Exit codes shared by every command. */
export const ExitCode = { ok: 0, failed: 1, usage: 2 } as const;
