/**
 * CPU accounting for the throughput steps: where the machine's two cores go
 * per message. This process and the host report their own CPU time
 * (process.cpuUsage); the Postgres side is read from /proc (Linux only): the
 * backends connected to the bench's database (their process title names it)
 * plus the server's WAL writer, which every commit waits on. The backends
 * must stay connected over the window (pools do), or their time is lost.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 2_000 }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** This process's user + system CPU time, ms. */
export function ownCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

/**
 * User + system CPU time (ms) of the Postgres processes serving database
 * `dbName` (and the WAL writer), or null where /proc cannot be read.
 */
export function postgresCpuMs(dbName: string): number | null {
  let entries: string[];
  try {
    entries = readdirSync("/proc").filter((e) => /^\d+$/.test(e));
  } catch {
    return null;
  }
  let ticks = 0;
  for (const pid of entries) {
    try {
      const title = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (!title.startsWith("postgres:")) continue;
      if (!title.includes(` ${dbName} `) && !title.includes("walwriter")) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the command name (which may hold spaces): utime and stime are fields 14 and 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process ended meanwhile
    }
  }
  return (ticks / clockTicks()) * 1000;
}
