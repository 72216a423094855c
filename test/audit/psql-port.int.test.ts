/**
 * The psql port on an embedded PGlite: a real psql and postgres.js run the
 * audit queries through it, and the gate keeps a client's transaction and
 * the server's statements apart (PGlite is one session). PGlite only: there
 * is nothing to expose on real Postgres.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { timeline } from "../../src/audit/index.js";
import { type PsqlPort, startPsqlPort } from "../../src/cli/psql-port.js";
import type { PgliteDb } from "../../src/db/index.js";
import { appendEvent } from "../../src/events/index.js";
import { freshPglite } from "../support/db.js";
import { healthyConversation, key } from "./build.js";
import { errors, firstColumns, WireClient, wire } from "./wire-client.js";

const exec = promisify(execFile);

/** Runs psql with -c for each command, unaligned and tuples only. */
async function psql(port: PsqlPort, ...commands: string[]): Promise<string> {
  const { stdout } = await exec(
    "psql",
    [port.url, "-X", "-A", "-t", "-F", "|", ...commands.flatMap((c) => ["-c", c])],
    {
      timeout: 20_000,
      env: { ...process.env, PGCONNECT_TIMEOUT: "5" },
    },
  );
  return stdout.trim();
}

describe("psql port [pglite]", () => {
  let db: PgliteDb;
  let port: PsqlPort;
  let sql: postgres.Sql;

  beforeAll(async () => {
    db = await freshPglite();
    port = await startPsqlPort(db.pglite, { port: 0 });
    sql = postgres(port.url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  });
  afterAll(async () => {
    await sql?.end({ timeout: 5 });
    await port?.stop();
    await db?.close();
  });

  it("listens on 127.0.0.1 on the port the OS chose", () => {
    expect(port.host).toBe("127.0.0.1");
    expect(port.port).toBeGreaterThan(0);
    expect(port.url).toBe(`postgres://postgres@127.0.0.1:${port.port}/postgres?sslmode=disable`);
  });

  it("lets psql run the audit views and verify", async () => {
    const k = key("psql");
    await healthyConversation(db, k);
    const out = await psql(
      port,
      `select session_key, events, last_seq, processed_seq, acked_seq, lease_state from sessiond.session_summary where session_key = '${k}'`,
      `select kind, seq, type, status from sessiond.session_timeline where session_key = '${k}' order by at, kind desc, seq`,
      "select count(*) from sessiond.verify()",
    );
    expect(out.split("\n")).toEqual([
      `${k}|2|2|2|2|free`,
      "event|1|user_message|processed",
      "effect|1|send_message|completed",
      "event|2|user_message|processed",
      "effect|2|send_message|completed",
      "0",
    ]);
  });

  it("serves postgres.js (extended protocol, parameters) the same rows the server reads", async () => {
    const k = key("pgjs");
    await healthyConversation(db, k);
    const rows = await sql<{ kind: string; seq: number; type: string; summary: string }[]>`
      select kind, seq::int as seq, type, summary from sessiond.session_timeline
       where session_key = ${k} order by at, kind desc, seq`;
    const expected = (await timeline(db, k)).map((e) => ({
      kind: e.kind,
      seq: e.seq,
      type: e.type,
      summary: e.summary,
    }));
    expect(rows.map((r) => ({ ...r }))).toEqual(expected);
    expect(expected).toHaveLength(4);
  });

  it("keeps a client's Parse … Sync sequence whole while the server queries too", async () => {
    // The unnamed statement is session state: a server query between this
    // client's Parse and its Bind would replace it with the server's own.
    const wireClient = await WireClient.connect(port.port);
    try {
      wireClient.send(wire.parse("select 'from the client' as who"), wire.flush());
      await wireClient.until("1"); // ParseComplete
      let appDone = false;
      const app = db.query<{ v: number }>("select $1::int as v", [7]).then((rows) => {
        appDone = true;
        return rows;
      });
      wireClient.send(wire.bind(), wire.execute(), wire.sync());
      const reply = await wireClient.until("Z");
      expect(errors(reply)).toEqual([]);
      expect(firstColumns(reply)).toEqual(["from the client"]);
      expect(await app).toEqual([{ v: 7 }]);
      expect(appDone).toBe(true);
    } finally {
      await wireClient.close();
    }
  });

  it("holds the server's statements until a client's transaction commits", async () => {
    const k = key("held");
    let appDone = false;
    let app: Promise<unknown[]> | undefined;
    await sql.begin(async (tx) => {
      await tx`insert into sessiond.sessions (session_key) values (${k})`;
      app = db.query("select count(*)::int as n from sessiond.sessions where session_key = $1", [k]).then((rows) => {
        appDone = true;
        return rows;
      });
      // A full round trip of the client's while the server's query is waiting.
      await tx`select 1`;
      expect(appDone, "the server's query ran inside the client's transaction").toBe(false);
    });
    expect(await app).toEqual([{ n: 1 }]);
  });

  it("does not roll back the server's writes with a client's transaction", async () => {
    const k = key("kept");
    let write: Promise<unknown> | undefined;
    const rolledBack = await sql
      .begin(async (tx) => {
        await tx`insert into sessiond.sessions (session_key) values (${`${k}-psql`})`;
        write = appendEvent(db, { sessionKey: k, type: "user_message", payload: { text: "hi" }, requestId: "r1" });
        await tx`select 1`;
        throw new Error("roll back");
      })
      .then(
        () => false,
        (error: Error) => error.message === "roll back",
      );
    expect(rolledBack).toBe(true);
    expect(await write).toMatchObject({ seq: 1, duplicate: false });
    expect(await db.query("select session_key from sessiond.events where session_key = $1", [k])).toHaveLength(1);
    expect(await db.query("select 1 from sessiond.sessions where session_key = $1", [`${k}-psql`])).toEqual([]);
  });

  it("rolls back a transaction psql leaves open when it disconnects, and frees the server", async () => {
    const k = key("left");
    await psql(port, `begin; insert into sessiond.sessions (session_key) values ('${k}');`);
    expect(await db.query("select 1 from sessiond.sessions where session_key = $1", [k])).toEqual([]);
    expect(await appendEvent(db, { sessionKey: k, type: "user_message", payload: {}, requestId: "r1" })).toMatchObject({
      seq: 1,
    });
  });

  it("closes a client idle in a transaction after idleTimeoutMs, rolling it back and freeing the server", async () => {
    const k = key("idle");
    const short = await startPsqlPort(db.pglite, { port: 0, idleTimeoutMs: 200 });
    const wireClient = await WireClient.connect(short.port);
    try {
      wireClient.send(wire.query(`begin; insert into sessiond.sessions (session_key) values ('${k}')`));
      expect(errors(await wireClient.until("Z"))).toEqual([]);
      // Waits while the client holds the session, then runs once the idle client is gone.
      expect(await db.query("select count(*)::int as n from sessiond.sessions where session_key = $1", [k])).toEqual([
        { n: 0 },
      ]);
      await expect(wireClient.until("never")).rejects.toThrow(/connection closed/);
    } finally {
      await wireClient.close();
      await short.stop();
    }
  });

  it("refuses a host that is not a loopback address", async () => {
    await expect(startPsqlPort(db.pglite, { port: 0, host: "0.0.0.0" })).rejects.toThrow(/loopback only/);
    await expect(startPsqlPort(db.pglite, { port: 70_000 })).rejects.toThrow(RangeError);
  });

  it("stops listening on stop(), leaving the database to the server", async () => {
    const other = await startPsqlPort(db.pglite, { port: 0 });
    expect(await psql(other, "select 41 + 1")).toBe("42");
    await other.stop();
    await expect(psql(other, "select 1")).rejects.toThrow(/Connection refused|could not connect/);
    expect(await db.query("select 1 as ok")).toEqual([{ ok: 1 }]);
  });
});
