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
 * - a connection's first act is an array-type query the driver never awaits:
 *   a connection destroyed or terminated during it is an unhandled rejection
 *   (which ends a Node process by default). A pool asks once: after its first
 *   answered statement it fetches no more, and a replacing pool is given the
 *   array types its predecessor learnt instead of asking;
 * - while a LISTEN connection cannot come back, postgres.js re-issues LISTEN
 *   on every failed attempt and answers all of them once it is back: a burst
 *   of onlisten calls within RECONNECT_SETTLE_MS is one reconnect. And a
 *   channel whose re-LISTEN failed is never LISTENed again by that pool: the
 *   listener would hear nothing more, silently. So after any reconnect, every
 *   channel is checked end to end (a NOTIFY with a check payload that the
 *   listener never sees), and if one hears nothing within LISTEN_CHECK_MS the
 *   pool is replaced.
 * - a connection the server refuses closes cleanly, and the driver's backoff
 *   counts only closes with a socket error: it retried every few ms, a
 *   backend forked per attempt; and on one path it reconnects without asking
 *   its backoff at all (hundreds of attempts a second). All connections of a
 *   Db (pools, lanes, replacements) get their sockets from one
 *   connectionPacer() instead, which spaces attempts by the streak of quick
 *   closes; a pool's end stops its factory, so that a reconnect still waiting
 *   for its turn does not open a connection after the pool is gone.
 *
 * Transactions never share the query pool. sql.begin there can hand BEGIN to
 * a connection busy with pipelined plain statements: when that BEGIN fills the
 * pipeline (or the socket pushes back) the driver skips reserving the
 * connection, fails with UNSAFE_TRANSACTION and leaves the connection inside a
 * transaction block, so plain statements sent to it later are never committed
 * (porsager/postgres#823, #1189, #1207; seen under `sessiond bench`); and a
 * socket `drain` can hand a reserved connection back to the pool mid-
 * transaction. So each transaction runs alone on a lane: a one-connection
 * postgres.js instance that this module hands to one transaction at a time
 * (up to `transactionLanes` of them, opened on first use). Nothing else can
 * ever be sent on a lane's connection while a transaction holds it.
 */
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { connectionPacer, type PacedSockets } from "./reconnect-backoff.js";
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
  /**
   * How many one-connection lanes transactions run on, beside the pool
   * (default: a quarter of `max`, at least 1). A transaction waits for a free lane.
   */
  transactionLanes?: number;
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
  const max = options.max ?? 10;
  const laneCount = Math.max(1, options.transactionLanes ?? Math.ceil(max / 4));
  /** Paces the connection attempts of every pool and lane of this Db together. */
  const pacer = connectionPacer();
  /** Each pool's socket factory, stopped when the pool is ended (endPool). */
  const factories = new WeakMap<Sql, PacedSockets>();
  const endPool = (pool: Sql, timeout: number): Promise<void> => {
    factories.get(pool)?.stop();
    return pool.end({ timeout });
  };
  /** A pool that has answered a statement: its connections fetched the array types (see learnTypes). */
  let typed: Sql | undefined;
  const open = (size: number): Sql => {
    const sockets = pacer.sockets();
    // (The driver's `socket` option is missing from its typings.)
    const paced = { socket: sockets };
    const pool = postgres(url, {
      max: size,
      idle_timeout: options.idleTimeout ?? 0,
      connect_timeout: options.connectTimeout ?? CONNECT_TIMEOUT_S,
      // Every connection attempt of this Db is paced there (see the file); the driver waits for nothing.
      ...paced,
      backoff: () => 0,
      // Types learnt by an earlier pool are copied in below instead of fetched on every connect.
      fetch_types: typed === undefined,
      onnotice: () => {},
      connection: { application_name: options.applicationName ?? "sessiond" },
      types: {
        // int8 as a JS number: seqs and counters stay far below 2^53.
        int8: { to: 20, from: [20], serialize: (v: number | bigint) => String(v), parse: (v: string) => Number(v) },
      },
    }) as unknown as Sql;
    factories.set(pool, sockets);
    if (typed) {
      Object.assign(pool.options.parsers, typed.options.parsers);
      Object.assign(pool.options.serializers, typed.options.serializers);
      Object.assign(shared(pool).typeArrayMap, shared(typed).typeArrayMap);
    }
    return pool;
  };
  /** The driver's per-pool state that array parameters consult (not in its typings). */
  const shared = (pool: Sql) =>
    (pool.options as unknown as { shared: { typeArrayMap: Record<number, number> } }).shared;
  /**
   * After a statement answered on `pool`, its array types are known (a connection runs
   * nothing before its type query has answered): no later connection of the pool asks again.
   */
  const learnTypes = (pool: Sql) => {
    if (!pool.options.fetch_types) return;
    pool.options.fetch_types = false;
    typed ??= pool;
  };
  let sql = open(max);
  let closed = false;
  /** Lanes of the current generation (a recycle starts a new one), idle ones and how many exist. */
  let generation = 0;
  const idleLanes: Array<{ sql: Sql; generation: number }> = [];
  const busyLanes = new Set<{ sql: Sql; generation: number }>();
  let lanes = 0;
  const laneWaiters: Array<{ resolve: (lane: { sql: Sql; generation: number }) => void; reject: (e: Error) => void }> =
    [];
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
    sql = open(max);
    endPool(old, 0).catch(() => {});
    // The lanes go too: a transaction stuck on one fails with a connection error.
    generation += 1;
    lanes = 0;
    for (const lane of [...idleLanes.splice(0), ...busyLanes]) endPool(lane.sql, 0).catch(() => {});
    serveLaneWaiters();
    for (const listen of listens) listen.move();
    return true;
  }

  /** A lane of its own for one transaction: an idle one, a new one, or the next one freed. */
  function takeLane(): Promise<{ sql: Sql; generation: number }> {
    if (closed) return Promise.reject(new Error("the database is closed"));
    const lane = idleLanes.pop() ?? (lanes < laneCount ? openLane() : undefined);
    if (!lane) return new Promise((resolve, reject) => laneWaiters.push({ resolve, reject }));
    busyLanes.add(lane);
    return Promise.resolve(lane);
  }

  /** A new one-connection lane of the current generation (the caller checked there is room). */
  function openLane(): { sql: Sql; generation: number } {
    lanes += 1;
    return { sql: open(1), generation };
  }

  /** Gives a lane back; one that lost its connection, or is from before a recycle, is closed instead. */
  function returnLane(lane: { sql: Sql; generation: number }, healthy: boolean): void {
    busyLanes.delete(lane);
    if (!healthy || lane.generation !== generation || closed) {
      endPool(lane.sql, 0).catch(() => {});
      if (lane.generation === generation) lanes -= 1;
      serveLaneWaiters();
      return;
    }
    const waiter = laneWaiters.shift();
    if (waiter) {
      busyLanes.add(lane);
      waiter.resolve(lane);
    } else idleLanes.push(lane);
  }

  function serveLaneWaiters(): void {
    while (laneWaiters.length > 0 && lanes < laneCount && !closed) {
      const lane = openLane();
      busyLanes.add(lane);
      laneWaiters.shift()?.resolve(lane);
    }
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

  function query<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]> {
    return watched(async () => {
      const pool = sql;
      const rows = await queryable(pool, failed).query<T>(text, params);
      learnTypes(pool);
      return rows;
    });
  }

  return {
    kind: "postgres",
    query,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      // A lane's connection asks for the array types only if no pool has learnt them yet.
      if (!typed) await query("select 1");
      const lane = await takeLane();
      let healthy = true;
      try {
        return (await watched(() =>
          lane.sql.begin(async (tx) => {
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
        if (lostConnection(error)) healthy = false;
        throw failed(error);
      } finally {
        returnLane(lane, healthy);
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
      for (const waiter of laneWaiters.splice(0)) waiter.reject(new Error("the database is closed"));
      const all = [...idleLanes.splice(0), ...busyLanes];
      await Promise.all([endPool(sql, 5), ...all.map((lane) => endPool(lane.sql, 5))]);
    },
  };
}
