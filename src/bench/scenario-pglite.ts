/**
 * Scenario 7: what the embedded default costs. Scenario 2's unloaded latency
 * and scenario 3's throughput, with sessiond on PGlite (the `npm start`
 * default, on disk) beside sessiond on Postgres and the direct baseline,
 * interleaved the same way; and PGlite's own single-row insert commit rate.
 */
import type { BenchContext } from "./context.js";
import { measureLatency } from "./scenario-latency.js";
import { measureInsertRate, measureThroughput } from "./scenario-throughput.js";
import { summarize } from "./stats.js";

export async function runPgliteScenario(ctx: BenchContext): Promise<void> {
  const pglite = await ctx.pgliteDb();
  if (!pglite) {
    ctx.rec.note("s7: skipped (PGlite disabled with --no-pglite)");
    return;
  }
  const plan = ctx.plan.s7;
  const latency = await measureLatency(ctx, {
    scenario: 7,
    label: "fast",
    specs: [
      { kind: "sessiond", mode: "sessiond", dbId: ctx.pgDb, tokenDelayMs: 0 },
      { kind: "sessiond", mode: "sessiond-pglite", dbId: pglite, tokenDelayMs: 0 },
      { kind: "direct", mode: "direct", tokenDelayMs: 0 },
    ],
    rounds: plan.rounds,
    samples: plan.fastSamples,
    sessions: 1,
  });
  for (const [mode, values] of Object.entries(latency)) {
    ctx.rec.addSeries(7, "e2e send → durable message (model 0 ms/token)", mode, "ms", values);
  }
  const pg = summarize(latency.sessiond ?? []).p50;
  const lite = summarize(latency["sessiond-pglite"] ?? []).p50;
  ctx.rec.addScalar(7, "PGlite latency at p50 relative to Postgres", "sessiond-pglite vs sessiond", "×", lite / pg);

  await measureThroughput(ctx, {
    scenario: 7,
    specs: [
      { kind: "sessiond", mode: "sessiond", dbId: ctx.pgDb, tokenDelayMs: 0, concurrency: ctx.plan.s3.concurrency },
      {
        kind: "sessiond",
        mode: "sessiond-pglite",
        dbId: pglite,
        tokenDelayMs: 0,
        concurrency: ctx.plan.s3.concurrency,
      },
    ],
    steps: plan.steps,
    warmupMs: ctx.plan.s3.warmupMs,
    maxWarmupMs: ctx.plan.s3.maxWarmupMs,
    measureMs: plan.measureMs,
    bucketMs: ctx.plan.s3.bucketMs,
    drainMs: ctx.plan.s3.drainMs,
  });
  const rate = await measureInsertRate(ctx, 7, pglite, "pglite", 1, ctx.plan.s3.insertMs);
  ctx.rec.addScalar(7, "single-row insert commits/s, 1 connection", "pglite", "commits/s", rate);
}
