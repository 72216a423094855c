import { HumanMessage } from "@langchain/core/messages";
import { Command, INTERRUPT, isInterrupted, MemorySaver } from "@langchain/langgraph";
import { describe, expect, it } from "vitest";
import { APPROVAL_NODE, compileApprovalGraph, createApprovalGraph } from "../../src/agent/index.js";

let n = 0;
/** The values a run was interrupted with ([] when it was not interrupted). */
function interrupts(result: unknown): unknown[] {
  return isInterrupted(result) ? result[INTERRUPT].map((i) => i.value) : [];
}

const thread = () => ({ configurable: { thread_id: `approval-${process.pid}-${++n}` } });

describe("approval graph", () => {
  it("interrupts with a question, then approves on resume 'yes'", async () => {
    const graph = compileApprovalGraph(new MemorySaver());
    const config = thread();
    const first = await graph.invoke({ messages: [new HumanMessage("delete the logs")] }, config);
    expect(isInterrupted(first)).toBe(true);
    expect(interrupts(first)).toEqual([{ question: 'Approve "delete the logs"?' }]);

    const paused = await graph.getState(config);
    expect(paused.next).toEqual([APPROVAL_NODE]);
    expect(paused.values.messages).toHaveLength(1);

    const done = await graph.invoke(new Command({ resume: "yes" }), config);
    expect(isInterrupted(done)).toBe(false);
    expect(done.messages.map((m) => [m.getType(), m.text])).toEqual([
      ["human", "delete the logs"],
      ["ai", 'Approved: "delete the logs".'],
    ]);
    expect((await graph.getState(config)).next).toEqual([]);
  });

  it("declines on resume 'no'", async () => {
    const graph = compileApprovalGraph(new MemorySaver());
    const config = thread();
    await graph.invoke({ messages: [new HumanMessage("ship it")] }, config);
    const done = await graph.invoke(new Command({ resume: "no" }), config);
    expect(done.messages.at(-1)?.text).toBe('Declined: "ship it".');
  });

  it("asks again on any other answer instead of failing", async () => {
    const graph = compileApprovalGraph(new MemorySaver());
    const config = thread();
    await graph.invoke({ messages: [new HumanMessage("pay")] }, config);
    const again = await graph.invoke(new Command({ resume: "maybe" }), config);
    expect(isInterrupted(again)).toBe(true);
    expect(interrupts(again)).toEqual([{ question: 'Please answer "yes" or "no". Approve "pay"?' }]);
    const done = await graph.invoke(new Command({ resume: "yes" }), config);
    expect(done.messages.at(-1)?.text).toBe('Approved: "pay".');
  });

  it("asks about each new message on the same thread", async () => {
    const graph = createApprovalGraph().compile({ checkpointer: new MemorySaver() });
    const config = thread();
    await graph.invoke({ messages: [new HumanMessage("first")] }, config);
    await graph.invoke(new Command({ resume: "yes" }), config);
    const second = await graph.invoke({ messages: [new HumanMessage("second")] }, config);
    expect(interrupts(second)).toEqual([{ question: 'Approve "second"?' }]);
    const done = await graph.invoke(new Command({ resume: "no" }), config);
    expect(done.messages.map((m) => m.text)).toEqual(["first", 'Approved: "first".', "second", 'Declined: "second".']);
  });

  it("reports the interrupt in a stream, like any update", async () => {
    const graph = compileApprovalGraph(new MemorySaver());
    const config = thread();
    const updates: unknown[] = [];
    for await (const update of await graph.stream(
      { messages: [new HumanMessage("stream")] },
      {
        ...config,
        streamMode: "updates",
      },
    )) {
      updates.push(update);
    }
    expect(updates).toEqual([{ [INTERRUPT]: [expect.objectContaining({ value: { question: 'Approve "stream"?' } })] }]);
  });
});
