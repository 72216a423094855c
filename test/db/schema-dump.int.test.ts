/**
 * The schema as Postgres sees it, committed in test/schema.sql so a reviewer
 * reads the effect of a migration as a diff. The dump comes from a fresh
 * database migrated by graphile-migrate (pg_dump 15, schema sessiond only),
 * normalised so that only the schema itself can change it.
 *
 * After changing a migration, refresh the file with
 *   UPDATE_SCHEMA_DUMP=1 npm test -- test/db/schema-dump
 *
 * The second case checks that PGlite, fed the same migration files by our own
 * applier, ends up with the same catalogue as real Postgres.
 */
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPostgresDb, type Db } from "../../src/db/index.js";
import { freshPglite, freshPostgresDatabase, postgresAvailable } from "../support/db.js";
import { dumpSessiondSchema } from "./pg-dump.js";

const SCHEMA_FILE = fileURLToPath(new URL("../schema.sql", import.meta.url));
const REFRESH = "UPDATE_SCHEMA_DUMP=1 npm test -- test/db/schema-dump";

/**
 * sessiond's catalogue as rows of text, sorted: tables and their columns,
 * functions with their signatures, constraints (other than NOT NULL, which
 * Postgres 18 lists in pg_constraint and 15 does not), triggers, indexes,
 * types and domains. Built from information_schema and pg_catalog, so it
 * reads the same on PGlite (Postgres 18) and Postgres 15.
 */
async function catalogue(db: Db): Promise<Record<string, string[]>> {
  const lines = async (sql: string) => (await db.query<{ line: string }>(sql)).map((r) => r.line);
  return {
    tables: await lines(`
      select table_name || ' ' || table_type as line from information_schema.tables
       where table_schema = 'sessiond' order by 1`),
    columns: await lines(`
      select table_name || '.' || column_name || ' ' || coalesce(domain_name, data_type) || ' '
             || is_nullable || ' ' || coalesce(column_default, '-') as line
        from information_schema.columns c
       where table_schema = 'sessiond'
         and table_name in (select table_name from information_schema.tables where table_schema = 'sessiond')
       order by table_name, ordinal_position`),
    functions: await lines(`
      select p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') returns '
             || pg_get_function_result(p.oid) || ' ' || l.lanname || ' ' || p.provolatile::text as line
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_language l on l.oid = p.prolang
       where n.nspname = 'sessiond' order by 1`),
    constraints: await lines(`
      select coalesce(nullif(c.conrelid, 0)::regclass::text, c.contypid::regtype::text) || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid) as line
        from pg_constraint c join pg_namespace n on n.oid = c.connamespace
       where n.nspname = 'sessiond' and c.contype <> 'n' order by 1`),
    triggers: await lines(`
      select event_object_table || ' ' || trigger_name || ' ' || action_timing || ' ' || event_manipulation
             || ' ' || action_orientation || ' ' || action_statement as line
        from information_schema.triggers where trigger_schema = 'sessiond' order by 1`),
    indexes: await lines(`select indexdef as line from pg_indexes where schemaname = 'sessiond' order by 1`),
    types: await lines(`
      select t.typname || ' ' || t.typtype::text as line
        from pg_type t join pg_namespace n on n.oid = t.typnamespace left join pg_class c on c.oid = t.typrelid
       where n.nspname = 'sessiond' and (t.typtype = 'd' or c.relkind = 'c') order by 1`),
    attributes: await lines(`
      select udt_name || '.' || attribute_name || ' ' || data_type as line from information_schema.attributes
       where udt_schema = 'sessiond' order by udt_name, ordinal_position`),
  };
}

describe.skipIf(!postgresAvailable)("schema dump [postgres]", () => {
  let postgresUrl: string;
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const fresh = await freshPostgresDatabase();
    postgresUrl = fresh.url;
    drop = fresh.drop;
  });
  afterAll(async () => {
    await drop?.();
  });

  it("test/schema.sql is what the migrations produce", async () => {
    const dump = await dumpSessiondSchema(postgresUrl);
    // The normalised dump still holds the schema (so a broken normaliser cannot pass by emptying it).
    expect(dump).toMatch(/^CREATE FUNCTION sessiond\.append_event\(/m);
    expect(dump).toMatch(/^CREATE TABLE sessiond\.events \(/m);
    expect(dump).not.toMatch(/Dumped (from|by)|\\restrict|^SET /m);
    if (process.env.UPDATE_SCHEMA_DUMP === "1") {
      await writeFile(SCHEMA_FILE, dump);
    }
    const committed = await readFile(SCHEMA_FILE, "utf8").catch(() => "(test/schema.sql is missing)\n");
    expect(
      committed,
      `test/schema.sql does not match the migrations in migrations/committed/. If the migration change is intended, refresh it with: ${REFRESH}`,
    ).toBe(dump);
  });

  it("PGlite and Postgres build the same catalogue from the same migrations", async () => {
    const pglite = await freshPglite();
    const postgres = createPostgresDb(postgresUrl, { max: 1 });
    try {
      const [onPglite, onPostgres] = [await catalogue(pglite), await catalogue(postgres)];
      for (const [what, rows] of Object.entries(onPostgres)) {
        expect(rows.length, `Postgres lists some ${what}`).toBeGreaterThan(0);
      }
      expect(onPglite).toEqual(onPostgres);
    } finally {
      await pglite.close();
      await postgres.close();
    }
  });
});
