/**
 * The pipelined delivery pump against a scripted database whose queries can be
 * held: a query sees the rows committed when it was issued (as a Postgres
 * snapshot would) and answers when the test lets it. Covers the prefetch of
 * the next batch while one drains, rewinds racing a prefetch, commits at every
 * batch boundary, NOTIFYs for rows a running query already returned, and the
 * pause of a congested target (the bound on what a slow reader costs).
 */
import { describe, expect, it } from "vitest";
import type { Db } from "../../src/db/index.js";
import { DeliveryHub, type DeliveryTarget, type EffectRow } from "../../src/server/delivery.js";
import { Metrics } from "../../src/server/metrics.js";
import type { DurableFrame } from "../../src/server/protocol.js";
import { silentLogger } from "../../src/session/processor.js";
import { eventually } from "../support/wait.js";

type Row = EffectRow & { key: string; delivery: "client" | "handler" };

function scriptedDb() {
  const rows: Row[] = [];
  let onNotify: ((payload: string) => void) | undefined;
  const issued: number[] = [];
  const held: Array<() => void> = [];
  let holding = false;
  const db = {
    kind: "postgres",
    query(_text: string, params: unknown[] = []) {
      const [key, after, limit] = params as [string, number, number];
      issued.push(after);
      // The snapshot is taken now; the answer comes when the test releases it.
      const answer = rows.filter((r) => r.key === key && r.seq > after && r.delivery === "client").slice(0, limit);
      if (!holding) return Promise.resolve(answer);
      return new Promise((resolve) => held.push(() => resolve(answer)));
    },
    async transaction() {
      throw new Error("unused");
    },
    async listen(_channel: string, notify: (payload: string) => void) {
      onNotify = notify;
      return { close: async () => {} };
    },
    async close() {},
  } as unknown as Db;
  return {
    db,
    /** Queries issued so far (their `after`). */
    issued,
    /** Commits effects with the next seqs (the NOTIFY is up to the test). */
    commit(count: number, delivery: "client" | "handler" = "client", key = "s1") {
      for (let i = 0; i < count; i++) {
        const seq = rows.filter((r) => r.key === key).length + 1;
        rows.push({ key, seq, delivery, event_seq: null, type: "note", payload: { n: seq }, created_at: new Date() });
      }
      return rows.filter((r) => r.key === key).length;
    },
    notify: (seq: number, key = "s1") => onNotify?.(JSON.stringify([[key, seq]])),
    /** From now on queries wait for release(). */
    hold() {
      holding = true;
    },
    /** Answers the oldest held query; false if none is held. */
    release(): boolean {
      const next = held.shift();
      next?.();
      return next !== undefined;
    },
    get heldCount() {
      return held.length;
    },
    resumeAll() {
      holding = false;
      while (held.length > 0) held.shift()?.();
    },
  };
}

/** A subscriber with a socket-like buffer: frames stay "buffered" until the test drains them. */
function bufferedTarget(options: { congestedAt?: number } = {}) {
  const got: number[] = [];
  let buffered = 0;
  let corked = 0;
  let maxBuffered = 0;
  const uncorkedWhileWaiting: boolean[] = [];
  let flushWaiters: Array<() => void> = [];
  const target: DeliveryTarget & { got: number[] } = {
    sessionKey: "s1",
    isOpen: true,
    got,
    deliver(frame: DurableFrame) {
      got.push(frame.seq);
      buffered += 1;
      maxBuffered = Math.max(maxBuffered, buffered);
      return true;
    },
    flushed() {
      uncorkedWhileWaiting.push(corked === 0);
      if (buffered === 0) return Promise.resolve();
      return new Promise((resolve) => flushWaiters.push(resolve));
    },
    get congested() {
      return options.congestedAt !== undefined && buffered >= options.congestedAt;
    },
    cork() {
      corked += 1;
    },
    uncork() {
      corked -= 1;
    },
  };
  return {
    target,
    got,
    /** The reader takes everything buffered. */
    drain() {
      buffered = 0;
      const waiters = flushWaiters;
      flushWaiters = [];
      for (const resolve of waiters) resolve();
    },
    get waiting() {
      return flushWaiters.length > 0;
    },
    get maxBuffered() {
      return maxBuffered;
    },
    get corked() {
      return corked;
    },
    uncorkedWhileWaiting,
  };
}

async function hubWith(fake: ReturnType<typeof scriptedDb>, batchSize: number) {
  const hub = new DeliveryHub({
    db: fake.db,
    metrics: new Metrics(),
    logger: silentLogger,
    mode: "notify",
    pollMs: 1000,
    batchSize,
  });
  await hub.start();
  return hub;
}

/** Lets the reader take everything until the feed has nothing left to do. */
function settle(t: ReturnType<typeof bufferedTarget>, feed: { busy: boolean }, what: string) {
  return eventually(
    () => {
      t.drain();
      return !feed.busy;
    },
    { what },
  );
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describe("pipelined delivery pump", () => {
  it("reads the next batch while the current one drains, and sends each row once, in order", async () => {
    const fake = scriptedDb();
    fake.commit(7);
    const hub = await hubWith(fake, 3);
    const t = bufferedTarget();
    const feed = hub.attach(t.target, 0);
    // The first batch (1–3) is sent and waits for the reader; the read after 3 is already issued.
    await eventually(() => t.waiting, { what: "the first batch waiting to drain" });
    expect(t.got).toEqual([1, 2, 3]);
    expect(fake.issued).toEqual([0, 3]);
    t.drain();
    await eventually(() => t.waiting, { what: "the second batch waiting to drain" });
    expect(t.got).toEqual(range(1, 6));
    expect(fake.issued).toEqual([0, 3, 6]);
    await settle(t, feed, "the last batch");
    expect(t.got).toEqual(range(1, 7));
    expect(fake.issued).toEqual([0, 3, 6]);
    expect(t.corked).toBe(0);
    await hub.stop();
  });

  it("commits at every batch boundary are delivered exactly once, in order", async () => {
    const fake = scriptedDb();
    fake.commit(4);
    const hub = await hubWith(fake, 2);
    const t = bufferedTarget();
    const feed = hub.attach(t.target, 0);
    // Each time a batch waits for the reader (a prefetch in flight or done), two more commit and notify.
    for (let round = 0; round < 6; round++) {
      await eventually(() => t.waiting, { what: `batch ${round} waiting to drain` });
      fake.notify(fake.commit(2));
      t.drain();
    }
    await settle(t, feed, "all 16");
    expect(t.got).toEqual(range(1, 16));
    await hub.stop();
  });

  it("a rewind while the prefetched batch is in flight drops it and restarts from the new cursor", async () => {
    const fake = scriptedDb();
    fake.commit(6);
    const hub = await hubWith(fake, 3);
    const t = bufferedTarget();
    const feed = hub.attach(t.target, 0);
    await eventually(() => t.waiting, { what: "the first batch waiting to drain" });
    fake.hold();
    expect(fake.issued).toEqual([0, 3]); // the prefetch (after 3) answered before hold(); hold the next ones
    feed.rewind(1);
    t.drain();
    // The prefetched batch (4–6, read from the old cursor) is stale: the pump reads again after 1.
    await eventually(() => fake.heldCount === 1, { what: "the read after the rewind" });
    expect(fake.issued.at(-1)).toBe(1);
    fake.resumeAll();
    await settle(t, feed, "the replay after the rewind");
    expect(t.got).toEqual([1, 2, 3, 2, 3, 4, 5, 6]);
    expect(feed.cursor).toBe(6);
    await hub.stop();
  });

  it("a NOTIFY for rows the running query returned costs no second query; one for later rows does", async () => {
    const fake = scriptedDb();
    const hub = await hubWith(fake, 10);
    const t = bufferedTarget();
    const feed = hub.attach(t.target, 0);
    await eventually(() => !feed.busy, { what: "the first (empty) read" });
    expect(fake.issued).toEqual([0]);

    // A local commit wakes the feed at once; its NOTIFY arrives while that read is still running.
    fake.hold();
    fake.commit(2);
    hub.wakeSession("s1");
    expect(fake.issued).toEqual([0, 0]);
    fake.notify(2);
    fake.resumeAll();
    await eventually(() => t.got.length === 2, { what: "seqs 1–2" });
    t.drain();
    await eventually(() => !feed.busy, { what: "idle" });
    expect(fake.issued).toEqual([0, 0]);

    // Committed after the running read began: the NOTIFY makes the pump read once more.
    fake.hold();
    hub.wakeSession("s1");
    fake.notify(fake.commit(1));
    fake.resumeAll();
    await eventually(() => t.got.length === 3, { what: "seq 3" });
    t.drain();
    await eventually(() => !feed.busy, { what: "idle" });
    expect(fake.issued).toEqual([0, 0, 2, 2]);
    expect(t.got).toEqual([1, 2, 3]);
    await hub.stop();
  });

  it("a local commit reads at once unless its NOTIFY came back first; either way one query per commit", async () => {
    const fake = scriptedDb();
    const hub = await hubWith(fake, 10);
    const t = bufferedTarget();
    const feed = hub.attach(t.target, 0);
    await settle(t, feed, "the first (empty) read");
    expect(fake.issued).toEqual([0]);

    // The commit returns before its NOTIFY: the feed reads now, and the NOTIFY then costs nothing.
    hub.commitStarting("s1");
    const first = fake.commit(1);
    hub.committedLocally("s1");
    expect(fake.issued).toEqual([0, 0]);
    await settle(t, feed, "seq 1");
    fake.notify(first);
    expect(feed.busy).toBe(false);

    // The NOTIFY comes back before the commit returns: it woke the feed, the commit does not again.
    hub.commitStarting("s1");
    fake.notify(fake.commit(1));
    await settle(t, feed, "seq 2");
    hub.committedLocally("s1");
    expect(feed.busy).toBe(false);
    expect(fake.issued).toEqual([0, 0, 1]);
    expect(t.got).toEqual([1, 2]);

    // Another session's NOTIFY during the commit does not count as this one's.
    hub.commitStarting("s1");
    fake.commit(1);
    fake.notify(5, "s2");
    hub.committedLocally("s1");
    await settle(t, feed, "seq 3");
    expect(t.got).toEqual([1, 2, 3]);
    expect(fake.issued).toEqual([0, 0, 1, 2]);
    await hub.stop();
  });

  it("a NOTIFY naming a seq that is not for clients is read once, not for ever", async () => {
    const fake = scriptedDb();
    const hub = await hubWith(fake, 10);
    const t = bufferedTarget();
    const feed = hub.attach(t.target, 0);
    await eventually(() => !feed.busy, { what: "the first read" });
    fake.notify(fake.commit(3, "handler"));
    await eventually(() => !feed.busy, { what: "idle after the handler effects" });
    expect(fake.issued).toEqual([0, 0]);
    // At or below what the last read covered: nothing to do.
    fake.notify(3);
    expect(feed.busy).toBe(false);
    fake.notify(fake.commit(1));
    await eventually(() => t.got.length === 1, { what: "seq 4" });
    expect(t.got).toEqual([4]);
    await hub.stop();
  });

  it("a congested target stops the pump until the reader drains: a slow reader costs a bounded buffer", async () => {
    const fake = scriptedDb();
    fake.commit(25);
    const hub = await hubWith(fake, 10);
    const t = bufferedTarget({ congestedAt: 4 });
    const feed = hub.attach(t.target, 0);
    // The reader does not read: the pump sends until the target is congested, then waits.
    await eventually(() => t.waiting, { what: "the pump waiting for the reader" });
    expect(t.got).toEqual([1, 2, 3, 4]);
    // It waits uncorked, so what it sent can leave; at most one more batch was read ahead.
    expect(t.uncorkedWhileWaiting.every(Boolean)).toBe(true);
    expect(fake.issued).toEqual([0, 10]);
    await settle(t, feed, "the rest");
    expect(t.got).toEqual(range(1, 25));
    expect(t.maxBuffered).toBe(4);
    expect(t.corked).toBe(0);
    await hub.stop();
  });
});
