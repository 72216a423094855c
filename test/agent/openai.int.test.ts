/**
 * The OpenAI provider end to end against a small OpenAI-compatible server
 * started here on 127.0.0.1 (node:http, SSE): no mock of the client library.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { awaitAllCallbacks } from "@langchain/core/callbacks/promises";
import { AIMessageChunk, HumanMessage } from "@langchain/core/messages";
import { MemorySaver } from "@langchain/langgraph";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  compileDefaultGraph,
  createModel,
  createOpenAiModel,
  isAbortError,
  MODEL_NODE,
} from "../../src/agent/index.js";

interface ChatRequest {
  model: string;
  stream: boolean;
  messages: { role: string; content: string }[];
}

interface Received {
  path: string | undefined;
  authorization: string | undefined;
  body: ChatRequest;
}

/** How the server answers one request: which tokens, and whether to hold after some. */
type Script = (body: ChatRequest) => {
  status?: number;
  tokens?: string[];
  holdAfter?: number;
  /** The completion id to send (default: a fresh one per response, as OpenAI does). */
  id?: string;
};

/** A deadline on a wait, so a broken stream fails the test instead of hanging it. */
function withDeadline<T>(promise: Promise<T>, ms = 5_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** The server's default answer depends on the request, so nothing here is a canned reply. */
const echo: Script = (body) => {
  const last = body.messages.at(-1)?.content ?? "";
  return { tokens: ["Echo", ":", ` ${last}`, ` (${body.messages.length} messages)`] };
};

class CompatServer {
  readonly received: Received[] = [];
  /** Resolves the current hold: the server sends the rest of the tokens. */
  release: () => void = () => {};
  /** Settles when the server has sent `holdAfter` tokens and waits. */
  held: Promise<void> = Promise.resolve();
  /** Settles when a held response's connection closes before it was finished. */
  closedEarly: Promise<void> = Promise.resolve();
  script: Script = echo;
  #server: Server | undefined;
  #port = 0;

  get baseUrl(): string {
    return `http://127.0.0.1:${this.#port}/v1`;
  }

  async start(): Promise<void> {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.listen(0, "127.0.0.1");
    await once(this.#server, "listening");
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.release();
    const server = this.#server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw) as ChatRequest;
    this.received.push({ path: req.url, authorization: req.headers.authorization, body });
    if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
      res.writeHead(404).end();
      return;
    }
    const plan = this.script(body);
    if (plan.status && plan.status !== 200) {
      res.writeHead(plan.status, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "the model server broke", type: "server_error", code: null } }));
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const base = {
      id: plan.id ?? `chatcmpl-${this.received.length}`,
      object: "chat.completion.chunk",
      created: 1,
      model: body.model,
    };
    const send = (choice: object) => res.write(`data: ${JSON.stringify({ ...base, choices: [choice] })}\n\n`);
    send({ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null });
    const tokens = plan.tokens ?? [];
    for (const [i, content] of tokens.entries()) {
      if (plan.holdAfter === i) {
        let closed!: () => void;
        this.closedEarly = new Promise<void>((resolve) => {
          closed = resolve;
        });
        res.on("close", () => {
          if (!res.writableFinished) closed();
        });
        const released = new Promise<void>((resolve) => {
          this.release = resolve;
        });
        await this.#announceHeld();
        await released;
        if (res.destroyed) return;
      }
      send({ index: 0, delta: { content }, finish_reason: null });
    }
    send({ index: 0, delta: {}, finish_reason: "stop" });
    res.end("data: [DONE]\n\n");
  }

  #onHeld: () => void = () => {};
  /** Call before the request: arms `held`. */
  expectHold(): void {
    this.held = new Promise<void>((resolve) => {
      this.#onHeld = resolve;
    });
  }
  async #announceHeld(): Promise<void> {
    this.#onHeld();
  }
}

let server: CompatServer;

beforeEach(async () => {
  server = new CompatServer();
  await server.start();
});

afterEach(async () => {
  await server.stop();
});

describe("OpenAI-compatible provider", () => {
  it("streams tokens through the default graph while the server is still answering", async () => {
    server.script = (body) => ({ ...echo(body), holdAfter: 2 });
    server.expectHold();
    const model = createOpenAiModel({ baseUrl: server.baseUrl, apiKey: "sk-loopback", model: "tiny-1", maxRetries: 0 });
    const graph = compileDefaultGraph(model);
    const stream = await graph.stream({ messages: [new HumanMessage("hello server")] }, { streamMode: "messages" });

    const tokens: string[] = [];
    const consumed = (async () => {
      for await (const [message, metadata] of stream) {
        expect(message).toBeInstanceOf(AIMessageChunk);
        expect(metadata.langgraph_node).toBe(MODEL_NODE);
        if (message.text) tokens.push(message.text);
        // The server holds the rest of its reply until the first tokens got here.
        if (tokens.length === 2) server.release();
      }
    })();
    await withDeadline(server.held);
    await withDeadline(consumed);
    expect(tokens).toEqual(["Echo", ":", " hello server", " (1 messages)"]);

    expect(server.received).toHaveLength(1);
    const [request] = server.received;
    expect(request?.path).toBe("/v1/chat/completions");
    expect(request?.authorization).toBe("Bearer sk-loopback");
    expect(request?.body).toMatchObject({
      model: "tiny-1",
      stream: true,
      messages: [{ role: "user", content: "hello server" }],
    });
  });

  it("keeps the whole reply in the final state and sends the history on the next turn", async () => {
    const model = createModel({ provider: "openai", baseUrl: server.baseUrl, apiKey: "k", maxRetries: 0 });
    const graph = compileDefaultGraph(model, new MemorySaver());
    const config = { configurable: { thread_id: "openai-memory" } };
    const first = await graph.invoke({ messages: [new HumanMessage("one")] }, config);
    expect(first.messages.at(-1)?.text).toBe("Echo: one (1 messages)");
    const second = await graph.invoke({ messages: [new HumanMessage("two")] }, config);
    expect(second.messages.map((m) => [m.getType(), m.text])).toEqual([
      ["human", "one"],
      ["ai", "Echo: one (1 messages)"],
      ["human", "two"],
      ["ai", "Echo: two (3 messages)"],
    ]);
    expect(server.received[1]?.body.messages).toEqual([
      { role: "user", content: "one" },
      { role: "assistant", content: "Echo: one (1 messages)" },
      { role: "user", content: "two" },
    ]);
  });

  it("streams a plain invoke too: callbacks see each token, with no network but the server", async () => {
    const model = createOpenAiModel({ baseUrl: server.baseUrl, apiKey: "k", maxRetries: 0 });
    const seen: string[] = [];
    const reply = await withDeadline(
      model.invoke([new HumanMessage("plain")], {
        callbacks: [{ handleLLMNewToken: (token: string) => void seen.push(token) }],
      }),
    );
    await awaitAllCallbacks(); // handlers run in the background unless told otherwise
    expect(reply.text).toBe("Echo: plain (1 messages)");
    expect(seen.filter(Boolean)).toEqual(["Echo", ":", " plain", " (1 messages)"]);
  });

  it("keeps every reply when the server repeats its completion ids", async () => {
    server.script = (body) => ({ ...echo(body), id: "chatcmpl-always-the-same" });
    const graph = compileDefaultGraph(
      createOpenAiModel({ baseUrl: server.baseUrl, apiKey: "k", maxRetries: 0 }),
      new MemorySaver(),
    );
    const config = { configurable: { thread_id: "openai-same-ids" } };
    await graph.invoke({ messages: [new HumanMessage("one")] }, config);
    const second = await graph.invoke({ messages: [new HumanMessage("two")] }, config);
    expect(second.messages.map((m) => m.text)).toEqual([
      "one",
      "Echo: one (1 messages)",
      "two",
      "Echo: two (3 messages)",
    ]);
    expect(new Set(second.messages.map((m) => m.id)).size).toBe(4);
  });

  it("surfaces an HTTP 500 from the server as an error (one request with maxRetries 0)", async () => {
    server.script = () => ({ status: 500 });
    const graph = compileDefaultGraph(createOpenAiModel({ baseUrl: server.baseUrl, apiKey: "k", maxRetries: 0 }));
    const error = await graph.invoke({ messages: [new HumanMessage("break")] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ status: 500 });
    expect((error as Error).message).toContain("the model server broke");
    expect(server.received).toHaveLength(1);
  });

  it("aborting a run closes the HTTP stream", async () => {
    server.script = (body) => ({ ...echo(body), holdAfter: 1 });
    server.expectHold();
    const graph = compileDefaultGraph(createOpenAiModel({ baseUrl: server.baseUrl, apiKey: "k", maxRetries: 0 }));
    const controller = new AbortController();
    const tokens: string[] = [];
    const run = (async () => {
      const stream = await graph.stream(
        { messages: [new HumanMessage("abort me")] },
        { streamMode: "messages", signal: controller.signal },
      );
      for await (const [message] of stream) {
        if (message.text) tokens.push(message.text);
        if (tokens.length === 1) controller.abort();
      }
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    await withDeadline(server.held);
    const error = await withDeadline(run);
    expect(isAbortError(error)).toBe(true);
    expect(tokens).toEqual(["Echo"]);
    await withDeadline(server.closedEarly);
  });
});
