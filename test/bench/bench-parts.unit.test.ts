/**
 * The bench's pure parts: statistics, the token-lag definition, the summary
 * across runs, the CPU-profile summary, the chart, and the command's usage
 * errors (which return before anything starts).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { renderChart } from "../../src/bench/chart.js";
import { summarizeCpuProfile } from "../../src/bench/profile.js";
import { summarizeRuns } from "../../src/bench/report.js";
import { type BenchResult, Recorder, type RunResult } from "../../src/bench/result.js";
import { tokenLags } from "../../src/bench/scenario-streaming.js";
import { binIndex, binLowerEdge, histogram, percentile, summarize } from "../../src/bench/stats.js";
import { runBenchCommand } from "../../src/cli/bench-command.js";

describe("stats", () => {
  it("takes nearest-rank percentiles", () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 90)).toBe(90);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile(sorted, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it("summarises unsorted samples", () => {
    expect(summarize([5, 1, 3, 2, 4])).toEqual({ n: 5, min: 1, p50: 3, p90: 5, p99: 5, max: 5, mean: 3 });
  });

  it("bins on a shared log scale and counts non-positive values apart", () => {
    const h = histogram([0.45, 0.46, 5, -1, 0]);
    expect(h.nonPositive).toBe(2);
    expect(h.bins).toEqual([
      [binIndex(0.45), 2],
      [binIndex(5), 1],
    ]);
    expect(binLowerEdge(binIndex(5))).toBeLessThanOrEqual(5);
    expect(binLowerEdge(binIndex(5) + 1)).toBeGreaterThan(5);
  });
});

describe("token lag", () => {
  it("is zero for a stream at the model's pace, whatever its start", () => {
    expect(tokenLags([100, 150, 200, 250], 50)).toEqual([0, 0, 0, 0]);
  });

  it("measures each token against the best pace the stream showed", () => {
    // Token 1 came 30 ms late and token 2 caught up: only token 1 lags.
    expect(tokenLags([100, 180, 200], 50)).toEqual([0, 30, 0]);
    // A late first token makes the later, on-time ones the anchor.
    expect(tokenLags([120, 150, 200], 50)).toEqual([20, 0, 0]);
  });

  it("skips tokens that never arrived", () => {
    const tokens: number[] = [];
    tokens[0] = 10;
    tokens[2] = 30;
    expect(tokenLags(tokens, 10)).toEqual([0, 0]);
  });
});

function run(n: number, values: number[], throughput: number): RunResult {
  const rec = new Recorder();
  rec.addSeries(2, "e2e <send> (model 0 ms/token)", "sessiond", "ms", values);
  rec.addScalar(3, "throughput, 1 sessions (best window)", "sessiond", "msg/s", throughput);
  rec.addGoal(3, "throughput", ">=", 100, "msg/s", throughput);
  rec.addTimeSeries(3, "delivered messages/s, 1 sessions × 1", "sessiond", "msg/s", 100, [10, 20, 30]);
  return {
    run: n,
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:01:00.000Z",
    durationMs: 60_000,
    uptimeBefore: "load average: 0.10, 0.10, 0.10",
    uptimeAfter: "load average: 0.20, 0.10, 0.10",
    loadBefore: [0.1, 0.1, 0.1],
    loadAfter: [0.2, 0.1, 0.1],
    series: rec.series,
    scalars: rec.scalars,
    timeseries: rec.timeseries,
    goals: rec.goals,
    notes: rec.notes,
  };
}

function resultOf(runs: RunResult[]): BenchResult {
  return {
    version: 1,
    command: "sessiond bench",
    profileName: "quick",
    scenarios: [2, 3],
    machine: {
      cpus: 2,
      cpuModel: "test cpu",
      memoryGiB: 24,
      node: "v20",
      platform: "linux x64",
      openFilesLimit: 1024,
      postgres: "PostgreSQL 15.0 on x86_64",
      postgresSettings: {},
    },
    database: { kind: "postgres", throwaway: true, name: "x", pglite: false },
    runs,
    ...summarizeRuns(runs),
    profile: null,
  };
}

describe("summary across runs", () => {
  it("takes the median of each statistic and the spread of p50 and p99", () => {
    const runs = [run(1, [1, 2, 3], 90), run(2, [2, 4, 6], 150), run(3, [10, 20, 30], 120)];
    const { summary, scalarSummary, goals } = summarizeRuns(runs);
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({ p50: 4, p50Spread: [2, 20], p99: 6, p99Spread: [3, 30], runs: 3 });
    expect(scalarSummary[0]).toMatchObject({ value: 120, spread: [90, 150], runs: 3 });
    // The goal is judged on the median run, and the spread shows the runs that missed.
    expect(goals[0]).toMatchObject({ value: 120, met: true, spread: [90, 150] });
  });
});

describe("chart", () => {
  it("draws histogram, throughput and bar panels without invalid numbers", () => {
    const svg = renderChart(resultOf([run(1, [1, 2, 3, 50], 90), run(2, [2, 4, 6], 150)]));
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).not.toMatch(/NaN|undefined|Infinity/);
    expect(svg).toContain("S3 · throughput over time");
    expect(svg).toContain("S3 · best throughput");
    expect(svg).toContain("S2 · e2e &lt;send&gt; (model 0 ms/token)");
  });
});

describe("CPU profile summary", () => {
  it("attributes each sample's interval to the function on top and groups by category", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sessiond-prof-"));
    try {
      const file = join(dir, "p.cpuprofile");
      const frame = (functionName: string, url: string) => ({
        functionName,
        url,
        lineNumber: 9,
        columnNumber: 0,
        scriptId: "1",
      });
      await writeFile(
        file,
        JSON.stringify({
          nodes: [
            { id: 1, callFrame: frame("(root)", ""), children: [2, 3, 4] },
            { id: 2, callFrame: frame("(idle)", "") },
            { id: 3, callFrame: frame("parse", "file:///app/node_modules/postgres/src/connection.js"), children: [5] },
            { id: 4, callFrame: frame("commitRun", "file:///app/src/session/leases.ts") },
            { id: 5, callFrame: frame("writev", "") },
          ],
          startTime: 0,
          endTime: 11_000,
          samples: [3, 3, 4, 2, 5, 3],
          timeDeltas: [0, 1000, 1000, 2000, 4000, 1000],
        }),
      );
      const summary = await summarizeCpuProfile(file, "test");
      // Sample i lasts until sample i+1: parse 1 + 1 ms (+ 0 for the last), commitRun 2 ms, idle 4 ms, writev 1 ms.
      expect(summary.top.map((e) => [e.functionName, e.selfMs, e.category])).toEqual([
        ["parse", 2, "postgres.js driver"],
        ["commitRun", 2, "sessiond"],
        ["writev", 1, "V8 / native builtins"],
      ]);
      expect(summary.top[0]?.selfPercent).toBe(40);
      // The native writev is charged to the driver that called it.
      expect(summary.byOwner).toEqual([
        { category: "postgres.js driver", selfMs: 3, selfPercent: 60 },
        { category: "sessiond", selfMs: 2, selfPercent: 40 },
      ]);
      expect(summary.top[0]?.location).toBe("postgres/src/connection.js:10");
      expect(summary.byCategory.find((c) => c.category === "idle")?.selfMs).toBe(4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("bench command usage", () => {
  const run = async (argv: string[]) => {
    const out: string[] = [];
    const code = await runBenchCommand(argv, (l) => out.push(l), { progress: () => {}, env: {} });
    return { code, text: out.join("\n") };
  };

  it("refuses unknown scenarios, bad run counts, unknown flags and conflicting options", async () => {
    expect(await run(["--scenario", "9"])).toMatchObject({
      code: 2,
      text: expect.stringContaining("--scenario must be one of 1, 2, 3, 4, 5, 6, 7"),
    });
    expect(await run(["--scenario", "two"])).toMatchObject({ code: 2, text: expect.stringContaining("whole number") });
    expect(await run(["--runs", "0"])).toMatchObject({
      code: 2,
      text: expect.stringContaining("--runs must be at least 1"),
    });
    expect(await run(["--fast"])).toMatchObject({ code: 2, text: expect.stringContaining("usage:") });
    expect(await run(["--quick", "--smoke"])).toMatchObject({
      code: 2,
      text: expect.stringContaining("exclude each other"),
    });
    expect(await run(["--database-url", "mysql://x"])).toMatchObject({
      code: 2,
      text: expect.stringContaining("postgres:// URL"),
    });
  });

  it("prints its usage with --help", async () => {
    const { code, text } = await run(["--help"]);
    expect(code).toBe(0);
    expect(text).toContain("sessiond bench [--quick]");
    expect(text).toContain("7  embedded PGlite vs Postgres");
  });
});
