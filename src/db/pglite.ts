/**
 * Db over PGlite: one embedded Postgres in this process, one session.
 * PGlite serialises queries and transactions itself; while it works it blocks
 * the event loop, so keep statements short. Its listen() does not quote channel
 * names: use plain lowercase ones. It never reconnects, so onReconnect never fires.
 */
import { PGlite, types } from "@electric-sql/pglite";
import { type Db, type Listener, type Queryable, type Row, toDbError } from "./types.js";

export interface PgliteDbOptions {
  /** A data directory on disk; absent = in memory. */
  dataDir?: string;
  /** A tarball made by dumpDataDir to start from (tests use one built once). */
  loadDataDir?: Blob;
  /**
   * Server settings for this start (`-c name=value`), e.g. `{ shared_buffers: "16MB" }`:
   * PGlite zero-fills its shared memory at every start, so 128 MB of buffers
   * (initdb's default) cost half a second of CPU that a small test database does not need.
   */
  settings?: Record<string, string>;
}

const parsers = { [types.INT8]: (value: string) => Number(value) };

function queryable(target: Pick<PGlite, "query">): Queryable {
  return {
    async query<T = Row>(text: string, params: readonly unknown[] = []): Promise<T[]> {
      try {
        const result = await target.query<T>(text, params as unknown[], { parsers });
        return result.rows;
      } catch (error) {
        throw toDbError(error);
      }
    },
  };
}

/** A PGlite-backed Db, plus the PGlite instance for what only it can do. */
export interface PgliteDb extends Db {
  readonly pglite: PGlite;
  /** Runs a multi-statement SQL script (migrations). */
  exec(sql: string): Promise<void>;
}

/** Opens (creating if needed) an embedded PGlite database. */
export async function createPgliteDb(options: PgliteDbOptions = {}): Promise<PgliteDb> {
  const pglite = new PGlite({
    ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    ...(options.loadDataDir ? { loadDataDir: options.loadDataDir } : {}),
    ...(options.settings
      ? {
          startParams: [
            ...PGlite.defaultStartParams,
            ...Object.entries(options.settings).flatMap(([name, value]) => ["-c", `${name}=${value}`]),
          ],
        }
      : {}),
    parsers,
  });
  await pglite.waitReady;
  const base = queryable(pglite);
  let closed = false;
  return {
    kind: "pglite",
    pglite,
    query: base.query,
    async exec(sql: string) {
      try {
        await pglite.exec(sql);
      } catch (error) {
        throw toDbError(error);
      }
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      try {
        return await pglite.transaction((tx) => fn(queryable(tx)));
      } catch (error) {
        throw toDbError(error);
      }
    },
    async listen(channel, onNotify): Promise<Listener> {
      const unsubscribe = await pglite.listen(channel, onNotify);
      return {
        close: async () => {
          if (!pglite.closed) await unsubscribe();
        },
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      await pglite.close();
    },
  };
}
