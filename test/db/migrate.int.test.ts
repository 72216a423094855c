/**
 * Migrations: one copy of the schema (migrations/committed/), applied by
 * graphile-migrate on Postgres and by src/db/migrate.ts on PGlite. These cases
 * check that the PGlite side keeps graphile-migrate's promises: it refuses a
 * tampered file or a broken hash chain, it refuses a database whose history
 * differs from the files, a second run applies nothing, and it leaves the same
 * bookkeeping rows graphile-migrate leaves on Postgres.
 */
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createPostgresDb,
  type Db,
  migratePglite,
  migratePostgres,
  migrationsFolder,
  type PgliteDb,
  readCommittedMigrations,
} from "../../src/db/index.js";
import { migrationHash } from "../../src/db/migrate.js";
import { freshPglite, freshPostgresDatabase, postgresAvailable } from "../support/db.js";

interface MigrationRow {
  hash: string;
  previous_hash: string | null;
  filename: string;
}

async function migrationRows(db: Db): Promise<MigrationRow[]> {
  return db.query<MigrationRow>(
    "select hash, previous_hash, filename from graphile_migrate.migrations order by filename",
  );
}

async function expectedRows(): Promise<MigrationRow[]> {
  return (await readCommittedMigrations()).map((m) => ({
    hash: m.hash,
    previous_hash: m.previousHash,
    filename: m.filename,
  }));
}

describe("reading the committed migrations", () => {
  let copy: string;
  let files: string[];

  beforeAll(async () => {
    files = (await readdir(join(migrationsFolder, "committed"))).filter((f) => f.endsWith(".sql")).sort();
    expect(files.length, "this suite needs at least two migrations to break a chain").toBeGreaterThanOrEqual(2);
  });

  // A fresh copy of migrations/ for each case, to tamper with.
  async function freshCopy() {
    copy = await mkdtemp(join(tmpdir(), "sessiond-migrations-"));
    await cp(migrationsFolder, copy, { recursive: true });
    return copy;
  }
  const file = (name: string) => join(copy, "committed", name);
  afterAll(async () => {
    if (copy) await rm(copy, { recursive: true, force: true });
  });

  it("reads an untouched copy exactly as the real folder", async () => {
    const folder = await freshCopy();
    const fromCopy = await readCommittedMigrations(folder);
    expect(fromCopy).toEqual(await readCommittedMigrations());
    expect(fromCopy.map((m) => m.filename)).toEqual(files.map((f) => `${f.slice(0, 6)}.sql`));
    expect(fromCopy[0]?.previousHash).toBeNull();
    for (let i = 1; i < fromCopy.length; i++) expect(fromCopy[i]?.previousHash).toBe(fromCopy[i - 1]?.hash);
    await rm(folder, { recursive: true, force: true });
  });

  it("refuses a file whose body was edited after its hash was taken", async () => {
    const folder = await freshCopy();
    const last = files.at(-1)!;
    const text = await readFile(file(last), "utf8");
    // One character of SQL: the kind of edit nobody notices in review.
    await writeFile(file(last), text.replace("create function", "create  function"));
    await expect(readCommittedMigrations(folder)).rejects.toThrow(
      new RegExp(`migration ${last}: hash sha1:[0-9a-f]{40} does not match its header`),
    );
    await rm(folder, { recursive: true, force: true });
  });

  it("refuses a broken chain: a Previous header that is not the hash before it", async () => {
    const folder = await freshCopy();
    const second = files[1]!;
    const text = await readFile(file(second), "utf8");
    const lines = text.split("\n");
    const body = lines.slice(lines.indexOf("") + 1).join("\n");
    // Point Previous elsewhere and make the file's own hash consistent with that, so only the chain is wrong.
    const bogusPrevious = `sha1:${"0".repeat(40)}`;
    const rewritten = text
      .replace(/^--! Previous: .*$/m, `--! Previous: ${bogusPrevious}`)
      .replace(/^--! Hash: .*$/m, `--! Hash: ${migrationHash(body, bogusPrevious)}`);
    await writeFile(file(second), rewritten);
    await expect(readCommittedMigrations(folder)).rejects.toThrow(
      new RegExp(`migration ${second}: Previous ${bogusPrevious} does not follow sha1:`),
    );
    await rm(folder, { recursive: true, force: true });
  });

  it("refuses a chain with a missing link (a deleted migration)", async () => {
    const folder = await freshCopy();
    await rm(file(files[0]!));
    await expect(readCommittedMigrations(folder)).rejects.toThrow(
      new RegExp(`migration ${files[1]}: Previous sha1:[0-9a-f]{40} does not follow null`),
    );
    await rm(folder, { recursive: true, force: true });
  });

  it("refuses a file without its Hash header", async () => {
    const folder = await freshCopy();
    const first = files[0]!;
    await writeFile(file(first), (await readFile(file(first), "utf8")).replace(/^--! Hash: .*\n/m, ""));
    await expect(readCommittedMigrations(folder)).rejects.toThrow(/missing Hash or Previous header/);
    await rm(folder, { recursive: true, force: true });
  });
});

describe("the PGlite applier", () => {
  let db: PgliteDb;
  beforeAll(async () => {
    db = await freshPglite();
  });
  afterAll(async () => {
    await db?.close();
  });

  it("applies nothing to a database that is up to date", async () => {
    const before = await db.query("select * from graphile_migrate.migrations order by filename");
    expect(before.length).toBeGreaterThan(0);
    expect(await migratePglite(db)).toBe(0);
    expect(await db.query("select * from graphile_migrate.migrations order by filename")).toEqual(before);
  });

  it("applies every migration to an empty database once; a second run applies nothing and changes no row", async () => {
    const expected = await expectedRows();
    // Empty again without paying for a new cluster: the migrations create nothing outside schema sessiond.
    await db.exec("drop schema sessiond cascade; delete from graphile_migrate.migrations;");
    expect(await migratePglite(db)).toBe(expected.length);
    const first = await db.query("select * from graphile_migrate.migrations order by filename");
    expect(await migrationRows(db)).toEqual(expected);
    expect(await migratePglite(db)).toBe(0);
    expect(await db.query("select * from graphile_migrate.migrations order by filename")).toEqual(first);
    // And the schema is really there.
    const [event] = await db.query<{ seq: number }>(
      "select seq from sessiond.append_event('migrated', 'user_message', '{}', 'r')",
    );
    expect(event?.seq).toBe(1);
  });

  it("refuses a database whose applied history differs from the committed files", async () => {
    const rows = await migrationRows(db);
    const last = rows.at(-1)!;
    // The database ran a migration whose text was different: its recorded hash is not the file's.
    const bogus = `sha1:${"f".repeat(40)}`;
    await db.query("update graphile_migrate.migrations set hash = $1 where hash = $2", [bogus, last.hash]);
    try {
      await expect(migratePglite(db)).rejects.toThrow(
        `database has migration ${last.filename} (${bogus}) that the committed files do not`,
      );
      const [count] = await db.query<{ n: number }>("select count(*)::int as n from graphile_migrate.migrations");
      expect(count?.n).toBe(rows.length);
    } finally {
      await db.query("update graphile_migrate.migrations set hash = $1 where hash = $2", [last.hash, bogus]);
    }
  });
});

describe.skipIf(!postgresAvailable)("graphile-migrate on Postgres and the PGlite applier [postgres]", () => {
  let postgres: Db;
  let drop: (() => Promise<void>) | undefined;
  let url: string;

  beforeAll(async () => {
    const fresh = await freshPostgresDatabase();
    url = fresh.url;
    drop = fresh.drop;
    postgres = createPostgresDb(url, { max: 1 });
  });
  afterAll(async () => {
    await postgres?.close();
    await drop?.();
  });

  it("record the same graphile_migrate.migrations rows (hash, previous_hash, filename)", async () => {
    const pglite = await freshPglite();
    try {
      const onPostgres = await migrationRows(postgres);
      expect(onPostgres).toEqual(await expectedRows());
      expect(await migrationRows(pglite)).toEqual(onPostgres);
    } finally {
      await pglite.close();
    }
  });

  it("graphile-migrate applies nothing on a second run either", async () => {
    const before = await postgres.query("select * from graphile_migrate.migrations order by filename");
    await migratePostgres(url);
    expect(await postgres.query("select * from graphile_migrate.migrations order by filename")).toEqual(before);
    // graphile-migrate keeps its pg pool a moment after it returns, and exits the process if that pool's
    // connection dies: wait until it has gone before afterAll drops the database under it.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const [others] = await postgres.query<{ n: number }>(
        "select count(*)::int as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
      );
      if (others?.n === 0) break;
      if (Date.now() > deadline) throw new Error("graphile-migrate's connection did not go away within 10 s");
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  });
});
