/**
 * Migrations: one copy of the schema, the committed graphile-migrate files in
 * migrations/committed/. On Postgres graphile-migrate applies them (with its
 * own advisory lock, so several processes may start at once). On PGlite this
 * file applies the very same files in order, after checking graphile-migrate's
 * hash chain, and records them in the same graphile_migrate.migrations table.
 */
import { createHash } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { migrate as graphileMigrate, Logger } from "graphile-migrate";
import type { PgliteDb } from "./pglite.js";

/** Where the committed migrations live, resolved from this file (not the cwd). */
export const migrationsFolder = fileURLToPath(new URL("../../migrations", import.meta.url));

export interface CommittedMigration {
  filename: string;
  hash: string;
  previousHash: string | null;
  body: string;
}

/** graphile-migrate's hash: sha1 over the previous hash and the trimmed body. */
export function migrationHash(body: string, previousHash: string | null): string {
  const text = `${`${previousHash ?? ""}\n${body.trim()}`.trim()}\n`;
  return `sha1:${createHash("sha1").update(text).digest("hex")}`;
}

function parseCommitted(filename: string, contents: string): CommittedMigration {
  const lines = contents.split("\n");
  const headers = new Map<string, string>();
  let index = 0;
  for (; index < lines.length; index++) {
    const match = /^--! ([A-Z][a-zA-Z0-9_]*)(?::(.*))?$/.exec(lines[index] ?? "");
    if (!match) break;
    headers.set(match[1] as string, (match[2] ?? "").trim());
  }
  if (lines[index] !== "") throw new Error(`migration ${filename}: expected a blank line after the headers`);
  const hash = headers.get("Hash");
  const previous = headers.get("Previous");
  if (!hash || previous === undefined) throw new Error(`migration ${filename}: missing Hash or Previous header`);
  return {
    filename: filename.replace(/^(\d{6}).*\.sql$/, "$1.sql"),
    hash,
    previousHash: previous === "-" ? null : previous,
    body: lines.slice(index + 1).join("\n"),
  };
}

/** Reads the committed migrations in order and checks the hash chain. */
export async function readCommittedMigrations(folder = migrationsFolder): Promise<CommittedMigration[]> {
  const dir = `${folder}/committed`;
  const names = (await readdir(dir)).filter((name) => /^\d{6}(-[-\w]*)?\.sql$/.test(name)).sort();
  const migrations: CommittedMigration[] = [];
  let previous: string | null = null;
  for (const name of names) {
    const migration = parseCommitted(name, await readFile(`${dir}/${name}`, "utf8"));
    if (migration.previousHash !== previous) {
      throw new Error(`migration ${name}: Previous ${migration.previousHash} does not follow ${previous}`);
    }
    const actual = migrationHash(migration.body, migration.previousHash);
    if (actual !== migration.hash) {
      throw new Error(`migration ${name}: hash ${actual} does not match its header ${migration.hash}`);
    }
    migrations.push(migration);
    previous = migration.hash;
  }
  return migrations;
}

const quietLogger = new Logger(() => () => {});

// graphile-migrate keeps its pg pool for 200 ms after a command and calls
// process.exit(1) if a pooled connection errors meanwhile (e.g. Postgres
// restarting just after start-up). Ending its idle pools at once closes that
// window; clearAllPools is not in its public index, hence the deep require.
const requireCjs = createRequire(import.meta.url);
const { clearAllPools } = requireCjs("graphile-migrate/dist/pgReal.js") as { clearAllPools: () => void };

/** Applies the committed migrations to a Postgres database with graphile-migrate. */
export async function migratePostgres(connectionString: string): Promise<void> {
  try {
    await graphileMigrate({ connectionString, migrationsFolder, logger: quietLogger });
  } finally {
    clearAllPools();
  }
}

/** Applies the committed migrations to a PGlite database; returns how many ran. */
export async function migratePglite(db: PgliteDb): Promise<number> {
  const migrations = await readCommittedMigrations();
  // The same bookkeeping tables graphile-migrate keeps on Postgres.
  await db.exec(`
    create schema if not exists graphile_migrate;
    create table if not exists graphile_migrate.migrations (
      hash text primary key,
      previous_hash text references graphile_migrate.migrations,
      filename text not null,
      date timestamptz not null default now()
    );
    create table if not exists graphile_migrate.current (
      filename text primary key default 'current.sql',
      content text not null,
      date timestamptz not null default now()
    );`);
  const applied = await db.query<{ hash: string; filename: string }>(
    "select hash, filename from graphile_migrate.migrations order by filename",
  );
  applied.forEach((row, i) => {
    if (migrations[i]?.hash !== row.hash) {
      throw new Error(`database has migration ${row.filename} (${row.hash}) that the committed files do not`);
    }
  });
  let ran = 0;
  for (const migration of migrations.slice(applied.length)) {
    await db.pglite.transaction(async (tx) => {
      await tx.exec(migration.body);
      await tx.query("insert into graphile_migrate.migrations (hash, previous_hash, filename) values ($1, $2, $3)", [
        migration.hash,
        migration.previousHash,
        migration.filename,
      ]);
    });
    ran += 1;
  }
  return ran;
}

/**
 * Development only: rewrites the Previous/Hash headers of every committed
 * migration after an edit of a not-yet-released file. Never use this on a
 * migration that any database outside development has applied.
 * @internal
 */
export async function rehashCommittedMigrations(folder = migrationsFolder): Promise<string[]> {
  const dir = `${folder}/committed`;
  const names = (await readdir(dir)).filter((name) => /^\d{6}(-[-\w]*)?\.sql$/.test(name)).sort();
  const changed: string[] = [];
  let previous: string | null = null;
  for (const name of names) {
    const contents = await readFile(`${dir}/${name}`, "utf8");
    const lines = contents.split("\n");
    let index = 0;
    const kept: string[] = [];
    for (; index < lines.length && /^--! /.test(lines[index] ?? ""); index++) {
      if (!/^--! (Previous|Hash):/.test(lines[index] ?? "")) kept.push(lines[index] as string);
    }
    const body = lines.slice(index + 1).join("\n");
    const hash = migrationHash(body, previous);
    const next = [`--! Previous: ${previous ?? "-"}`, `--! Hash: ${hash}`, ...kept, "", body].join("\n");
    if (next !== contents) {
      await writeFile(`${dir}/${name}`, next);
      changed.push(name);
    }
    previous = hash;
  }
  return changed;
}
