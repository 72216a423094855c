/**
 * The database the bench runs against: the given DATABASE_URL as is, or a
 * throwaway database created on an admin connection and dropped afterwards.
 * Also reads what the report says about the server (version, durability
 * settings) and the machine.
 */
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import postgres from "postgres";
import type { MachineInfo } from "./result.js";

/** Where a throwaway database is created when no DATABASE_URL is given. */
export const DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
export const BENCH_DB_PREFIX = "sessiond_bench_";

export interface BenchDatabase {
  url: string;
  name: string;
  throwaway: boolean;
  /** Drops a throwaway database (no-op otherwise). Idempotent. */
  drop(): Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

function admin(url: string) {
  return postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
}

/** Uses `databaseUrl` if given, else creates a fresh database on `adminUrl`. */
export async function prepareDatabase(options: { databaseUrl?: string; adminUrl?: string }): Promise<BenchDatabase> {
  if (options.databaseUrl) {
    return {
      url: options.databaseUrl,
      name: new URL(options.databaseUrl).pathname.slice(1) || "postgres",
      throwaway: false,
      drop: async () => {},
    };
  }
  const adminUrl = options.adminUrl ?? DEFAULT_ADMIN_URL;
  const name = `${BENCH_DB_PREFIX}${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const sql = admin(adminUrl);
  try {
    await sql.unsafe(`create database "${name}"`);
  } finally {
    await sql.end({ timeout: 5 });
  }
  let dropped = false;
  return {
    url: withDatabase(adminUrl, name),
    name,
    throwaway: true,
    async drop() {
      if (dropped) return;
      dropped = true;
      const a = admin(adminUrl);
      try {
        await a.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await a.end({ timeout: 5 });
      }
    },
  };
}

/** The soft limit on open files of this process (Linux), or null when unknown. */
export function openFilesLimit(): number | null {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.split(/\s{2,}/)[1];
    if (!soft) return null;
    return soft === "unlimited" ? Number.POSITIVE_INFINITY : Number(soft);
  } catch {
    return null;
  }
}

const SETTINGS = [
  "max_connections",
  "shared_buffers",
  "synchronous_commit",
  "fsync",
  "wal_sync_method",
  "commit_delay",
];

/** The machine, Node, and the Postgres server at `url` (null fields when it cannot be read). */
export async function machineInfo(url: string | undefined): Promise<MachineInfo> {
  const info: MachineInfo = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    openFilesLimit: openFilesLimit(),
    postgres: null,
    postgresSettings: {},
  };
  if (!url) return info;
  const sql = admin(url);
  try {
    const [row] = await sql<{ version: string }[]>`select version()`;
    info.postgres = row?.version ?? null;
    const rows = await sql<{ name: string; setting: string; unit: string | null }[]>`
      select name, setting, unit from pg_settings where name = any(${SETTINGS})`;
    for (const r of rows) info.postgresSettings[r.name] = r.unit ? `${r.setting} ${r.unit}` : r.setting;
  } catch {
    // the report says "unknown"
  } finally {
    await sql.end({ timeout: 5 });
  }
  return info;
}
