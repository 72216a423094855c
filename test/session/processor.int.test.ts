import { AIMessage } from "@langchain/core/messages";
import { END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { afterEach, expect, it } from "vitest";
import { compileApprovalGraph } from "../../src/agent/approval-graph.js";
import { createApprovalGraph } from "../../src/agent/index.js";
import { LocalChatModel, type LocalModelBehaviour } from "../../src/agent/local-model.js";
import { verify } from "../../src/audit/index.js";
import { type Db, DbError } from "../../src/db/index.js";
import { silentLogger } from "../../src/session/processor.js";
import { createRuntime, type Runtime, type RuntimeOptions, SessionBusyError } from "../../src/session/runtime.js";
import type { TokenFrame } from "../../src/session/token-bus.js";
import { describeEachDb } from "../support/db.js";
import { interceptQuery } from "../support/intercept.js";
import { clientEffects, cursor, isCaughtUp, uniqueKey } from "../support/sessions.js";
import { eventually, gate } from "../support/wait.js";

const running: Runtime[] = [];

async function runtime(db: Db, options: RuntimeOptions = {}): Promise<Runtime> {
  const rt = await createRuntime({ db, sweepMs: 200, retryBaseMs: 5, ...options });
  running.push(rt);
  await rt.start();
  return rt;
}

/** Stops every runtime a test started; registered inside each block so it runs before the leak checks. */
function stopRuntimesAfterEach() {
  afterEach(async () => {
    await Promise.all(running.splice(0).map((rt) => rt.stop({ graceMs: 0 })));
  });
}

async function send(rt: Runtime, sessionKey: string, texts: string[]) {
  const events = [];
  for (const [i, text] of texts.entries()) {
    events.push(await rt.sendMessage({ sessionKey, requestId: `${sessionKey}-r${i + 1}`, text }));
  }
  return events;
}

function expectedReply(text: string, turn: number) {
  return `[local model] You said: "${text}". (message ${turn * 2} in this conversation)`;
}

describeEachDb("session processing", (t) => {
  stopRuntimesAfterEach();
  it("answers 10 messages sent in quick succession, in order, each exactly once", async () => {
    const rt = await runtime(t.db);
    const s = uniqueKey();
    const texts = Array.from({ length: 10 }, (_, i) => `message ${i + 1}`);
    await Promise.all(texts.map((text, i) => rt.sendMessage({ sessionKey: s, requestId: `r${i + 1}`, text })));
    await eventually(() => isCaughtUp(t.db, s, 10), { what: "10 events processed" });
    const effects = await clientEffects(t.db, s);
    expect(effects.map((e) => e.type)).toEqual(Array(10).fill("send_message"));
    expect(effects.map((e) => e.event_seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const events = await t.db.query<{ seq: number; text: string; request_id: string }>(
      "select seq, payload->>'text' as text, request_id from sessiond.events where session_key = $1 order by seq",
      [s],
    );
    effects.forEach((effect, i) => {
      const event = events[i]!;
      expect(effect.payload).toMatchObject({ requestId: event.request_id, content: expectedReply(event.text, i + 1) });
      expect(effect.payload).toMatchObject({ final: true });
    });
    const outcomes = await t.db.query<{ status: string }>(
      "select status from sessiond.event_outcomes where session_key = $1 order by seq",
      [s],
    );
    expect(outcomes.map((o) => o.status)).toEqual(Array(10).fill("processed"));
    expect((await verify(t.db)).filter((v) => v.sessionKey === s)).toEqual([]);
    // The lease is given back once the session has no work.
    const [lease] = await t.db.query("select lease_owner from sessiond.sessions where session_key = $1", [s]);
    expect(lease).toEqual({ lease_owner: null });
  });

  // PGlite runs every statement on the test's own event loop, one at a time: a smaller load there
  // still queues more sessions than the processor runs at once, at a fraction of the suite's time.
  const [SESSIONS, MESSAGES, CONCURRENCY] = t.kind === "pglite" ? [10, 5, 4] : [20, 10, 8];
  it(`keeps ${SESSIONS} concurrent sessions × ${MESSAGES} messages apart (no cross-session contamination)`, async () => {
    const rt = await runtime(t.db, { concurrency: CONCURRENCY });
    const sessions = Array.from({ length: SESSIONS }, (_, i) => uniqueKey(`iso${i}`));
    await Promise.all(
      sessions.map(async (s) => {
        for (let i = 1; i <= MESSAGES; i++)
          await rt.sendMessage({ sessionKey: s, requestId: `r${i}`, text: `${s} says ${i}` });
      }),
    );
    for (const s of sessions) {
      await eventually(() => isCaughtUp(t.db, s, MESSAGES), { what: `session ${s} processed`, ms: 90_000 });
      const effects = await clientEffects(t.db, s);
      expect(effects.map((e) => e.payload.content)).toEqual(
        Array.from({ length: MESSAGES }, (_, i) => expectedReply(`${s} says ${i + 1}`, i + 1)),
      );
    }
  }, 120_000);

  it("streams tokens live, in order, and they add up to the durable reply", async () => {
    const rt = await runtime(t.db);
    const s = uniqueKey();
    const tokens: TokenFrame[] = [];
    const unsubscribe = rt.tokens.subscribe(s, (frame) => tokens.push(frame));
    try {
      await send(rt, s, ["stream me"]);
      await eventually(() => isCaughtUp(t.db, s, 1));
    } finally {
      unsubscribe();
    }
    const [reply] = await clientEffects(t.db, s);
    expect(tokens.length).toBeGreaterThan(3);
    expect(tokens.map((f) => f.index)).toEqual(tokens.map((_, i) => i));
    expect(tokens.every((f) => f.eventSeq === 1 && f.requestId === `${s}-r1`)).toBe(true);
    expect(tokens.map((f) => f.text).join("")).toBe(reply?.payload.content);
  });

  it("retries a transient model error with backoff and commits once", async () => {
    const behaviour: LocalModelBehaviour = ({ call }) => {
      if (call <= 2) throw Object.assign(new Error("upstream 503"), { status: 503 });
      return "third time lucky";
    };
    const rt = await runtime(t.db, { model: new LocalChatModel({ behaviour }) });
    const s = uniqueKey();
    await send(rt, s, ["hello"]);
    await eventually(() => isCaughtUp(t.db, s, 1));
    expect((await clientEffects(t.db, s)).map((e) => e.payload.content)).toEqual(["third time lucky"]);
    const [outcome] = await t.db.query("select status, attempts from sessiond.event_outcomes where session_key = $1", [
      s,
    ]);
    expect(outcome).toEqual({ status: "processed", attempts: 3 });
  });

  it("records a failing event, tells the client with an error effect, and goes on with the next", async () => {
    const behaviour: LocalModelBehaviour = ({ messages }) => {
      const last = messages[messages.length - 1]?.content;
      if (last === "poison") throw new Error("model exploded");
      return `ok: ${String(last)}`;
    };
    const rt = await runtime(t.db, { model: new LocalChatModel({ behaviour }), maxAttempts: 2 });
    const s = uniqueKey();
    await send(rt, s, ["poison", "fine"]);
    await eventually(() => isCaughtUp(t.db, s, 2));
    const effects = await clientEffects(t.db, s);
    expect(effects.map((e) => [e.event_seq, e.type, e.payload.code ?? e.payload.content])).toEqual([
      [1, "error", "run_failed"],
      [2, "send_message", "ok: fine"],
    ]);
    const outcomes = await t.db.query<{ status: string; attempts: number; error: string | null }>(
      "select status, attempts, error from sessiond.event_outcomes where session_key = $1 order by seq",
      [s],
    );
    expect(outcomes[0]).toMatchObject({ status: "failed", attempts: 2 });
    expect(outcomes[0]?.error).toMatch(/model exploded/);
    expect(outcomes[1]).toMatchObject({ status: "processed", error: null });
  });

  it("double texting: reject refuses a message while the session is busy", async () => {
    const hold = gate();
    const behaviour: LocalModelBehaviour = async () => {
      await hold.promise;
      return "done";
    };
    const rt = await runtime(t.db, { model: new LocalChatModel({ behaviour }) });
    const s = uniqueKey();
    await rt.sendMessage({ sessionKey: s, requestId: "r1", text: "first", strategy: "reject" });
    await expect(
      rt.sendMessage({ sessionKey: s, requestId: "r2", text: "second", strategy: "reject" }),
    ).rejects.toBeInstanceOf(SessionBusyError);
    hold.open();
    await eventually(() => isCaughtUp(t.db, s, 1));
    expect((await cursor(t.db, s))?.last_seq).toBe(1);
    // Once idle, reject lets the next one in.
    await rt.sendMessage({ sessionKey: s, requestId: "r3", text: "third", strategy: "reject" });
    await eventually(() => isCaughtUp(t.db, s, 2));
  });

  it("double texting: interrupt aborts the running call; the newer message sees the earlier one", async () => {
    const started = gate();
    const seen: string[][] = [];
    const behaviour: LocalModelBehaviour = ({ messages, call }) => {
      seen.push(messages.map((m) => String(m.content)));
      if (call === 1) started.open();
      return call === 1 ? "a long answer that will never finish ".repeat(50) : "answer to both";
    };
    const rt = await runtime(t.db, { model: new LocalChatModel({ behaviour, tokenDelayMs: 20 }) });
    const s = uniqueKey();
    await rt.sendMessage({ sessionKey: s, requestId: "r1", text: "first" });
    await started.promise;
    await rt.sendMessage({ sessionKey: s, requestId: "r2", text: "actually, this", strategy: "interrupt" });
    await eventually(() => isCaughtUp(t.db, s, 2));
    const effects = await clientEffects(t.db, s);
    expect(effects.map((e) => [e.event_seq, e.type, e.payload.code ?? e.payload.content])).toEqual([
      [1, "error", "superseded"],
      [2, "send_message", "answer to both"],
    ]);
    expect(seen.at(-1)).toEqual(["first", "actually, this"]);
    const outcomes = await t.db.query<{ status: string }>(
      "select status from sessiond.event_outcomes where session_key = $1 order by seq",
      [s],
    );
    expect(outcomes.map((o) => o.status)).toEqual(["superseded", "processed"]);
    // Nothing of the aborted call reached the checkpoint: the history is the two messages and one reply.
    const state = await rt.graph.getState({ configurable: { thread_id: s } });
    const history = (state.values as { messages: Array<{ content: unknown }> }).messages.map((m) => m.content);
    expect(history).toEqual(["first", "actually, this", "answer to both"]);
  });

  it("human in the loop: an interrupt effect, then a resume event continues the graph", async () => {
    const rt = await runtime(t.db, { graph: createApprovalGraph() });
    const s = uniqueKey();
    await rt.sendMessage({ sessionKey: s, requestId: "r1", text: "delete everything" });
    await eventually(() => isCaughtUp(t.db, s, 1));
    const [asked] = await clientEffects(t.db, s);
    expect(asked).toMatchObject({
      type: "interrupt",
      payload: { requestId: "r1", value: { question: 'Approve "delete everything"?' } },
    });
    await rt.resume({ sessionKey: s, requestId: "r2", value: "yes" });
    await eventually(() => isCaughtUp(t.db, s, 2));
    const effects = await clientEffects(t.db, s);
    expect(effects[1]).toMatchObject({
      type: "send_message",
      payload: { requestId: "r2", content: 'Approved: "delete everything".' },
    });
    expect(compileApprovalGraph).toBeTypeOf("function");
  });

  it("a run with several assistant messages sends each whole, the last one final; verify stays clean", async () => {
    const graph = new StateGraph(MessagesAnnotation)
      .addNode("two", () => ({ messages: [new AIMessage("first part"), new AIMessage("second part")] }))
      .addEdge(START, "two")
      .addEdge("two", END);
    const rt = await runtime(t.db, { graph });
    const s = uniqueKey();
    await send(rt, s, ["talk twice"]);
    await eventually(() => isCaughtUp(t.db, s, 1));
    const effects = await clientEffects(t.db, s);
    expect(effects.map((e) => [e.type, e.payload.content, (e.payload as { final?: boolean }).final])).toEqual([
      ["send_message", "first part", false],
      ["send_message", "second part", true],
    ]);
    expect((await verify(t.db)).filter((v) => v.sessionKey === s)).toEqual([]);
  });

  it("keeps sweeping after a sweep finds the process at full capacity (poll-only, concurrency 1)", async () => {
    const rt = await runtime(t.db, {
      mode: "poll-only",
      sweepMs: 50,
      concurrency: 1,
      model: new LocalChatModel({ tokenDelayMs: 20 }),
    });
    const a = uniqueKey("full-a");
    const b = uniqueKey("full-b");
    await send(rt, a, ["a long one"]);
    await eventually(() => rt.processor.activeSessions === 1);
    await send(rt, b, ["then me"]);
    await eventually(() => isCaughtUp(t.db, a, 1));
    await eventually(() => isCaughtUp(t.db, b, 1), { what: "session B processed by a later sweep" });
  });

  it("holds the concurrency limit when a sweep's claim returns after notifications filled the slots", async () => {
    // The sweep's claim is held until a notified session has taken the only slot.
    const sweepHeld = gate();
    const sweepSent = gate();
    const db = interceptQuery(t.db, async (sql, run) => {
      if (sql.includes("claim_sessions(")) {
        sweepSent.open();
        await sweepHeld.promise;
      }
      return run();
    });
    const held = gate();
    const started: string[] = [];
    let running = 0;
    let most = 0;
    const [a, b] = [uniqueKey("capA"), uniqueKey("capB")];
    const rt = await runtime(db, {
      concurrency: 1,
      model: new LocalChatModel({
        behaviour: async ({ call }) => {
          if (call === 1) await held.promise;
          return "ok";
        },
      }),
      hooks: {
        onRunStart(sessionKey) {
          started.push(sessionKey);
          running += 1;
          most = Math.max(most, running);
        },
        onCommitted() {
          running -= 1;
        },
      },
    });
    await sweepSent.promise; // the start's sweep computed one free slot and is waiting
    await rt.sendMessage({ sessionKey: a, requestId: "r1", text: "first" });
    await eventually(async () => started.length === 1);
    await rt.sendMessage({ sessionKey: b, requestId: "r1", text: "second" }); // no slot: waits
    sweepHeld.open(); // the sweep now finds b free and claims it
    await rt.processor.sweep();
    expect(running).toBe(1);
    held.open();
    for (const s of [a, b]) await eventually(() => isCaughtUp(t.db, s, 1));
    expect(most).toBe(1);
    expect(started).toEqual([a, b]);
  });

  it("holds the concurrency limit when many notifications arrive together", async () => {
    let running = 0;
    let most = 0;
    const rt = await runtime(t.db, {
      concurrency: 2,
      model: new LocalChatModel({ tokenDelayMs: 5 }),
      hooks: {
        onRunStart() {
          running += 1;
          most = Math.max(most, running);
        },
        onCommitted() {
          running -= 1;
        },
      },
    });
    const sessions = Array.from({ length: 10 }, (_, i) => uniqueKey(`cap${i}`));
    await Promise.all(sessions.map((s) => rt.sendMessage({ sessionKey: s, requestId: "r1", text: "hi" })));
    for (const s of sessions) await eventually(() => isCaughtUp(t.db, s, 1), { ms: 60_000 });
    expect(most).toBeLessThanOrEqual(2);
  });

  it("an event appended while its session finishes (lease given back, still active here) is run without the sweep", async () => {
    const hold = gate();
    let released = 0;
    let notifiedOfSecond = false;
    const rt = await runtime(t.db, {
      sweepMs: 600_000, // the sweep must not be what rescues the event
      hooks: {
        async afterRelease() {
          released += 1;
          if (released === 1) await hold.promise;
        },
        onNotified(_sessionKey, seq) {
          if (seq === 2) notifiedOfSecond = true;
        },
      },
    });
    const s = uniqueKey();
    await rt.sendMessage({ sessionKey: s, requestId: "r1", text: "first" });
    await eventually(() => released === 1, { what: "the first turn's release" });
    // The session's lease is free, but this process has not left the session yet: the second
    // event's NOTIFY arrives now and finds it active.
    await rt.sendMessage({ sessionKey: s, requestId: "r2", text: "second" });
    await eventually(() => notifiedOfSecond, { what: "the second event's NOTIFY at the processor" });
    expect(rt.processor.activeSessions).toBe(1);
    hold.open();
    await eventually(() => isCaughtUp(t.db, s, 2), { what: "the event appended while the session finished" });
    expect((await clientEffects(t.db, s)).map((e) => e.event_seq)).toEqual([1, 2]);
  });

  it("a heartbeat refused because the session's last look gave the lease back is no loss: no warning, no missed event", async () => {
    // The run's first heartbeat is held in front of the database until the look after the run has
    // released the lease; it is refused then, while a second event's NOTIFY waits for the session.
    const heartbeatHeld = gate();
    const heartbeatGo = gate();
    const heartbeatDone = gate<boolean>();
    let holdHeartbeat = true;
    const db = interceptQuery(t.db, async (sql, run) => {
      if (!holdHeartbeat || !sql.includes("heartbeat_session(")) return run();
      holdHeartbeat = false;
      heartbeatHeld.open();
      await heartbeatGo.promise;
      const rows = await run();
      heartbeatDone.open(rows[0]?.ok === true);
      return rows;
    });
    const warnings: string[] = [];
    const s = uniqueKey();
    let notifiedOfSecond = false;
    let released = 0;
    const rt: Runtime = await runtime(db, {
      leaseMs: 300, // a heartbeat every 100 ms
      sweepMs: 600_000, // the sweep must not be what rescues the second event
      logger: { ...silentLogger, warn: (_obj, msg) => warnings.push(msg ?? "") },
      model: new LocalChatModel({
        behaviour: async ({ call }) => {
          if (call === 1) await heartbeatHeld.promise;
          return "ok";
        },
      }),
      hooks: {
        async afterRelease() {
          released += 1;
          if (released !== 1) return;
          await rt.sendMessage({ sessionKey: s, requestId: "r2", text: "second" });
          await eventually(() => notifiedOfSecond, { what: "the second event's NOTIFY at the processor" });
          heartbeatGo.open();
          expect(await heartbeatDone.promise).toBe(false); // the lease is free: refused
          await new Promise((resolve) => setTimeout(resolve, 0)); // the processor has read the refusal
        },
        onNotified(_sessionKey, seq) {
          if (seq === 2) notifiedOfSecond = true;
        },
      },
    });
    await rt.sendMessage({ sessionKey: s, requestId: "r1", text: "first" });
    await eventually(() => isCaughtUp(t.db, s, 2), { what: "the second event, run without the sweep" });
    // (The second turn's release follows its commit: wait for it rather than race it.)
    await eventually(() => released === 2, { what: "the second turn's release" });
    expect(warnings.filter((w) => w.includes("lease lost"))).toEqual([]);
  });

  it("poll-only mode processes through the sweep alone", async () => {
    const rt = await runtime(t.db, { mode: "poll-only", sweepMs: 50 });
    const s = uniqueKey();
    await send(rt, s, ["polled"]);
    await eventually(() => isCaughtUp(t.db, s, 1));
    expect((await clientEffects(t.db, s))[0]?.payload.content).toBe(expectedReply("polled", 1));
  });

  it("a crash between the model run and the commit leaves nothing half-written; the event is redone once", async () => {
    const reachedCommit = gate();
    const never = gate();
    const a = await runtime(t.db, {
      leaseMs: 60_000,
      hooks: {
        beforeCommit: async () => {
          reachedCommit.open();
          await never.promise; // process A "dies" here: it never commits
        },
      },
    });
    const s = uniqueKey();
    await send(a, s, ["survive a crash"]);
    await reachedCommit.promise;
    // Nothing of A's run is visible: no effect, no checkpoint, cursor unmoved.
    expect(await clientEffects(t.db, s)).toEqual([]);
    const [checkpoints] = await t.db.query<{ n: number }>(
      "select count(*)::int as n from sessiond.checkpoints where thread_id = $1",
      [s],
    );
    expect(checkpoints?.n).toBe(0);
    expect((await cursor(t.db, s))?.processed_seq).toBe(0);
    // A's lease runs out (simulated), B takes over and redoes the event.
    await t.db.query(
      "update sessiond.sessions set lease_expires_at = now() - interval '1 second' where session_key = $1",
      [s],
    );
    const b = await runtime(t.db);
    await eventually(() => isCaughtUp(t.db, s, 1));
    // A wakes up and tries to commit its stale run: the fencing token refuses it.
    never.open();
    await eventually(
      async () =>
        (await t.db.query("select 1 from sessiond.sessions where session_key = $1 and lease_owner is null", [s]))
          .length === 1,
    );
    const effects = await clientEffects(t.db, s);
    expect(effects.map((e) => e.payload.content)).toEqual([expectedReply("survive a crash", 1)]);
    const state = await b.graph.getState({ configurable: { thread_id: s } });
    expect((state.values as { messages: unknown[] }).messages).toHaveLength(2);
  });
});

describeEachDb(
  "session processing across processes",
  (t) => {
    stopRuntimesAfterEach();
    it("two or three runtimes on one Postgres process every event exactly once, never two at once", async () => {
      const inFlight = new Map<string, number>();
      let overlap = 0;
      let runs = 0;
      const hooks = {
        onRunStart(sessionKey: string) {
          runs += 1;
          const n = (inFlight.get(sessionKey) ?? 0) + 1;
          inFlight.set(sessionKey, n);
          if (n > 1) overlap += 1;
        },
        onCommitted(sessionKey: string) {
          inFlight.set(sessionKey, (inFlight.get(sessionKey) ?? 1) - 1);
        },
      };
      const model = () => new LocalChatModel({ tokenDelayMs: 1 });
      const rts = [
        await runtime(t.another({ max: 4 }), { hooks, model: model() }),
        await runtime(t.another({ max: 4 }), { hooks, model: model() }),
        await runtime(t.another({ max: 4 }), { hooks, model: model() }),
      ];
      const sessions = Array.from({ length: 12 }, (_, i) => uniqueKey(`multi${i}`));
      await Promise.all(
        sessions.map(async (s, i) => {
          for (let m = 1; m <= 5; m++) {
            await rts[(i + m) % 3]!.sendMessage({ sessionKey: s, requestId: `r${m}`, text: `m${m}` });
          }
        }),
      );
      for (const s of sessions) await eventually(() => isCaughtUp(t.db, s, 5), { ms: 30_000 });
      expect(overlap).toBe(0);
      expect(runs).toBe(sessions.length * 5);
      for (const s of sessions) {
        const effects = await clientEffects(t.db, s);
        expect(effects.map((e) => e.event_seq)).toEqual([1, 2, 3, 4, 5]);
      }
    });

    it("a runtime that dies mid-run: another finishes its session after the lease expires", async () => {
      const started = gate();
      const dyingDb = t.another({ max: 2 });
      const a = await runtime(dyingDb, {
        leaseMs: 600,
        model: new LocalChatModel({
          tokenDelayMs: 50,
          behaviour: ({ call }) => {
            started.open();
            return call === 1 ? "slow ".repeat(200) : "never";
          },
        }),
      });
      const s = uniqueKey();
      await a.sendMessage({ sessionKey: s, requestId: "r1", text: "who answers?" });
      await started.promise;
      // B starts only now, so that A is the one that took the session.
      const b = await runtime(t.another({ max: 2 }), { leaseMs: 600, sweepMs: 100 });
      // A dies: its connections go away mid-run (no release, no commit).
      await dyingDb.close();
      await eventually(() => isCaughtUp(t.db, s, 1), { ms: 20_000 });
      const effects = await clientEffects(t.db, s);
      expect(effects.map((e) => e.payload.content)).toEqual([expectedReply("who answers?", 1)]);
      expect(b.processor.owner).not.toBe(a.processor.owner);
    });

    it("fencing: a processor paused past its lease commits nothing; exactly one outcome lands", async () => {
      const paused = gate();
      const resume = gate();
      let aFailed: unknown;
      const aDb = t.another({ max: 2 });
      const a = await runtime(aDb, {
        leaseMs: 60_000,
        // No sweep of A's but the one this test calls: a sweep that began before A took the session
        // would not skip it, and an explicit sweep() joins the one in flight.
        sweepMs: 3_600_000,
        hooks: {
          beforeCommit: async () => {
            paused.open();
            await resume.promise;
          },
        },
        model: new LocalChatModel({ behaviour: () => "from A" }),
      });
      await a.processor.sweep(); // the sweep of start(), over before the session exists
      const s = uniqueKey();
      await a.sendMessage({ sessionKey: s, requestId: "r1", text: "fence me" });
      await paused.promise;
      try {
        await t.db.query(
          "update sessiond.sessions set lease_expires_at = now() - interval '1 second' where session_key = $1",
          [s],
        );
        // A's own sweep leaves the session it runs alone: a claim would hand A a second lease that
        // its paused loop does not know and nobody renews, keeping B out until it expired.
        await a.processor.sweep();
        const [lease] = await t.db.query<{ lease_token: number }>(
          "select lease_token from sessiond.sessions where session_key = $1",
          [s],
        );
        expect(lease?.lease_token).toBe(1);
        await runtime(t.another({ max: 2 }), { model: new LocalChatModel({ behaviour: () => "from B" }) });
        await eventually(() => isCaughtUp(t.db, s, 1));
        resume.open();
        // A's commit must be refused with SDL01: try the same commit A would make.
        try {
          await aDb.query("select * from sessiond.commit_run($1, 1, $2, '[]')", [s, [{ seq: 1, status: "processed" }]]);
        } catch (error) {
          aFailed = error;
        }
        expect(aFailed).toBeInstanceOf(DbError);
        expect((aFailed as DbError).code).toBe("SDL01");
        await eventually(async () => a.processor.activeSessions === 0);
        const effects = await clientEffects(t.db, s);
        expect(effects.map((e) => e.payload.content)).toEqual(["from B"]);
        const [outcomes] = await t.db.query<{ n: number }>(
          "select count(*)::int as n from sessiond.event_outcomes where session_key = $1",
          [s],
        );
        expect(outcomes?.n).toBe(1);
      } finally {
        // A failed expectation must not leave A paused for ever (stopping it would wait on it).
        resume.open();
      }
    });

    /**
     * A runtime whose sweeps can be held: `holdSweep()` starts a sweep whose claim waits in front of
     * the database until `release()`, so its skip list is older than what the runtime then runs.
     * Its model answers "from A"; each run stops before its commit until `resume` opens.
     */
    async function staleSweepRuntime(db: Db, afterRelease?: (sessionKey: string) => Promise<void>) {
      const sweepHeld = gate();
      const sweepSent = gate();
      let hold = false;
      const held = interceptQuery(db, async (sql, run) => {
        if (hold && sql.includes("claim_sessions(")) {
          sweepSent.open();
          await sweepHeld.promise;
        }
        return run();
      });
      const paused = gate();
      const resume = gate();
      const runs: number[] = [];
      const rt = await runtime(held, {
        leaseMs: 60_000,
        sweepMs: 3_600_000, // no sweep but the ones the test starts
        hooks: {
          onRunStart: (_key, seq) => runs.push(seq),
          beforeCommit: async () => {
            paused.open();
            await resume.promise;
          },
          ...(afterRelease ? { afterRelease } : {}),
        },
        model: new LocalChatModel({ behaviour: () => "from A" }),
      });
      await rt.processor.sweep(); // the sweep of start(), over before any session exists
      return {
        rt,
        runs,
        paused,
        resume,
        async holdSweep() {
          hold = true;
          const sweeping = rt.processor.sweep();
          await sweepSent.promise;
          return {
            release: () => {
              sweepHeld.open();
              return sweeping;
            },
          };
        },
      };
    }

    const expireLease = (s: string) =>
      t.db.query("update sessiond.sessions set lease_expires_at = now() - interval '1 second' where session_key = $1", [
        s,
      ]);
    const outcomeTokens = (s: string) =>
      t.db.query<{ seq: number; lease_token: number }>(
        "select seq, lease_token::int from sessiond.event_outcomes where session_key = $1 order by seq",
        [s],
      );

    it("a sweep that takes the expired lease of a session its own process runs renews it: one run, committed", async () => {
      const a = await staleSweepRuntime(t.another({ max: 2 }));
      try {
        const sweep = await a.holdSweep(); // its skip list is empty: nothing runs yet
        const s = uniqueKey();
        await a.rt.sendMessage({ sessionKey: s, requestId: "r1", text: "keep me" });
        await a.paused.promise; // A runs s under token 1 and is about to commit
        await expireLease(s); // e.g. heartbeats starved past the lease
        await sweep.release(); // the stale sweep claims s again: token 2, still A
        a.resume.open();
        await eventually(() => isCaughtUp(t.db, s, 1), { what: "A's run committed" });
        // Not fenced by its own sweep and redone: one run, committed under the renewed token.
        expect(a.runs).toEqual([1]);
        expect(await outcomeTokens(s)).toEqual([{ seq: 1, lease_token: 2 }]);
        expect((await clientEffects(t.db, s)).map((e) => e.payload.content)).toEqual(["from A"]);
        await eventually(
          async () =>
            (
              await t.db.query(
                "select lease_owner from sessiond.sessions where session_key = $1 and lease_owner is null",
                [s],
              )
            ).length === 1,
          { what: "the lease given back" },
        );
      } finally {
        a.resume.open();
      }
    });

    it("after another owner held the lease in between, the renewed session reads again from the cursor", async () => {
      const a = await staleSweepRuntime(t.another({ max: 2 }));
      try {
        const sweep = await a.holdSweep();
        const s = uniqueKey();
        await a.rt.sendMessage({ sessionKey: s, requestId: "r1", text: "first" });
        await a.paused.promise; // A is about to commit event 1 under token 1
        // Meanwhile the lease expires; another owner takes it (token 2), commits event 1 and stalls.
        await expireLease(s);
        const [other] = await t.db.query<{ lease_token: number }>(
          "select lease_token::int from sessiond.claim_session_work($1, 'other', 60000, 10) limit 1",
          [s],
        );
        expect(other?.lease_token).toBe(2);
        await t.db.query("select * from sessiond.commit_run($1, 2, $2, '[]')", [s, [{ seq: 1, status: "processed" }]]);
        await a.rt.sendMessage({ sessionKey: s, requestId: "r2", text: "second" });
        await expireLease(s);
        await sweep.release(); // A's stale sweep claims s: token 3, not the next of A's token 1
        a.resume.open();
        await eventually(() => isCaughtUp(t.db, s, 2), { what: "event 2 committed by A" });
        // A's commit of event 1 is refused (the other owner's stands); A goes on with event 2.
        expect(a.runs).toEqual([1, 2]);
        expect(await outcomeTokens(s)).toEqual([
          { seq: 1, lease_token: 2 },
          { seq: 2, lease_token: 3 },
        ]);
        expect((await clientEffects(t.db, s)).map((e) => [e.event_seq, e.payload.content])).toEqual([[2, "from A"]]);
      } finally {
        a.resume.open();
      }
    });

    it("a claim that returns while the session's loop is leaving it is given back, not kept by the leaving loop", async () => {
      const leaving = gate();
      const go = gate();
      const a = await staleSweepRuntime(t.another({ max: 2 }), async () => {
        leaving.open();
        await go.promise;
      });
      a.resume.open(); // runs commit at once here
      try {
        const sweep = await a.holdSweep();
        const s = uniqueKey();
        await a.rt.sendMessage({ sessionKey: s, requestId: "r1", text: "first" });
        await leaving.promise; // event 1 committed, the lease given back; the loop has not left yet
        await a.rt.sendMessage({ sessionKey: s, requestId: "r2", text: "second" }); // its NOTIFY finds s active
        await sweep.release(); // the stale sweep claims the free lease of s (token 2)
        go.open();
        await eventually(() => isCaughtUp(t.db, s, 2), { what: "event 2 run without a lease left dangling" });
        expect(a.runs).toEqual([1, 2]);
        expect(await outcomeTokens(s)).toEqual([
          { seq: 1, lease_token: 1 },
          { seq: 2, lease_token: 3 },
        ]);
      } finally {
        go.open();
      }
    });
  },
  ["postgres"],
);
