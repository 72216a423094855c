/**
 * Scenario 3 (and the throughput half of 7): messages per second end to end.
 * Each of S sessions has one socket that keeps `w` messages in flight
 * (closed loop: every durable reply is acked and answered with the next
 * message). For each session count the in-flight window grows until the
 * throughput stops rising by 10 % (saturation). Steps alternate between the
 * servers compared. A message counts when its durable `message` frame
 * arrives inside the measurement window, which opens once the loop is in a
 * steady state (see driveClosedLoop). Next to it: the
 * single-row insert commit rate of the same database, measured before and
 * after the steps with as many connections as the plan says and with one.
 */
import { type BenchContext, ms, type ServerSpec, withServers } from "./context.js";
import { ownCpuMs, postgresCpuMs } from "./cpu.js";
import { summarize } from "./stats.js";
import { type BenchSocket, closeAll, openMany, type Target } from "./ws-client.js";

export interface StepResult {
  /** Replies per second inside the measurement window. */
  throughput: number;
  /** Replies over the whole loop (warm-up and drain included) per second of it. */
  wholeLoopThroughput: number;
  /** False when the warm-up bound passed before nine in ten sockets had a reply (no steady state). */
  steady: boolean;
  /** How long the warm-up lasted. */
  warmupMs: number;
  /** Replies in the whole loop and its duration: for CPU per message. */
  completedTotal: number;
  elapsedMs: number;
  latencies: number[];
  perBucket: number[];
  errors: number;
  leftInFlight: number;
}

interface MeasureOptions {
  /** Shortest warm-up. It lasts until nine in ten sockets had a reply (the pipeline is full), at most `maxWarmupMs`. */
  warmupMs: number;
  maxWarmupMs?: number;
  measureMs: number;
  bucketMs: number;
  window: number;
  /** Bound on waiting for the last replies after the window closed. */
  drainMs?: number;
}

/** Request ids stay unique across calls: sessiond would answer a repeated one as a duplicate, with no reply. */
let requestCounter = 0;

/**
 * Drives `sockets` in a closed loop with `window` messages in flight each.
 * The measurement window opens once the loop is in a steady state: after
 * the minimum warm-up and once nine in ten sockets had a reply (with S
 * sessions and latency L, the first replies take L to come back; counting
 * from the first send would measure the ramp, not the rate).
 */
export function driveClosedLoop(sockets: readonly BenchSocket[], options: MeasureOptions): Promise<StepResult> {
  const start = performance.now();
  let measureFrom = Number.POSITIVE_INFINITY;
  let stopAt = Number.POSITIVE_INFINITY;
  let steady = false;
  const replied = new Set<BenchSocket>();
  const sentAt = new Map<string, number>();
  const perBucket: number[] = [];
  const latencies: number[] = [];
  let completed = 0;
  let completedTotal = 0;
  let lastReplyAt = start;
  let errors = 0;
  return new Promise((resolve) => {
    let finished = false;
    let minWarmupPassed = false;
    let drainTimer: NodeJS.Timeout | undefined;
    let stopTimer: NodeJS.Timeout | undefined;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(drainTimer);
      clearTimeout(stopTimer);
      clearTimeout(minTimer);
      clearTimeout(maxTimer);
      for (const socket of sockets) socket.onFrame = undefined;
      resolve({
        throughput: completed / (options.measureMs / 1000),
        wholeLoopThroughput: completedTotal / (Math.max(1, lastReplyAt - start) / 1000),
        steady,
        warmupMs: measureFrom - start,
        completedTotal,
        elapsedMs: performance.now() - start,
        latencies,
        perBucket: Array.from(perBucket, (v) => v ?? 0),
        errors,
        leftInFlight: sentAt.size,
      });
    };
    const openWindow = (isSteady: boolean) => {
      if (measureFrom !== Number.POSITIVE_INFINITY) return;
      steady = isSteady;
      measureFrom = performance.now();
      stopAt = measureFrom + options.measureMs;
      stopTimer = setTimeout(() => {
        if (sentAt.size === 0) finish();
        else drainTimer = setTimeout(finish, options.drainMs ?? 10_000);
      }, options.measureMs);
    };
    const maybeSteady = () => {
      if (minWarmupPassed && replied.size >= Math.ceil(sockets.length * 0.9)) openWindow(true);
    };
    const minTimer = setTimeout(() => {
      minWarmupPassed = true;
      maybeSteady();
    }, options.warmupMs);
    const maxTimer = setTimeout(
      () => openWindow(false),
      Math.max(options.warmupMs, options.maxWarmupMs ?? options.warmupMs),
    );
    const sendOne = (socket: BenchSocket) => {
      const requestId = `${socket.sessionKey}-m${requestCounter++}`;
      sentAt.set(requestId, performance.now());
      socket.send({ type: "message", requestId, text: "hi" });
    };
    const settleOne = (socket: BenchSocket, requestId: string) => {
      sentAt.delete(requestId);
      if (performance.now() < stopAt && socket.isOpen) sendOne(socket);
      else if (performance.now() >= stopAt && sentAt.size === 0) finish();
    };
    for (const socket of sockets) {
      socket.onFrame = (frame, at) => {
        if (frame.type === "message") {
          const sent = sentAt.get(frame.requestId);
          socket.send({ type: "ack", seq: frame.seq });
          if (sent === undefined) return;
          completedTotal += 1;
          lastReplyAt = at;
          const bucket = Math.floor((at - start) / options.bucketMs);
          perBucket[bucket] = (perBucket[bucket] ?? 0) + 1;
          if (at >= measureFrom && at < stopAt) {
            completed += 1;
            latencies.push(at - sent);
          }
          if (!replied.has(socket)) {
            replied.add(socket);
            maybeSteady();
          }
          settleOne(socket, frame.requestId);
        } else if (
          (frame.type === "failure" || frame.type === "error") &&
          frame.requestId &&
          sentAt.has(frame.requestId)
        ) {
          errors += 1;
          settleOne(socket, frame.requestId);
        } else if (frame.type === "error") {
          errors += 1;
        }
      };
    }
    for (let i = 0; i < options.window; i++) for (const socket of sockets) sendOne(socket);
  });
}

export interface ThroughputOptions {
  scenario: number;
  specs: ServerSpec[];
  steps: Array<{ sessions: number; windows: number[] }>;
  warmupMs: number;
  maxWarmupMs: number;
  measureMs: number;
  bucketMs: number;
  drainMs: number;
}

/** Best throughput per mode and session count. */
export async function measureThroughput(
  ctx: BenchContext,
  options: ThroughputOptions,
): Promise<Map<string, Map<number, number>>> {
  const best = new Map<string, Map<number, number>>();
  await withServers(ctx, options.specs, async (targets) => {
    for (const step of options.steps) {
      const sockets = new Map<Target, BenchSocket[]>();
      try {
        for (const target of targets) {
          const keys = Array.from(
            { length: step.sessions },
            (_, i) => `${ctx.prefix}-s${options.scenario}-${target.mode}-${step.sessions}-${i}`,
          );
          sockets.set(target, await openMany(target, keys, { parallel: 50 }));
        }
        const saturated = new Set<Target>();
        const stepBest = new Map<
          Target,
          { throughput: number; window: number; latencies: number[]; cpu: CpuPerMessage }
        >();
        for (const window of step.windows) {
          for (const target of targets) {
            if (saturated.has(target)) continue;
            const before = await cpuSnapshot(ctx);
            const result = await driveClosedLoop(sockets.get(target) ?? [], { ...options, window });
            const cpu = cpuPerMessage(before, await cpuSnapshot(ctx), result);
            const previous = stepBest.get(target);
            ctx.rec.addTimeSeries(
              options.scenario,
              `delivered messages/s, ${step.sessions} sessions × ${window} in flight`,
              target.mode,
              "msg/s",
              options.bucketMs,
              result.perBucket.map((v) => v * (1000 / options.bucketMs)),
            );
            const p50 = summarize(result.latencies).p50;
            // Without a steady state inside the warm-up bound the window saw a ramp; the
            // whole loop (every reply over first send to last reply) is the fairer rate then.
            const rate = result.steady ? result.throughput : result.wholeLoopThroughput;
            const how = result.steady
              ? `steady after ${(result.warmupMs / 1000).toFixed(1)} s`
              : `NO steady state within ${(result.warmupMs / 1000).toFixed(1)} s: whole-loop rate (window ${result.throughput.toFixed(0)} msg/s)`;
            const line = `${step.sessions} sessions × ${window}: ${rate.toFixed(0)} msg/s (${how}), p50 ${ms(p50)}${result.errors ? `, ${result.errors} errors` : ""}; ${cpu.text}`;
            ctx.progress(`  s${options.scenario} ${target.mode} ${line}`);
            ctx.rec.note(`s${options.scenario} ${target.mode} ${line}`);
            if (result.errors > 0)
              ctx.rec.note(
                `s${options.scenario} ${target.mode} ${step.sessions}×${window}: ${result.errors} error frames`,
              );
            if (result.leftInFlight > 0) {
              ctx.rec.note(
                `s${options.scenario} ${target.mode} ${step.sessions}×${window}: ${result.leftInFlight} messages still unanswered ${(options.drainMs / 1000).toFixed(0)} s after the window closed`,
              );
            }
            if (!previous || rate > previous.throughput) {
              stepBest.set(target, { throughput: rate, window, latencies: result.latencies, cpu });
            }
            if (previous && rate < previous.throughput * 1.1) saturated.add(target);
          }
        }
        for (const [target, b] of stepBest) {
          ctx.rec.addScalar(
            options.scenario,
            `throughput, ${step.sessions} sessions (best window)`,
            target.mode,
            "msg/s",
            b.throughput,
          );
          ctx.rec.addSeries(
            options.scenario,
            `e2e latency under load, ${step.sessions} sessions (best window)`,
            target.mode,
            "ms",
            b.latencies,
          );
          // Names stay the same across runs (the best window may differ) so the summary can take medians.
          const label = `${step.sessions} sessions (best window)`;
          if (b.cpu.completed >= 10) {
            ctx.rec.addScalar(
              options.scenario,
              `CPU per message, server process, ${label}`,
              target.mode,
              "ms",
              b.cpu.host,
            );
            if (b.cpu.postgres !== null) {
              ctx.rec.addScalar(
                options.scenario,
                `CPU per message, Postgres, ${label}`,
                target.mode,
                "ms",
                b.cpu.postgres,
              );
            }
            ctx.rec.addScalar(
              options.scenario,
              `CPU per message, bench clients, ${label}`,
              target.mode,
              "ms",
              b.cpu.bench,
            );
            ctx.rec.addScalar(
              options.scenario,
              `server process CPU busy, ${label}`,
              target.mode,
              "% of a core",
              b.cpu.hostBusy,
            );
          }
          ctx.rec.addScalar(
            options.scenario,
            `best window, ${step.sessions} sessions`,
            target.mode,
            "in flight",
            b.window,
          );
          let perMode = best.get(target.mode);
          if (!perMode) {
            perMode = new Map();
            best.set(target.mode, perMode);
          }
          perMode.set(step.sessions, b.throughput);
        }
      } finally {
        await closeAll([...sockets.values()].flat());
      }
    }
  });
  return best;
}

interface CpuSnapshot {
  host: number;
  bench: number;
  postgres: number | null;
}

interface CpuPerMessage {
  host: number;
  bench: number;
  postgres: number | null;
  /** The server process's CPU over the loop, as a share of one core (%). */
  hostBusy: number;
  postgresBusy: number | null;
  /** Replies the figures are per (too few make them meaningless). */
  completed: number;
  text: string;
}

async function cpuSnapshot(ctx: BenchContext): Promise<CpuSnapshot> {
  const { ms: host } = await ctx.host.request("cpu", {});
  return { host, bench: ownCpuMs(), postgres: postgresCpuMs(ctx.pgDbName) };
}

/** CPU per delivered message over a whole loop (warm-up and drain included), and how busy each side was. */
function cpuPerMessage(before: CpuSnapshot, after: CpuSnapshot, result: StepResult): CpuPerMessage {
  const n = Math.max(1, result.completedTotal);
  const host = after.host - before.host;
  const bench = after.bench - before.bench;
  const postgres = after.postgres !== null && before.postgres !== null ? after.postgres - before.postgres : null;
  const busy = (cpuMs: number) => (cpuMs / result.elapsedMs) * 100;
  const perMessage = { host: host / n, bench: bench / n, postgres: postgres === null ? null : postgres / n };
  const text =
    `CPU/msg server ${perMessage.host.toFixed(2)} ms (${busy(host).toFixed(0)}% of a core)` +
    (postgres === null ? "" : `, Postgres ${(postgres / n).toFixed(2)} ms (${busy(postgres).toFixed(0)}%)`) +
    `, clients ${perMessage.bench.toFixed(2)} ms (${busy(bench).toFixed(0)}%)`;
  return {
    ...perMessage,
    hostBusy: busy(host),
    postgresBusy: postgres === null ? null : busy(postgres),
    completed: result.completedTotal,
    text:
      result.completedTotal >= 10
        ? text
        : `CPU server ${busy(host).toFixed(0)}% of a core (too few replies for per-message figures)`,
  };
}

/** Single-row insert commits per second on database `dbId` (the reference for a message's commits). */
export async function measureInsertRate(
  ctx: BenchContext,
  scenario: number,
  dbId: string,
  mode: string,
  connections: number,
  durationMs: number,
): Promise<number> {
  const result = await ctx.host.request("insertRate", { dbId, connections, durationMs, bucketMs: 250 });
  const rate = result.commits / (result.elapsedMs / 1000);
  ctx.progress(
    `  s${scenario} ${mode} single-row inserts, ${connections} connection${connections === 1 ? "" : "s"}: ${rate.toFixed(0)} commits/s`,
  );
  return rate;
}

export async function runThroughputScenario(ctx: BenchContext): Promise<void> {
  const plan = ctx.plan.s3;
  const inserts: number[] = [];
  const single: number[] = [];
  inserts.push(await measureInsertRate(ctx, 3, ctx.pgDb, "postgres", plan.insertConnections, plan.insertMs));
  single.push(await measureInsertRate(ctx, 3, ctx.pgDb, "postgres", 1, plan.insertMs));
  const best = await measureThroughput(ctx, {
    scenario: 3,
    specs: [
      { kind: "sessiond", mode: "sessiond", dbId: ctx.pgDb, tokenDelayMs: 0, concurrency: plan.concurrency },
      { kind: "direct", mode: "direct", tokenDelayMs: 0 },
    ],
    steps: plan.steps,
    warmupMs: plan.warmupMs,
    maxWarmupMs: plan.maxWarmupMs,
    measureMs: plan.measureMs,
    bucketMs: plan.bucketMs,
    drainMs: plan.drainMs,
  });
  inserts.push(await measureInsertRate(ctx, 3, ctx.pgDb, "postgres", plan.insertConnections, plan.insertMs));
  single.push(await measureInsertRate(ctx, 3, ctx.pgDb, "postgres", 1, plan.insertMs));
  const insertRate = Math.max(...inserts);
  ctx.rec.addScalar(
    3,
    `single-row insert commits/s, ${plan.insertConnections} connections (best of before/after)`,
    "postgres",
    "commits/s",
    insertRate,
  );
  ctx.rec.addScalar(
    3,
    "single-row insert commits/s, 1 connection (best of before/after)",
    "postgres",
    "commits/s",
    Math.max(...single),
  );
  const sessiondBest = Math.max(0, ...(best.get("sessiond")?.values() ?? []));
  ctx.rec.addScalar(
    3,
    "sessiond best throughput as a share of the insert commit rate",
    "sessiond",
    "%",
    (sessiondBest / insertRate) * 100,
  );
  ctx.rec.addGoal(3, "throughput with real Postgres (best over session counts)", ">=", 3_000, "msg/s", sessiondBest);
}
