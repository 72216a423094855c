/**
 * Scenario 5: idle authenticated sockets on one server process, each of its
 * own session. Memory is read in the host after full collections, with a
 * tenth of the sockets open and with all of them; the difference over the
 * sockets added is the cost per connection. The count is capped by the open-files limit (each side of a
 * loopback socket holds a descriptor in its own process).
 */
import { setTimeout as delay } from "node:timers/promises";
import { type BenchContext, withServers } from "./context.js";
import { openFilesLimit } from "./database.js";
import { type BenchSocket, closeAll, openMany } from "./ws-client.js";

const MiB = 2 ** 20;

export async function runConnectionsScenario(ctx: BenchContext): Promise<void> {
  const wanted = ctx.plan.s5.sockets;
  const limit = openFilesLimit();
  const sockets = limit === null ? wanted : Math.max(10, Math.min(wanted, Math.floor(limit) - 1_000));
  if (sockets < wanted) {
    ctx.rec.note(
      `s5: the open-files limit (${limit}) allows ${sockets} of the ${wanted} sockets planned; raise it with ulimit -n`,
    );
  }
  const specs = [
    { kind: "sessiond" as const, mode: "sessiond", dbId: ctx.pgDb, tokenDelayMs: 0 },
    { kind: "direct" as const, mode: "direct", tokenDelayMs: 0 },
  ];
  for (const spec of specs) {
    await withServers(ctx, [spec], async ([target]) => {
      if (!target) return;
      const serverId = target.serverId as string;
      const keys = Array.from({ length: sockets }, (_, i) => `${ctx.prefix}-s5-${spec.mode}-${i}`);
      // Memory is read at a tenth of the sockets and at all of them: the slope is the
      // cost of one more connection, free of fixed costs (first-use code, pools, JIT).
      const first = Math.max(1, Math.floor(sockets / 10));
      const idle = await ctx.host.request("memory", {});
      const open: BenchSocket[] = [];
      try {
        const started = performance.now();
        open.push(...(await openMany(target, keys.slice(0, first), { parallel: 200 })));
        await serverCounts(ctx, serverId, first);
        const atFirst = await ctx.host.request("memory", {});
        open.push(
          ...(await openMany(target, keys.slice(first), {
            parallel: 200,
            onProgress: (n) => ctx.progress(`  s5 ${spec.mode}: ${first + n} of ${sockets} sockets open`),
          })),
        );
        await serverCounts(ctx, serverId, sockets);
        const openMs = performance.now() - started;
        const all = await ctx.host.request("memory", {});
        const added = sockets - first;
        const rss = added > 0 ? (all.rss - atFirst.rss) / added : Number.NaN;
        const heap = added > 0 ? (all.heapUsed - atFirst.heapUsed) / added : Number.NaN;
        ctx.rec.addScalar(5, "idle sockets open", spec.mode, "sockets", sockets);
        ctx.rec.addScalar(5, "sockets opened per second", spec.mode, "sockets/s", sockets / (openMs / 1000));
        ctx.rec.addScalar(5, "process RSS, server idle with no socket", spec.mode, "MiB", idle.rss / MiB);
        ctx.rec.addScalar(5, "process RSS with every socket open", spec.mode, "MiB", all.rss / MiB);
        ctx.rec.addScalar(5, "RSS per connection", spec.mode, "KiB", rss / 1024);
        ctx.rec.addScalar(5, "heap per connection", spec.mode, "KiB", heap / 1024);
        ctx.progress(
          `  s5 ${spec.mode}: ${sockets} sockets, RSS ${(all.rss / MiB).toFixed(0)} MiB (${(rss / 1024).toFixed(1)} KiB/conn), heap ${(heap / 1024).toFixed(1)} KiB/conn`,
        );
        if (spec.mode === "sessiond") {
          const at10k = sockets >= 10_000 ? all.rss : all.rss + rss * (10_000 - sockets);
          if (sockets < 10_000) ctx.rec.addScalar(5, "RSS projected to 10,000 sockets", spec.mode, "MiB", at10k / MiB);
          const label = `RSS with 10,000 idle sockets${sockets < 10_000 ? ` (projected from ${sockets})` : ""}`;
          ctx.rec.addGoal(5, label, "<=", 1024, "MiB", at10k / MiB);
        }
      } finally {
        await closeAll(open);
      }
    });
  }
}

/** Waits (bounded) until the server counts `n` open sockets, then lets the first delivery queries finish. */
async function serverCounts(ctx: BenchContext, serverId: string, n: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { sockets } = await ctx.host.request("sockets", { id: serverId });
    if (sockets >= n) break;
    await delay(100);
  }
  await delay(300);
}
