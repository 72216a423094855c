import { describe, expect, it } from "vitest";
import type { SessionEvent } from "../../src/events/index.js";
import { chooseBatch } from "../../src/session/processor.js";

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
