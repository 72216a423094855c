/**
 * Built once per `npm test`:
 * - a PGlite data dir with every migration applied, dumped to a tarball that
 *   each test worker loads (so no file pays for initdb + migrations), kept
 *   between runs under a key of what it is made of (see pgliteDump);
 * - the server transpiled for the chaos suites' child processes (compiled-server.ts);
 * - on real Postgres, a template database with every migration applied, from
 *   which each test file creates its own database (CREATE DATABASE … TEMPLATE).
 * Without a reachable Postgres the real-Postgres suites skip with a loud notice,
 * unless REQUIRE_POSTGRES=1, in which case the run fails here.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { createPgliteDb, migratePglite, migratePostgres, readCommittedMigrations } from "../../src/db/index.js";
import { buildServerForTests } from "./compiled-server.js";
import { adminUrl, databaseUrl, TEMPLATE_PREFIX, TEST_DB_PREFIX, testDatabaseUrl } from "./pg-urls.js";
import { TEST_PGLITE_SETTINGS } from "./pglite-settings.js";

declare module "vitest" {
  export interface ProvidedContext {
    pgliteDump: string;
    pgTemplate: string | null;
    /** The CLI entry of the server transpiled once for this run (see compiled-server.ts). */
    serveEntry: string;
  }
}

let template: string | null = null;
let removeBuild: (() => Promise<void>) | undefined;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * The migrated PGlite data dir as a tarball. Building it (initdb, then the
 * migrations) takes ~5 s of CPU before any test can start, so it is kept in
 * the OS temp dir under a key of everything it is made of: PGlite's version,
 * the committed migrations and the code that applies them. A changed
 * migration is a new key, so a stale dump is never loaded.
 */
async function pgliteDump(): Promise<string> {
  const hash = createHash("sha256");
  const pglite = new URL("../../node_modules/@electric-sql/pglite/package.json", import.meta.url);
  hash.update(JSON.parse(await readFile(pglite, "utf8")).version);
  hash.update(await readFile(new URL("../../src/db/migrate.ts", import.meta.url)));
  for (const migration of await readCommittedMigrations()) hash.update(migration.hash);
  hash.update(JSON.stringify(TEST_PGLITE_SETTINGS));
  const cacheDir = join(tmpdir(), "sessiond-test-cache");
  const path = join(cacheDir, `pglite-${hash.digest("hex").slice(0, 32)}.tar`);
  if (existsSync(path)) return path;
  const db = await createPgliteDb({ settings: TEST_PGLITE_SETTINGS });
  await migratePglite(db);
  const dump = await db.pglite.dumpDataDir("none");
  await db.close();
  await mkdir(cacheDir, { recursive: true });
  // Dumps of other keys a day old are of schemas long gone (40 MB each).
  for (const name of await readdir(cacheDir)) {
    const other = join(cacheDir, name);
    if (other !== path && Date.now() - (await stat(other)).mtimeMs > 86_400_000) await rm(other, { force: true });
  }
  // Written whole under another name first: a run starting meanwhile never reads half a file.
  const partial = `${path}.${process.pid}.partial`;
  await writeFile(partial, Buffer.from(await dump.arrayBuffer()));
  await rename(partial, path);
  return path;
}

export async function setup(project: TestProject) {
  const [server, dumpPath] = await Promise.all([buildServerForTests(`run-${process.pid}`), pgliteDump()]);
  removeBuild = server.remove;
  project.provide("serveEntry", server.entry);
  project.provide("pgliteDump", dumpPath);

  const admin = postgres(adminUrl(), { max: 1, onnotice: () => {}, connect_timeout: 3 });
  try {
    await admin`select 1`;
  } catch (error) {
    await admin.end({ timeout: 1 }).catch(() => {});
    const why = `real Postgres is not reachable at ${testDatabaseUrl()}: ${(error as Error).message}`;
    if (process.env.REQUIRE_POSTGRES === "1") throw new Error(`REQUIRE_POSTGRES=1 but ${why}`);
    console.warn(`\n${"!".repeat(78)}\n!! SKIPPING every real-Postgres test: ${why}\n${"!".repeat(78)}\n`);
    project.provide("pgTemplate", null);
    return;
  }
  try {
    // Drop databases left by runs that died before teardown (their process is gone;
    // other test runs may be going on at the same time, so never touch a live one's).
    const stale = await admin<{ datname: string }[]>`
      select datname from pg_database where datname like ${`${TEMPLATE_PREFIX}%`} or datname like ${`${TEST_DB_PREFIX}%`}`;
    for (const { datname } of stale) {
      const pid = Number(/_(\d+)_/.exec(datname)?.[1]);
      if (Number.isInteger(pid) && !processAlive(pid)) {
        await admin.unsafe(`drop database if exists "${datname}" with (force)`).catch(() => {});
      }
    }
    template = `${TEMPLATE_PREFIX}${process.pid}_${Date.now()}`;
    await admin.unsafe(`create database "${template}"`);
    await migratePostgres(databaseUrl(template));
    project.provide("pgTemplate", template);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

export async function teardown() {
  await removeBuild?.();
  if (template) {
    const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    await admin.unsafe(`drop database if exists "${template}" with (force)`).catch(() => {});
    await admin.end({ timeout: 5 });
  }
}
