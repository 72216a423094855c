import { describe, expect, it } from "vitest";
import { EffectValidationError } from "../../src/effects/registry.js";
import type { SessionEvent } from "../../src/events/index.js";
import { chooseBatch, isPermanent } from "../../src/session/run-policy.js";

const event = (seq: number, type = "user_message", strategy?: string): SessionEvent => ({
  id: `id${seq}`,
  sessionKey: "s",
  seq,
  type,
  payload: strategy ? { text: `m${seq}`, strategy } : { text: `m${seq}` },
  requestId: `r${seq}`,
  createdAt: new Date(0),
});

describe("chooseBatch", () => {
  it("runs one event at a time by default", () => {
    expect(chooseBatch([event(1), event(2), event(3)]).map((e) => e.seq)).toEqual([1]);
  });
  it("brings earlier messages along up to the last interrupting one", () => {
    expect(chooseBatch([event(1), event(2, "user_message", "interrupt"), event(3)]).map((e) => e.seq)).toEqual([1, 2]);
    expect(
      chooseBatch([event(1), event(2), event(3, "user_message", "interrupt"), event(4)]).map((e) => e.seq),
    ).toEqual([1, 2, 3]);
  });
  it("never batches across a resume event", () => {
    expect(
      chooseBatch([event(1), event(2, "resume"), event(3, "user_message", "interrupt")]).map((e) => e.seq),
    ).toEqual([1]);
  });
  it("an interrupting first event runs alone", () => {
    expect(chooseBatch([event(1, "user_message", "interrupt"), event(2)]).map((e) => e.seq)).toEqual([1]);
  });
});

describe("isPermanent", () => {
  it("gives up at once on client errors, invalid effects and graph errors", () => {
    expect(isPermanent(Object.assign(new Error("bad request"), { status: 400 }))).toBe(true);
    expect(isPermanent(new EffectValidationError("nope"))).toBe(true);
    expect(isPermanent(Object.assign(new Error("loop"), { name: "GraphRecursionError" }))).toBe(true);
  });
  it("retries timeouts, rate limits, server errors and unknown failures", () => {
    expect(isPermanent(Object.assign(new Error("slow"), { status: 408 }))).toBe(false);
    expect(isPermanent(Object.assign(new Error("later"), { status: 429 }))).toBe(false);
    expect(isPermanent(Object.assign(new Error("down"), { status: 503 }))).toBe(false);
    expect(isPermanent(new Error("ECONNRESET"))).toBe(false);
  });
});
