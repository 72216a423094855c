export { Channels, parseSeqPairs } from "./channels.js";
export { migratePglite, migratePostgres, migrationsFolder, readCommittedMigrations } from "./migrate.js";
export { type OpenDbOptions, openDb } from "./open.js";
export { createPgliteDb, type PgliteDb, type PgliteDbOptions } from "./pglite.js";
export { createPostgresDb, type PostgresDbOptions } from "./postgres.js";
export {
  type Db,
  DbError,
  type DbKind,
  isConnectionError,
  type Listener,
  type Queryable,
  type Row,
  SqlState,
  toDbError,
} from "./types.js";
