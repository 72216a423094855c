/**
 * Found by the chaos pool-recovery suite under load: postgres.js 3.4.9 opens
 * every connection with a query for the array types that nothing awaits, so a
 * connection terminated or destroyed during it (a backend termination, or the
 * Db replacing a wedged pool) is an unhandled rejection, which ends a Node
 * process by default. The Db now lets a pool ask only until a statement has
 * been answered, and hands what it learnt to the pools and transaction lanes
 * it opens later. Counted here at the socket: the type query goes out once,
 * however many connections, lanes and pools follow, and array parameters and
 * results still work on connections that never asked.
 */
import { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPostgresDb, type Db } from "../../src/db/index.js";
import { freshPostgresDatabase, postgresAvailable } from "../support/db.js";

/** A fragment of the driver's type query (node_modules/postgres/src/connection.js, fetchArrayTypes). */
const TYPE_QUERY = "typcategory = 'A'";

describe.skipIf(!postgresAvailable)("the Postgres Db asks for array types once", () => {
  let fresh: Awaited<ReturnType<typeof freshPostgresDatabase>> | undefined;
  let db: Db | undefined;
  const write = Socket.prototype.write;
  let typeQueries = 0;
  beforeAll(async () => {
    fresh = await freshPostgresDatabase();
    Socket.prototype.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
      if (Buffer.isBuffer(chunk) && chunk.includes(TYPE_QUERY)) typeQueries += 1;
      return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof write;
  });
  afterAll(async () => {
    Socket.prototype.write = write;
    await db?.close();
    await fresh?.drop();
  });

  it("not again on new pool connections, on transaction lanes, nor on the pool that replaces a wedged one", async () => {
    // stuckAfterMs: a statement pending that long replaces the pool (as in the server).
    db = createPostgresDb(fresh?.url as string, { max: 4, transactionLanes: 2, stuckAfterMs: 300 });
    const d = db;
    await d.query("select 1");
    expect(typeQueries).toBe(1);
    const arrays = () =>
      Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          d.query("select array[$1::int, 2] as a, $2::text[] as t", [i, ["x", "y,z"]]),
        ),
      );
    // Every pool connection in use, then both lanes.
    expect((await arrays()).flat()).toContainEqual({ a: [7, 2], t: ["x", "y,z"] });
    await d.transaction(async (tx) => {
      await tx.query("select 1");
      await d.transaction((inner) => inner.query("select 1"));
    });
    // A statement that outlives stuckAfterMs: the pool and the lanes are replaced, it fails.
    await expect(d.query("select pg_sleep(2)")).rejects.toThrow();
    expect((await arrays()).flat()).toContainEqual({ a: [7, 2], t: ["x", "y,z"] });
    expect(await d.transaction((tx) => tx.query("select $1::text[] as t", [["a", "b"]]))).toEqual([{ t: ["a", "b"] }]);
    expect(typeQueries).toBe(1);
  });
});
