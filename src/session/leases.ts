/** Leases and the run commit: thin calls of the SQL functions in migrations/committed/000002. */
import type { Queryable } from "../db/index.js";
import type { PendingEffect } from "../effects/emit.js";
import type { SessionEvent } from "../events/index.js";

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

export interface PendingWork {
  /** The session's current fencing token. */
  leaseToken: number;
  /** The next unprocessed events, in seq order (empty when caught up). */
  events: SessionEvent[];
}

/** The session's token and its next unprocessed events, in one round trip. */
export async function readPendingWork(
  db: Queryable,
  sessionKey: string,
  limit: number,
): Promise<PendingWork | undefined> {
  const rows = await db.query<{
    lease_token: number;
    id: string | null;
    seq: number | null;
    type: string;
    payload: Record<string, unknown>;
    request_id: string;
    created_at: Date;
  }>(
    `select s.lease_token, e.id, e.seq, e.type, e.payload, e.request_id, e.created_at
       from sessiond.sessions s
       left join lateral (
         select * from sessiond.events e
          where e.session_key = s.session_key and e.seq > s.processed_seq
          order by e.seq limit $2) e on true
      where s.session_key = $1
      order by e.seq`,
    [sessionKey, limit],
  );
  const first = rows[0];
  if (!first) return undefined;
  const events: SessionEvent[] = [];
  for (const row of rows) {
    if (row.id === null || row.seq === null) continue;
    events.push({
      id: row.id,
      sessionKey,
      seq: row.seq,
      type: row.type,
      payload: row.payload,
      requestId: row.request_id,
      createdAt: row.created_at,
    });
  }
  return { leaseToken: first.lease_token, events };
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
