import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Db } from "../../src/db/index.js";
import { Metrics } from "../../src/server/metrics.js";
import { TokenRelay } from "../../src/server/token-relay.js";
import { silentLogger } from "../../src/session/processor.js";
import { TokenBus, type TokenFrame } from "../../src/session/token-bus.js";

/** A Db that records pg_notify calls and lets the test deliver notifications. */
function fakeDb() {
  const notifies: Array<{ channel: string; payload: string }> = [];
  let deliver: ((payload: string) => void) | undefined;
  const db = {
    kind: "postgres",
    async query(text: string, params: unknown[] = []) {
      if (text.includes("pg_notify")) notifies.push({ channel: params[0] as string, payload: params[1] as string });
      return [];
    },
    async transaction() {
      throw new Error("unused");
    },
    async listen(_channel: string, onNotify: (payload: string) => void) {
      deliver = onNotify;
      return { close: async () => {} };
    },
    async close() {},
  } as unknown as Db;
  return { db, notifies, deliver: (payload: string) => deliver?.(payload) };
}

const token = (index: number, text = `t${index} `): TokenFrame => ({
  sessionKey: "s1",
  requestId: "r1",
  eventSeq: 3,
  index,
  text,
});

describe("token relay", () => {
  let relay: TokenRelay;
  let tokens: TokenBus;
  let fake: ReturnType<typeof fakeDb>;
  let metrics: Metrics;

  beforeEach(async () => {
    vi.useFakeTimers();
    tokens = new TokenBus();
    fake = fakeDb();
    metrics = new Metrics();
    relay = new TokenRelay({ db: fake.db, tokens, metrics, logger: silentLogger, intervalMs: 50, maxBytes: 300 });
    await relay.start({ send: true, receive: true });
  });
  afterEach(async () => {
    await relay.stop();
    vi.useRealTimers();
  });

  it("relays the first token at once and coalesces the rest, at most one NOTIFY per interval", () => {
    for (let i = 0; i < 5; i++) tokens.publish(token(i));
    expect(fake.notifies).toHaveLength(1);
    expect(JSON.parse(fake.notifies[0]?.payload as string)).toEqual({
      o: relay.origin,
      k: "s1",
      r: "r1",
      e: 3,
      t: [[0, "t0 "]],
    });
    vi.advanceTimersByTime(49);
    expect(fake.notifies).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(fake.notifies).toHaveLength(2);
    expect(JSON.parse(fake.notifies[1]?.payload as string).t).toEqual([1, 2, 3, 4].map((i) => [i, `t${i} `]));
    vi.advanceTimersByTime(500);
    expect(fake.notifies).toHaveLength(2);
    expect(metrics.relayNotifiesSent).toBe(2);
  });

  it("splits a flush into payloads under the byte budget and skips a token that can never fit", () => {
    tokens.publish(token(0));
    for (let i = 1; i <= 12; i++) tokens.publish(token(i, `${"w".repeat(30)}${i}`));
    tokens.publish(token(13, "x".repeat(400)));
    vi.advanceTimersByTime(50);
    const payloads = fake.notifies.map((n) => n.payload);
    for (const payload of payloads) expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(300);
    const relayed = payloads.flatMap((p) => (JSON.parse(p) as { t: Array<[number, string]> }).t.map(([i]) => i));
    expect(relayed).toEqual(Array.from({ length: 13 }, (_, i) => i));
    expect(payloads.length).toBeGreaterThan(2);
  });

  it("does not relay while this process has a subscriber of the session", () => {
    const unsubscribe = tokens.subscribe("s1", () => {});
    tokens.publish(token(0));
    expect(fake.notifies).toHaveLength(0);
    unsubscribe();
    tokens.publish(token(1));
    expect(fake.notifies).toHaveLength(1);
  });

  it("republishes relayed tokens locally to subscribers only, ignoring its own and malformed payloads", () => {
    const seen: TokenFrame[] = [];
    const all: TokenFrame[] = [];
    tokens.subscribeAll((frame) => all.push(frame));
    const payload = (origin: string) =>
      JSON.stringify({
        o: origin,
        k: "s1",
        r: "r9",
        e: 7,
        t: [
          [0, "a"],
          [1, "b"],
        ],
      });
    fake.deliver(payload("another-process"));
    expect(seen).toEqual([]);
    tokens.subscribe("s1", (frame) => seen.push(frame));
    fake.deliver(payload(relay.origin));
    fake.deliver("{broken");
    fake.deliver(JSON.stringify({ o: "x", k: "s1" }));
    fake.deliver(payload("another-process"));
    expect(seen).toEqual([
      { sessionKey: "s1", requestId: "r9", eventSeq: 7, index: 0, text: "a" },
      { sessionKey: "s1", requestId: "r9", eventSeq: 7, index: 1, text: "b" },
    ]);
    // Republished with local: true, so never relayed again.
    expect(all).toEqual([]);
    expect(fake.notifies).toHaveLength(0);
    expect(metrics.relayTokensReceived).toBe(2);
  });
});
