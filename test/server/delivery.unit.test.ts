/**
 * The delivery pump against a scripted database: the cursor, rewinds, the
 * wake-up rules, and the sweep after a LISTEN reconnect.
 */
import { describe, expect, it } from "vitest";
import type { Db } from "../../src/db/index.js";
import { DeliveryHub, type DeliveryTarget, type EffectRow } from "../../src/server/delivery.js";
import { Metrics } from "../../src/server/metrics.js";
import type { DurableFrame } from "../../src/server/protocol.js";
import { silentLogger } from "../../src/session/processor.js";
import { eventually } from "../support/wait.js";

function fakeDb() {
  const rows: Array<EffectRow & { key: string }> = [];
  let onNotify: ((payload: string) => void) | undefined;
  let onReconnect: (() => void) | undefined;
  let queries = 0;
  const db = {
    kind: "postgres",
    async query(_text: string, params: unknown[] = []) {
      queries += 1;
      const [key, after, limit] = params as [string, number, number];
      return rows.filter((r) => r.key === key && r.seq > after).slice(0, limit);
    },
    async transaction() {
      throw new Error("unused");
    },
    async listen(_channel: string, notify: (payload: string) => void, reconnect?: () => void) {
      onNotify = notify;
      onReconnect = reconnect;
      return { close: async () => {} };
    },
    async close() {},
  } as unknown as Db;
  return {
    db,
    /** Commits an effect; the NOTIFY is up to the test. */
    commit(seq: number, key = "s1") {
      rows.push({ key, seq, event_seq: null, type: "note", payload: { n: seq }, created_at: new Date() });
    },
    notify: (payload: string) => onNotify?.(payload),
    reconnect: () => onReconnect?.(),
    get queries() {
      return queries;
    },
  };
}

function target(sessionKey = "s1"): DeliveryTarget & { got: number[] } {
  const got: number[] = [];
  return {
    sessionKey,
    isOpen: true,
    got,
    deliver(frame: DurableFrame) {
      got.push(frame.seq);
      return true;
    },
    flushed: () => Promise.resolve(),
  };
}

async function hubWith(fake: ReturnType<typeof fakeDb>, batchSize = 3) {
  const metrics = new Metrics();
  const hub = new DeliveryHub({ db: fake.db, metrics, logger: silentLogger, mode: "notify", pollMs: 1000, batchSize });
  await hub.start();
  return { hub, metrics };
}

describe("delivery hub", () => {
  it("replays from the cursor in batches, then delivers what a NOTIFY names", async () => {
    const fake = fakeDb();
    for (let seq = 1; seq <= 7; seq++) fake.commit(seq);
    const { hub } = await hubWith(fake);
    const t = target();
    const feed = hub.attach(t, 2);
    await eventually(() => t.got.length === 5, { what: "the replay" });
    expect(t.got).toEqual([3, 4, 5, 6, 7]);
    fake.commit(8);
    fake.notify(JSON.stringify([["s1", 8]]));
    await eventually(() => t.got.length === 6, { what: "the live frame" });
    expect(feed.cursor).toBe(8);
    // A NOTIFY for another session, or one at or below the cursor, costs no query.
    const before = fake.queries;
    fake.notify(JSON.stringify([["s2", 9]]));
    fake.notify(JSON.stringify([["s1", 8]]));
    expect(fake.queries).toBe(before);
    await hub.stop();
  });

  it("after a LISTEN reconnect every feed reads again (notifications in the gap were lost)", async () => {
    const fake = fakeDb();
    const { hub, metrics } = await hubWith(fake);
    const a = target("s1");
    const b = target("s2");
    hub.attach(a, 0);
    hub.attach(b, 0);
    await eventually(() => !hub.hasSubscribers("none") && fake.queries >= 2, { what: "the first reads" });
    fake.commit(1);
    expect(a.got).toEqual([]);
    fake.reconnect();
    await eventually(() => a.got.length === 1, { what: "the sweep" });
    expect(metrics.listenerReconnects).toBe(1);
    // An empty payload (too many sessions for one NOTIFY) also wakes everyone.
    fake.commit(2);
    fake.notify("");
    await eventually(() => a.got.length === 2, { what: "the second sweep" });
    expect(b.got).toEqual([]);
    await hub.stop();
  });

  it("a rewind drops the batch in flight and restarts from the new cursor", async () => {
    const fake = fakeDb();
    for (let seq = 1; seq <= 4; seq++) fake.commit(seq);
    const { hub } = await hubWith(fake, 10);
    const t = target();
    const feed = hub.attach(t, 0);
    feed.rewind(2);
    await eventually(() => !feed.busy, { what: "idle" });
    // The first query (from 0) may or may not have been sent before the rewind; what follows it starts at 3.
    expect(t.got.slice(t.got.indexOf(3))).toEqual([3, 4]);
    expect(feed.cursor).toBe(4);
    hub.detach(feed);
    expect(hub.hasSubscribers("s1")).toBe(false);
    await hub.stop();
  });
});
