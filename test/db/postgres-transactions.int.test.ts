/**
 * transaction() on the Postgres Db, hammered together with plain queries.
 *
 * postgres.js 3.4.9 can hand sql.begin's BEGIN to a pool connection that is
 * already busy with pipelined plain queries; when that fills the connection's
 * pipeline (or the socket pushes back) the hook that reserves the connection is
 * skipped: the transaction fails with UNSAFE_TRANSACTION while the connection
 * is left inside a transaction block, and plain queries sent to it afterwards
 * run inside it (porsager/postgres#823, #1189, #1207). A socket `drain` can
 * likewise hand a reserved connection back to the pool. Seen once under
 * `sessiond bench`. Here a small pool is kept full of pipelined queries (some
 * with parameters large enough to make the socket push back) while
 * transactions commit and roll back: no transaction may fail, each one's
 * statements run on one backend, a rolled-back transaction leaves nothing,
 * and every plain insert that resolved is there.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPostgresDb, type Db } from "../../src/db/index.js";
import { freshPostgresDatabase, postgresAvailable } from "../support/db.js";

const ROUNDS = 4;
const TX_PER_ROUND = 8;
const PLAIN_PER_TX = 60;

describe.skipIf(!postgresAvailable)("transaction() under a pool full of plain queries", () => {
  let fresh: Awaited<ReturnType<typeof freshPostgresDatabase>> | undefined;
  let db: Db | undefined;
  beforeAll(async () => {
    fresh = await freshPostgresDatabase();
    // Two lanes: the first case holds one transaction open while it sends another.
    db = createPostgresDb(fresh.url, { max: 2, transactionLanes: 2 });
    await db.query("create table tx_hammer (kind text not null, n int not null, pad text)");
  });
  afterAll(async () => {
    await db?.close();
    await fresh?.drop();
  });

  it("a BEGIN sent when the only other connection's pipeline is one short of full still gets a connection of its own", async () => {
    const d = db as Db;
    // Both connections connected, then one held by a transaction.
    await Promise.all([d.query("select 1"), d.query("select 1")]);
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let holding = () => {};
    const isHolding = new Promise<void>((resolve) => {
      holding = resolve;
    });
    const holder = d.transaction(async (tx) => {
      await tx.query("select 1");
      holding();
      await held;
    });
    await isHolding;
    // On the other connection, a slow statement in flight and 99 pipelined behind it (the driver's
    // max_pipeline is 100): none is answered before the BEGIN is sent, which makes 100.
    const plain = [d.query("select pg_sleep(0.3)")];
    for (let i = 0; i < 99; i++) plain.push(d.query("select 1"));
    await new Promise((resolve) => setImmediate(resolve));
    const result = d.transaction(async (tx) => {
      await tx.query("insert into tx_hammer (kind, n) values ('pipelined', 1)");
      return (await tx.query<{ c: number }>("select count(*)::int as c from tx_hammer where kind = 'pipelined'"))[0]?.c;
    });
    const settled = await result.then(
      (c) => ({ ok: true as const, c }),
      (error: Error) => ({ ok: false as const, error: `${(error as { code?: string }).code} ${error.message}` }),
    );
    release();
    await holder;
    await Promise.all(plain);
    expect(settled).toEqual({ ok: true, c: 1 });
    const [idle] = await d.query<{ c: number }>(
      "select count(*)::int as c from pg_stat_activity where datname = current_database() and state like 'idle in transaction%'",
    );
    expect(idle?.c).toBe(0);
    await d.query("delete from tx_hammer");
  });

  it("never fails with UNSAFE_TRANSACTION, and each transaction is isolated and atomic", async () => {
    const d = db as Db;
    const pad = "x".repeat(24_000); // past the socket's high-water mark: writes can push back
    const failures: string[] = [];
    const plainDone: number[] = [];
    const committed: number[] = [];
    let rolledBack = 0;
    let n = 0;
    const plain = () => {
      const id = n++;
      // Without parameters (simple protocol): the driver pipelines these up to max_pipeline deep.
      const insert =
        id % 10 === 0
          ? d.query("insert into tx_hammer (kind, n, pad) values ('plain', $1, $2)", [id, pad])
          : d.query(`insert into tx_hammer (kind, n) values ('plain', ${id})`);
      return insert.then(() => plainDone.push(id));
    };
    const transaction = () => {
      const txId = n++;
      const rollback = txId % 2 === 0;
      return d
        .transaction(async (tx) => {
          const pids = new Set<number>();
          const pid = async () =>
            pids.add((await tx.query<{ pid: number }>("select pg_backend_pid() as pid"))[0]?.pid as number);
          await pid();
          await tx.query("insert into tx_hammer (kind, n, pad) values ('tx', $1, $2)", [txId, pad]);
          await pid();
          const [seen] = await tx.query<{ c: number }>(
            "select count(*)::int as c from tx_hammer where kind = 'tx' and n = $1",
            [txId],
          );
          if (pids.size !== 1) throw new Error(`one transaction ran on backends ${[...pids].join(", ")}`);
          if (seen?.c !== 1) throw new Error(`a transaction did not see its own insert (${seen?.c})`);
          if (rollback) throw new Error("roll back");
        })
        .then(
          () => committed.push(txId),
          (error: Error) => {
            if (rollback && error.message === "roll back") rolledBack += 1;
            else failures.push(`${(error as { code?: string }).code ?? ""} ${error.message}`);
          },
        );
    };
    for (let round = 0; round < ROUNDS; round++) {
      const work: Promise<unknown>[] = [];
      // Each BEGIN is sent when the queue of plain statements is long: a freed connection takes
      // up to a pipeline's worth of them at once, the BEGIN somewhere among them.
      for (let t = 0; t < TX_PER_ROUND; t++) {
        for (let i = 0; i < PLAIN_PER_TX; i++) work.push(plain());
        await new Promise((resolve) => setImmediate(resolve));
        work.push(transaction());
      }
      await Promise.all(work);
    }
    expect(failures).toEqual([]);
    expect(rolledBack + committed.length).toBe(ROUNDS * TX_PER_ROUND);
    const rows = await d.query<{ kind: string; n: number }>("select kind, n from tx_hammer order by n");
    expect(rows.filter((r) => r.kind === "plain").map((r) => r.n)).toEqual(plainDone.sort((a, b) => a - b));
    expect(rows.filter((r) => r.kind === "tx").map((r) => r.n)).toEqual(committed.sort((a, b) => a - b));
    // Nothing is left open: no backend of this database sits inside a transaction.
    const [idle] = await d.query<{ c: number }>(
      "select count(*)::int as c from pg_stat_activity where datname = current_database() and state like 'idle in transaction%'",
    );
    expect(idle?.c).toBe(0);
  }, 60_000);
});
