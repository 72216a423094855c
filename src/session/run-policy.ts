/**
 * Run policy: which events run together, and which errors no retry can fix.
 * Pure functions, so they are tested on their own.
 */
import { EffectValidationError } from "../effects/registry.js";
import type { SessionEvent } from "../events/index.js";
import { UnsupportedEventError } from "./run.js";

/** The error classes that no retry can fix. */
export function isPermanent(error: unknown): boolean {
  if (error instanceof UnsupportedEventError || error instanceof EffectValidationError) return true;
  if (error instanceof Error) {
    if (["GraphRecursionError", "InvalidUpdateError", "EmptyInputError", "GraphValueError"].includes(error.name))
      return true;
    const status = (error as { status?: unknown }).status;
    if (typeof status === "number" && status >= 400 && status < 500 && status !== 408 && status !== 429) return true;
  }
  return false;
}

export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The events to run together: normally one; a chain ending in an `interrupt` message supersedes what precedes it. */
export function chooseBatch(events: SessionEvent[]): SessionEvent[] {
  let end = 0;
  for (let i = 0; i < events.length; i++) {
    const event = events[i] as SessionEvent;
    if (event.type !== "user_message") break;
    if (i > 0 && event.payload.strategy === "interrupt") end = i;
  }
  return events.slice(0, end + 1);
}
