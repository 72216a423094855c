/**
 * Scenario 6: replay. A session holds N durable messages the client missed
 * (seeded straight into the outbox with enqueue_effects); the client
 * reconnects with `after=0` and reads until the N-th `message` frame. The
 * catch-up rate is N over the time from the connect call to the last frame
 * (upgrade, authentication and the first query included). Reconnects
 * alternate between sessiond on Postgres and, when enabled, on PGlite.
 */
import { type BenchContext, type ServerSpec, withServers } from "./context.js";
import { summarize } from "./stats.js";
import { BenchSocket, type Target } from "./ws-client.js";

/** Connects after seq 0 and resolves with the ms until `count` message frames arrived. */
export async function catchUp(target: Target, sessionKey: string, count: number, timeoutMs = 120_000): Promise<number> {
  const started = performance.now();
  let received = 0;
  let socket: BenchSocket | undefined;
  let done!: (at: number) => void;
  let fail!: (error: Error) => void;
  const finished = new Promise<number>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  const timer = setTimeout(
    () => fail(new Error(`replay: ${received}/${count} frames after ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    socket = await BenchSocket.open(target, sessionKey, {
      after: 0,
      onFrame: (frame, at) => {
        if (frame.type === "message" && ++received === count) done(at);
      },
    });
    const at = await finished;
    return at - started;
  } finally {
    clearTimeout(timer);
    await socket?.close();
  }
}

export async function runReplayScenario(ctx: BenchContext): Promise<void> {
  const plan = ctx.plan.s6;
  const specs: ServerSpec[] = [{ kind: "sessiond", mode: "sessiond", dbId: ctx.pgDb, tokenDelayMs: 0 }];
  const pglite = await ctx.pgliteDb();
  if (pglite) specs.push({ kind: "sessiond", mode: "sessiond-pglite", dbId: pglite, tokenDelayMs: 0 });
  const rates: Record<string, number[]> = Object.fromEntries(specs.map((s) => [s.mode, []]));
  const dbShare: Record<string, { queries: number; ms: number; elapsed: number }> = {};
  await withServers(ctx, specs, async (targets) => {
    const keys = new Map<Target, string>();
    for (const [i, target] of targets.entries()) {
      const key = `${ctx.prefix}-s6-${target.mode}`;
      const spec = specs[i] as ServerSpec & { dbId: string };
      const { head } = await ctx.host.request("seedEffects", {
        dbId: spec.dbId,
        sessionKey: key,
        count: plan.messages,
      });
      if (head !== plan.messages) throw new Error(`replay: seeded ${head} effects, wanted ${plan.messages}`);
      keys.set(target, key);
    }
    for (let r = 0; r < plan.reconnects; r++) {
      for (const target of r % 2 === 0 ? targets : [...targets].reverse()) {
        if (target.serverId) await ctx.host.request("statements", { id: target.serverId });
        const elapsed = await catchUp(target, keys.get(target) as string, plan.messages);
        const rate = plan.messages / (elapsed / 1000);
        rates[target.mode]?.push(rate);
        if (target.serverId) {
          // The replay's own queries: how much of the catch-up is waiting for the database.
          const taken = await ctx.host.request("statements", { id: target.serverId });
          const reads = taken.byStatement.find(([label]) => label === "sessiond.effects_after()");
          const share = dbShare[target.mode] ?? { queries: 0, ms: 0, elapsed: 0 };
          dbShare[target.mode] = share;
          share.queries += reads?.[1] ?? 0;
          share.ms += reads?.[2] ?? 0;
          share.elapsed += elapsed;
        }
        ctx.progress(
          `  s6 reconnect ${r + 1}/${plan.reconnects} ${target.mode}: ${plan.messages} messages in ${elapsed.toFixed(0)} ms = ${rate.toFixed(0)} msg/s`,
        );
      }
    }
  });
  for (const [mode, values] of Object.entries(rates)) {
    ctx.rec.addSeries(6, `replay catch-up rate after ${plan.messages} missed messages`, mode, "msg/s", values);
  }
  for (const [mode, share] of Object.entries(dbShare)) {
    if (share.queries === 0) continue;
    ctx.rec.addScalar(6, "effects_after queries per replay", mode, "queries", share.queries / plan.reconnects);
    ctx.rec.addScalar(
      6,
      "share of the catch-up spent awaiting effects_after",
      mode,
      "%",
      (share.ms / share.elapsed) * 100,
    );
  }
  ctx.rec.addGoal(
    6,
    `catch-up rate after ${plan.messages} missed messages (Postgres, median)`,
    ">=",
    50_000,
    "msg/s",
    summarize(rates.sessiond ?? []).p50,
  );
}
