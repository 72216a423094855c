/**
 * Scenario 4: many sessions streaming at once. N clients send at the same
 * moment; the model streams its reply with a fixed delay d before each token.
 *
 * Token lag: a stream whose tokens arrived exactly at the model's pace would
 * put token i at anchor + i·d. The anchor is the earliest start any token of
 * the stream implies (min over k of t_k − k·d), so the lag of token i is
 * t_i − anchor − i·d ≥ 0: how far behind its own best pace the stream fell at
 * token i. It includes the model's own timer overrun (which direct mode has
 * too); the difference between the modes is what the server adds. Also
 * reported: the first token's arrival after the send, less one token delay.
 */
import { splitTokens } from "../agent/local-model.js";
import { type BenchContext, ms, withServers } from "./context.js";
import { summarize } from "./stats.js";
import { type BenchSocket, closeAll, openMany, type Reply, type Target } from "./ws-client.js";

export function tokenLags(tokens: readonly number[], delayMs: number): number[] {
  let anchor = Number.POSITIVE_INFINITY;
  tokens.forEach((t, i) => {
    if (t !== undefined) anchor = Math.min(anchor, t - i * delayMs);
  });
  const lags: number[] = [];
  tokens.forEach((t, i) => {
    if (t !== undefined) lags.push(t - anchor - i * delayMs);
  });
  return lags;
}

export async function runStreamingScenario(ctx: BenchContext): Promise<void> {
  const plan = ctx.plan.s4;
  const lags: Record<string, number[]> = { sessiond: [], direct: [] };
  const firsts: Record<string, number[]> = { sessiond: [], direct: [] };
  let missing = 0;
  await withServers(
    ctx,
    [
      {
        kind: "sessiond",
        mode: "sessiond",
        dbId: ctx.pgDb,
        tokenDelayMs: plan.tokenDelayMs,
        concurrency: plan.concurrency,
      },
      { kind: "direct", mode: "direct", tokenDelayMs: plan.tokenDelayMs },
    ],
    async (targets) => {
      const sockets = new Map<Target, BenchSocket[]>();
      try {
        for (const target of targets) {
          const keys = Array.from({ length: plan.sessions }, (_, i) => `${ctx.prefix}-s4-${target.mode}-${i}`);
          sockets.set(target, await openMany(target, keys, { parallel: 50 }));
        }
        for (let round = 0; round < plan.rounds; round++) {
          for (const target of round % 2 === 0 ? targets : [...targets].reverse()) {
            const group = sockets.get(target) ?? [];
            const sentAt = performance.now();
            const replies: Reply[] = await Promise.all(
              group.map((socket) => socket.ask(`${socket.sessionKey}-r${round}`, "hi", 120_000)),
            );
            for (const reply of replies) {
              const expected = reply.frame.type === "message" ? splitTokens(reply.frame.content).length : 0;
              missing += Math.max(0, expected - reply.tokens.filter((t) => t !== undefined).length);
              lags[target.mode]?.push(...tokenLags(reply.tokens, plan.tokenDelayMs));
              const first = reply.tokens[0];
              if (first !== undefined) firsts[target.mode]?.push(first - sentAt - plan.tokenDelayMs);
            }
            for (const [i, reply] of replies.entries()) {
              if (reply.frame.type === "message") group[i]?.send({ type: "ack", seq: reply.frame.seq });
            }
            const s = summarize(lags[target.mode] ?? []);
            ctx.progress(
              `  s4 round ${round + 1}/${plan.rounds} ${target.mode}: ${group.length} streams, token lag p50 ${ms(s.p50)} p99 ${ms(s.p99)}`,
            );
          }
        }
      } finally {
        await closeAll([...sockets.values()].flat());
      }
    },
  );
  for (const mode of ["sessiond", "direct"]) {
    ctx.rec.addSeries(
      4,
      `token lag, ${plan.sessions} sessions streaming (${plan.tokenDelayMs} ms/token)`,
      mode,
      "ms",
      lags[mode] ?? [],
    );
    ctx.rec.addSeries(
      4,
      `first token after send, less one token delay (${plan.sessions} sessions)`,
      mode,
      "ms",
      firsts[mode] ?? [],
    );
  }
  if (missing > 0) ctx.rec.note(`s4: ${missing} tokens never arrived (live tokens are not durable)`);
}
