/**
 * Scenario 1: dispatch latency (event commit → processor start), NOTIFY mode
 * against poll-only mode at the default 2 s sweep. Rounds alternate the mode
 * order; the measuring itself happens in the host (see dispatch.ts).
 */
import { type BenchContext, ms } from "./context.js";
import { summarize } from "./stats.js";

export async function runDispatchScenario(ctx: BenchContext): Promise<void> {
  const plan = ctx.plan.s1;
  const modes = ["notify", "poll-only"] as const;
  const fromStatement: Record<string, number[]> = { notify: [], "poll-only": [] };
  const fromClient: Record<string, number[]> = { notify: [], "poll-only": [] };
  const toNotify: number[] = [];
  let worstRtt = 0;
  let timeouts = 0;
  for (let round = 0; round < plan.rounds; round++) {
    for (const mode of round % 2 === 0 ? modes : [...modes].reverse()) {
      const samples = mode === "notify" ? plan.notifySamples : plan.pollSamples;
      const result = await ctx.host.request(
        "dispatch",
        {
          dbId: ctx.pgDb,
          mode,
          samples,
          sweepMs: plan.sweepMs,
          gapMs: plan.gapMs,
          keyPrefix: `${ctx.prefix}-s1-r${round}`,
        },
        samples * (plan.sweepMs * 2 + 5_000) + 60_000,
      );
      fromStatement[mode]?.push(...result.fromStatement);
      fromClient[mode]?.push(...result.fromClient);
      if (mode === "notify") toNotify.push(...result.toNotify);
      worstRtt = Math.max(worstRtt, result.calibrationRttMs);
      timeouts += result.timeouts;
      const s = summarize(result.fromStatement);
      ctx.progress(`  s1 round ${round + 1}/${plan.rounds} ${mode}: n=${s.n} p50 ${ms(s.p50)} p99 ${ms(s.p99)}`);
    }
  }
  for (const mode of modes) {
    ctx.rec.addSeries(1, "dispatch: statement end → run start", mode, "ms", fromStatement[mode] ?? []);
    ctx.rec.addSeries(1, "dispatch: client saw commit → run start", mode, "ms", fromClient[mode] ?? []);
  }
  ctx.rec.addSeries(1, "dispatch: statement end → NOTIFY heard by a second listener", "notify", "ms", toNotify);
  const notify = summarize(fromStatement.notify ?? []);
  ctx.rec.addGoal(1, "dispatch p50 with NOTIFY (statement end → run start)", "<=", 1, "ms", notify.p50);
  ctx.rec.addGoal(1, "dispatch p99 with NOTIFY (statement end → run start)", "<=", 5, "ms", notify.p99);
  ctx.rec.note(
    `s1: Postgres clock mapped onto the host clock with a best probe round trip of at most ${worstRtt.toFixed(3)} ms (mapping error ≤ half of it); poll-only sweeps every ${plan.sweepMs} ms${timeouts > 0 ? `; ${timeouts} samples timed out` : ""}`,
  );
}
