/**
 * LangGraph itself on SessiondCheckpointer: real StateGraphs with tiny
 * deterministic nodes (no model) — memory across turns, interrupt and resume,
 * a subgraph's namespaced checkpoints, time travel, and runs whose writes
 * reach the tables only through flushRun.
 */
import {
  Annotation,
  type BaseCheckpointSaver,
  Command,
  END,
  interrupt,
  MemorySaver,
  START,
  StateGraph,
  type StateSnapshot,
} from "@langchain/langgraph";
import { describe, expect, it } from "vitest";
import type { Db } from "../../src/db/index.js";
import { RUN_CONFIG_KEY, SessiondCheckpointer } from "../../src/session/index.js";
import { describeEachDb } from "../support/db.js";

let n = 0;
const thread = () => `graph-${process.pid}-${++n}`;
const on = (threadId: string, checkpointId?: string) => ({
  configurable: { thread_id: threadId, ...(checkpointId ? { checkpoint_id: checkpointId } : {}) },
});

const State = Annotation.Root({
  log: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
});

/** Echoes the last log line. */
function echoGraph(checkpointer: BaseCheckpointSaver) {
  return new StateGraph(State)
    .addNode("echo", (s) => ({ log: [`echo:${s.log.at(-1)}`] }))
    .addEdge(START, "echo")
    .addEdge("echo", END)
    .compile({ checkpointer });
}

/** Asks a question with interrupt() and logs the answer it is resumed with. */
const askNode = (s: typeof State.State) => {
  const answer = interrupt<string, string>(`answer ${s.log.at(-1)}?`);
  return { log: [`answer:${answer}`] };
};

function askGraph(checkpointer: BaseCheckpointSaver) {
  return new StateGraph(State)
    .addNode("ask", askNode)
    .addNode("done", () => ({ log: ["done"] }))
    .addEdge(START, "ask")
    .addEdge("ask", "done")
    .addEdge("done", END)
    .compile({ checkpointer });
}

/** A parent whose `inner` node is a subgraph that interrupts. */
function nestedGraph(checkpointer: BaseCheckpointSaver) {
  const inner = new StateGraph(State)
    .addNode("prepare", () => ({ log: ["inner:prepare"] }))
    .addNode("ask", askNode)
    .addEdge(START, "prepare")
    .addEdge("prepare", "ask")
    .addEdge("ask", END)
    .compile();
  return new StateGraph(State)
    .addNode("inner", inner)
    .addNode("after", () => ({ log: ["outer:after"] }))
    .addEdge(START, "inner")
    .addEdge("inner", "after")
    .addEdge("after", END)
    .compile({ checkpointer });
}

async function namespaces(db: Db, threadId: string): Promise<string[]> {
  const rows = await db.query<{ checkpoint_ns: string }>(
    "select distinct checkpoint_ns from sessiond.checkpoints where thread_id = $1 order by checkpoint_ns",
    [threadId],
  );
  return rows.map((r) => r.checkpoint_ns);
}

async function checkpointCount(db: Db, threadId: string): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    "select count(*)::int as n from sessiond.checkpoints where thread_id = $1",
    [threadId],
  );
  return row?.n ?? -1;
}

async function history(graph: ReturnType<typeof echoGraph>, threadId: string): Promise<StateSnapshot[]> {
  const out: StateSnapshot[] = [];
  for await (const snapshot of graph.getStateHistory(on(threadId))) out.push(snapshot);
  return out;
}

/** What a snapshot shows, without ids and timestamps (which differ between savers). */
function shape(s: StateSnapshot): unknown {
  return {
    values: s.values,
    next: s.next,
    source: s.metadata?.source,
    step: s.metadata?.step,
    tasks: s.tasks.map((task) => ({
      name: task.name,
      interrupts: task.interrupts.map((i) => i.value),
      state: task.state && "values" in task.state ? shape(task.state) : undefined,
    })),
  };
}

type Output = { log?: string[]; __interrupt__?: { value: unknown }[] };
const result = (out: Output) => ({ log: out.log, interrupts: out.__interrupt__?.map((i) => i.value) });

/**
 * Turns, interrupts inside a subgraph, resumes, history, a fork by updateState
 * on a past checkpoint: everything observable, for comparison between savers.
 */
async function scenario(checkpointer: BaseCheckpointSaver, threadId: string): Promise<unknown[]> {
  const graph = nestedGraph(checkpointer);
  const trace: unknown[] = [];
  trace.push(result(await graph.invoke({ log: ["q1"] }, on(threadId))));
  trace.push(shape(await graph.getState(on(threadId), { subgraphs: true })));
  trace.push(result(await graph.invoke(new Command({ resume: "a1" }), on(threadId))));
  trace.push(result(await graph.invoke({ log: ["q2"] }, on(threadId))));
  trace.push(result(await graph.invoke(new Command({ resume: "a2" }), on(threadId))));
  const past: StateSnapshot[] = [];
  for await (const snapshot of graph.getStateHistory(on(threadId))) past.push(snapshot);
  trace.push(past.map(shape));
  const finishedFirstTurn = past.find((p) => p.next.length === 0 && p.values.log?.at(-1) === "outer:after");
  const forked = await graph.updateState(finishedFirstTurn?.config ?? on(threadId), { log: ["edited"] });
  trace.push(shape(await graph.getState(forked)));
  trace.push(result(await graph.invoke({ log: ["q3"] }, forked)));
  trace.push(result(await graph.invoke(new Command({ resume: "a3" }), on(threadId))));
  trace.push(shape(await graph.getState(on(threadId))));
  return trace;
}

describeEachDb("SessiondCheckpointer under LangGraph", (t) => {
  it("behaves as LangGraph's MemorySaver through turns, subgraph interrupts, history and a fork", async () => {
    const expected = await scenario(new MemorySaver(), "parity");
    const actual = await scenario(new SessiondCheckpointer(t.db), thread());
    expect(actual).toEqual(expected);
    expect(JSON.stringify(actual)).toContain("edited");
  });

  it("remembers a thread across turns, also for a new checkpointer on the same database", async () => {
    const th = thread();
    const graph = echoGraph(new SessiondCheckpointer(t.db));
    expect((await graph.invoke({ log: ["hi"] }, on(th))).log).toEqual(["hi", "echo:hi"]);
    expect((await graph.invoke({ log: ["again"] }, on(th))).log).toEqual(["hi", "echo:hi", "again", "echo:again"]);
    const restarted = echoGraph(new SessiondCheckpointer(t.db));
    expect((await restarted.invoke({ log: ["third"] }, on(th))).log).toEqual([
      "hi",
      "echo:hi",
      "again",
      "echo:again",
      "third",
      "echo:third",
    ]);
    // Another thread starts empty.
    expect((await restarted.invoke({ log: ["x"] }, on(thread()))).log).toEqual(["x", "echo:x"]);
  });

  it("interrupts, survives a restart, and resumes with Command({ resume })", async () => {
    const th = thread();
    const graph = askGraph(new SessiondCheckpointer(t.db));
    const paused = await graph.invoke({ log: ["q"] }, on(th));
    expect(paused.log).toEqual(["q"]);
    const restarted = askGraph(new SessiondCheckpointer(t.db));
    const state = await restarted.getState(on(th));
    expect(state.next).toEqual(["ask"]);
    expect(state.tasks[0]?.interrupts.map((i) => i.value)).toEqual(["answer q?"]);
    const resumed = await restarted.invoke(new Command({ resume: "yes" }), on(th));
    expect(resumed.log).toEqual(["q", "answer:yes", "done"]);
    expect((await restarted.getState(on(th))).next).toEqual([]);
  });

  it("keeps a subgraph's checkpoints in its own namespace and resumes inside it", async () => {
    const th = thread();
    const graph = nestedGraph(new SessiondCheckpointer(t.db));
    await graph.invoke({ log: ["q"] }, on(th));
    const nss = await namespaces(t.db, th);
    expect(nss[0]).toBe("");
    expect(nss.slice(1)).toEqual([expect.stringMatching(/^inner:/)]);

    const state = await graph.getState(on(th), { subgraphs: true });
    expect(state.next).toEqual(["inner"]);
    const inner = state.tasks[0]?.state as StateSnapshot | undefined;
    expect(inner?.values).toEqual({ log: ["q", "inner:prepare"] });
    expect(inner?.next).toEqual(["ask"]);
    expect(inner?.tasks[0]?.interrupts.map((i) => i.value)).toEqual(["answer inner:prepare?"]);

    const resumed = await nestedGraph(new SessiondCheckpointer(t.db)).invoke(new Command({ resume: "ok" }), on(th));
    // The subgraph hands back its whole state, which the parent's reducer appends (as with MemorySaver).
    expect(resumed.log).toEqual(["q", "q", "inner:prepare", "answer:ok", "outer:after"]);
  });

  it("time travels: a run from an earlier checkpoint forks, and each branch keeps its own values", async () => {
    const th = thread();
    const graph = echoGraph(new SessiondCheckpointer(t.db));
    await graph.invoke({ log: ["a"] }, on(th));
    const original = await graph.invoke({ log: ["b"] }, on(th));
    const originalHead = (await graph.getState(on(th))).config.configurable?.checkpoint_id as string;

    // The end of the first turn, found through list (getStateHistory).
    const past = (await history(graph, th)).find((s) => s.next.length === 0 && s.values.log?.length === 2);
    expect(past?.values).toEqual({ log: ["a", "echo:a"] });
    const pastId = past?.config.configurable?.checkpoint_id as string;

    const forked = await graph.invoke({ log: ["c"] }, on(th, pastId));
    expect(forked.log).toEqual(["a", "echo:a", "c", "echo:c"]);
    const head = await graph.getState(on(th));
    expect(head.values).toEqual({ log: ["a", "echo:a", "c", "echo:c"] });
    expect(head.config.configurable?.checkpoint_id).not.toBe(originalHead);
    // The branch left behind still reads its own values (its channel versions differ from the fork's).
    expect((await graph.getState(on(th, originalHead))).values).toEqual({ log: original.log });
    // And it can continue from there too.
    expect((await graph.invoke({ log: ["d"] }, on(th, originalHead))).log).toEqual([...original.log, "d", "echo:d"]);
  });

  describe("runs", () => {
    it("a run's checkpoints stay in memory (yet visible to the next turn) until flushRun commits them", async () => {
      const th = thread();
      const checkpointer = new SessiondCheckpointer(t.db);
      const graph = echoGraph(checkpointer);
      checkpointer.beginRun(th);
      await graph.invoke({ log: ["one"] }, on(th));
      expect((await graph.invoke({ log: ["two"] }, on(th))).log).toEqual(["one", "echo:one", "two", "echo:two"]);
      expect(await checkpointCount(t.db, th)).toBe(0);
      expect(await new SessiondCheckpointer(t.db).getTuple(on(th))).toBeUndefined();

      await t.db.transaction((tx) => checkpointer.flushRun(tx, th));
      expect(await checkpointCount(t.db, th)).toBeGreaterThan(0);
      const later = echoGraph(new SessiondCheckpointer(t.db));
      expect((await later.getState(on(th))).values).toEqual({ log: ["one", "echo:one", "two", "echo:two"] });
    });

    it("a discarded run leaves the thread as it was committed", async () => {
      const th = thread();
      const checkpointer = new SessiondCheckpointer(t.db);
      const graph = echoGraph(checkpointer);
      await graph.invoke({ log: ["kept"] }, on(th));
      const before = await checkpointCount(t.db, th);
      checkpointer.beginRun(th);
      await graph.invoke({ log: ["dropped"] }, on(th));
      checkpointer.discardRun(th);
      expect(await checkpointCount(t.db, th)).toBe(before);
      expect((await graph.invoke({ log: ["next"] }, on(th))).log).toEqual(["kept", "echo:kept", "next", "echo:next"]);
    });

    it("the run id in the config reaches every write: a graph still running under an ended run writes nothing", async () => {
      const th = thread();
      const checkpointer = new SessiondCheckpointer(t.db);
      const graph = nestedGraph(checkpointer);
      const tagged = (runId: string) => ({ configurable: { ...on(th).configurable, [RUN_CONFIG_KEY]: runId } });
      const ended = checkpointer.beginRun(th);
      checkpointer.discardRun(th);
      await graph.invoke({ log: ["stale"] }, tagged(ended)); // subgraph writes included
      expect(checkpointer.staleWritesDropped).toBeGreaterThan(2);
      expect(await checkpointCount(t.db, th)).toBe(0);

      const current = checkpointer.beginRun(th);
      const dropped = checkpointer.staleWritesDropped;
      await graph.invoke({ log: ["live"] }, tagged(current));
      expect(checkpointer.staleWritesDropped).toBe(dropped);
      const batch = await checkpointer.takeRun(th);
      expect(batch.checkpoints.length).toBeGreaterThan(2);
      expect(new Set(batch.checkpoints.map((row) => row.ns)).size).toBe(2); // the subgraph's too
      expect(await checkpointCount(t.db, th)).toBe(0);
    });

    it("an interrupt committed by one run is resumed by the next", async () => {
      const th = thread();
      const checkpointer = new SessiondCheckpointer(t.db);
      const graph = askGraph(checkpointer);
      checkpointer.beginRun(th);
      await graph.invoke({ log: ["q"] }, on(th));
      await t.db.transaction((tx) => checkpointer.flushRun(tx, th));
      const [row] = await t.db.query<{ n: number }>(
        "select count(*)::int as n from sessiond.checkpoint_writes where thread_id = $1 and channel = '__interrupt__'",
        [th],
      );
      expect(row?.n).toBe(1);

      checkpointer.beginRun(th);
      const resumed = await graph.invoke(new Command({ resume: "later" }), on(th));
      expect(resumed.log).toEqual(["q", "answer:later", "done"]);
      await t.db.transaction((tx) => checkpointer.flushRun(tx, th));
      expect((await askGraph(new SessiondCheckpointer(t.db)).getState(on(th))).values).toEqual({
        log: ["q", "answer:later", "done"],
      });
    });
  });
});
