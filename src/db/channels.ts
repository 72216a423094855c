/**
 * NOTIFY channel names, in one place. Plain lowercase: PGlite's listen does
 * not quote channel names. Payloads carry ids only (see docs/database.md).
 */
export const Channels = {
  /** A statement appended events: payload `[[session_key, max_seq], …]` or '' (sweep). */
  events: "sessiond_events",
  /** A statement enqueued effects: payload `[[session_key, max_seq], …]` or '' (sweep). */
  effects: "sessiond_effects",
  /** Live token relay between processes: payload is a small JSON batch. */
  tokens: "sessiond_tokens",
  /** Readiness probe: a process NOTIFYs a nonce and waits for it on its own LISTEN connection. */
  ping: "sessiond_ping",
} as const;

/** Parses an events/effects payload; `null` means "sweep everything". */
export function parseSeqPairs(payload: string): Array<[string, number]> | null {
  if (payload === "") return null;
  try {
    const parsed: unknown = JSON.parse(payload);
    if (!Array.isArray(parsed)) return null;
    const pairs: Array<[string, number]> = [];
    for (const item of parsed) {
      if (Array.isArray(item) && typeof item[0] === "string" && typeof item[1] === "number") {
        pairs.push([item[0], item[1]]);
      }
    }
    return pairs;
  } catch {
    return null;
  }
}
