/**
 * Database faults for one test database, through an admin connection to the
 * maintenance database: terminate sessiond's backends (found by
 * application_name in pg_stat_activity; the LISTEN connection is the one
 * whose last statement was a LISTEN), and refuse new connections to the
 * database for a while (ALTER DATABASE … ALLOW_CONNECTIONS false, which holds
 * for superusers too, unlike CONNECTION LIMIT). The shared server itself is
 * never stopped; `close()` always lets connections in again.
 */
import postgres from "postgres";
import { adminUrl } from "../pg-urls.js";

export type Backends = "listen" | "pool" | "all";

export class PgFaults {
  readonly database: string;
  readonly #admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  #blocked = false;

  constructor(database: string) {
    if (!/^[a-z0-9_]+$/.test(database)) throw new Error(`unexpected database name ${database}`);
    this.database = database;
  }

  /** sessiond's backends on the database (application_name `sessiond`), with their last statement. */
  async backends(): Promise<Array<{ pid: number; listen: boolean; query: string }>> {
    return this.#admin<Array<{ pid: number; listen: boolean; query: string }>>`
      select pid, coalesce(query ilike 'listen %', false) as listen, coalesce(query, '') as query
        from pg_stat_activity
       where datname = ${this.database} and application_name = 'sessiond' and pid <> pg_backend_pid()`;
  }

  /**
   * Terminates sessiond's LISTEN connection(s), its pool connections, or both
   * (only those whose last statement `select` accepts, if given); returns how
   * many of each.
   */
  async terminate(which: Backends, select?: (query: string) => boolean): Promise<{ listen: number; pool: number }> {
    const chosen = (await this.backends()).filter(
      (b) => (which === "all" || (which === "listen") === b.listen) && (!select || select(b.query)),
    );
    if (chosen.length > 0) {
      await this.#admin`select pg_terminate_backend(pid) from unnest(${chosen.map((b) => b.pid)}::int[]) as pid`;
    }
    return { listen: chosen.filter((b) => b.listen).length, pool: chosen.filter((b) => !b.listen).length };
  }

  /** Refuses every new connection to the database (existing ones stay). */
  async block(): Promise<void> {
    this.#blocked = true;
    await this.#admin.unsafe(`alter database "${this.database}" allow_connections false`);
  }

  async unblock(): Promise<void> {
    await this.#admin.unsafe(`alter database "${this.database}" allow_connections true`);
    this.#blocked = false;
  }

  async close(): Promise<void> {
    try {
      if (this.#blocked) await this.unblock();
    } finally {
      await this.#admin.end({ timeout: 5 });
    }
  }
}
