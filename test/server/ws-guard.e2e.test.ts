/**
 * Hostile and broken clients: bad tokens, bad frames, floods, oversize and
 * slow sockets. Each gets its documented error frame, HTTP status or close
 * code, and the server keeps serving a well-behaved client meanwhile.
 */
import { expect, it } from "vitest";
import { mintToken } from "../../src/server/auth.js";
import type { SessiondServer } from "../../src/server/index.js";
import { describeEachDb } from "../support/db.js";
import { uniqueKey } from "../support/sessions.js";
import { refusedStatus, TestClient } from "./client.js";
import { reply, SECRET, useServers } from "./fixture.js";

describeEachDb("websocket guards", (t) => {
  const s = useServers(t);

  /** A well-behaved client still chats with the server. */
  async function stillServes(server: SessiondServer) {
    const key = uniqueKey("good");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "ok", text: "still there?" });
    expect((await client.waitForType("message", "ok")).content).toBe(reply("still there?"));
  }

  it("refuses the upgrade without a valid token for this session, before any frame", async () => {
    const server = await s.start();
    const key = uniqueKey("auth");
    const other = uniqueKey("other");
    const connect = (options: Parameters<typeof TestClient.connect>[2]) => TestClient.connect(server.url, key, options);

    expect(await refusedStatus(connect({}))).toBe(401);
    expect(await refusedStatus(connect({ token: "v1.garbage.garbage" }))).toBe(401);
    expect(await refusedStatus(connect({ token: mintToken("another-secret-0123456789abcdef0123", key) }))).toBe(401);
    expect(
      await refusedStatus(connect({ token: mintToken(SECRET, key, { ttlSeconds: 1, now: Date.now() - 60_000 }) })),
    ).toBe(401);
    expect(await refusedStatus(connect({ token: server.mintToken(other) }))).toBe(403);
    expect(await refusedStatus(connect({ token: server.mintToken(other), via: "protocol" }))).toBe(403);
    expect(await refusedStatus(TestClient.connect(server.url, "-not a key", { token: server.mintToken(key) }))).toBe(
      400,
    );
    // Nothing was appended for either session.
    const rows = await t.db.query("select 1 from sessiond.sessions where session_key in ($1, $2)", [key, other]);
    expect(rows).toHaveLength(0);
    await stillServes(server);
  });

  it("refuses origins outside the allowed list", async () => {
    const server = await s.start({ allowedOrigins: ["https://app.example"] });
    const key = uniqueKey("origin");
    expect(await refusedStatus(s.connect(server, key, { origin: "https://evil.example" }))).toBe(403);
    const ok = await s.connect(server, key, { origin: "https://app.example" });
    ok.send({ type: "message", requestId: "o", text: "from the app" });
    await ok.waitForType("message", "o");
  });

  it("answers malformed, unknown and invalid frames with error frames and stays usable", async () => {
    const server = await s.start();
    const key = uniqueKey("bad");
    const client = await s.connect(server, key);
    client.send("{not json");
    client.send(JSON.stringify([1, 2]));
    client.send({ type: "shout", text: "hi" });
    client.send({ type: "message", requestId: "", text: "x" });
    client.send({ type: "message", requestId: "r", text: 42 });
    client.send({ type: "ack", seq: -1 });
    client.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    client.send({ type: "ack", seq: 7 });
    await client.waitFor((f) => f.code === "ack_beyond_head", { what: "ack_beyond_head" });
    const codes = client.frames.filter((f) => f.type === "error").map((f) => f.code);
    expect(codes).toEqual([
      "bad_json",
      "bad_frame",
      "unknown_type",
      "bad_frame",
      "bad_frame",
      "bad_frame",
      "bad_frame",
      "ack_beyond_head",
    ]);
    for (const frame of client.frames) expect(Object.keys(frame).sort()).toEqual(["code", "message", "type"]);
    client.send({ type: "message", requestId: "after", text: "still fine" });
    expect((await client.waitForType("message", "after")).content).toBe(reply("still fine"));
  });

  it("closes with 4400 after too many rejected frames", async () => {
    const server = await s.start({ maxBadFrames: 5 });
    const key = uniqueKey("abuse");
    const client = await s.connect(server, key);
    for (let i = 0; i < 10; i++) client.send("nope");
    const closed = await client.closed;
    expect(closed.code).toBe(4400);
    expect(client.frames.filter((f) => f.code === "bad_json").length).toBeGreaterThanOrEqual(5);
    await stillServes(server);
  });

  it("rate-limits messages per connection with rate_limited", async () => {
    const server = await s.start({ rateLimitBurst: 3, rateLimitPerSec: 0.001 });
    const key = uniqueKey("flood");
    const client = await s.connect(server, key);
    for (let i = 1; i <= 6; i++) client.send({ type: "message", requestId: `f${i}`, text: `flood ${i}` });
    await client.waitFor((f) => f.type === "error" && f.requestId === "f6", { what: "the sixth answer" });
    await client.waitFor((f) => f.type === "accepted" && f.requestId === "f3", { what: "the third answer" });
    const answers = client.frames.filter((f) => f.type === "accepted" || f.type === "error");
    expect(answers.filter((f) => f.type === "accepted").map((f) => f.requestId)).toEqual(["f1", "f2", "f3"]);
    expect(answers.filter((f) => f.type === "error").map((f) => [f.code, f.requestId])).toEqual([
      ["rate_limited", "f4"],
      ["rate_limited", "f5"],
      ["rate_limited", "f6"],
    ]);
    const events = await t.db.query("select seq from sessiond.events where session_key = $1", [key]);
    expect(events).toHaveLength(3);
    await stillServes(server);
  });

  it("closes a socket that sends a frame over the maximum payload with 1009", async () => {
    const server = await s.start({ maxPayloadBytes: 1024 });
    const key = uniqueKey("big");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "big", text: "x".repeat(2000) });
    expect((await client.closed).code).toBe(1009);
    const events = await t.db.query("select seq from sessiond.events where session_key = $1", [key]);
    expect(events).toHaveLength(0);
    await stillServes(server);
  });

  it("closes a socket whose outbound buffer would pass the limit with 4408", async () => {
    const server = await s.start({ outboundBufferBytes: 1024 });
    const key = uniqueKey("slow");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "long", text: "y".repeat(1500) });
    expect((await client.closed).code).toBe(4408);
    await stillServes(server);
  });

  it("closes with 4401 when the token expires while connected", async () => {
    const server = await s.start();
    const key = uniqueKey("expiry");
    // Two seconds: long enough to connect on a loaded machine; the assertion is only the close code.
    const client = await s.connect(server, key, { token: server.mintToken(key, 2) });
    client.send({ type: "message", requestId: "e1", text: "quick" });
    expect((await client.closed).code).toBe(4401);
  });
});
