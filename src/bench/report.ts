/**
 * From runs to the report: the median of every statistic across repeated
 * runs with its spread (min..max of the per-run values), and the plain-text
 * tables `sessiond bench` prints.
 */
import { formatTable } from "../audit/table.js";
import type { BenchResult, GoalResult, ProfileSummary, RunResult, ScalarResult, SummaryRow } from "./result.js";
import { spread } from "./stats.js";

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

const keyOf = (x: { scenario: number; metric: string; mode: string }) =>
  `${x.scenario}\u0000${x.metric}\u0000${x.mode}`;

export function summarizeRuns(runs: readonly RunResult[]): Pick<BenchResult, "summary" | "scalarSummary" | "goals"> {
  const summary: SummaryRow[] = [];
  for (const group of groupBy(
    runs.flatMap((r) => r.series),
    keyOf,
  ).values()) {
    const first = group[0];
    if (!first) continue;
    const stat = (name: "min" | "p50" | "p90" | "p99" | "max" | "n") => spread(group.map((s) => s.stats[name]));
    const p50 = stat("p50");
    const p99 = stat("p99");
    summary.push({
      scenario: first.scenario,
      metric: first.metric,
      mode: first.mode,
      unit: first.unit,
      min: stat("min").median,
      p50: p50.median,
      p90: stat("p90").median,
      p99: p99.median,
      max: stat("max").median,
      n: stat("n").median,
      p50Spread: [p50.min, p50.max],
      p99Spread: [p99.min, p99.max],
      runs: group.length,
    });
  }
  const scalarSummary: BenchResult["scalarSummary"] = [];
  for (const group of groupBy(
    runs.flatMap((r) => r.scalars),
    keyOf,
  ).values()) {
    const first = group[0] as ScalarResult;
    const s = spread(group.map((g) => g.value));
    scalarSummary.push({ ...first, value: s.median, spread: [s.min, s.max], runs: s.runs });
  }
  const goals: BenchResult["goals"] = [];
  for (const group of groupBy(
    runs.flatMap((r) => r.goals),
    (g) => `${g.scenario}\u0000${g.goal}`,
  ).values()) {
    const first = group[0] as GoalResult;
    const values = group.map((g) => g.value).filter((v): v is number => v !== null && Number.isFinite(v));
    const s = spread(values);
    const value = values.length > 0 ? s.median : null;
    const met = value === null ? null : first.op === "<=" ? value <= first.target : value >= first.target;
    goals.push({ ...first, value, met, spread: values.length > 1 ? [s.min, s.max] : null });
  }
  const order = (a: { scenario: number }, b: { scenario: number }) => a.scenario - b.scenario;
  return { summary: summary.sort(order), scalarSummary: scalarSummary.sort(order), goals: goals.sort(order) };
}

/** A number for a table cell: a few significant digits, thousands grouped. */
export function num(value: number): string {
  if (!Number.isFinite(value)) return "—";
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString("en-US");
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

function range([lo, hi]: [number, number], runs: number): string {
  return runs > 1 ? `${num(lo)}–${num(hi)}` : "";
}

/** The report's text: latency table, scalar table, goals, notes, profile. */
export function formatReport(result: BenchResult): string[] {
  const lines: string[] = [];
  const runs = result.runs.length;
  lines.push(
    `sessiond bench (${result.profileName}, ${runs} run${runs === 1 ? "" : "s"}${runs > 1 ? ": medians across runs, spread = min–max of the per-run value" : ""})`,
  );
  lines.push(
    `machine: ${result.machine.cpus} × ${result.machine.cpuModel}, ${result.machine.memoryGiB} GiB, Node ${result.machine.node}, ${result.machine.postgres?.split(" on ")[0] ?? "Postgres ?"}`,
  );
  for (const run of result.runs)
    lines.push(`run ${run.run}: load before ${run.uptimeBefore.trim()} | after ${run.uptimeAfter.trim()}`);
  lines.push("");
  if (result.summary.length > 0) {
    lines.push(
      ...formatTable(
        [
          { header: "s" },
          { header: "metric" },
          { header: "mode" },
          { header: "n", align: "right" },
          { header: "min", align: "right" },
          { header: "p50", align: "right" },
          { header: "p90", align: "right" },
          { header: "p99", align: "right" },
          { header: "max", align: "right" },
          { header: "unit" },
          { header: "p50 spread", align: "right" },
          { header: "p99 spread" },
        ],
        result.summary.map((row) => [
          String(row.scenario),
          row.metric,
          row.mode,
          String(Math.round(row.n)),
          num(row.min),
          num(row.p50),
          num(row.p90),
          num(row.p99),
          num(row.max),
          row.unit,
          range(row.p50Spread, row.runs),
          range(row.p99Spread, row.runs),
        ]),
      ),
    );
    lines.push("");
  }
  if (result.scalarSummary.length > 0) {
    lines.push(
      ...formatTable(
        [
          { header: "s" },
          { header: "metric" },
          { header: "mode" },
          { header: "value", align: "right" },
          { header: "unit" },
          { header: "spread" },
        ],
        result.scalarSummary.map((row) => [
          String(row.scenario),
          row.metric,
          row.mode,
          num(row.value),
          row.unit,
          range(row.spread, row.runs),
        ]),
      ),
    );
    lines.push("");
  }
  if (result.goals.length > 0) {
    lines.push("goals:");
    for (const goal of result.goals) {
      const mark = goal.met === null ? "?" : goal.met ? "met" : "MISSED";
      const value = goal.value === null ? "no value" : `${num(goal.value)} ${goal.unit}`;
      const spreadText = goal.spread ? ` (runs ${num(goal.spread[0])}–${num(goal.spread[1])})` : "";
      lines.push(
        `  [${mark}] s${goal.scenario} ${goal.goal} ${goal.op} ${num(goal.target)} ${goal.unit}: ${value}${spreadText}`,
      );
    }
    lines.push("");
  }
  const notes = [...new Set(result.runs.flatMap((r) => r.notes))];
  if (notes.length > 0) {
    lines.push("notes:");
    for (const note of notes) lines.push(`  - ${note}`);
    lines.push("");
  }
  if (result.profile) lines.push(...formatProfile(result.profile), "");
  return lines;
}

export function formatProfile(profile: ProfileSummary): string[] {
  const lines = [`CPU profile of the server process (${profile.workload}; ${num(profile.totalMs)} ms):`];
  lines.push(
    ...formatTable(
      [{ header: "category" }, { header: "self ms", align: "right" }, { header: "% of busy", align: "right" }],
      profile.byCategory.map((c) => [
        c.category,
        num(c.selfMs),
        c.category === "idle" ? "" : `${num(c.selfPercent)} %`,
      ]),
    ).map((l) => `  ${l}`),
  );
  lines.push("", "  natives charged to the component that called them:");
  lines.push(
    ...formatTable(
      [{ header: "component" }, { header: "ms", align: "right" }, { header: "% of busy", align: "right" }],
      profile.byOwner.map((c) => [c.category, num(c.selfMs), `${num(c.selfPercent)} %`]),
    ).map((l) => `  ${l}`),
  );
  lines.push("");
  lines.push(
    ...formatTable(
      [
        { header: "self ms", align: "right" },
        { header: "%", align: "right" },
        { header: "function" },
        { header: "category" },
        { header: "location" },
      ],
      profile.top.map((e) => [num(e.selfMs), `${num(e.selfPercent)} %`, e.functionName, e.category, e.location]),
    ).map((l) => `  ${l}`),
  );
  return lines;
}
