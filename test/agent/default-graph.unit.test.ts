import { AIMessageChunk, type BaseMessage, HumanMessage } from "@langchain/core/messages";
import { MemorySaver } from "@langchain/langgraph";
import { describe, expect, it } from "vitest";
import {
  compileDefaultGraph,
  createDefaultGraph,
  isAbortError,
  LocalChatModel,
  localReply,
  MODEL_NODE,
  splitTokens,
} from "../../src/agent/index.js";

let n = 0;
const thread = () => ({ configurable: { thread_id: `t-${process.pid}-${++n}` } });

describe("default graph", () => {
  it("streams the model's reply token by token in streamMode messages, from the model node", async () => {
    const graph = compileDefaultGraph(new LocalChatModel());
    const input = [new HumanMessage("tokens please")];
    const tokens: string[] = [];
    const ids = new Set<string | undefined>();
    const stream = await graph.stream({ messages: input }, { streamMode: "messages" });
    for await (const [message, metadata] of stream) {
      expect(message).toBeInstanceOf(AIMessageChunk);
      expect(metadata.langgraph_node).toBe(MODEL_NODE);
      tokens.push(message.text);
      ids.add(message.id);
    }
    expect(tokens).toEqual(splitTokens(localReply(input)));
    expect(ids.size).toBe(1); // one message, many chunks
  });

  it("returns the whole reply in the final state", async () => {
    const graph = compileDefaultGraph(new LocalChatModel());
    const state = await graph.invoke({ messages: [new HumanMessage("whole")] });
    expect(state.messages.map((m) => [m.getType(), m.text])).toEqual([
      ["human", "whole"],
      ["ai", '[local model] You said: "whole". (message 2 in this conversation)'],
    ]);
  });

  it("remembers the conversation across turns with a checkpointer, per thread", async () => {
    const graph = compileDefaultGraph(new LocalChatModel(), new MemorySaver());
    const a = thread();
    const b = thread();
    await graph.invoke({ messages: [new HumanMessage("one")] }, a);
    const second = await graph.invoke({ messages: [new HumanMessage("two")] }, a);
    expect(second.messages.at(-1)?.text).toBe('[local model] You said: "two". (message 4 in this conversation)');

    // The same words on another thread start a fresh conversation.
    const other = await graph.invoke({ messages: [new HumanMessage("two")] }, b);
    expect(other.messages.at(-1)?.text).toBe('[local model] You said: "two". (message 2 in this conversation)');

    const saved = await graph.getState(a);
    expect((saved.values.messages as BaseMessage[]).map((m) => m.text)).toEqual([
      "one",
      '[local model] You said: "one". (message 2 in this conversation)',
      "two",
      '[local model] You said: "two". (message 4 in this conversation)',
    ]);
  });

  it("without a checkpointer, forgets between calls", async () => {
    const graph = compileDefaultGraph(new LocalChatModel());
    await graph.invoke({ messages: [new HumanMessage("one")] });
    const again = await graph.invoke({ messages: [new HumanMessage("two")] });
    expect(again.messages.at(-1)?.text).toContain("(message 2 in this conversation)");
  });

  it("hands out an uncompiled builder that compiles with any checkpointer", async () => {
    const builder = createDefaultGraph(new LocalChatModel());
    const graph = builder.compile({ checkpointer: new MemorySaver() });
    const config = thread();
    await graph.invoke({ messages: [new HumanMessage("a")] }, config);
    const state = await graph.invoke({ messages: [new HumanMessage("b")] }, config);
    expect(state.messages).toHaveLength(4);
  });

  it("stops a run when its signal aborts, and no partial reply is saved", async () => {
    const checkpointer = new MemorySaver();
    const graph = compileDefaultGraph(new LocalChatModel({ tokenDelayMs: 1 }), checkpointer);
    const config = thread();
    await graph.invoke({ messages: [new HumanMessage("kept")] }, config);

    const controller = new AbortController();
    const got: string[] = [];
    const outcome = await (async () => {
      const stream = await graph.stream(
        { messages: [new HumanMessage("cut short")] },
        { ...config, streamMode: "messages", signal: controller.signal },
      );
      for await (const [message] of stream) {
        got.push(message.text);
        if (got.length === 2) controller.abort();
      }
    })().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(isAbortError(outcome)).toBe(true);
    expect(got).toHaveLength(2);
    const state = await graph.getState(config);
    // The input was checkpointed before the model ran; no partial reply was.
    expect((state.values.messages as BaseMessage[]).map((m) => [m.getType(), m.text])).toEqual([
      ["human", "kept"],
      ["ai", '[local model] You said: "kept". (message 2 in this conversation)'],
      ["human", "cut short"],
    ]);
  });
});
