/**
 * What every scenario gets: the host process, the plan, the recorder, a
 * progress line writer, and `withServers`, which starts the servers a
 * scenario compares and always stops them (after letting the database work
 * through what the scenario left behind, so the next scenario starts idle).
 */
import { setTimeout as delay } from "node:timers/promises";
import type { HostProcess } from "./host-client.js";
import type { Plan } from "./plan.js";
import type { Recorder } from "./result.js";
import type { Target } from "./ws-client.js";

export interface BenchContext {
  host: HostProcess;
  plan: Plan;
  rec: Recorder;
  progress(line: string): void;
  /** The token secret every server under test shares. */
  secret: string;
  /** Prefix of every session key of this run (runs never share sessions). */
  prefix: string;
  /** The host's id of the Postgres database. */
  pgDb: string;
  /** Its name on the server (CPU accounting finds its backends by it). */
  pgDbName: string;
  /** The host's id of the embedded PGlite database (opened on first use), or null when PGlite is off. */
  pgliteDb(): Promise<string | null>;
}

export type ServerSpec =
  | { kind: "sessiond"; mode: string; dbId: string; tokenDelayMs: number; concurrency?: number }
  | { kind: "direct"; mode: string; tokenDelayMs: number };

let serverCounter = 0;

/** Waits (bounded) until the database has no unprocessed events. */
export async function settle(ctx: BenchContext, dbId: string, ms = 30_000): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const { unprocessed } = await ctx.host.request("backlog", { dbId });
    if (unprocessed === 0 || Date.now() > deadline) return unprocessed;
    await delay(50);
  }
}

/** Starts the servers of `specs`, runs `fn` with their targets, then stops them. */
export async function withServers<T>(
  ctx: BenchContext,
  specs: readonly ServerSpec[],
  fn: (targets: Target[]) => Promise<T>,
): Promise<T> {
  const started: Array<{ id: string; spec: ServerSpec }> = [];
  try {
    const targets: Target[] = [];
    for (const spec of specs) {
      const id = `srv${++serverCounter}`;
      const { url } =
        spec.kind === "sessiond"
          ? await ctx.host.request("startSessiond", {
              id,
              dbId: spec.dbId,
              tokenDelayMs: spec.tokenDelayMs,
              concurrency: spec.concurrency ?? 16,
              secret: ctx.secret,
            })
          : await ctx.host.request("startDirect", { id, tokenDelayMs: spec.tokenDelayMs, secret: ctx.secret });
      started.push({ id, spec });
      targets.push({ mode: spec.mode, url, secret: ctx.secret, serverId: id });
    }
    return await fn(targets);
  } finally {
    for (const { id, spec } of started) {
      if (spec.kind === "sessiond") {
        const left = await settle(ctx, spec.dbId, ctx.plan.name === "full" ? 15_000 : 3_000).catch(() => -1);
        if (left !== 0)
          ctx.rec.note(`${spec.mode}: ${left} sessions still had unprocessed events when the server stopped`);
      }
      await ctx.host
        .request("stopServer", { id })
        .catch((error: Error) => ctx.progress(`  stop ${id}: ${error.message}`));
    }
  }
}

/** Formats a number of milliseconds for progress lines. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return "—";
  return value >= 100 ? `${value.toFixed(0)} ms` : value >= 10 ? `${value.toFixed(1)} ms` : `${value.toFixed(2)} ms`;
}
