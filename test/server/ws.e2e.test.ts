import { expect, it } from "vitest";
import { createApprovalGraph } from "../../src/agent/approval-graph.js";
import { LocalChatModel, splitTokens } from "../../src/agent/local-model.js";
import type { Queryable } from "../../src/db/index.js";
import { describeEachDb } from "../support/db.js";
import { clientEffects, uniqueKey } from "../support/sessions.js";
import { eventually, gate } from "../support/wait.js";
import type { Frame } from "./client.js";
import { heldModel, reply, useServers } from "./fixture.js";

/** Commits client effects directly (as a run would), each with a unique dedupe key. */
async function enqueue(db: Queryable, sessionKey: string, contents: string[]): Promise<void> {
  const effects = contents.map((content) => ({
    type: "send_message",
    delivery: "client",
    payload: { requestId: "direct", role: "assistant", content, final: true },
    dedupe_key: `direct/${content}`,
  }));
  await db.query("select * from sessiond.enqueue_effects($1, $2)", [sessionKey, effects]);
}

function seqs(frames: Frame[]): number[] {
  return frames.filter((f) => typeof f.seq === "number").map((f) => f.seq as number);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describeEachDb("websocket chat", (t) => {
  const s = useServers(t);

  it("send → accepted → tokens → message → ack: the effect is completed", async () => {
    const server = await s.start();
    const key = uniqueKey("chat");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "r1", text: "hello" });

    const accepted = await client.waitForType("accepted", "r1");
    expect(accepted).toEqual({ type: "accepted", requestId: "r1", eventSeq: 1, duplicate: false });
    const message = await client.waitForType("message", "r1");
    expect(message).toEqual({
      type: "message",
      seq: 1,
      eventSeq: 1,
      requestId: "r1",
      role: "assistant",
      content: reply("hello"),
    });
    const tokens = client.frames.filter((f) => f.type === "token");
    expect(tokens.map((f) => f.index)).toEqual(range(0, splitTokens(reply("hello")).length - 1));
    expect(tokens.map((f) => f.text).join("")).toBe(reply("hello"));
    expect(tokens.every((f) => f.requestId === "r1" && f.eventSeq === 1)).toBe(true);
    // Live tokens precede the durable message on the process that ran the session.
    expect(client.frames.indexOf(message)).toBeGreaterThan(client.frames.indexOf(tokens.at(-1) as Frame));

    expect((await clientEffects(t.db, key)).map((e) => e.status)).toEqual(["pending"]);
    client.send({ type: "ack", seq: 1 });
    await eventually(async () => (await clientEffects(t.db, key))[0]?.status === "completed", { what: "completed" });
    const [session] = await t.db.query<{ acked_seq: number }>(
      "select acked_seq from sessiond.sessions where session_key = $1",
      [key],
    );
    expect(session?.acked_seq).toBe(1);

    // The same requestId again: the same event, no second run.
    client.send({ type: "message", requestId: "r1", text: "hello" });
    const again = await client.waitFor((f) => f.type === "accepted" && f.duplicate === true, { what: "duplicate" });
    expect(again).toEqual({ type: "accepted", requestId: "r1", eventSeq: 1, duplicate: true });
    client.send({ type: "message", requestId: "r2", text: "second" });
    const second = await client.waitForType("message", "r2");
    expect(second).toMatchObject({ seq: 2, eventSeq: 2, content: reply("second", 2) });
    expect(client.frames.filter((f) => f.type === "message")).toHaveLength(2);
  });

  it("a token in Sec-WebSocket-Protocol works and sessiond.v1 is echoed", async () => {
    const server = await s.start();
    const key = uniqueKey("proto");
    const client = await s.connect(server, key, { via: "protocol" });
    expect(client.ws.protocol).toBe("sessiond.v1");
    client.send({ type: "message", requestId: "p1", text: "via protocol" });
    expect((await client.waitForType("message", "p1")).content).toBe(reply("via protocol"));
  });

  it("disconnect mid-stream, reconnect after the last seq: the final message arrives exactly once", async () => {
    const model = new LocalChatModel({ tokenDelayMs: 15 });
    const server = await s.start({ model });
    const key = uniqueKey("mid");
    const first = await s.connect(server, key);
    first.send({ type: "message", requestId: "m1", text: "a slow one" });
    await first.waitFor((f) => f.type === "token" && f.index === 0, { what: "the first token" });
    await first.terminate();
    expect(first.frames.some((f) => f.type === "message")).toBe(false);

    const second = await s.connect(server, key, { after: first.lastSeq() });
    const message = await second.waitForType("message", "m1");
    expect(message.content).toBe(reply("a slow one"));
    // Nothing else durable is pending: a later reply follows it directly, and m1 came once.
    second.send({ type: "message", requestId: "m2", text: "next" });
    await second.waitForType("message", "m2");
    expect(second.frames.filter((f) => f.type === "message" && f.requestId === "m1")).toHaveLength(1);
    expect(seqs(second.frames)).toEqual([1, 2]);
  });

  it("a reply committed while disconnected arrives on reconnect; resume rewinds and says so", async () => {
    const server = await s.start();
    const key = uniqueKey("offline");
    const first = await s.connect(server, key);
    first.send({ type: "message", requestId: "o1", text: "while away" });
    await first.waitForType("accepted", "o1");
    await first.close();
    await eventually(async () => (await clientEffects(t.db, key)).length === 1, { what: "the reply committed" });

    // Connecting without `after` starts from the acked cursor (0 here): the reply is replayed.
    const second = await s.connect(server, key);
    expect((await second.waitForType("message", "o1")).content).toBe(reply("while away"));

    // Connected at the head: nothing until a resume rewinds the cursor.
    const third = await s.connect(server, key, { after: 1 });
    third.send({ type: "resume", after: 0 });
    const resumed = await third.waitForType("resumed");
    expect(resumed).toEqual({ type: "resumed", after: 0, head: 1 });
    const replayed = await third.waitForType("message", "o1");
    expect(third.frames.indexOf(replayed)).toBeGreaterThan(third.frames.indexOf(resumed));
    expect(seqs(third.frames)).toEqual([1]);
  });

  it("resume or connect beyond the head gets resume_beyond_head, never silence", async () => {
    const server = await s.start();
    const key = uniqueKey("beyond");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "b1", text: "one" });
    await client.waitForType("message", "b1");
    client.send({ type: "resume", after: 5 });
    const error = await client.waitForType("error");
    expect(error).toMatchObject({ code: "resume_beyond_head" });
    expect(String(error.message)).toContain("head is 1");

    const late = await s.connect(server, key, { after: 9 });
    expect(await late.waitForType("error")).toMatchObject({ code: "resume_beyond_head" });
    late.send({ type: "resume", after: 0 });
    await late.waitForType("resumed");
    expect((await late.waitForType("message", "b1")).seq).toBe(1);
  });

  it("several sockets on one session each get the tokens and the message", async () => {
    const server = await s.start();
    const key = uniqueKey("tabs");
    const a = await s.connect(server, key);
    const b = await s.connect(server, key);
    a.send({ type: "message", requestId: "t1", text: "to both" });
    for (const client of [a, b]) {
      const message = await client.waitForType("message", "t1");
      expect(message.content).toBe(reply("to both"));
      const tokens = client.frames.filter((f) => f.type === "token").map((f) => f.text);
      expect(tokens.join("")).toBe(reply("to both"));
    }
    expect(b.frames.some((f) => f.type === "accepted")).toBe(false);
  });

  it("interrupt → answer → the graph resumes (human in the loop)", async () => {
    const server = await s.start({ graph: createApprovalGraph() });
    const key = uniqueKey("hitl");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "h1", text: "deploy" });
    const interrupt = await client.waitForType("interrupt", "h1");
    expect(interrupt).toMatchObject({ seq: 1, eventSeq: 1, value: { question: 'Approve "deploy"?' } });
    client.send({ type: "answer", requestId: "h2", value: "yes" });
    expect(await client.waitForType("accepted", "h2")).toMatchObject({ eventSeq: 2, duplicate: false });
    expect((await client.waitForType("message", "h2")).content).toBe('Approved: "deploy".');
  });

  it("a run that fails becomes a failure frame", async () => {
    const model = new LocalChatModel({
      behaviour: () => ({
        text: "never finished",
        failAfterTokens: 1,
        error: Object.assign(new Error("nope"), { status: 400 }),
      }),
    });
    const server = await s.start({ model });
    const key = uniqueKey("fail");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "f1", text: "break" });
    const failure = await client.waitForType("failure", "f1");
    expect(failure).toMatchObject({ seq: 1, eventSeq: 1, requestId: "f1", code: "run_failed" });
  });

  it("a reject message on a busy session gets busy", async () => {
    const { model, release, called } = heldModel("done");
    const server = await s.start({ model });
    const key = uniqueKey("busy");
    const client = await s.connect(server, key);
    client.send({ type: "message", requestId: "x1", text: "first" });
    await called.promise;
    client.send({ type: "message", requestId: "x2", text: "second", strategy: "reject" });
    expect(await client.waitForType("error")).toEqual({
      type: "error",
      code: "busy",
      message: expect.any(String),
      requestId: "x2",
    });
    release.open();
    expect((await client.waitForType("message", "x1")).content).toBe("done");
  });
});

describeEachDb("delivery seam", (t) => {
  const s = useServers(t);

  it("effects committed between a replay query and its sends are delivered once, in order", async () => {
    const key = uniqueKey("seam");
    await enqueue(t.db, key, range(1, 12).map(String));
    let notified = gate();
    let injected = false;
    const server = await s.start({
      deliveryBatchSize: 5,
      deliveryHooks: {
        onNotify: () => notified.open(),
        async afterQuery(sessionKey, after) {
          // The worst moment: the last replay query (rows 11, 12: a short batch)
          // already ran, its rows are not sent yet,
          // and new effects commit and their NOTIFY is handled right now.
          if (sessionKey !== key || injected || after !== 10) return;
          injected = true;
          notified = gate();
          await enqueue(t.db, key, ["13", "14", "15"]);
          await notified.promise;
        },
      },
    });
    const client = await s.connect(server, key, { after: 0 });
    await client.waitFor((f) => f.seq === 15, { what: "seq 15" });
    expect(injected).toBe(true);
    await enqueue(t.db, key, ["16"]);
    await client.waitFor((f) => f.seq === 16, { what: "seq 16" });
    expect(seqs(client.frames)).toEqual(range(1, 16));
    expect(client.frames.map((f) => f.content)).toEqual(range(1, 16).map(String));
  });

  it("a replay racing a stream of commits has no gap and no duplicate", async () => {
    const key = uniqueKey("race");
    await enqueue(
      t.db,
      key,
      range(1, 60).map((n) => `old-${n}`),
    );
    const server = await s.start({ deliveryBatchSize: 7 });
    const client = await s.connect(server, key, { after: 0 });
    await client.waitFor((f) => f.seq === 1, { what: "the first replayed frame" });
    for (let n = 1; n <= 30; n++) await enqueue(t.db, key, [`new-${n}`]);
    await client.waitFor((f) => f.seq === 90, { what: "seq 90" });
    expect(seqs(client.frames)).toEqual(range(1, 90));
  });
});
