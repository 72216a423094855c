/**
 * Db over postgres.js. One pool for queries and transactions; postgres.js
 * keeps a dedicated connection for LISTEN and re-LISTENs after a reconnect,
 * calling `onlisten` each time: every call after the first is a reconnect,
 * which is where callers sweep for notifications lost in the gap.
 */
import postgres from "postgres";
import { type Db, type Listener, type Queryable, type Row, toDbError } from "./types.js";

export interface PostgresDbOptions {
  /** Pool size (default 10). */
  max?: number;
  /** Application name shown in pg_stat_activity. */
  applicationName?: string;
  /** Seconds before an idle connection is closed (default 0: never). */
  idleTimeout?: number;
}

type Sql = postgres.Sql<Record<string, postgres.PostgresType>>;
type TxSql = postgres.TransactionSql<Record<string, postgres.PostgresType>>;

function queryable(sql: Sql | TxSql): Queryable {
  return {
    async query<T = Row>(text: string, params: readonly unknown[] = []): Promise<T[]> {
      try {
        const rows = await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true });
        return rows as unknown as T[];
      } catch (error) {
        throw toDbError(error);
      }
    },
  };
}

/**
 * The statement failed because its connection closed (or is closing: a FATAL
 * termination): postgres.js rejects the transaction on its own when the
 * connection closes.
 */
function lostConnection(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return false;
  return (
    ["CONNECTION_CLOSED", "CONNECTION_DESTROYED", "CONNECTION_ENDED", "ECONNRESET", "EPIPE"].includes(code) ||
    code === "57P01" ||
    code === "57P02" ||
    code.startsWith("08")
  );
}

/** Opens a Db on a Postgres connection string. */
export function createPostgresDb(url: string, options: PostgresDbOptions = {}): Db {
  const sql: Sql = postgres(url, {
    max: options.max ?? 10,
    idle_timeout: options.idleTimeout ?? 0,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? "sessiond" },
    types: {
      // int8 as a JS number: seqs and counters stay far below 2^53.
      int8: { to: 20, from: [20], serialize: (v: number | bigint) => String(v), parse: (v: string) => Number(v) },
    },
  }) as unknown as Sql;
  const base = queryable(sql);
  let closed = false;
  return {
    kind: "postgres",
    query: base.query,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      try {
        return (await sql.begin(async (tx) => {
          try {
            return await fn(queryable(tx));
          } catch (error) {
            // postgres.js 3.4.9 sends ROLLBACK on the transaction's connection once `fn` throws, even
            // when that connection is gone, and the deferred write then throws from a setImmediate and
            // takes the process down (porsager/postgres#1154, #1208; found by test/chaos). When the
            // connection itself failed, never settle: sql.begin rejects by itself as the connection
            // closes, and nothing is written to a dead socket.
            if (lostConnection(error)) return new Promise<never>(() => {});
            throw error;
          }
        })) as T;
      } catch (error) {
        throw toDbError(error);
      }
    },
    async listen(channel, onNotify, onReconnect): Promise<Listener> {
      let listens = 0;
      const sub = await sql.listen(channel, onNotify, () => {
        listens += 1;
        if (listens > 1) onReconnect?.();
      });
      return { close: () => sub.unlisten() };
    },
    async close() {
      if (closed) return;
      closed = true;
      await sql.end({ timeout: 5 });
    },
  };
}
