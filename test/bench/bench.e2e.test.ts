/**
 * `sessiond bench --smoke`: the real command, a real host process, real
 * sockets and a throwaway database, with tiny counts. Checks the shape of
 * what it writes (JSON and SVG) and that it cleans up; never its timings.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PLANS } from "../../src/bench/plan.js";
import type { BenchResult } from "../../src/bench/result.js";
import { runBenchCommand } from "../../src/cli/bench-command.js";
import { postgresAvailable } from "../support/db.js";
import { adminUrl } from "../support/pg-urls.js";

describe.skipIf(!postgresAvailable)("sessiond bench --smoke [postgres]", () => {
  let outDir: string;
  let code: number;
  let stdout: string[];
  let progress: string[];
  let result: BenchResult;
  let svg: string;

  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), "sessiond-bench-"));
    stdout = [];
    progress = [];
    code = await runBenchCommand(
      ["--smoke", "--scenario", "1,2", "--no-pglite", "--out", outDir, "--admin-url", adminUrl()],
      (line) => stdout.push(line),
      { progress: (line) => progress.push(line), env: {} },
    );
    const jsonPath = stdout
      .find((l) => l.startsWith("results: "))
      ?.slice("results: ".length)
      .trim();
    const svgPath = stdout
      .find((l) => l.startsWith("chart: "))
      ?.slice("chart: ".length)
      .trim();
    if (!jsonPath || !svgPath) throw new Error(`no result paths in the output:\n${stdout.join("\n")}`);
    result = JSON.parse(await readFile(jsonPath, "utf8")) as BenchResult;
    svg = await readFile(svgPath, "utf8");
  }, 120_000);

  afterAll(async () => {
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it("runs both scenarios to the end and prints the table and the goals", () => {
    expect(code, [...progress, ...stdout].join("\n")).toBe(0);
    expect(progress.some((l) => l.startsWith("scenario 1:"))).toBe(true);
    expect(progress.some((l) => l.startsWith("scenario 2:"))).toBe(true);
    expect(progress.some((l) => l.includes("FAILED"))).toBe(false);
    const header = stdout.find((l) => /^s\s+metric\s+mode\s+n\s+min\s+p50\s+p90\s+p99\s+max/.test(l));
    expect(header).toBeDefined();
    expect(stdout.some((l) => l.startsWith("goals:"))).toBe(true);
  });

  it("writes a JSON result with one run, the compared modes and consistent statistics", () => {
    expect(result.version).toBe(1);
    expect(result.profileName).toBe("smoke");
    expect(result.scenarios).toEqual([1, 2]);
    expect(result.runs).toHaveLength(1);
    expect(result.machine.cpus).toBeGreaterThan(0);
    expect(result.machine.postgres).toMatch(/PostgreSQL/);
    const run = result.runs[0] as BenchResult["runs"][number];
    expect(run.uptimeBefore).toMatch(/load average/);

    const plan = PLANS.smoke;
    const modesOf = (scenario: number, metric: RegExp) =>
      run.series.filter((s) => s.scenario === scenario && metric.test(s.metric)).map((s) => [s.mode, s.stats.n]);
    expect(modesOf(1, /statement end → run start/)).toEqual([
      ["notify", plan.s1.rounds * plan.s1.notifySamples],
      ["poll-only", plan.s1.rounds * plan.s1.pollSamples],
    ]);
    expect(modesOf(1, /NOTIFY heard/)).toEqual([["notify", plan.s1.rounds * plan.s1.notifySamples]]);
    expect(modesOf(2, /model 0 ms/)).toEqual([
      ["sessiond", plan.s2.rounds * plan.s2.fastSamples],
      ["direct", plan.s2.rounds * plan.s2.fastSamples],
    ]);
    for (const series of run.series) {
      const { min, p50, p90, p99, max, n } = series.stats;
      expect([min, p50, p90, p99, max].every(Number.isFinite), series.metric).toBe(true);
      expect(min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max, series.metric).toBe(true);
      const binned = series.histogram.bins.reduce((sum, [, count]) => sum + count, 0) + series.histogram.nonPositive;
      expect(binned, series.metric).toBe(n);
    }
    // sessiond talks to the database for every message; direct never does.
    const statements = run.scalars.filter((s) => s.metric.startsWith("database statements per message"));
    expect(statements.map((s) => s.mode)).toEqual(["sessiond", "sessiond"]);
    for (const s of statements) expect(s.value).toBeGreaterThan(1);

    const goals = result.goals.map((g) => `${g.scenario} ${g.op} ${g.target} ${g.unit}`);
    expect(goals).toEqual(["1 <= 1 ms", "1 <= 5 ms", "2 <= 2 ms", "2 <= 10 %"]);
    for (const goal of result.goals)
      expect(goal.met).toBe(goal.op === "<=" ? goal.value! <= goal.target : goal.value! >= goal.target);
    expect(result.summary.filter((r) => r.scenario === 2).map((r) => r.runs)).toEqual([1, 1, 1, 1]);
  });

  it("writes a self-contained SVG with a panel per latency view", () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).not.toMatch(/NaN|undefined|Infinity/);
    expect(svg).not.toMatch(/<script|href=/);
    expect(svg).toContain("S1 · dispatch: statement end → run start");
    expect(svg).toContain("S2 · e2e send → durable message (model 0 ms/token)");
    // Every element that opens also closes (the file is well-formed XML as far as tags go).
    const opened = (svg.match(/<(g|svg)\b/g) ?? []).length;
    const closed = (svg.match(/<\/(g|svg)>/g) ?? []).length;
    expect(opened).toBe(closed);
  });

  it("drops the throwaway database it created", async () => {
    expect(result.database.throwaway).toBe(true);
    const sql = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    try {
      const rows = await sql`select 1 from pg_database where datname = ${result.database.name}`;
      expect(rows).toHaveLength(0);
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});
