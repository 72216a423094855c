import { expect, it } from "vitest";
import { startServer } from "../../src/server/index.js";
import { describeEachDb, freshPglite } from "../support/db.js";
import { clientEffects, uniqueKey } from "../support/sessions.js";
import { eventually } from "../support/wait.js";
import { heldModel, reply, SECRET, useServers } from "./fixture.js";

interface SseEvent {
  id: string | undefined;
  event: string;
  data: Record<string, unknown>;
}

/** Reads an SSE body, collecting events; `until` resolves when a matching one arrived. */
function readSse(response: Response) {
  const events: SseEvent[] = [];
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let wake: (() => void) | undefined;
  let done = false;
  const pump = (async () => {
    for (;;) {
      const chunk = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const fields = new Map<string, string>();
        for (const line of block.split("\n")) {
          if (line.startsWith(":") || !line.includes(":")) continue;
          const at = line.indexOf(":");
          fields.set(line.slice(0, at), line.slice(at + 1).trimStart());
        }
        if (fields.has("data")) {
          events.push({
            id: fields.get("id"),
            event: fields.get("event") ?? "message",
            data: JSON.parse(fields.get("data") as string),
          });
        }
        end = buffer.indexOf("\n\n");
      }
      wake?.();
    }
    done = true;
    wake?.();
  })();
  return {
    events,
    async until(predicate: (e: SseEvent) => boolean, ms = 10_000): Promise<SseEvent> {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = events.find(predicate);
        if (found) return found;
        if (done || Date.now() > deadline) throw new Error(`no matching SSE event; got ${JSON.stringify(events)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, deadline - Date.now());
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    async cancel() {
      await reader.cancel().catch(() => {});
      await pump;
    },
  };
}

describeEachDb("http endpoints", (t) => {
  const s = useServers(t);

  it("POST messages is idempotent by requestId; GET returns the durable frames; POST ack completes them", async () => {
    const server = await s.start();
    const key = uniqueKey("http");
    const auth = { authorization: `Bearer ${server.mintToken(key)}` };
    const post = (body: unknown) =>
      fetch(`${server.url}/v1/sessions/${key}/messages`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify(body),
      });

    const first = await post({ requestId: "h1", text: "over http" });
    expect(first.status).toBe(202);
    expect(await first.json()).toEqual({ type: "accepted", requestId: "h1", eventSeq: 1, duplicate: false });
    const again = await post({ requestId: "h1", text: "over http" });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ type: "accepted", requestId: "h1", eventSeq: 1, duplicate: true });

    const body = await eventually(
      async () => {
        const response = await fetch(`${server.url}/v1/sessions/${key}/messages?after=0`, { headers: auth });
        const json = (await response.json()) as { frames: unknown[] };
        return json.frames.length > 0 ? json : undefined;
      },
      { what: "the reply" },
    );
    expect(body).toEqual({
      after: 0,
      head: 1,
      frames: [
        { type: "message", seq: 1, eventSeq: 1, requestId: "h1", role: "assistant", content: reply("over http") },
      ],
    });
    const empty = await fetch(`${server.url}/v1/sessions/${key}/messages?after=1`, { headers: auth });
    expect(await empty.json()).toEqual({ after: 1, head: 1, frames: [] });

    const ack = await fetch(`${server.url}/v1/sessions/${key}/ack`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ seq: 1 }),
    });
    expect(ack.status).toBe(200);
    expect(await ack.json()).toEqual({ acked: 1 });
    expect((await clientEffects(t.db, key)).map((e) => e.status)).toEqual(["completed"]);
    const beyond = await fetch(`${server.url}/v1/sessions/${key}/ack`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ seq: 2 }),
    });
    expect(beyond.status).toBe(400);
    expect(await beyond.json()).toMatchObject({ type: "error", code: "ack_beyond_head" });
  });

  it("answers bad input with JSON errors and stable codes, never a stack trace", async () => {
    const server = await s.start({ maxPayloadBytes: 1024 });
    const key = uniqueKey("badhttp");
    const token = server.mintToken(key);
    const call = async (path: string, init: RequestInit & { token?: string | null } = {}) => {
      const headers = new Headers(init.headers);
      if (init.token !== null) headers.set("authorization", `Bearer ${init.token ?? token}`);
      const response = await fetch(`${server.url}${path}`, { ...init, headers });
      const text = await response.text();
      expect(text).not.toMatch(/at .*\.(ts|js):\d+/);
      return { status: response.status, body: JSON.parse(text) as Record<string, unknown> };
    };
    const messages = `/v1/sessions/${key}/messages`;
    expect(await call(messages, { method: "POST", body: "{oops" })).toMatchObject({
      status: 400,
      body: { code: "bad_json" },
    });
    expect(await call(messages, { method: "POST", body: JSON.stringify({ requestId: "x" }) })).toMatchObject({
      status: 400,
      body: { code: "bad_frame" },
    });
    expect(
      await call(messages, { method: "POST", body: JSON.stringify({ requestId: "x", text: "hi", strategy: "shove" }) }),
    ).toMatchObject({ status: 400, body: { code: "bad_frame" } });
    expect(
      await call(messages, { method: "POST", body: JSON.stringify({ requestId: "x", text: "z".repeat(2000) }) }),
    ).toMatchObject({
      status: 413,
      body: { code: "too_large" },
    });
    expect(await call(messages, { method: "POST", token: null, body: "{}" })).toMatchObject({
      status: 401,
      body: { code: "unauthorized" },
    });
    expect(await call(messages, { method: "POST", token: server.mintToken("someone-else"), body: "{}" })).toMatchObject(
      {
        status: 403,
        body: { code: "forbidden" },
      },
    );
    expect(await call(`/v1/sessions/${encodeURIComponent("bad key!")}/messages`)).toMatchObject({
      status: 400,
      body: { code: "bad_session_key" },
    });
    expect(await call(`${messages}?after=-1`)).toMatchObject({ status: 400, body: { code: "bad_frame" } });
    expect(await call(`${messages}?after=5`)).toMatchObject({ status: 400, body: { code: "resume_beyond_head" } });
    expect(await call(`${messages}?limit=0`)).toMatchObject({ status: 400, body: { code: "bad_frame" } });
    expect(await call(`/v1/sessions/${key}/ws`)).toMatchObject({ status: 426, body: { code: "bad_frame" } });
    expect(await call("/nowhere")).toMatchObject({ status: 404, body: { code: "not_found" } });
    // None of it appended anything.
    expect(await t.db.query("select 1 from sessiond.events where session_key = $1", [key])).toHaveLength(0);
  });

  it("POST with strategy reject on a busy session is 409 busy", async () => {
    const { model, release, called } = heldModel("finally");
    const server = await s.start({ model });
    const key = uniqueKey("busyhttp");
    const headers = { authorization: `Bearer ${server.mintToken(key)}` };
    const post = (body: unknown) =>
      fetch(`${server.url}/v1/sessions/${key}/messages`, { method: "POST", headers, body: JSON.stringify(body) });
    expect((await post({ requestId: "b1", text: "slow" })).status).toBe(202);
    await called.promise;
    const busy = await post({ requestId: "b2", text: "now", strategy: "reject" });
    expect(busy.status).toBe(409);
    expect(await busy.json()).toMatchObject({ type: "error", code: "busy", requestId: "b2" });
    release.open();
    await eventually(async () => (await clientEffects(t.db, key)).length === 1, { what: "the first reply" });
  });

  it("SSE streams durable frames with id = seq, resumes from Last-Event-ID, and goes live", async () => {
    const server = await s.start();
    const key = uniqueKey("sse");
    const token = server.mintToken(key);
    const headers = { authorization: `Bearer ${token}` };
    for (const [i, text] of ["one", "two"].entries()) {
      await fetch(`${server.url}/v1/sessions/${key}/messages`, {
        method: "POST",
        headers,
        body: JSON.stringify({ requestId: `s${i + 1}`, text }),
      });
    }
    await eventually(async () => (await clientEffects(t.db, key)).length === 2, { what: "two replies" });

    // Resume after seq 1 with Last-Event-ID; the token may ride in the query string (EventSource).
    const response = await fetch(`${server.url}/v1/sessions/${key}/messages?access_token=${token}`, {
      headers: { accept: "text/event-stream", "last-event-id": "1" },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const stream = readSse(response);
    const second = await stream.until((e) => e.event === "message");
    expect(second).toEqual({
      id: "2",
      event: "message",
      data: { type: "message", seq: 2, eventSeq: 2, requestId: "s2", role: "assistant", content: reply("two", 2) },
    });

    await fetch(`${server.url}/v1/sessions/${key}/messages`, {
      method: "POST",
      headers,
      body: JSON.stringify({ requestId: "s3", text: "three" }),
    });
    const live = await stream.until((e) => e.event === "message" && e.data.requestId === "s3");
    expect(live.id).toBe("3");
    expect(live.data.content).toBe(reply("three", 3));
    const tokens = stream.events.filter((e) => e.event === "token");
    expect(tokens.every((e) => e.id === undefined)).toBe(true);
    expect(tokens.map((e) => e.data.text).join("")).toBe(reply("three", 3));
    expect(stream.events.filter((e) => e.event === "message").map((e) => e.id)).toEqual(["2", "3"]);
    await stream.cancel();
    await eventually(() => server.metrics.openStreams === 0, { what: "the stream closed" });
  });

  it("/healthz, /readyz and /metrics", async () => {
    const server = await s.start();
    const key = uniqueKey("metrics");
    expect(await (await fetch(`${server.url}/healthz`)).json()).toEqual({ status: "ok" });
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: "ready",
      checks: { database: true, listener: true, accepting: true },
    });

    const headers = { authorization: `Bearer ${server.mintToken(key)}` };
    await fetch(`${server.url}/v1/sessions/${key}/messages`, {
      method: "POST",
      headers,
      body: JSON.stringify({ requestId: "m1", text: "count me" }),
    });
    await eventually(async () => (await clientEffects(t.db, key)).length === 1, { what: "the reply" });
    const sse = await fetch(`${server.url}/v1/sessions/${key}/messages`, {
      headers: { ...headers, accept: "text/event-stream" },
    });
    const stream = readSse(sse);
    await stream.until((e) => e.event === "message");

    const metrics = await fetch(`${server.url}/metrics`);
    expect(metrics.headers.get("content-type")).toContain("text/plain");
    const text = await metrics.text();
    const value = (line: string) =>
      Number(
        text
          .split("\n")
          .find((l) => l.startsWith(`${line} `))
          ?.split(" ")[1],
      );
    expect(value("sessiond_events_appended_total")).toBe(1);
    expect(value("sessiond_runs_started_total")).toBeGreaterThanOrEqual(1);
    expect(value("sessiond_runs_committed_total")).toBe(1);
    expect(value("sessiond_open_streams")).toBe(1);
    expect(value("sessiond_open_sockets")).toBe(0);
    expect(value("sessiond_delivery_latency_seconds_count")).toBe(1);
    expect(value('sessiond_delivery_latency_seconds_bucket{le="+Inf"}')).toBe(1);
    expect(value('sessiond_effects{status="pending"}')).toBeGreaterThanOrEqual(1);
    expect(value("sessiond_listener_reconnects_total")).toBe(0);
    await stream.cancel();
  });
});

describeEachDb("readiness", () => {
  it("/readyz is 503 when the database is gone", async () => {
    const db = await freshPglite();
    const server = await startServer({ db, port: 0, secret: SECRET, logLevel: "silent" });
    try {
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
      await db.close();
      const response = await fetch(`${server.url}/readyz`);
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ status: "unavailable", checks: { database: false } });
    } finally {
      await server.close({ graceMs: 0 });
    }
  });
}, ["pglite"]);
