/** Leases and the run commit: thin calls of the SQL functions in migrations/committed/000002. */
import type { Queryable } from "../db/index.js";
import type { PendingEffect } from "../effects/emit.js";
import type { SessionEvent } from "../events/index.js";
import { checkpointRowsJson, isEmptyBatch, type RowBatch } from "./checkpoint-rows.js";

/** SQLSTATE raised by sessiond.commit_run when the caller's fencing token is stale. */
export const LEASE_LOST = "SDL01";
/** SQLSTATE raised by sessiond.commit_run for a commit that is not the next event. */
export const OUT_OF_ORDER = "SDO01";

export async function claimSessions(db: Queryable, owner: string, ttlMs: number, max: number, skip: string[] = []) {
  return db.query<{ session_key: string; lease_token: number }>(
    "select * from sessiond.claim_sessions($1, $2, $3, $4::text[])",
    [owner, ttlMs, max, skip],
  );
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

/**
 * Commits outcomes, effects and the run's checkpoint rows if the fencing token still holds (else
 * throws SDL01), in one statement: on its own it is the run's whole transaction.
 */
export async function commitRun(
  db: Queryable,
  sessionKey: string,
  token: number,
  outcomes: RunOutcome[],
  effects: Array<PendingEffect & { eventSeq: number }>,
  checkpoint?: RowBatch,
): Promise<CommittedEffect[]> {
  return db.query<CommittedEffect>("select id, seq, type, duplicate from sessiond.commit_run($1, $2, $3, $4, $5)", [
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
    checkpoint && !isEmptyBatch(checkpoint) ? checkpointRowsJson(checkpoint) : null,
  ]);
}

interface SessionWorkRow {
  lease_token: number;
  id: string | null;
  seq: number | null;
  type: string | null;
  payload: Record<string, unknown> | null;
  request_id: string | null;
  created_at: Date | null;
}

function toEvents(sessionKey: string, rows: SessionWorkRow[]): SessionEvent[] {
  const events: SessionEvent[] = [];
  for (const row of rows) {
    if (row.id === null || row.seq === null) continue;
    events.push({
      id: row.id,
      sessionKey,
      seq: row.seq,
      type: row.type as string,
      payload: row.payload ?? {},
      requestId: row.request_id as string,
      createdAt: row.created_at as Date,
    });
  }
  return events;
}

export interface ClaimedWork {
  /** The new fencing token. */
  token: number;
  /** The next unprocessed events, in seq order. */
  events: SessionEvent[];
}

/**
 * Takes the lease of a session with unprocessed events and reads them, in one statement
 * (claim_session_work). Undefined when there is nothing to do or another owner holds the lease.
 */
export async function claimSessionWork(
  db: Queryable,
  sessionKey: string,
  owner: string,
  ttlMs: number,
  maxEvents: number,
): Promise<ClaimedWork | undefined> {
  const rows = await db.query<SessionWorkRow>("select * from sessiond.claim_session_work($1, $2, $3, $4)", [
    sessionKey,
    owner,
    ttlMs,
    maxEvents,
  ]);
  const first = rows[0];
  return first ? { token: first.lease_token, events: toEvents(sessionKey, rows) } : undefined;
}

/** What the lease holder does after a run: go on with these events, or it released, or it lost the lease. */
export type NextWork = { kind: "events"; events: SessionEvent[] } | { kind: "released" } | { kind: "lost" };

/**
 * After a run, in one statement (next_session_work): the next unprocessed events while the
 * lease is kept, or the lease released because there are none, or the lease found lost.
 */
export async function nextSessionWork(
  db: Queryable,
  sessionKey: string,
  owner: string,
  token: number,
  maxEvents: number,
): Promise<NextWork> {
  const rows = await db.query<SessionWorkRow>("select * from sessiond.next_session_work($1, $2, $3, $4)", [
    sessionKey,
    owner,
    token,
    maxEvents,
  ]);
  if (rows.length === 0) return { kind: "lost" };
  const events = toEvents(sessionKey, rows);
  return events.length === 0 ? { kind: "released" } : { kind: "events", events };
}
