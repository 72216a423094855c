import { describe, expect, it } from "vitest";
import { effectFrame } from "../../src/server/delivery.js";
import { isSessionKey, parseClientFrame } from "../../src/server/protocol.js";
import { TokenBucket } from "../../src/server/rate-limit.js";

describe("inbound frames", () => {
  it("accepts the four client frames", () => {
    expect(parseClientFrame('{"type":"message","requestId":"r","text":"hi","strategy":"interrupt"}')).toEqual({
      ok: true,
      frame: { type: "message", requestId: "r", text: "hi", strategy: "interrupt" },
    });
    expect(parseClientFrame('{"type":"ack","seq":3}')).toEqual({ ok: true, frame: { type: "ack", seq: 3 } });
    expect(parseClientFrame('{"type":"resume","after":0,"extra":1}')).toEqual({
      ok: true,
      frame: { type: "resume", after: 0 },
    });
    expect(parseClientFrame('{"type":"answer","requestId":"a","value":{"ok":true}}')).toEqual({
      ok: true,
      frame: { type: "answer", requestId: "a", value: { ok: true } },
    });
  });

  it.each([
    ["{", "bad_json"],
    ["null", "bad_frame"],
    ["[]", "bad_frame"],
    ['{"text":"no type"}', "bad_frame"],
    ['{"type":"toString"}', "unknown_type"],
    ['{"type":"hello"}', "unknown_type"],
    ['{"type":"message","requestId":"r"}', "bad_frame"],
    ['{"type":"message","requestId":"r","text":""}', "bad_frame"],
    [`{"type":"message","requestId":"${"r".repeat(201)}","text":"x"}`, "bad_frame"],
    ['{"type":"message","requestId":"r","text":"x","strategy":"later"}', "bad_frame"],
    ['{"type":"ack","seq":1.5}', "bad_frame"],
    ['{"type":"resume","after":-1}', "bad_frame"],
  ])("%s → %s", (text, code) => {
    const parsed = parseClientFrame(text);
    expect(parsed).toMatchObject({ ok: false, code });
  });

  it("validates session keys like the SQL domain", () => {
    expect(isSessionKey("user-42:chat@app.v1")).toBe(true);
    expect(isSessionKey("a".repeat(200))).toBe(true);
    expect(isSessionKey("a".repeat(201))).toBe(false);
    expect(isSessionKey("-lead")).toBe(false);
    expect(isSessionKey("with space")).toBe(false);
    expect(isSessionKey("")).toBe(false);
  });
});

describe("token bucket", () => {
  it("allows a burst, then refills at the rate", () => {
    let now = 0;
    const bucket = new TokenBucket(3, 2, () => now);
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
    now += 499;
    expect(bucket.take()).toBe(false);
    now += 1;
    expect(bucket.take()).toBe(true);
    now += 10_000;
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
  });
});

describe("durable frames", () => {
  it("maps each client effect type to its frame", () => {
    const at = new Date();
    expect(
      effectFrame({ seq: 3, event_seq: 2, type: "error", payload: { code: "x", message: "m" }, created_at: at }),
    ).toEqual({
      type: "failure",
      seq: 3,
      eventSeq: 2,
      requestId: null,
      code: "x",
      message: "m",
    });
    expect(effectFrame({ seq: 4, event_seq: null, type: "card", payload: { a: 1 }, created_at: at })).toEqual({
      type: "effect",
      seq: 4,
      eventSeq: null,
      effectType: "card",
      payload: { a: 1 },
    });
    // A send_message payload that does not match its schema is passed on generically, not dropped.
    expect(
      effectFrame({ seq: 5, event_seq: 1, type: "send_message", payload: { odd: true }, created_at: at }).type,
    ).toBe("effect");
  });
});
