import { describe, expect, it } from "vitest";
import {
  FIRST_DELAY_MS,
  MAX_DELAY_MS,
  reconnectBackoff,
  SIBLING_MS,
  STREAK_GAP_MS,
} from "../../src/db/reconnect-backoff.js";

/** A backoff on a hand-driven clock, with no jitter (random() = 1: the full delay). */
function driven() {
  let now = 0;
  const backoff = reconnectBackoff(
    () => now,
    () => 1,
  );
  return {
    /** A close at `at` ms; the delay it gets, in ms. */
    closeAt(at: number): number {
      now = at;
      return backoff();
    },
  };
}

describe("reconnectBackoff", () => {
  it("doubles the delay while each retry is refused at once, up to the ceiling", () => {
    const b = driven();
    let at = 0;
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      const delay = b.closeAt(at);
      delays.push(delay);
      at += delay + 3; // the retry after the delay, refused 3 ms later
    }
    expect(delays).toEqual([10, 20, 40, 80, 160, 320, 640, 1280, 2000, 2000, 2000, 2000]);
  });

  it("starts again at the first delay after a quiet spell", () => {
    const b = driven();
    let at = 0;
    for (let i = 0; i < 8; i++) at += b.closeAt(at) + 3;
    const last = b.closeAt(at);
    expect(last).toBe(MAX_DELAY_MS);
    expect(b.closeAt(at + last + STREAK_GAP_MS + 1)).toBe(FIRST_DELAY_MS);
  });

  it("gives connections closed together (a pool's, terminated at once) the same short delay", () => {
    const b = driven();
    const delays = Array.from({ length: 10 }, (_, i) => b.closeAt(1_000 + i * (SIBLING_MS / 5)));
    expect(delays).toEqual(Array(10).fill(FIRST_DELAY_MS));
  });

  it("jitters each delay to between half and all of it", () => {
    let random = 0;
    let now = 0;
    const backoff = reconnectBackoff(
      () => now,
      () => random,
    );
    expect(backoff()).toBe(FIRST_DELAY_MS / 2);
    now = 100_000;
    random = 0.999;
    expect(backoff()).toBeCloseTo(FIRST_DELAY_MS, 1);
  });
});
