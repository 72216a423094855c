/**
 * Built once per `npm test`:
 * - a PGlite data dir with every migration applied, dumped to a tarball that
 *   each test file loads (so no file pays for initdb + migrations);
 * - on real Postgres, a template database with every migration applied, from
 *   which each test file creates its own database (CREATE DATABASE … TEMPLATE).
 * Without a reachable Postgres the real-Postgres suites skip with a loud notice,
 * unless REQUIRE_POSTGRES=1, in which case the run fails here.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { createPgliteDb, migratePglite, migratePostgres } from "../../src/db/index.js";
import { buildServerForTests } from "./compiled-server.js";
import { adminUrl, databaseUrl, TEMPLATE_PREFIX, TEST_DB_PREFIX, testDatabaseUrl } from "./pg-urls.js";

declare module "vitest" {
  export interface ProvidedContext {
    pgliteDump: string;
    pgTemplate: string | null;
    /** The CLI entry of the server transpiled once for this run (see compiled-server.ts). */
    serveEntry: string;
  }
}

let tempDir: string | undefined;
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

export async function setup(project: TestProject) {
  tempDir = await mkdtemp(join(tmpdir(), "sessiond-test-"));
  const server = await buildServerForTests(`run-${process.pid}`);
  removeBuild = server.remove;
  project.provide("serveEntry", server.entry);
  const db = await createPgliteDb({ settings: { shared_buffers: "16MB" } });
  await migratePglite(db);
  const dump = await db.pglite.dumpDataDir("none");
  await db.close();
  const dumpPath = join(tempDir, "pglite.tar");
  await writeFile(dumpPath, Buffer.from(await dump.arrayBuffer()));
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
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
  await removeBuild?.();
  if (template) {
    const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    await admin.unsafe(`drop database if exists "${template}" with (force)`).catch(() => {});
    await admin.end({ timeout: 5 });
  }
}
