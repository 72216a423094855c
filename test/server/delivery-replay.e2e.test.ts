/**
 * Delivery over real sockets: a replay in full-size pipelined batches racing
 * live commits, a replay of frames larger than the outbound limit allows in
 * one go (the pump waits for the socket instead of tripping 4408), and a run's
 * reply reaching the local socket without the effects NOTIFY.
 */
import { expect, it } from "vitest";
import { LocalChatModel } from "../../src/agent/local-model.js";
import type { Queryable } from "../../src/db/index.js";
import { describeEachDb } from "../support/db.js";
import { uniqueKey } from "../support/sessions.js";
import type { Frame } from "./client.js";
import { useServers } from "./fixture.js";

/** Commits client effects as a run would, `perStatement` per enqueue_effects call. */
async function enqueue(db: Queryable, sessionKey: string, contents: string[], perStatement = 500): Promise<void> {
  for (let from = 0; from < contents.length; from += perStatement) {
    const effects = contents.slice(from, from + perStatement).map((content, i) => ({
      type: "send_message",
      delivery: "client",
      payload: { requestId: "direct", role: "assistant", content, final: true },
      dedupe_key: `direct/${from + i}/${content.slice(0, 40)}`,
    }));
    await db.query("select * from sessiond.enqueue_effects($1, $2)", [sessionKey, effects]);
  }
}

/** Rows per delivery query here: small, so that a short backlog spans several pipelined batches. */
const BATCH = 50;

function seqs(frames: Frame[]): number[] {
  return frames.filter((f) => typeof f.seq === "number").map((f) => f.seq as number);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describeEachDb("delivery: pipelined replay", (t) => {
  const s = useServers(t);

  it("a backlog over two full batches racing live commits arrives once, in order", async () => {
    const key = uniqueKey("pipeline");
    const backlog = BATCH * 2 + 30;
    await enqueue(
      t.db,
      key,
      range(1, backlog).map((n) => `old-${n}`),
    );
    const server = await s.start({ deliveryBatchSize: BATCH });
    const client = await s.connect(server, key, { after: 0 });
    await client.waitFor((f) => f.seq === 1, { what: "the first replayed frame" });
    // Commits while the replay reads ahead and drains, one statement each (one NOTIFY each).
    for (let n = 1; n <= 20; n++) await enqueue(t.db, key, [`new-${n}`]);
    await client.waitFor((f) => f.seq === backlog + 20, { what: "the last live frame", ms: 30_000 });
    expect(seqs(client.frames)).toEqual(range(1, backlog + 20));
    expect(client.frames.at(-1)?.content).toBe("new-20");
  });

  it("a run's reply reaches a socket on the process that ran it without the effects NOTIFY", async () => {
    // poll-only with the longest poll: the delivery hub hears no NOTIFY and polls once a minute,
    // so only the processor's commit hook can bring the reply within the test's deadline.
    const server = await s.start({
      mode: "poll-only",
      pollMs: 60_000,
      model: new LocalChatModel({ behaviour: () => "local reply" }),
    });
    const key = uniqueKey("local");
    const client = await s.connect(server, key, { after: 0 });
    client.send({ type: "message", requestId: "l1", text: "hi" });
    const message = await client.waitForType("message", "l1");
    expect(message).toMatchObject({ seq: 1, eventSeq: 1, content: "local reply" });
    expect(seqs(client.frames)).toEqual([1]);
  });
});

// About sockets, not the database: one backend is enough.
describeEachDb(
  "delivery: large frames under a small outbound limit",
  (t) => {
    const s = useServers(t);

    it("frames larger than half the outbound limit replay to a reading client without 4408", async () => {
      const key = uniqueKey("large");
      const content = (n: number) => `${n} ${"x".repeat(30_000)}`;
      await enqueue(t.db, key, range(1, 60).map(content), 10);
      // One batch holds 60 × 30 kB: written at once it would pass a 64 kB limit many times over.
      const server = await s.start({ outboundBufferBytes: 65_536 });
      const client = await s.connect(server, key, { after: 0 });
      await client.waitFor((f) => f.seq === 60, { what: "the 60th large frame", ms: 30_000 });
      expect(seqs(client.frames)).toEqual(range(1, 60));
      expect(client.frames.every((f) => f.content === content(f.seq as number))).toBe(true);
      expect(client.ws.readyState).toBe(client.ws.OPEN);
      expect(server.metrics.framesDelivered).toBe(60);
    });

    it("the same replay over SSE reaches a reading client whole", async () => {
      const key = uniqueKey("large-sse");
      await enqueue(
        t.db,
        key,
        range(1, 60).map((n) => `${n} ${"y".repeat(30_000)}`),
        10,
      );
      const server = await s.start({ outboundBufferBytes: 65_536 });
      const response = await fetch(`${server.url}/v1/sessions/${key}/messages?after=0`, {
        headers: { accept: "text/event-stream", authorization: `Bearer ${server.mintToken(key)}` },
      });
      expect(response.status).toBe(200);
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let text = "";
      let ids: number[] = [];
      const deadline = Date.now() + 30_000;
      while (ids.at(-1) !== 60 && Date.now() < deadline) {
        const chunk = await reader.read();
        if (chunk.done) break;
        text += decoder.decode(chunk.value, { stream: true });
        ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
      }
      await reader.cancel();
      expect(ids).toEqual(range(1, 60));
    });
  },
  ["postgres"],
);
