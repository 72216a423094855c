/**
 * Fresh databases for tests: `describeEachDb` runs the same cases on PGlite
 * and on real Postgres, each block with a database of its own (PGlite loaded
 * from the dump built in global setup; Postgres created from the template).
 * Every Db opened here is closed in afterAll, and afterEach checks that no
 * test left a listener open.
 */
import { readFile } from "node:fs/promises";
import postgres from "postgres";
import { afterAll, afterEach, beforeAll, describe, expect, inject } from "vitest";
import {
  createPgliteDb,
  createPostgresDb,
  type Db,
  type DbKind,
  type Listener,
  migratePglite,
  type PgliteDb,
} from "../../src/db/index.js";
import { adminUrl, databaseUrl, TEST_DB_PREFIX } from "./pg-urls.js";
import { TEST_PGLITE_SETTINGS } from "./pglite-settings.js";

export const postgresAvailable = inject("pgTemplate") !== null;

let dumpCache: Blob | undefined;

export { TEST_PGLITE_SETTINGS };

/**
 * PGlite instances this worker loaded whose last user closed them: each is
 * wiped back to a freshly migrated database and waits for the next caller.
 * Loading the dump costs ~1.3 s of CPU (WASM start, untar, Postgres start-up)
 * and the suite needs ~30 PGlite databases; wiping one costs ~0.1 s. A wiped
 * database holds exactly what a loaded one does: the schemas sessiond and
 * graphile_migrate are dropped and the committed migrations applied again,
 * and DISCARD ALL ends every session state (settings, LISTENs, advisory
 * locks, prepared statements, temporary tables).
 */
const idle: PgliteDb[] = [];

const WIPE = `
  drop schema if exists sessiond cascade;
  drop schema if exists graphile_migrate cascade;
  drop schema if exists public cascade;
  create schema public;`;

async function wipeForReuse(base: PgliteDb): Promise<void> {
  if (base.pglite.closed) return;
  try {
    // A test may have left a transaction open (psql through the socket port); end it first.
    await base.exec("rollback").catch(() => {});
    await base.exec("discard all");
    await base.exec(WIPE);
    await migratePglite(base);
    idle.push(base);
  } catch {
    await base.close().catch(() => {});
  }
}

/**
 * A PGlite database with every migration applied, in memory: a wiped one this
 * worker had before, or a new one loaded from the dump built in global setup.
 * Its `close()` hands it back for reuse; once closed, this handle refuses to work.
 */
export async function freshPglite(): Promise<PgliteDb> {
  let base = idle.pop();
  if (!base) {
    dumpCache ??= new Blob([await readFile(inject("pgliteDump"))]);
    base = await createPgliteDb({ loadDataDir: dumpCache, settings: TEST_PGLITE_SETTINGS });
  }
  const db = base;
  let closed = false;
  // A listener still open at close (a server the test left running) keeps its
  // callback inside this PGlite: such an instance is closed, never reused.
  let listening = 0;
  const open = () => {
    // What a closed PGlite itself throws.
    if (closed) throw new Error("PGlite is closed");
  };
  return {
    kind: "pglite",
    get pglite() {
      open();
      return db.pglite;
    },
    async query(text, params) {
      open();
      return db.query(text, params);
    },
    async exec(sql) {
      open();
      return db.exec(sql);
    },
    async transaction(fn) {
      open();
      return db.transaction(fn);
    },
    async listen(channel, onNotify, onReconnect) {
      open();
      const listener = await db.listen(channel, onNotify, onReconnect);
      listening++;
      let unlistened = false;
      return {
        close: async () => {
          if (unlistened) return;
          unlistened = true;
          listening--;
          await listener.close();
        },
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      if (listening > 0) await db.close();
      else await wipeForReuse(db);
    },
  };
}

/** This worker's connection to the maintenance database, for CREATE and DROP DATABASE. */
let admin: postgres.Sql | undefined;
/** The DROPs this worker has scheduled, one after another. */
let dropping: Promise<void> = Promise.resolve();

/**
 * A new real-Postgres database copied from the migrated template. `drop()`
 * schedules its DROP and returns at once: a DROP DATABASE waits for a
 * checkpoint (0.5–1.4 s under the suite's load), which the next test file
 * need not wait for. A DROP still pending when the worker ends is done by the
 * next run's global setup (databases of processes that are gone).
 */
export async function freshPostgresDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const template = inject("pgTemplate");
  if (!template) throw new Error("real Postgres is not available");
  const name = `${TEST_DB_PREFIX}${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  admin ??= postgres(adminUrl(), { max: 1, onnotice: () => {} });
  const sql = admin;
  await sql.unsafe(`create database "${name}" template "${template}"`);
  let dropped = false;
  return {
    url: databaseUrl(name),
    drop: async () => {
      if (dropped) return;
      dropped = true;
      // A failed DROP leaves a database the next run's global setup removes; nothing to fail here.
      dropping = dropping
        .then(() => sql.unsafe(`drop database if exists "${name}" with (force)`))
        .then(
          () => {},
          () => {},
        );
    },
  };
}

/** Listeners opened through a tracked Db; afterEach asserts none is left open. */
const openListeners = new Set<Listener>();

function tracked(db: Db): Db {
  return {
    ...db,
    kind: db.kind,
    query: db.query.bind(db),
    transaction: db.transaction.bind(db),
    close: db.close.bind(db),
    async listen(channel, onNotify, onReconnect) {
      const listener = await db.listen(channel, onNotify, onReconnect);
      const wrapped: Listener = {
        close: async () => {
          openListeners.delete(wrapped);
          await listener.close();
        },
      };
      openListeners.add(wrapped);
      return wrapped;
    },
  };
}

export interface TestDb {
  kind: DbKind;
  /** The database of this block. */
  db: Db;
  /** Postgres only: the URL of this block's database, to open more connections. */
  url: string | undefined;
  /** Opens another Db on the same database (Postgres only; PGlite is one session). */
  another(options?: { max?: number }): Db;
}

/**
 * Declares `body` once per driver: "pglite" and "postgres". The Postgres block
 * is skipped (loudly, by global setup) when no server is reachable, unless
 * REQUIRE_POSTGRES=1 made global setup fail instead.
 */
export function describeEachDb(title: string, body: (t: TestDb) => void, kinds: DbKind[] = ["pglite", "postgres"]) {
  for (const kind of kinds) {
    const skip = kind === "postgres" && !postgresAvailable;
    describe.skipIf(skip)(`${title} [${kind}]`, () => {
      const extra: Db[] = [];
      let drop: (() => Promise<void>) | undefined;
      const t = { kind, url: undefined } as TestDb;
      beforeAll(async () => {
        if (kind === "pglite") {
          t.db = tracked(await freshPglite());
        } else {
          const fresh = await freshPostgresDatabase();
          drop = fresh.drop;
          t.url = fresh.url;
          t.db = tracked(createPostgresDb(fresh.url, { max: 10 }));
        }
        t.another = (options) => {
          if (!t.url) throw new Error("another() needs real Postgres");
          const db = tracked(createPostgresDb(t.url, { max: options?.max ?? 4 }));
          extra.push(db);
          return db;
        };
      });
      afterEach(() => {
        expect(openListeners.size, "a test left a LISTEN subscription open").toBe(0);
      });
      afterAll(async () => {
        for (const db of extra) await db.close();
        await t.db?.close();
        await drop?.();
      });
      body(t);
    });
  }
}

/** Resolves with the first value `subscribe` delivers, or rejects after `ms`. */
export function nextValue<T>(subscribe: (resolve: (value: T) => void) => void, ms = 5000, what = "value"): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    subscribe((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}
