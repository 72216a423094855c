/**
 * The small database interface everything in sessiond talks to. Two
 * implementations: postgres.js (a DATABASE_URL) and PGlite (embedded).
 */

/** A row as a plain object keyed by column name. */
export type Row = Record<string, unknown>;

/** Anything that runs a parameterised statement: the database or an open transaction. */
export interface Queryable {
  /** Runs one parameterised statement ($1, $2, …) and returns its rows. */
  query<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
}

/** A subscription to a NOTIFY channel. */
export interface Listener {
  /** Stops listening. */
  close(): Promise<void>;
}

export type DbKind = "postgres" | "pglite";

/** The database: queries, transactions, LISTEN, close. */
export interface Db extends Queryable {
  readonly kind: DbKind;
  /**
   * Runs `fn` in one transaction: commits when it resolves, rolls back when it
   * throws (and rethrows). NOTIFYs sent inside reach listeners only on commit.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * LISTENs on `channel` (a plain lowercase name). `onNotify` gets each payload.
   * `onReconnect` fires after the listener connection was lost and LISTEN was
   * issued again: notifications sent in the gap are lost, so sweep there.
   */
  listen(channel: string, onNotify: (payload: string) => void, onReconnect?: () => void): Promise<Listener>;
  /** Closes every connection. Idempotent. */
  close(): Promise<void>;
}

/** A database error with its SQLSTATE, whichever driver raised it. */
export class DbError extends Error {
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DbError";
    this.code = code;
  }
}

/** SQLSTATEs sessiond's functions raise on purpose. */
export const SqlState = {
  checkViolation: "23514",
  uniqueViolation: "23505",
  notNullViolation: "23502",
  invalidParameter: "22023",
  programLimitExceeded: "54000",
  objectNotInPrerequisiteState: "55000",
  lockNotAvailable: "55P03",
  invalidTextRepresentation: "22P02",
  /** A NUL character in a text value (Postgres text cannot hold one). */
  characterNotInRepertoire: "22021",
  /** `\u0000` in a jsonb value. */
  untranslatableCharacter: "22P05",
} as const;

/** Wraps a driver error as a DbError when it carries a SQLSTATE. */
export function toDbError(error: unknown): unknown {
  if (error instanceof DbError) return error;
  if (error instanceof Error && "code" in error && typeof (error as { code: unknown }).code === "string") {
    const code = (error as { code: string }).code;
    if (/^[0-9A-Z]{5}$/.test(code)) return new DbError(error.message, code, { cause: error });
  }
  return error;
}

/** Driver error codes (postgres.js, Node sockets) of a connection that failed or was lost. */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
]);

/**
 * True when `error` says the database could not be reached (or dropped the
 * connection), not that the statement failed: SQLSTATE class 08, an
 * administrator or crash shutdown (57P01..57P03), too many connections
 * (53300), a database that refuses connections, or a driver/socket error.
 * Such an error is the infrastructure's, and whatever was attempted can be
 * redone once the database is back.
 */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string") return false;
  if (CONNECTION_CODES.has(code)) return true;
  if (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "53300")
    return true;
  // ALTER DATABASE … ALLOW_CONNECTIONS false: raised at connection start with a generic SQLSTATE.
  return code === "55000" && /is not currently accepting connections/.test(error.message);
}
