/**
 * Db over postgres.js. One pool for queries and transactions; postgres.js
 * keeps a dedicated connection for LISTEN and re-LISTENs after a reconnect,
 * calling `onlisten` each time: every call after the first is a reconnect,
 * which is where callers sweep for notifications lost in the gap.
 *
 * Three guards against postgres.js 3.4.9 under connection faults (each found
 * by test/chaos, where pg_terminate_backend hits sessiond's connections):
 * - after backends were terminated, pooled connections can be left unable to
 *   finish connecting again: every statement given to them waits for the
 *   connect timeout, again and again. A connection attempt that times out
 *   (CONNECT_TIMEOUT, after CONNECT_TIMEOUT_S instead of the driver's 30 s)
 *   replaces the whole pool, at most every RECYCLE_MIN_INTERVAL_MS: the old
 *   one is destroyed (its pending statements fail with a connection error)
 *   and the LISTENs move to the new one, each moved LISTEN counting as a
 *   reconnect;
 * - a statement can also stay unanswered with no timer left to fail it (a
 *   write the driver buffered and never sent); with `stuckAfterMs`, one that
 *   waits that long replaces the pool just the same;
 * - a transaction whose connection died must not reach the driver's ROLLBACK
 *   (see transaction());
 * - while a LISTEN connection cannot come back, postgres.js re-issues LISTEN
 *   on every failed attempt and answers all of them once it is back: a burst
 *   of onlisten calls within RECONNECT_SETTLE_MS is one reconnect. And a
 *   channel whose re-LISTEN failed is never LISTENed again by that pool: the
 *   listener would hear nothing more, silently. So after any reconnect, every
 *   channel is checked end to end (a NOTIFY with a check payload that the
 *   listener never sees), and if one hears nothing within LISTEN_CHECK_MS the
 *   pool is replaced.
 */
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { type Db, type Listener, type Queryable, type Row, toDbError } from "./types.js";

export interface PostgresDbOptions {
  /** Pool size (default 10). */
  max?: number;
  /** Application name shown in pg_stat_activity. */
  applicationName?: string;
  /** Seconds before an idle connection is closed (default 0: never). */
  idleTimeout?: number;
  /** Seconds a connection attempt may take (default CONNECT_TIMEOUT_S); a timeout replaces the pool. */
  connectTimeout?: number;
  /**
   * A statement or transaction still pending after this many ms means a wedged
   * pool: it is replaced, which fails what was stuck in it with a connection
   * error. Off by default (a command may run a long query); the server sets it.
   */
  stuckAfterMs?: number;
}

const CONNECT_TIMEOUT_S = 10;
const RECYCLE_MIN_INTERVAL_MS = 5_000;
const RECONNECT_SETTLE_MS = 50;
/** After a reconnect, each LISTEN is checked end to end; one that hears nothing within this is issued anew. */
const LISTEN_CHECK_MS = 1_000;
/** Payload prefix of those checks (never handed to a listener; real payloads are JSON or empty). */
const LISTEN_CHECK_PREFIX = "sessiond-listen-check:";

type Sql = postgres.Sql<Record<string, postgres.PostgresType>>;
type TxSql = postgres.TransactionSql<Record<string, postgres.PostgresType>>;

function queryable(sql: Sql | TxSql, failed: (error: unknown) => unknown = toDbError): Queryable {
  return {
    async query<T = Row>(text: string, params: readonly unknown[] = []): Promise<T[]> {
      try {
        const rows = await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true });
        return rows as unknown as T[];
      } catch (error) {
        throw failed(error);
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
  const open = (): Sql =>
    postgres(url, {
      max: options.max ?? 10,
      idle_timeout: options.idleTimeout ?? 0,
      connect_timeout: options.connectTimeout ?? CONNECT_TIMEOUT_S,
      onnotice: () => {},
      connection: { application_name: options.applicationName ?? "sessiond" },
      types: {
        // int8 as a JS number: seqs and counters stay far below 2^53.
        int8: { to: 20, from: [20], serialize: (v: number | bigint) => String(v), parse: (v: string) => Number(v) },
      },
    }) as unknown as Sql;
  let sql = open();
  let closed = false;
  let recycledAt = 0;
  /** The LISTENs: their channel, the check each awaits, how to move one to the current pool. */
  const listens = new Set<{ channel: string; awaits?: string; move: () => void }>();
  let checking = false;

  /**
   * After a reconnect: NOTIFY every channel a check. When a LISTEN did not
   * hear its own, the pool is replaced: postgres.js keeps the failed LISTEN's
   * state for the channel, and every later LISTEN of it on that pool waits on
   * it. Until the pool can send the checks (it may come back after the LISTEN
   * connection), it tries again every LISTEN_CHECK_MS.
   */
  function checkListens(delay = RECONNECT_SETTLE_MS): void {
    if (checking || closed) return;
    checking = true;
    setTimeout(async () => {
      let done = false;
      try {
        const sent = [...listens];
        for (const listen of sent) {
          listen.awaits = randomUUID();
          await sql.unsafe("select pg_notify($1, $2)", [listen.channel, `${LISTEN_CHECK_PREFIX}${listen.awaits}`]);
        }
        await new Promise((resolve) => setTimeout(resolve, LISTEN_CHECK_MS));
        const deaf = sent.some((listen) => listen.awaits && listens.has(listen));
        // A replaced pool's LISTENs confirm as reconnects, and that checks again.
        if (deaf && !recycle()) checkListens(RECYCLE_MIN_INTERVAL_MS);
        done = true;
      } catch {
        // The pool cannot send yet.
      } finally {
        checking = false;
        if (!done) checkListens(LISTEN_CHECK_MS);
      }
    }, delay).unref();
  }

  /** Replaces the pool (and its LISTEN connection); false when it was replaced too recently. */
  function recycle(): boolean {
    if (closed || Date.now() - recycledAt < RECYCLE_MIN_INTERVAL_MS) return false;
    recycledAt = Date.now();
    const old = sql;
    sql = open();
    old.end({ timeout: 0 }).catch(() => {});
    for (const listen of listens) listen.move();
    return true;
  }

  /** Runs `work`, replacing the pool whenever it has waited another `stuckAfterMs` (see the options). */
  async function watched<T>(work: () => Promise<T>): Promise<T> {
    const after = options.stuckAfterMs;
    if (!after) return work();
    const timer = setInterval(recycle, after);
    try {
      return await work();
    } finally {
      clearInterval(timer);
    }
  }

  /** Wraps a driver error; a connection attempt that timed out replaces the pool. */
  function failed(error: unknown): unknown {
    if ((error as { code?: unknown } | null)?.code === "CONNECT_TIMEOUT") recycle();
    return toDbError(error);
  }

  return {
    kind: "postgres",
    query: (text, params) => watched(() => queryable(sql, failed).query(text, params)),
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      try {
        return (await watched(() =>
          sql.begin(async (tx) => {
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
          }),
        )) as T;
      } catch (error) {
        throw failed(error);
      }
    },
    async listen(channel, onNotify, onReconnect): Promise<Listener> {
      let confirmed = 0;
      let active = true;
      let settle: NodeJS.Timeout | undefined;
      let unlisten: (() => Promise<void>) | undefined;
      const onListen = () => {
        confirmed += 1;
        if (confirmed === 1) return;
        checkListens();
        if (!onReconnect || settle) return;
        settle = setTimeout(() => {
          settle = undefined;
          if (active) onReconnect();
        }, RECONNECT_SETTLE_MS);
      };
      const heard = (payload: string) => {
        if (!payload.startsWith(LISTEN_CHECK_PREFIX)) onNotify(payload);
        else if (payload.slice(LISTEN_CHECK_PREFIX.length) === record.awaits) record.awaits = undefined;
      };
      const attach = async () => {
        const pool = sql;
        const sub = await pool.listen(channel, heard, onListen);
        if (!active) await sub.unlisten().catch(() => {});
        else if (pool !== sql)
          move(); // the pool was replaced meanwhile
        else unlisten = () => sub.unlisten();
      };
      const move = () => {
        attach().catch(() => {
          // The new pool could not LISTEN yet (the database is away): try again shortly.
          if (active) setTimeout(move, 1_000).unref();
        });
      };
      const record: { channel: string; awaits?: string; move: () => void } = { channel, move };
      listens.add(record);
      try {
        await attach();
      } catch (error) {
        listens.delete(record);
        throw error;
      }
      return {
        close: async () => {
          active = false;
          clearTimeout(settle);
          listens.delete(record);
          await unlisten?.();
        },
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      await sql.end({ timeout: 5 });
    },
  };
}
