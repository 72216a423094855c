/**
 * What a chaos suite found, printed as one line (`chaos <suite>: {json}`) so
 * the numbers land in the test output, and appended as JSON to the file named
 * by CHAOS_REPORT when it is set (docs/reliability.md is written from it).
 */
import { appendFileSync } from "node:fs";
import { LONG } from "./mode.js";

export function report(suite: string, data: Record<string, unknown>): void {
  const entry = { suite, form: LONG ? "long" : "short", at: new Date().toISOString(), ...data };
  console.log(`chaos ${suite}: ${JSON.stringify(entry)}`);
  const file = process.env.CHAOS_REPORT;
  if (file) appendFileSync(file, `${JSON.stringify(entry)}\n`);
}

/** The p-th percentile (0..100) of `values` (nearest rank); NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}
