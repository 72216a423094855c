import { getEventListeners } from "node:events";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { ModelAbortError } from "@langchain/core/errors";
import { AIMessage, HumanMessage, SystemMessage } from "@langchain/core/messages";
import { describe, expect, it } from "vitest";
import {
  isAbortError,
  LocalChatModel,
  LocalModelFailure,
  type LocalModelTurn,
  localReply,
  splitTokens,
} from "../../src/agent/index.js";

/** Settles with the promise, or rejects once `ms` pass: a deadline, not a timing assertion. */
function withDeadline<T>(promise: Promise<T>, ms = 5_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  const outcome = await promise.then(
    () => ({ ok: true as const }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  expect(outcome.ok, "expected a rejection").toBe(false);
  return outcome.ok ? undefined : outcome.error;
}

describe("splitTokens", () => {
  it("splits into word-ish tokens that join back into exactly the input", () => {
    expect(splitTokens('a bc  "d"\n e')).toEqual(["a ", "bc  ", '"d"\n ', "e"]);
    for (const text of ["", "   ", "  lead", "trail  ", "one", "x\ty\n\nz ", "naïve café 日本語 ok"]) {
      expect(splitTokens(text).join("")).toBe(text);
    }
    expect(splitTokens("  lead")).toEqual(["  lead"]);
    expect(splitTokens("")).toEqual([]);
  });
});

describe("localReply", () => {
  it("names the local model, echoes the last user message and counts the history", () => {
    const history = [new HumanMessage("first"), new AIMessage("ok"), new HumanMessage("second one")];
    expect(localReply(history)).toBe('[local model] You said: "second one". (message 4 in this conversation)');
    expect(localReply([new SystemMessage("sys")])).toBe('[local model] You said: "". (message 2 in this conversation)');
  });
});

describe("LocalChatModel", () => {
  it("streams the reply token by token, and the tokens make up the invoke() reply", async () => {
    const model = new LocalChatModel();
    const input = [new HumanMessage("stream me please")];
    const tokens: string[] = [];
    for await (const chunk of await model.stream(input)) tokens.push(chunk.text);
    const expected = localReply(input);
    expect(tokens).toEqual(splitTokens(expected));
    expect(tokens.length).toBeGreaterThan(5);
    const reply = await model.invoke(input);
    expect(reply.text).toBe(expected);
    expect(model.calls).toBe(2);
  });

  it("is deterministic: same history, same reply, across instances", async () => {
    const history = [new HumanMessage("hello"), new AIMessage("hi"), new HumanMessage("how are you?")];
    const a = await new LocalChatModel().invoke(history);
    const b = await new LocalChatModel({ tokenDelayMs: 1 }).invoke(history);
    expect(a.text).toBe(b.text);
    expect(a.text).toBe('[local model] You said: "how are you?". (message 4 in this conversation)');
  });

  it("reports each token to callbacks (what LangGraph's messages stream listens to)", async () => {
    const model = new LocalChatModel();
    const seen: string[] = [];
    const reply = await model.invoke([new HumanMessage("callbacks")], {
      callbacks: [{ handleLLMNewToken: (token: string) => void seen.push(token) }],
    });
    await awaitAllCallbacks(); // handlers run in the background unless told otherwise
    expect(seen.join("")).toBe(reply.text);
    expect(seen).toEqual(splitTokens(reply.text));
  });

  it("delays tokens and removes its abort listener once done", async () => {
    const controller = new AbortController();
    const model = new LocalChatModel({ tokenDelayMs: 1 });
    const reply = await model.invoke([new HumanMessage("slowly")], { signal: controller.signal });
    expect(reply.text).toContain('"slowly"');
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("rejects promptly when aborted during a long token delay", async () => {
    const controller = new AbortController();
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const model = new LocalChatModel({
      tokenDelayMs: 600_000,
      behaviour: (turn) => {
        started();
        return localReply(turn.messages);
      },
    });
    const call = model.invoke([new HumanMessage("never finishes")], { signal: controller.signal });
    await withDeadline(running);
    controller.abort();
    const error = await withDeadline(rejection(call));
    expect(isAbortError(error)).toBe(true);
  });

  it("rejects at once when called with an already aborted signal", async () => {
    const model = new LocalChatModel();
    const error = await rejection(model.invoke([new HumanMessage("x")], { signal: AbortSignal.abort() }));
    expect(isAbortError(error)).toBe(true);
    expect(model.calls).toBe(0);
  });

  it("stops streaming after an abort and reports the partial output", async () => {
    for (const tokenDelayMs of [0, 5]) {
      const controller = new AbortController();
      const model = new LocalChatModel({ tokenDelayMs });
      const messages = [new HumanMessage("a b c d e f g")];
      const stream = model._streamResponseChunks(messages, { signal: controller.signal } as never);
      const got: string[] = [];
      const error = await rejection(
        (async () => {
          for await (const chunk of stream) {
            got.push(chunk.text);
            if (got.length === 2) controller.abort();
          }
        })(),
      );
      expect(got).toEqual(splitTokens(localReply(messages)).slice(0, 2));
      expect(ModelAbortError.isInstance(error)).toBe(true);
      expect((error as ModelAbortError).partialOutput?.text).toBe(got.join(""));
    }
  });

  it("stops a stream() consumer's tokens after an abort", async () => {
    const controller = new AbortController();
    const model = new LocalChatModel({ tokenDelayMs: 1 });
    const got: string[] = [];
    const error = await rejection(
      (async () => {
        for await (const chunk of await model.stream("one two three four five", { signal: controller.signal })) {
          got.push(chunk.text);
          if (got.length === 2) controller.abort();
        }
      })(),
    );
    expect(isAbortError(error)).toBe(true);
    expect(got).toHaveLength(2);
  });

  it("takes a behaviour that scripts replies per call", async () => {
    const turns: LocalModelTurn[] = [];
    const model = new LocalChatModel({
      behaviour: (turn) => {
        turns.push(turn);
        if (turn.call === 1) throw new Error("first call fails");
        return `call ${turn.call}: ${localReply(turn.messages)}`;
      },
    });
    const input = [new HumanMessage("retry me")];
    const error = await rejection(model.invoke(input));
    expect((error as Error).message).toBe("first call fails");
    const reply = await model.invoke(input);
    expect(reply.text).toBe(`call 2: ${localReply(input)}`);
    expect(turns.map((t) => [t.call, t.messages.length])).toEqual([
      [1, 1],
      [2, 1],
    ]);
  });

  it("streams an empty scripted reply as one empty token", async () => {
    const model = new LocalChatModel({ behaviour: () => "" });
    expect((await model.invoke("x")).text).toBe("");
    const chunks: string[] = [];
    for await (const chunk of await model.stream("x")) chunks.push(chunk.text);
    expect(chunks).toEqual([""]);
  });

  it("can fail mid-stream after some tokens", async () => {
    const model = new LocalChatModel({ behaviour: () => ({ text: "one two three four", failAfterTokens: 2 }) });
    const got: string[] = [];
    const error = await rejection(
      (async () => {
        for await (const chunk of await model.stream("x")) got.push(chunk.text);
      })(),
    );
    expect(got).toEqual(["one ", "two "]);
    expect(error).toBeInstanceOf(LocalModelFailure);

    const custom = new Error("disk on fire");
    const all = new LocalChatModel({ behaviour: () => ({ text: "a b", failAfterTokens: 2, error: custom }) });
    const streamed: string[] = [];
    const thrown = await rejection(
      (async () => {
        for await (const chunk of await all.stream("x")) streamed.push(chunk.text);
      })(),
    );
    expect(streamed).toEqual(["a ", "b"]);
    expect(thrown).toBe(custom);
  });

  it("rejects a bad token delay", () => {
    expect(() => new LocalChatModel({ tokenDelayMs: -1 })).toThrow(/tokenDelayMs/);
    expect(() => new LocalChatModel({ tokenDelayMs: Number.NaN })).toThrow(/tokenDelayMs/);
  });
});
