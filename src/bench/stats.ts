/**
 * Sample statistics for the bench: order statistics (nearest rank), a
 * log-scale histogram that every series shares (so histograms of different
 * modes line up in the chart), and the median/spread of repeated runs.
 */

/** Order statistics of one series of samples. */
export interface Stats {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** The nearest-rank percentile `p` (0..100) of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

/** n, min, p50, p90, p99, max and mean of `samples` (NaN for an empty series). */
export function summarize(samples: readonly number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    n: sorted.length,
    min: sorted[0] ?? Number.NaN,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
    mean: sorted.length > 0 ? sum / sorted.length : Number.NaN,
  };
}

/** Bins per decade of the shared log histogram. */
export const BINS_PER_DECADE = 20;
/** log10 of the lowest bin edge (values below land in bin 0). */
export const HISTOGRAM_LOG_MIN = -3;

/**
 * A sparse log-scale histogram: `bins` holds [index, count] pairs, bin i
 * covering [10^(HISTOGRAM_LOG_MIN + i/BINS_PER_DECADE), next edge). Values ≤ 0
 * are counted in `nonPositive` (a lag that came early, say).
 */
export interface Histogram {
  bins: Array<[number, number]>;
  nonPositive: number;
}

export function binIndex(value: number): number {
  return Math.max(0, Math.floor((Math.log10(value) - HISTOGRAM_LOG_MIN) * BINS_PER_DECADE));
}

export function binLowerEdge(index: number): number {
  return 10 ** (HISTOGRAM_LOG_MIN + index / BINS_PER_DECADE);
}

export function histogram(samples: readonly number[]): Histogram {
  const counts = new Map<number, number>();
  let nonPositive = 0;
  for (const v of samples) {
    if (!(v > 0)) {
      nonPositive += 1;
      continue;
    }
    const i = binIndex(v);
    counts.set(i, (counts.get(i) ?? 0) + 1);
  }
  return { bins: [...counts.entries()].sort((a, b) => a[0] - b[0]), nonPositive };
}

/** The median of the values (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Median and min..max of one statistic across repeated runs. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number;
}

export function spread(values: readonly number[]): Spread {
  const finite = values.filter((v) => Number.isFinite(v));
  return {
    median: median(finite),
    min: finite.length > 0 ? Math.min(...finite) : Number.NaN,
    max: finite.length > 0 ? Math.max(...finite) : Number.NaN,
    runs: finite.length,
  };
}
