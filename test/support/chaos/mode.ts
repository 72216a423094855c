/**
 * Short or long form of the chaos suites. `npm test` runs the short form
 * (a few cycles, ~1,000 fuzz inputs: bounded for CI); `npm run chaos` sets
 * CHAOS=long for many cycles and many thousands of inputs. CHAOS_SEED makes a
 * run reproducible (every suite prints the seed it used).
 */
export const LONG = process.env.CHAOS === "long";

/** The short-form value in `npm test`, the long-form one under `npm run chaos`. */
export function scale<T>(short: T, long: T): T {
  return LONG ? long : short;
}

/** The seed of a suite: CHAOS_SEED if set, else a fixed one per suite (so CI runs are reproducible). */
export function seedFor(suite: string): string {
  return process.env.CHAOS_SEED ? `${process.env.CHAOS_SEED}:${suite}` : `sessiond-chaos:${suite}`;
}

/** A test timeout that fits the form. */
export function timeoutMs(shortMs: number, longMs: number): number {
  return scale(shortMs, longMs);
}
