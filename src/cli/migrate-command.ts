/** `sessiond migrate`: applies the committed migrations to the configured database and exits. */
import { openDb } from "../db/index.js";
import { configFromEnv, pgliteDir } from "../server/config.js";
import { type CliIo, ExitCode } from "./command.js";

export async function runMigrateCommand(argv: string[], io: CliIo): Promise<number> {
  if (argv.length > 0) {
    io.err("usage: sessiond migrate   (the database comes from DATABASE_URL, else SESSIOND_DATA_DIR)");
    return ExitCode.usage;
  }
  const config = configFromEnv(io.env);
  const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: pgliteDir(config), migrate: true });
  await db.close();
  io.out(
    `migrated ${config.databaseUrl ? "the Postgres database (DATABASE_URL)" : `the embedded database in ${pgliteDir(config)}`}`,
  );
  return ExitCode.ok;
}
