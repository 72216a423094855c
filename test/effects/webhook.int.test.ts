import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, expect, it } from "vitest";
import type { Db } from "../../src/db/index.js";
import { EffectRegistry, EffectRunner, type EffectRunnerOptions, webhookEffect } from "../../src/effects/index.js";
import { describeEachDb } from "../support/db.js";
import { effectState, enqueue, outcomeRecorder, sessionKey } from "./helpers.js";

interface Received {
  key: string | undefined;
  contentType: string | undefined;
  body: unknown;
  status: number;
}

/** Answers the n-th request (0-based) with respond(n): a status, or "hang" (never answers). */
async function receiver(respond: (n: number) => number | "hang") {
  const received: Received[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const answer = respond(received.length);
      const record: Received = {
        key: req.headers["idempotency-key"] as string | undefined,
        contentType: req.headers["content-type"],
        body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
        status: answer === "hang" ? 0 : answer,
      };
      received.push(record);
      if (answer === "hang") return;
      if (answer >= 300 && answer < 400) res.setHeader("location", "http://elsewhere.invalid/");
      res.writeHead(answer, { "content-type": "text/plain" });
      res.end(answer < 300 ? "ok" : `nope ${answer}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  servers.push(server);
  return { url: `http://127.0.0.1:${port}/hook?token=secret`, received };
}

function errorText(outcome: { error?: unknown } | undefined): string {
  return outcome?.error instanceof Error ? outcome.error.message : String(outcome?.error);
}

const servers: ReturnType<typeof createServer>[] = [];
const runners: EffectRunner[] = [];
let types = 0;

describeEachDb("webhook effect", (t) => {
  afterEach(async () => {
    for (const runner of runners.splice(0)) await runner.stop({ graceMs: 50 });
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  /** A registry with a webhook type of its own, a started runner, and its outcomes. */
  async function setup(db: Db, options: { timeoutMs?: number; allowedHosts?: string[] } = {}) {
    types += 1;
    const type = `webhook.t${types}`;
    const registry = new EffectRegistry().register(
      webhookEffect({
        type,
        allowedHosts: options.allowedHosts ?? ["127.0.0.1"],
        timeoutMs: options.timeoutMs ?? 5000,
      }),
    );
    const rec = outcomeRecorder();
    const runnerOptions: EffectRunnerOptions = {
      backoffBaseMs: 5,
      backoffCapMs: 20,
      stopGraceMs: 50,
      abortWaitMs: 50,
      onOutcome: rec.onOutcome,
    };
    const runner = new EffectRunner(db, registry, runnerOptions);
    runners.push(runner);
    await runner.start();
    /** Emits as a graph node would: validated by the registry, then enqueued. */
    const emit = async (payload: unknown) => {
      const valid = registry.validate(type, payload);
      const [row] = await enqueue(db, sessionKey("hook"), [{ type, payload: valid.payload }]);
      return row!;
    };
    return { type, rec, emit };
  }

  it("retries 500s with the same Idempotency-Key and completes on the first 2xx", async () => {
    const hook = await receiver((n) => (n < 2 ? 500 : 200));
    const { rec, emit } = await setup(t.db);
    const fx = await emit({ url: hook.url, body: { order: 42, items: ["a", "b"] } });
    await rec.waitFor((o) => o.status === "completed", "completed");
    expect(hook.received.map((r) => r.status)).toEqual([500, 500, 200]);
    expect(new Set(hook.received.map((r) => r.key))).toEqual(new Set([fx.dedupe_key]));
    expect(hook.received.every((r) => r.contentType === "application/json")).toBe(true);
    expect(hook.received.map((r) => r.body)).toEqual(Array(3).fill({ order: 42, items: ["a", "b"] }));
    expect(rec.outcomes.map((o) => o.status)).toEqual(["failed", "failed", "completed"]);
    // The stored error names the status and the answer, never the query string.
    expect(errorText(rec.outcomes[0])).toMatch(/answered 500: nope 500/);
    expect(errorText(rec.outcomes[0])).not.toContain("secret");
    expect(await effectState(t.db, fx.id)).toMatchObject({ status: "completed", attempts: 3 });
  });

  it("retries 429 and 408 like a 5xx", async () => {
    const hook = await receiver((n) => [429, 408, 204][n] ?? 500);
    const { rec, emit } = await setup(t.db);
    const fx = await emit({ url: hook.url, body: null });
    await rec.waitFor((o) => o.status === "completed", "completed");
    expect(hook.received.map((r) => r.status)).toEqual([429, 408, 204]);
    expect(await effectState(t.db, fx.id)).toMatchObject({ status: "completed", attempts: 3 });
  });

  it("sends a 4xx answer to the dead letter at once, with the status kept", async () => {
    const hook = await receiver(() => 422);
    const { rec, emit } = await setup(t.db);
    const fx = await emit({ url: hook.url, body: { bad: true } });
    await rec.waitFor((o) => o.status === "dead", "dead");
    expect(hook.received).toHaveLength(1);
    const state = await effectState(t.db, fx.id);
    expect(state).toMatchObject({ status: "dead", attempts: 1 });
    expect(state.last_error).toMatch(/^webhook POST http:\/\/127\.0\.0\.1:\d+\/hook answered 422: nope 422$/);
  });

  it("does not follow a redirect: dead at once", async () => {
    const hook = await receiver(() => 307);
    const { rec, emit } = await setup(t.db);
    const fx = await emit({ url: hook.url, body: {} });
    await rec.waitFor((o) => o.status === "dead", "dead");
    expect(hook.received).toHaveLength(1);
    expect((await effectState(t.db, fx.id)).last_error).toMatch(/answered 307.*redirects are not followed/);
  });

  it("retries after a timeout", async () => {
    const hook = await receiver((n) => (n === 0 ? "hang" : 200));
    const { rec, emit } = await setup(t.db, { timeoutMs: 200 });
    const fx = await emit({ url: hook.url, body: { n: 1 } });
    await rec.waitFor((o) => o.status === "completed", "completed");
    // Later attempts are answered at once (a loaded machine may still time one out: no exact count).
    expect(hook.received[0]?.status).toBe(0);
    expect(hook.received.at(-1)?.status).toBe(200);
    expect(new Set(hook.received.map((r) => r.key))).toEqual(new Set([fx.dedupe_key]));
    expect(errorText(rec.outcomes[0])).toMatch(/no response within 200 ms/);
    expect(await effectState(t.db, fx.id)).toMatchObject({ status: "completed", attempts: hook.received.length });
  });

  it("retries a refused connection", async () => {
    const hook = await receiver(() => 200);
    const closed = servers.pop()!;
    closed.closeAllConnections();
    await new Promise((resolve) => closed.close(resolve));
    const { rec, emit } = await setup(t.db);
    await emit({ url: hook.url, body: {} });
    const outcome = await rec.waitFor(() => true, "an outcome");
    expect(outcome.status).toBe("failed");
    expect(errorText(outcome)).toMatch(/failed: ECONNREFUSED/);
  });

  it("rejects a URL whose host is not allowed at emit time, and refuses to send one enqueued around the check", async () => {
    const hook = await receiver(() => 200);
    const { type, rec, emit } = await setup(t.db, { allowedHosts: ["hooks.example.com"] });
    await expect(emit({ url: hook.url, body: {} })).rejects.toThrow(
      /host 127\.0\.0\.1:\d+ is not on the webhook allow-list \(hooks\.example\.com\)/,
    );
    const [fx] = await enqueue(t.db, sessionKey("hook"), [{ type, payload: { url: hook.url, body: {} } }]);
    await rec.waitFor((o) => o.status === "dead", "dead");
    expect(hook.received).toHaveLength(0);
    expect((await effectState(t.db, fx!.id)).last_error).toMatch(/not on the webhook allow-list/);
  });
});
