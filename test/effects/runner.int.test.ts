import { afterEach, expect, it } from "vitest";
import { z } from "zod";
import type { Db } from "../../src/db/index.js";
import {
  type EffectHandler,
  EffectRegistry,
  EffectRunner,
  type EffectRunnerOptions,
  PermanentEffectError,
  retryEffect,
} from "../../src/effects/index.js";
import { describeEachDb, nextValue } from "../support/db.js";
import { counter, effectState, enqueue, eventually, gate, outcomeRecorder, sessionKey } from "./helpers.js";

/** Tiny backoff so retries come due at once; the runner's retry timer wakes it. */
const fast: EffectRunnerOptions = { backoffBaseMs: 5, backoffCapMs: 20, stopGraceMs: 50, abortWaitMs: 50 };

const runners: EffectRunner[] = [];
/** Registered inside each block, so it runs before the block's listener-leak check. */
function stopRunnersAfterEach() {
  afterEach(async () => {
    for (const runner of runners.splice(0)) await runner.stop({ graceMs: 50 });
  });
}

async function startRunner(db: Db, registry: EffectRegistry, options: EffectRunnerOptions = {}) {
  const runner = new EffectRunner(db, registry, { ...fast, ...options });
  runners.push(runner);
  await runner.start();
  return runner;
}

function registryWith(type: string, handler: EffectHandler<unknown>, ordered = false) {
  return new EffectRegistry().register({
    type,
    schema: z.object({}).passthrough(),
    delivery: "handler",
    ordered,
    handler,
  });
}

describeEachDb("effect runner", (t) => {
  stopRunnersAfterEach();
  it("runs a handler that fails twice then succeeds exactly three times and completes it", async () => {
    const rec = outcomeRecorder();
    let calls = 0;
    const registry = registryWith("test.flaky", async (effect) => {
      calls += 1;
      if (effect.attempts <= 2) throw new Error(`boom ${effect.attempts}`);
    });
    const [fx] = await enqueue(t.db, sessionKey(), [{ type: "test.flaky" }]);
    const runner = await startRunner(t.db, registry, { onOutcome: rec.onOutcome });
    await rec.waitFor((o) => o.status === "completed", "completed");
    await runner.stop();
    expect(calls).toBe(3);
    expect(rec.outcomes.map((o) => [o.effect.attempts, o.status])).toEqual([
      [1, "failed"],
      [2, "failed"],
      [3, "completed"],
    ]);
    expect(await effectState(t.db, fx!.id)).toMatchObject({ status: "completed", attempts: 3, claimed_by: null });
  });

  it("puts an always-failing effect in the dead letter after max attempts, keeping the last error", async () => {
    const rec = outcomeRecorder();
    let calls = 0;
    const registry = registryWith("test.broken", async (effect) => {
      calls += 1;
      throw new Error(`boom ${effect.attempts}`);
    });
    const [fx] = await enqueue(t.db, sessionKey(), [{ type: "test.broken", max_attempts: 3 }]);
    await startRunner(t.db, registry, { onOutcome: rec.onOutcome });
    await rec.waitFor((o) => o.status === "dead", "dead");
    expect(calls).toBe(3);
    expect(rec.outcomes.map((o) => o.status)).toEqual(["failed", "failed", "dead"]);
    expect(await effectState(t.db, fx!.id)).toEqual({
      status: "dead",
      attempts: 3,
      last_error: "boom 3",
      claimed_by: null,
    });
  });

  it("sends an effect whose handler throws PermanentEffectError to the dead letter after one attempt", async () => {
    const rec = outcomeRecorder();
    let calls = 0;
    const registry = registryWith("test.permanent", async () => {
      calls += 1;
      throw new PermanentEffectError("the receiver says no");
    });
    const [fx] = await enqueue(t.db, sessionKey(), [{ type: "test.permanent" }]);
    await startRunner(t.db, registry, { onOutcome: rec.onOutcome });
    const outcome = await rec.waitFor((o) => o.effect.id === fx!.id, "an outcome");
    expect(outcome.status).toBe("dead");
    expect(calls).toBe(1);
    expect(await effectState(t.db, fx!.id)).toMatchObject({
      status: "dead",
      attempts: 1,
      last_error: "the receiver says no",
    });
  });

  it("runs a dead effect again after retryEffect", async () => {
    const rec = outcomeRecorder();
    let healthy = false;
    let calls = 0;
    const registry = registryWith("test.retried", async () => {
      calls += 1;
      if (!healthy) throw new PermanentEffectError("down for maintenance");
    });
    const [fx] = await enqueue(t.db, sessionKey(), [{ type: "test.retried" }]);
    await startRunner(t.db, registry, { onOutcome: rec.onOutcome, sweepMs: 3_600_000 });
    await rec.waitFor((o) => o.status === "dead", "dead");
    healthy = true;
    const retried = await retryEffect(t.db, fx!.id);
    expect(retried).toMatchObject({ id: fx!.id, status: "pending", attempts: 0, lastError: "down for maintenance" });
    await rec.waitFor((o) => o.status === "completed", "completed after the retry");
    expect(calls).toBe(2);
    expect(await effectState(t.db, fx!.id)).toMatchObject({ status: "completed", attempts: 1 });
  });

  it("runs the ordered effects of a session one at a time in seq order, even across a retry", async () => {
    const rec = outcomeRecorder();
    const a = sessionKey("ord");
    const b = sessionKey("ord");
    const starts = new Map<string, number[]>([
      [a, []],
      [b, []],
    ]);
    const active = new Map<string, number>();
    let maxActive = 0;
    const registry = registryWith(
      "test.ordered",
      async (effect) => {
        const now = (active.get(effect.sessionKey) ?? 0) + 1;
        active.set(effect.sessionKey, now);
        maxActive = Math.max(maxActive, now);
        starts.get(effect.sessionKey)?.push(effect.seq);
        try {
          // A real round trip, so overlapping handlers would overlap here.
          await t.db.query("select 1");
          if (effect.sessionKey === a && effect.seq === 2 && effect.attempts === 1) throw new Error("first try fails");
        } finally {
          active.set(effect.sessionKey, (active.get(effect.sessionKey) ?? 1) - 1);
        }
      },
      true,
    );
    await enqueue(
      t.db,
      a,
      [1, 2, 3, 4, 5].map(() => ({ type: "test.ordered", ordered: true })),
    );
    await enqueue(
      t.db,
      b,
      [1, 2, 3].map(() => ({ type: "test.ordered", ordered: true })),
    );
    const done = counter();
    await startRunner(t.db, registry, {
      concurrency: 8,
      onOutcome: (o) => {
        rec.onOutcome(o);
        if (o.status === "completed") done.bump();
      },
    });
    await done.reach(8, "completed ordered effects");
    expect(maxActive).toBe(1);
    expect(starts.get(a)).toEqual([1, 2, 2, 3, 4, 5]);
    expect(starts.get(b)).toEqual([1, 2, 3]);
  });

  it("stop() lets running handlers finish within the grace period, then aborts the rest", async () => {
    const rec = outcomeRecorder();
    const started = counter();
    const release = gate();
    const registry = registryWith("test.stopping", async (effect, { signal }) => {
      started.bump();
      if (effect.payload && (effect.payload as { polite?: boolean }).polite) {
        await release.promise;
        return;
      }
      // Runs until aborted.
      await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    });
    const [polite, stubborn] = await enqueue(t.db, sessionKey(), [
      { type: "test.stopping", payload: { polite: true } },
      { type: "test.stopping", payload: { polite: false } },
    ]);
    // abortWaitMs covers the aborted handler's fail_effect round trip.
    const runner = await startRunner(t.db, registry, { onOutcome: rec.onOutcome, abortWaitMs: 10_000 });
    await started.reach(2, "both handlers running");
    const stopped = runner.stop({ graceMs: 200 });
    release.open();
    await stopped;
    expect(runner.running).toBe(0);
    expect(await effectState(t.db, polite!.id)).toMatchObject({ status: "completed" });
    expect(await effectState(t.db, stubborn!.id)).toMatchObject({
      status: "failed",
      attempts: 1,
      last_error: "the effect runner is stopping",
    });
    expect(rec.outcomes.map((o) => o.status).sort()).toEqual(["completed", "failed"]);
  });

  it("is woken by NOTIFY, without waiting for a sweep", async () => {
    const rec = outcomeRecorder();
    const registry = registryWith("test.notified", async () => {});
    await startRunner(t.db, registry, { onOutcome: rec.onOutcome, sweepMs: 3_600_000 });
    const [fx] = await enqueue(t.db, sessionKey(), [{ type: "test.notified" }]);
    await rec.waitFor((o) => o.effect.id === fx!.id && o.status === "completed", "completed after NOTIFY");
    expect(await effectState(t.db, fx!.id)).toMatchObject({ status: "completed", attempts: 1 });
  });

  it("lets a handler that outlived its claim record nothing, even while the reclaimed attempt runs", async () => {
    const rec = outcomeRecorder();
    const releaseFirst = gate();
    const releaseSecond = gate();
    const secondStarted = gate();
    const firstSignal: AbortSignal[] = [];
    const registry = registryWith("test.slow", async (effect, context) => {
      if (effect.attempts === 1) {
        firstSignal.push(context.signal);
        await releaseFirst.promise; // ignores its signal on purpose
      } else {
        secondStarted.open();
        await releaseSecond.promise;
      }
    });
    const [fx] = await enqueue(t.db, sessionKey(), [{ type: "test.slow" }]);
    // The same runner reclaims the expired claim: only the claim token tells the two attempts apart.
    await startRunner(t.db, registry, { onOutcome: rec.onOutcome, claimMs: 300, sweepMs: 25 });
    await secondStarted.promise;
    // The first attempt was told to stop (around its claim's expiry; best effort, so no "before").
    const signal = firstSignal[0]!;
    await nextValue<void>(
      (resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve())),
      5000,
      "the first attempt's abort",
    );
    expect(String(signal.reason)).toMatch(/claim of effect .* is about to expire/);
    releaseFirst.open();
    const first = await rec.waitFor((o) => o.effect.attempts === 1, "the first attempt's outcome");
    expect(first.status).toBe("lost");
    expect(await effectState(t.db, fx!.id)).toMatchObject({ status: "executing", attempts: 2 });
    releaseSecond.open();
    const second = await rec.waitFor((o) => o.effect.attempts === 2, "the second attempt's outcome");
    expect(second.status).toBe("completed");
    expect(await effectState(t.db, fx!.id)).toMatchObject({ status: "completed", attempts: 2 });
  });
});

describeEachDb(
  "effect runner, many processes",
  (t) => {
    stopRunnersAfterEach();
    it("never runs one effect twice at once across two runners", async () => {
      const total = 120;
      const type = "test.race";
      const executions = new Map<string, number>();
      const active = new Map<string, number>();
      let overlap = 0;
      const seen = new Set<string>();
      const both = gate();
      const done = counter(20_000);
      const perRunner = new Map<string, number>();
      const registryFor = (label: string) =>
        registryWith(type, async (effect) => {
          seen.add(label);
          if (seen.size === 2) both.open();
          // Hold the first handlers until both runners have claimed something.
          await both.promise;
          executions.set(effect.id, (executions.get(effect.id) ?? 0) + 1);
          const now = (active.get(effect.id) ?? 0) + 1;
          active.set(effect.id, now);
          if (now > 1) overlap += 1;
          await new Promise((resolve) => setImmediate(resolve));
          active.set(effect.id, now - 1);
          perRunner.set(label, (perRunner.get(label) ?? 0) + 1);
        });
      const ids: string[] = [];
      for (let s = 0; s < 12; s++) {
        const rows = await enqueue(
          t.db,
          sessionKey("race"),
          Array.from({ length: total / 12 }, () => ({ type })),
        );
        ids.push(...rows.map((r) => r.id));
      }
      const onOutcome = (o: { status: string }) => {
        if (o.status === "completed") done.bump();
      };
      await startRunner(t.another({ max: 4 }), registryFor("a"), { concurrency: 4, onOutcome });
      await startRunner(t.another({ max: 4 }), registryFor("b"), { concurrency: 4, onOutcome });
      await done.reach(total, "completed effects");
      expect(overlap).toBe(0);
      expect(ids.filter((id) => executions.get(id) !== 1)).toEqual([]);
      expect((perRunner.get("a") ?? 0) + (perRunner.get("b") ?? 0)).toBe(total);
      expect(perRunner.get("a")).toBeGreaterThan(0);
      expect(perRunner.get("b")).toBeGreaterThan(0);
      const [row] = await t.db.query<{ n: number }>(
        "select count(*)::int as n from sessiond.effects where type = $1 and status = 'completed' and attempts = 1",
        [type],
      );
      expect(row?.n).toBe(total);
    });

    it("reclaims the effects of a runner that died mid-effect once their claims expire", async () => {
      const type = "test.orphaned";
      const started = counter();
      const handlerA = async () => {
        started.bump();
        await new Promise(() => {}); // never settles and ignores its signal: a hung or dead process
      };
      const [survivor, lastTry] = await enqueue(t.db, sessionKey("orphan"), [{ type }, { type, max_attempts: 1 }]);
      const dbA = t.another({ max: 2 });
      // No sweep to speak of: A must not reclaim its own expired claims before it is "killed".
      const runnerA = await startRunner(dbA, registryWith(type, handlerA), { claimMs: 400, sweepMs: 3_600_000 });
      await started.reach(2, "runner A's handlers starting");
      expect(await effectState(t.db, survivor!.id)).toMatchObject({ status: "executing", attempts: 1 });
      // "Kill" A: it stops claiming and gives up on its handler; then its connections go.
      await runnerA.stop({ graceMs: 1 });
      await dbA.close();

      const rec = outcomeRecorder();
      let callsB = 0;
      await startRunner(
        t.db,
        registryWith(type, async () => {
          callsB += 1;
        }),
        { claimMs: 400, sweepMs: 50, onOutcome: rec.onOutcome },
      );
      const outcome = await rec.waitFor((o) => o.effect.id === survivor!.id, "runner B's outcome");
      expect(outcome).toMatchObject({ status: "completed", effect: { attempts: 2 } });
      expect(callsB).toBe(1);
      expect(started.value).toBe(2);
      // The effect that had no attempt left is dead, not retried, and says why.
      const dead = await eventually(async () => {
        const state = await effectState(t.db, lastTry!.id);
        return state.status === "dead" && state;
      }, "the last-attempt effect to go dead");
      expect(dead).toMatchObject({ attempts: 1, last_error: expect.stringMatching(/claim of attempt 1 expired/) });
    });
  },
  ["postgres"],
);
