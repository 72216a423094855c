import { mkdir } from "node:fs/promises";
import { migratePglite, migratePostgres } from "./migrate.js";
import { createPgliteDb } from "./pglite.js";
import { createPostgresDb, type PostgresDbOptions } from "./postgres.js";
import type { Db } from "./types.js";

export interface OpenDbOptions {
  /** A Postgres URL; absent = embedded PGlite. */
  databaseUrl?: string | undefined;
  /** PGlite data directory (absent = in memory). Ignored with databaseUrl. */
  dataDir?: string | undefined;
  /** Apply the committed migrations first (default true). */
  migrate?: boolean;
  postgres?: PostgresDbOptions;
}

/** Opens the configured database and (by default) brings its schema up to date. */
export async function openDb(options: OpenDbOptions): Promise<Db> {
  if (options.databaseUrl) {
    if (options.migrate !== false) await migratePostgres(options.databaseUrl);
    return createPostgresDb(options.databaseUrl, options.postgres);
  }
  if (options.dataDir) await mkdir(options.dataDir, { recursive: true });
  const db = await createPgliteDb(options.dataDir ? { dataDir: options.dataDir } : {});
  if (options.migrate !== false) await migratePglite(db);
  return db;
}
