/**
 * The shape of a bench result (the JSON file `sessiond bench` writes) and the
 * recorder the scenarios fill in. One RunResult per repetition; the file
 * holds every run and the summary across runs.
 */
import { type Histogram, histogram, type Stats, summarize } from "./stats.js";

/** Latency-like samples of one metric in one mode. */
export interface SeriesResult {
  scenario: number;
  /** What was measured, e.g. "dispatch (statement end → run start)". */
  metric: string;
  /** The mode compared, e.g. "notify", "poll-only", "sessiond", "direct". */
  mode: string;
  unit: string;
  stats: Stats;
  histogram: Histogram;
}

/** One number (a throughput, a memory figure). */
export interface ScalarResult {
  scenario: number;
  metric: string;
  mode: string;
  unit: string;
  value: number;
}

/** Values per fixed time bucket (throughput over time). */
export interface TimeSeriesResult {
  scenario: number;
  metric: string;
  mode: string;
  unit: string;
  bucketMs: number;
  values: number[];
}

/** A goal of issue 7 and today's value. */
export interface GoalResult {
  scenario: number;
  goal: string;
  op: "<=" | ">=";
  target: number;
  unit: string;
  value: number | null;
  met: boolean | null;
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  platform: string;
  openFilesLimit: number | null;
  postgres: string | null;
  postgresSettings: Record<string, string>;
}

export interface RunResult {
  run: number;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  uptimeBefore: string;
  uptimeAfter: string;
  loadBefore: number[];
  loadAfter: number[];
  series: SeriesResult[];
  scalars: ScalarResult[];
  timeseries: TimeSeriesResult[];
  goals: GoalResult[];
  notes: string[];
}

/** The median and spread of a statistic across runs. */
export interface SummaryRow {
  scenario: number;
  metric: string;
  mode: string;
  unit: string;
  /** min/p50/p90/p99/max: the median across runs; p50Spread/p99Spread: min..max across runs. */
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  n: number;
  p50Spread: [number, number];
  p99Spread: [number, number];
  runs: number;
}

export interface ProfileEntry {
  functionName: string;
  location: string;
  category: string;
  selfMs: number;
  selfPercent: number;
}

export interface ProfileSummary {
  workload: string;
  totalMs: number;
  sampledMs: number;
  top: ProfileEntry[];
  byCategory: Array<{ category: string; selfMs: number; selfPercent: number }>;
  /** Natives charged to the nearest component that called them. */
  byOwner: Array<{ category: string; selfMs: number; selfPercent: number }>;
  file: string;
}

export interface BenchResult {
  version: 1;
  command: string;
  profileName: "full" | "quick" | "smoke";
  scenarios: number[];
  machine: MachineInfo;
  database: { kind: "postgres"; throwaway: boolean; name: string; pglite: boolean };
  runs: RunResult[];
  summary: SummaryRow[];
  scalarSummary: Array<ScalarResult & { spread: [number, number]; runs: number }>;
  goals: Array<GoalResult & { spread: [number, number] | null }>;
  profile: ProfileSummary | null;
}

/** Collects what one run measures. */
export class Recorder {
  readonly series: SeriesResult[] = [];
  readonly scalars: ScalarResult[] = [];
  readonly timeseries: TimeSeriesResult[] = [];
  readonly goals: GoalResult[] = [];
  readonly notes: string[] = [];

  addSeries(scenario: number, metric: string, mode: string, unit: string, samples: readonly number[]): SeriesResult {
    const result = { scenario, metric, mode, unit, stats: summarize(samples), histogram: histogram(samples) };
    this.series.push(result);
    return result;
  }

  addScalar(scenario: number, metric: string, mode: string, unit: string, value: number): void {
    this.scalars.push({ scenario, metric, mode, unit, value });
  }

  addTimeSeries(scenario: number, metric: string, mode: string, unit: string, bucketMs: number, values: number[]) {
    this.timeseries.push({ scenario, metric, mode, unit, bucketMs, values });
  }

  addGoal(scenario: number, goal: string, op: "<=" | ">=", target: number, unit: string, value: number | null) {
    const met = value === null || !Number.isFinite(value) ? null : op === "<=" ? value <= target : value >= target;
    this.goals.push({ scenario, goal, op, target, unit, value, met });
  }

  note(text: string): void {
    this.notes.push(text);
  }
}
