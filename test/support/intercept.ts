import type { Db, Row } from "../../src/db/index.js";

/**
 * `db` with its `query` passed through `around`, which may hold a statement back (a gate), look at
 * its result, or run it as is (`run()`). Everything else of `db` is untouched.
 */
export function interceptQuery(db: Db, around: (sql: string, run: () => Promise<Row[]>) => Promise<Row[]>): Db {
  return new Proxy(db, {
    get(target, name, receiver) {
      if (name !== "query") return Reflect.get(target, name, receiver);
      return (sql: string, params?: unknown[]) => around(sql, () => target.query(sql, params));
    },
  });
}
