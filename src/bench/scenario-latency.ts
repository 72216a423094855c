/**
 * Scenario 2 (and the latency half of 7): end-to-end latency, from the
 * client sending a `message` frame to the durable `message` frame arriving,
 * one message in flight at a time. Samples alternate between the servers
 * compared (sessiond, direct, sessiond on PGlite), so machine noise lands on
 * every mode alike. Between samples the client acks and pauses briefly so
 * each sample meets an idle server (unloaded latency).
 */
import { setTimeout as delay } from "node:timers/promises";
import { type BenchContext, ms, type ServerSpec, withServers } from "./context.js";
import { summarize } from "./stats.js";
import { type BenchSocket, closeAll, openMany, type Target } from "./ws-client.js";

export interface LatencyOptions {
  scenario: number;
  label: string;
  specs: ServerSpec[];
  rounds: number;
  samples: number;
  sessions: number;
  gapMs?: number;
}

/** Runs the interleaved latency loop; returns the samples (ms) per mode. */
export async function measureLatency(ctx: BenchContext, options: LatencyOptions): Promise<Record<string, number[]>> {
  const samples: Record<string, number[]> = Object.fromEntries(options.specs.map((s) => [s.mode, []]));
  const statements = new Map<
    string,
    { total: number; totalMs: number; transactions: number; transactionMs: number; by: Map<string, [number, number]> }
  >();
  const timeoutMs = 60_000;
  await withServers(ctx, options.specs, async (targets) => {
    for (let round = 0; round < options.rounds; round++) {
      const sockets = new Map<Target, BenchSocket[]>();
      try {
        for (const target of targets) {
          const keys = Array.from(
            { length: options.sessions },
            (_, i) => `${ctx.prefix}-s${options.scenario}-${options.label}-${target.mode}-r${round}-${i}`,
          );
          sockets.set(target, await openMany(target, keys, { parallel: 8 }));
        }
        // One warm-up exchange per socket in the first round (statements get prepared, code paths compiled).
        for (const target of round === 0 ? targets : []) {
          for (const socket of sockets.get(target) ?? []) {
            const reply = await socket.ask(`${socket.sessionKey}-warm`, "hi", timeoutMs);
            if (reply.frame.type === "message") socket.send({ type: "ack", seq: reply.frame.seq });
          }
        }
        for (const target of targets)
          if (target.serverId) await ctx.host.request("statements", { id: target.serverId });
        for (let i = 0; i < options.samples; i++) {
          for (let t = 0; t < targets.length; t++) {
            const target = targets[(i + t) % targets.length] as Target;
            const socket = (sockets.get(target) ?? [])[i % options.sessions] as BenchSocket;
            const sentAt = performance.now();
            const reply = await socket.ask(`${socket.sessionKey}-${i}`, "hi", timeoutMs);
            samples[target.mode]?.push(reply.at - sentAt);
            if (reply.frame.type === "message") socket.send({ type: "ack", seq: reply.frame.seq });
            await delay(options.gapMs ?? 3);
          }
        }
        for (const target of targets) {
          if (!target.serverId) continue;
          const taken = await ctx.host.request("statements", { id: target.serverId });
          if (taken.total === 0) continue;
          const sum = statements.get(target.mode) ?? {
            total: 0,
            totalMs: 0,
            transactions: 0,
            transactionMs: 0,
            by: new Map<string, [number, number]>(),
          };
          sum.total += taken.total;
          sum.totalMs += taken.totalMs;
          sum.transactions += taken.transactions;
          sum.transactionMs += taken.transactionMs;
          for (const [statement, n, ms] of taken.byStatement) {
            const [count, time] = sum.by.get(statement) ?? [0, 0];
            sum.by.set(statement, [count + n, time + ms]);
          }
          statements.set(target.mode, sum);
        }
      } finally {
        await closeAll([...sockets.values()].flat());
      }
      const line = targets.map((t) => `${t.mode} p50 ${ms(summarize(samples[t.mode] ?? []).p50)}`).join(", ");
      ctx.progress(`  s${options.scenario} ${options.label} round ${round + 1}/${options.rounds}: ${line}`);
    }
  });
  const messages = options.rounds * options.samples;
  for (const [mode, sum] of statements) {
    ctx.rec.addScalar(
      options.scenario,
      `database statements per message (ack included), ${options.label}`,
      mode,
      "statements",
      sum.total / messages,
    );
    ctx.rec.addScalar(
      options.scenario,
      `transactions per message, ${options.label}`,
      mode,
      "transactions",
      sum.transactions / messages,
    );
    if (options.label === "fast") {
      // Awaited durations (event-loop delays included): meaningful only when nothing else runs.
      ctx.rec.addScalar(
        options.scenario,
        "time awaiting the database per message (all statements and transactions, unloaded)",
        mode,
        "ms",
        (sum.totalMs + sum.transactionMs) / messages,
      );
    }
    const top = [...sum.by.entries()]
      .sort((a, b) => b[1][0] - a[1][0])
      .map(([statement, [n, ms]]) => `${statement} ×${(n / messages).toFixed(2)} (${(ms / n).toFixed(2)} ms each)`)
      .join(", ");
    ctx.rec.note(
      `s${options.scenario} ${options.label} ${mode}: per message ${(sum.transactions / messages).toFixed(2)} transactions (${(sum.transactionMs / Math.max(1, sum.transactions)).toFixed(2)} ms each) and these statements: ${top}`,
    );
  }
  return samples;
}

export async function runLatencyScenario(ctx: BenchContext): Promise<void> {
  const plan = ctx.plan.s2;
  const fast = await measureLatency(ctx, {
    scenario: 2,
    label: "fast",
    specs: [
      { kind: "sessiond", mode: "sessiond", dbId: ctx.pgDb, tokenDelayMs: 0 },
      { kind: "direct", mode: "direct", tokenDelayMs: 0 },
    ],
    rounds: plan.rounds,
    samples: plan.fastSamples,
    sessions: plan.sessions,
  });
  for (const [mode, values] of Object.entries(fast)) {
    ctx.rec.addSeries(2, "e2e send → durable message (model 0 ms/token)", mode, "ms", values);
  }
  const fastOverhead = summarize(fast.sessiond ?? []).p50 - summarize(fast.direct ?? []).p50;
  ctx.rec.addScalar(2, "durability overhead at p50 (model 0 ms/token)", "sessiond − direct", "ms", fastOverhead);
  ctx.rec.addGoal(2, "durability overhead at p50 (model 0 ms/token)", "<=", 2, "ms", fastOverhead);

  const slow = await measureLatency(ctx, {
    scenario: 2,
    label: "slow",
    specs: [
      { kind: "sessiond", mode: "sessiond", dbId: ctx.pgDb, tokenDelayMs: plan.slowTokenDelayMs },
      { kind: "direct", mode: "direct", tokenDelayMs: plan.slowTokenDelayMs },
    ],
    rounds: plan.rounds,
    samples: plan.slowSamples,
    sessions: 1,
  });
  const metric = `e2e send → durable message (model ${plan.slowTokenDelayMs} ms/token ≈ ${plan.slowTokenDelayMs * 10} ms)`;
  for (const [mode, values] of Object.entries(slow)) ctx.rec.addSeries(2, metric, mode, "ms", values);
  const s = summarize(slow.sessiond ?? []).p50;
  const d = summarize(slow.direct ?? []).p50;
  const percent = ((s - d) / d) * 100;
  ctx.rec.addScalar(
    2,
    `durability overhead at p50 (model ≈ ${plan.slowTokenDelayMs * 10} ms)`,
    "sessiond vs direct",
    "%",
    percent,
  );
  ctx.rec.addGoal(2, `durability overhead at p50, model ≈ ${plan.slowTokenDelayMs * 10} ms`, "<=", 10, "%", percent);
}
