/**
 * The bench run: prepare the database (given, or a throwaway one), then for
 * each repetition fork a fresh host, run the chosen scenarios in order, record
 * the load before and after; optionally profile the hot path in a host of
 * its own; finally summarise across runs and write the JSON result and the
 * SVG chart. The throwaway database and PGlite directories are removed on
 * every path out.
 */
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { renderChart } from "./chart.js";
import type { BenchContext } from "./context.js";
import { withServers } from "./context.js";
import { DEFAULT_ADMIN_URL, machineInfo, prepareDatabase } from "./database.js";
import { HostProcess } from "./host-client.js";
import { PLANS, type ProfileName } from "./plan.js";
import { summarizeCpuProfile } from "./profile.js";
import { summarizeRuns } from "./report.js";
import type { BenchResult, ProfileSummary, RunResult } from "./result.js";
import { Recorder } from "./result.js";
import { runConnectionsScenario } from "./scenario-connections.js";
import { runDispatchScenario } from "./scenario-dispatch.js";
import { runLatencyScenario } from "./scenario-latency.js";
import { runPgliteScenario } from "./scenario-pglite.js";
import { runReplayScenario } from "./scenario-replay.js";
import { runStreamingScenario } from "./scenario-streaming.js";
import { driveClosedLoop, runThroughputScenario } from "./scenario-throughput.js";
import { closeAll, openMany } from "./ws-client.js";

export const SCENARIOS: Record<number, { title: string; run(ctx: BenchContext): Promise<void> }> = {
  1: { title: "dispatch latency: NOTIFY vs poll-only", run: runDispatchScenario },
  2: { title: "end-to-end latency: sessiond vs direct", run: runLatencyScenario },
  3: { title: "throughput over 1, 100 and 1,000 sessions", run: runThroughputScenario },
  4: { title: "100 sessions streaming at once", run: runStreamingScenario },
  5: { title: "idle authenticated sockets: memory per connection", run: runConnectionsScenario },
  6: { title: "replay after missed messages", run: runReplayScenario },
  7: { title: "embedded PGlite vs Postgres", run: runPgliteScenario },
};

export interface BenchOptions {
  profile: ProfileName;
  scenarios: number[];
  runs: number;
  /** Profile the hot path (V8 CPU profiler in the host) after the runs. */
  cpuProfile: boolean;
  outDir: string;
  /** Use this database as is (else a throwaway one on adminUrl). */
  databaseUrl?: string;
  adminUrl?: string;
  pglite: boolean;
  progress(line: string): void;
  command?: string;
}

/** The bench was stopped by a signal (after cleaning up). */
export class BenchInterrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
    this.name = "BenchInterrupted";
  }
}

export interface BenchOutput {
  result: BenchResult;
  jsonPath: string;
  svgPath: string;
  /** Scenarios that failed (their error is in the notes). */
  failures: string[];
}

function uptime(): string {
  try {
    return execFileSync("uptime", { encoding: "utf8", timeout: 2_000 }).trim();
  } catch {
    return `load average: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(", ")}`;
  }
}

function stampOf(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

export async function runBench(options: BenchOptions): Promise<BenchOutput> {
  const plan = PLANS[options.profile];
  const outDir = resolve(options.outDir);
  await mkdir(outDir, { recursive: true });
  const startedAt = new Date();
  const stamp = stampOf(startedAt);
  const logFile = join(outDir, `bench-${stamp}-host.log`);
  const machine = await machineInfo(options.databaseUrl ?? options.adminUrl ?? DEFAULT_ADMIN_URL);
  const database = await prepareDatabase({
    ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
    ...(options.adminUrl ? { adminUrl: options.adminUrl } : {}),
  });
  options.progress(
    `database: ${database.throwaway ? `throwaway ${database.name}` : database.name}; host log: ${logFile}`,
  );
  const runs: RunResult[] = [];
  const failures: string[] = [];
  let profile: ProfileSummary | null = null;
  const pgliteDirs: string[] = [];
  // Ctrl-C or a kill: stop the host at once, then let the finally below drop
  // the throwaway database and the PGlite directories before giving up.
  let interrupted: NodeJS.Signals | undefined;
  const hosts = new Set<HostProcess>();
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = signal;
    options.progress(`${signal}: stopping and cleaning up`);
    for (const host of hosts) host.kill();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    for (let run = 1; run <= options.runs && !interrupted; run++) {
      const rec = new Recorder();
      const runStarted = new Date();
      const uptimeBefore = uptime();
      const loadBefore = loadavg();
      options.progress(`run ${run}/${options.runs} (${plan.name}) — ${uptimeBefore}`);
      const host = await HostProcess.start({ logFile });
      hosts.add(host);
      try {
        await host.request("openDb", { id: "pg", kind: "postgres", url: database.url, poolMax: 10 });
        let pgliteId: Promise<string | null> | undefined;
        const ctx: BenchContext = {
          host,
          plan,
          rec,
          progress: options.progress,
          secret: `bench-secret-${Math.random().toString(36).slice(2)}-${Date.now()}-0123456789abcdef`,
          prefix: `b${stamp.toLowerCase()}-${run}`,
          pgDb: "pg",
          pgDbName: database.name,
          pgliteDb() {
            if (!options.pglite) return Promise.resolve(null);
            pgliteId ??= (async () => {
              const dir = join(outDir, `pglite-${stamp}-${run}`);
              pgliteDirs.push(dir);
              const { migrateMs } = await host.request("openDb", { id: "pglite", kind: "pglite", dataDir: dir });
              options.progress(`  PGlite opened and migrated in ${migrateMs.toFixed(0)} ms (${dir})`);
              return "pglite";
            })();
            return pgliteId;
          },
        };
        for (const id of options.scenarios) {
          const scenario = SCENARIOS[id];
          if (!scenario || interrupted) continue;
          const began = performance.now();
          options.progress(`scenario ${id}: ${scenario.title}`);
          try {
            await scenario.run(ctx);
            options.progress(`scenario ${id} done in ${((performance.now() - began) / 1000).toFixed(1)} s`);
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error);
            failures.push(`run ${run} scenario ${id}: ${message}`);
            rec.note(`s${id} FAILED: ${message.split("\n")[0]}`);
            options.progress(`scenario ${id} FAILED: ${message}`);
          }
        }
      } finally {
        await host.stop();
        hosts.delete(host);
      }
      const finishedAt = new Date();
      runs.push({
        run,
        startedAt: runStarted.toISOString(),
        finishedAt: finishedAt.toISOString(),
        durationMs: finishedAt.getTime() - runStarted.getTime(),
        uptimeBefore,
        uptimeAfter: uptime(),
        loadBefore,
        loadAfter: loadavg(),
        series: rec.series,
        scalars: rec.scalars,
        timeseries: rec.timeseries,
        goals: rec.goals,
        notes: rec.notes,
      });
    }
    if (options.cpuProfile && !interrupted) {
      profile = await profileHotPath(options, database.url, outDir, stamp, logFile, hosts);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await database
      .drop()
      .catch((error: Error) => options.progress(`could not drop ${database.name}: ${error.message}`));
    for (const dir of pgliteDirs) await rm(dir, { recursive: true, force: true });
  }
  if (interrupted) throw new BenchInterrupted(interrupted);

  const result: BenchResult = {
    version: 1,
    command: options.command ?? "sessiond bench",
    profileName: plan.name,
    scenarios: options.scenarios,
    machine,
    database: { kind: "postgres", throwaway: database.throwaway, name: database.name, pglite: options.pglite },
    runs,
    ...summarizeRuns(runs),
    profile,
  };
  const jsonPath = join(outDir, `bench-${stamp}.json`);
  const svgPath = join(outDir, `bench-${stamp}.svg`);
  await writeFile(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(svgPath, renderChart(result));
  await copyFile(jsonPath, join(outDir, "latest.json"));
  await copyFile(svgPath, join(outDir, "latest.svg"));
  return { result, jsonPath, svgPath, failures };
}

/**
 * The hot path under load, profiled: in a fresh host serving 100 sessions ×
 * 1 message in flight (scenario 3's middle step) on Postgres, the V8 CPU
 * profiler runs over the measurement window only (not over start-up), and
 * the profile is summarised by self time.
 */
async function profileHotPath(
  options: BenchOptions,
  url: string,
  outDir: string,
  stamp: string,
  logFile: string,
  hosts: Set<HostProcess>,
): Promise<ProfileSummary | null> {
  const plan = PLANS[options.profile];
  const file = join(outDir, `bench-${stamp}.cpuprofile`);
  const sessions = plan.name === "smoke" ? 2 : 100;
  const measureMs = plan.name === "full" ? 10_000 : plan.name === "quick" ? 3_000 : 300;
  options.progress(`profile: ${sessions} sessions × 1 in flight for ${measureMs} ms under the CPU profiler`);
  const host = await HostProcess.start({ logFile });
  hosts.add(host);
  const rec = new Recorder();
  try {
    await host.request("openDb", { id: "pg", kind: "postgres", url, poolMax: 10 });
    const ctx: BenchContext = {
      host,
      plan,
      rec,
      progress: options.progress,
      secret: `bench-profile-${Math.random().toString(36).slice(2)}-0123456789abcdefghijklmnop`,
      prefix: `p${stamp.toLowerCase()}`,
      pgDb: "pg",
      pgDbName: new URL(url).pathname.slice(1),
      pgliteDb: () => Promise.resolve(null),
    };
    await withServers(
      ctx,
      [{ kind: "sessiond", mode: "sessiond", dbId: "pg", tokenDelayMs: 0, concurrency: plan.s3.concurrency }],
      async ([target]) => {
        if (!target) return;
        const keys = Array.from({ length: sessions }, (_, i) => `${ctx.prefix}-${i}`);
        const sockets = await openMany(target, keys, { parallel: 50 });
        try {
          // Warm up unprofiled, then profile a window of the same load.
          await driveClosedLoop(sockets, { warmupMs: 0, measureMs: 1_000, bucketMs: 250, window: 1 });
          await host.request("profileStart", { samplingIntervalUs: 200 });
          const r = await driveClosedLoop(sockets, {
            warmupMs: 0,
            measureMs,
            bucketMs: 250,
            window: 1,
            drainMs: 3_000,
          });
          await host.request("profileStop", { file });
          options.progress(`profile: ${r.throughput.toFixed(0)} msg/s while profiled`);
        } finally {
          await closeAll(sockets);
        }
      },
    );
  } finally {
    await host.stop();
    hosts.delete(host);
  }
  return summarizeCpuProfile(file, `${sessions} sessions × 1 message in flight, ${measureMs} ms, Postgres`);
}
