/** Leases and the run commit: thin calls of the SQL functions in migrations/committed/000002. */
import type { Queryable } from "../db/index.js";
import type { PendingEffect } from "../effects/emit.js";

/** SQLSTATE raised by sessiond.commit_run when the caller's fencing token is stale. */
export const LEASE_LOST = "SDL01";
/** SQLSTATE raised by sessiond.commit_run for a commit that is not the next event. */
export const OUT_OF_ORDER = "SDO01";

export async function claimSession(db: Queryable, sessionKey: string, owner: string, ttlMs: number) {
  const [row] = await db.query<{ token: number | null }>("select sessiond.claim_session($1, $2, $3) as token", [
    sessionKey,
    owner,
    ttlMs,
  ]);
  return row?.token ?? null;
}

export async function claimSessions(db: Queryable, owner: string, ttlMs: number, max: number) {
  return db.query<{ session_key: string; lease_token: number }>("select * from sessiond.claim_sessions($1, $2, $3)", [
    owner,
    ttlMs,
    max,
  ]);
}

export async function heartbeatSession(db: Queryable, sessionKey: string, owner: string, token: number, ttlMs: number) {
  const [row] = await db.query<{ ok: boolean }>("select sessiond.heartbeat_session($1, $2, $3, $4) as ok", [
    sessionKey,
    owner,
    token,
    ttlMs,
  ]);
  return row?.ok === true;
}

export async function releaseSession(db: Queryable, sessionKey: string, owner: string, token: number) {
  const [row] = await db.query<{ ok: boolean }>("select sessiond.release_session($1, $2, $3) as ok", [
    sessionKey,
    owner,
    token,
  ]);
  return row?.ok === true;
}

export interface RunOutcome {
  seq: number;
  status: "processed" | "failed" | "superseded";
  error?: string;
  attempts?: number;
  startedAt?: Date;
}

export interface CommittedEffect {
  id: string;
  seq: number;
  type: string;
  duplicate: boolean;
}

/** Commits outcomes and effects in `tx` if the fencing token still holds (else throws SDL01). */
export async function commitRun(
  tx: Queryable,
  sessionKey: string,
  token: number,
  outcomes: RunOutcome[],
  effects: Array<PendingEffect & { eventSeq: number }>,
): Promise<CommittedEffect[]> {
  return tx.query<CommittedEffect>("select id, seq, type, duplicate from sessiond.commit_run($1, $2, $3, $4)", [
    sessionKey,
    token,
    outcomes.map((o) => ({
      seq: o.seq,
      status: o.status,
      ...(o.error !== undefined ? { error: o.error } : {}),
      attempts: o.attempts ?? 1,
      ...(o.startedAt ? { started_at: o.startedAt.toISOString() } : {}),
    })),
    effects.map((e) => ({
      type: e.type,
      payload: e.payload,
      delivery: e.delivery,
      ordered: e.ordered,
      max_attempts: e.maxAttempts,
      event_seq: e.eventSeq,
      ...(e.dedupeKey ? { dedupe_key: e.dedupeKey } : {}),
      ...(e.availableAt ? { available_at: e.availableAt.toISOString() } : {}),
    })),
  ]);
}

export interface SessionCursor {
  lastSeq: number;
  processedSeq: number;
  leaseToken: number;
  leaseOwner: string | null;
}

export async function readCursor(db: Queryable, sessionKey: string): Promise<SessionCursor | undefined> {
  const [row] = await db.query<{
    last_seq: number;
    processed_seq: number;
    lease_token: number;
    lease_owner: string | null;
  }>("select last_seq, processed_seq, lease_token, lease_owner from sessiond.sessions where session_key = $1", [
    sessionKey,
  ]);
  return row
    ? {
        lastSeq: row.last_seq,
        processedSeq: row.processed_seq,
        leaseToken: row.lease_token,
        leaseOwner: row.lease_owner,
      }
    : undefined;
}
