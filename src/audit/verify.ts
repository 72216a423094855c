/** `verify`: a thin call of sessiond.verify(), which holds every check. */
import type { Queryable } from "../db/index.js";

/** The checks sessiond.verify() runs, by the name it reports them under. */
export const VERIFY_CHECKS = [
  "event_seq_gap_free",
  "processed_not_past_last",
  "one_reply_per_user_event",
  "one_outcome_per_processed_event",
  "unique_dedupe_key",
  "effect_seq_gap_free",
  "acked_not_past_head",
  "lease_not_stale",
  "claim_not_stale",
] as const;
export type VerifyCheck = (typeof VERIFY_CHECKS)[number];

/** One broken invariant. */
export interface Violation {
  check: VerifyCheck;
  sessionKey: string;
  detail: string;
}

export interface VerifyOptions {
  /**
   * How long a lease (on a session with unprocessed events) or an effect claim
   * may have been expired before it counts as a violation: the sweep should
   * have taken it over by then. Default 30 000 ms.
   */
  staleAfterMs?: number;
}

/** Runs every check; an empty array means the database is consistent. */
export async function verify(db: Queryable, options: VerifyOptions = {}): Promise<Violation[]> {
  const staleAfterMs = options.staleAfterMs ?? 30_000;
  if (!Number.isFinite(staleAfterMs) || staleAfterMs < 0) throw new RangeError("staleAfterMs must be ≥ 0");
  const rows = await db.query<{ check_name: VerifyCheck; session_key: string; detail: string }>(
    "select * from sessiond.verify(make_interval(secs => $1::double precision / 1000))",
    [staleAfterMs],
  );
  return rows.map((r) => ({ check: r.check_name, sessionKey: r.session_key, detail: r.detail }));
}
