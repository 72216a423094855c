/**
 * Several processes and restarts: two servers on one Postgres (the socket on
 * one, the run on the other), and a shutdown in the middle of a run followed
 * by a restart — the client gets its reply exactly once.
 */
import { expect, it } from "vitest";
import { LocalChatModel, splitTokens } from "../../src/agent/local-model.js";
import { describeEachDb } from "../support/db.js";
import { clientEffects, uniqueKey } from "../support/sessions.js";
import { eventually, gate } from "../support/wait.js";
import { heldModel, reply, useServers } from "./fixture.js";

describeEachDb("shutdown and restart", (t) => {
  const s = useServers(t);

  it("a shutdown during a run, then a restart: the reply arrives exactly once", async () => {
    const called = gate();
    // The first server's model never finishes on its own: only the shutdown ends the run.
    const stuck = new LocalChatModel({
      behaviour: ({ signal }) =>
        new Promise<string>((_resolve, reject) => {
          called.open();
          signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
        }),
    });
    const first = await s.start({ model: stuck });
    const key = uniqueKey("restart");
    const before = await s.connect(first, key);
    before.send({ type: "message", requestId: "r1", text: "survive this" });
    await before.waitForType("accepted", "r1");
    await called.promise;

    await first.close({ graceMs: 0 });
    expect((await before.closed).code).toBe(1012);
    // The aborted run committed nothing and gave its lease back.
    expect(await clientEffects(t.db, key)).toEqual([]);
    const [session] = await t.db.query<{ lease_owner: string | null; processed_seq: number }>(
      "select lease_owner, processed_seq from sessiond.sessions where session_key = $1",
      [key],
    );
    expect(session).toEqual({ lease_owner: null, processed_seq: 0 });

    const second = await s.start();
    const after = await s.connect(second, key, { after: before.lastSeq() });
    expect((await after.waitForType("message", "r1")).content).toBe(reply("survive this"));
    after.send({ type: "message", requestId: "r2", text: "and then" });
    await after.waitForType("message", "r2");
    const r1 = [...before.frames, ...after.frames].filter((f) => f.type === "message" && f.requestId === "r1");
    expect(r1).toHaveLength(1);
    expect((await clientEffects(t.db, key)).map((e) => e.payload.requestId)).toEqual(["r1", "r2"]);
  });

  it("a shutdown with grace lets the run finish and delivers its reply before closing with 1012", async () => {
    const { model, release, called } = heldModel("finished in grace");
    const server = await s.start({ model });
    const key = uniqueKey("grace");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "g1", text: "finish me" });
    await called.promise;
    const closing = server.close({ graceMs: 10_000 });
    // New work is refused while draining.
    client.send({ type: "message", requestId: "g2", text: "too late" });
    expect(await client.waitForType("error", "g2")).toMatchObject({ code: "shutting_down" });
    release.open();
    await closing;
    expect((await client.waitForType("message", "g1")).content).toBe("finished in grace");
    expect((await client.closed).code).toBe(1012);
  });
});

describeEachDb("modes and streams across a shutdown", (t) => {
  const s = useServers(t);

  it("poll-only mode (no LISTEN) still chats and delivers", async () => {
    const server = await s.start({ mode: "poll-only", pollMs: 20, sweepMs: 20 });
    const key = uniqueKey("poll");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "p1", text: "polling" });
    expect((await client.waitForType("message", "p1")).content).toBe(reply("polling"));
    expect(await t.db.query("select 1 from pg_catalog.pg_listening_channels()")).toEqual([]);
  });

  it("open SSE streams end on shutdown", async () => {
    const server = await s.start();
    const key = uniqueKey("ssestop");
    const response = await fetch(`${server.url}/v1/sessions/${key}/messages`, {
      headers: { authorization: `Bearer ${server.mintToken(key)}`, accept: "text/event-stream" },
    });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    expect(server.metrics.openStreams).toBe(1);
    await server.close({ graceMs: 0 });
    expect(server.metrics.openStreams).toBe(0);
    for (;;) if ((await reader.read().catch(() => ({ done: true }))).done) break;
  });
});

describeEachDb(
  "two servers on one Postgres",
  (t) => {
    const s = useServers(t);

    it("the socket on one server, the run on the other: relayed tokens and the message arrive", async () => {
      // A serves clients only; B runs sessions and has no socket of this session.
      const a = await s.start({ db: t.another(), processing: false });
      const b = await s.start({ db: t.another(), model: new LocalChatModel({ tokenDelayMs: 5 }) });
      const key = uniqueKey("relay");
      const client = await s.connect(a, key);
      client.send({ type: "message", requestId: "n1", text: "across nodes" });
      const message = await client.waitForType("message", "n1");
      expect(message.content).toBe(reply("across nodes"));
      const count = splitTokens(reply("across nodes")).length;
      // Tokens may trail the message (different channels); all of them arrive, in order.
      await client.waitFor((f) => f.type === "token" && f.index === count - 1, { what: "the last token" });
      const tokens = client.frames.filter((f) => f.type === "token");
      expect(tokens.map((f) => f.index)).toEqual(Array.from({ length: count }, (_, i) => i));
      expect(tokens.map((f) => f.text).join("")).toBe(reply("across nodes"));
      expect(b.metrics.runsCommitted).toBe(1);
      expect(a.metrics.runsStarted).toBe(0);
      expect(a.metrics.relayTokensReceived).toBe(count);
      expect(b.metrics.relayNotifiesSent).toBeGreaterThan(0);

      // A client of the same session on B: B has a local subscriber now and stops relaying.
      const onB = await s.connect(b, key, { after: message.seq as number });
      const sent = b.metrics.relayNotifiesSent;
      onB.send({ type: "message", requestId: "n2", text: "local now" });
      await onB.waitForType("message", "n2");
      await client.waitForType("message", "n2");
      expect(
        onB.frames
          .filter((f) => f.type === "token")
          .map((f) => f.text)
          .join(""),
      ).toBe(reply("local now", 2));
      expect(b.metrics.relayNotifiesSent).toBe(sent);
    });

    it("after the LISTEN connection is killed, delivery resumes and what committed in the gap arrives", async () => {
      const db = t.another();
      const server = await s.start({ db });
      const key = uniqueKey("relisten");
      const client = await s.connect(server, key);
      client.send({ type: "message", requestId: "l1", text: "before" });
      await client.waitForType("message", "l1");
      await t.db.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and query ilike 'listen%'",
      );
      // Committed while the listener may be down: no NOTIFY reaches this server for it.
      await t.db.query("select * from sessiond.enqueue_effects($1, $2)", [
        key,
        [
          {
            type: "send_message",
            delivery: "client",
            payload: { requestId: "gap", role: "assistant", content: "in the gap" },
          },
        ],
      ]);
      expect((await client.waitForType("message", "gap", 20_000)).content).toBe("in the gap");
      await eventually(() => server.metrics.listenerReconnects > 0, { what: "a reconnect", ms: 20_000 });
      client.send({ type: "message", requestId: "l2", text: "after" });
      expect((await client.waitForType("message", "l2", 20_000)).content).toBe(reply("after", 2));
    });

    it("an HTTP message sent to one server is answered to a socket on the other", async () => {
      const a = await s.start({ db: t.another() });
      const b = await s.start({ db: t.another() });
      const key = uniqueKey("cross");
      const client = await s.connect(a, key);
      const response = await fetch(`${b.url}/v1/sessions/${key}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${b.mintToken(key)}` },
        body: JSON.stringify({ requestId: "c1", text: "from b" }),
      });
      expect(response.status).toBe(202);
      expect((await client.waitForType("message", "c1")).content).toBe(reply("from b"));
      expect(a.metrics.runsCommitted + b.metrics.runsCommitted).toBe(1);
    });
  },
  ["postgres"],
);
