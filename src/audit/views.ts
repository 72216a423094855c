/**
 * Reads of the audit views (migrations/committed/000002, "Audit" section):
 * one SELECT each, rows mapped to camelCase. The SQL is the product; these
 * exist so the CLI and the server need no SQL of their own.
 */
import type { Queryable } from "../db/index.js";

/** One event or effect of a session, as sessiond.session_timeline shows it. */
export interface TimelineEntry {
  sessionKey: string;
  /** When the event was appended or the effect enqueued. */
  at: Date;
  kind: "event" | "effect";
  seq: number;
  /** The event itself (events) or the event that caused the effect (null when none did). */
  eventSeq: number | null;
  type: string;
  /** Events: processed | failed | superseded | pending | no_outcome. Effects: their status. */
  status: string;
  requestId: string | null;
  delivery: "client" | "handler" | null;
  attempts: number | null;
  summary: string;
  error: string | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  latencyMs: number | null;
  runMs: number | null;
}

interface TimelineRow {
  session_key: string;
  at: Date;
  kind: "event" | "effect";
  seq: number;
  event_seq: number | null;
  type: string;
  status: string;
  request_id: string | null;
  delivery: "client" | "handler" | null;
  attempts: number | null;
  summary: string;
  error: string | null;
  started_at: Date | null;
  finished_at: Date | null;
  latency_ms: number | null;
  run_ms: number | null;
}

/** The timeline of one session, oldest first (events before the effects they caused). */
export async function timeline(db: Queryable, sessionKey: string): Promise<TimelineEntry[]> {
  const rows = await db.query<TimelineRow>(
    "select * from sessiond.session_timeline where session_key = $1 order by at, kind desc, seq",
    [sessionKey],
  );
  return rows.map((r) => ({
    sessionKey: r.session_key,
    at: r.at,
    kind: r.kind,
    seq: r.seq,
    eventSeq: r.event_seq,
    type: r.type,
    status: r.status,
    requestId: r.request_id,
    delivery: r.delivery,
    attempts: r.attempts,
    summary: r.summary,
    error: r.error,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    latencyMs: r.latency_ms,
    runMs: r.run_ms,
  }));
}

/** One row of sessiond.stuck_work. */
export interface StuckItem {
  reason: "lease_expired" | "unprocessed_events" | "claim_expired" | "effect_overdue" | "effect_failed" | "effect_dead";
  sessionKey: string;
  kind: "session" | "event" | "effect";
  seq: number | null;
  type: string | null;
  since: Date;
  ageMs: number;
  detail: string;
}

interface StuckRow {
  reason: StuckItem["reason"];
  session_key: string;
  kind: StuckItem["kind"];
  seq: number | null;
  type: string | null;
  since: Date;
  age_ms: number;
  detail: string;
}

/** Everything stuck, the longest-waiting first. */
export async function stuck(db: Queryable): Promise<StuckItem[]> {
  const rows = await db.query<StuckRow>(
    "select * from sessiond.stuck_work order by since, session_key, reason, seq nulls first",
  );
  return rows.map((r) => ({
    reason: r.reason,
    sessionKey: r.session_key,
    kind: r.kind,
    seq: r.seq,
    type: r.type,
    since: r.since,
    ageMs: r.age_ms,
    detail: r.detail,
  }));
}

/** One row of sessiond.session_summary. */
export interface SessionSummary {
  sessionKey: string;
  events: number;
  userMessages: number;
  failed: number;
  superseded: number;
  effects: number;
  openEffects: number;
  deadEffects: number;
  lastSeq: number;
  processedSeq: number;
  unprocessed: number;
  effectSeq: number;
  ackedSeq: number;
  unacked: number;
  leaseState: "free" | "held" | "expired";
  leaseOwner: string | null;
  leaseToken: number;
  leaseExpiresAt: Date | null;
  createdAt: Date;
  lastActivityAt: Date;
}

interface SummaryRow {
  session_key: string;
  events: number;
  user_messages: number;
  failed: number;
  superseded: number;
  effects: number;
  open_effects: number;
  dead_effects: number;
  last_seq: number;
  processed_seq: number;
  unprocessed: number;
  effect_seq: number;
  acked_seq: number;
  unacked: number;
  lease_state: SessionSummary["leaseState"];
  lease_owner: string | null;
  lease_token: number;
  lease_expires_at: Date | null;
  created_at: Date;
  last_activity_at: Date;
}

/** The summary of one session, or undefined when there is no such session. */
export async function sessionSummary(db: Queryable, sessionKey: string): Promise<SessionSummary | undefined> {
  const [r] = await db.query<SummaryRow>("select * from sessiond.session_summary where session_key = $1", [sessionKey]);
  if (!r) return undefined;
  return {
    sessionKey: r.session_key,
    events: r.events,
    userMessages: r.user_messages,
    failed: r.failed,
    superseded: r.superseded,
    effects: r.effects,
    openEffects: r.open_effects,
    deadEffects: r.dead_effects,
    lastSeq: r.last_seq,
    processedSeq: r.processed_seq,
    unprocessed: r.unprocessed,
    effectSeq: r.effect_seq,
    ackedSeq: r.acked_seq,
    unacked: r.unacked,
    leaseState: r.lease_state,
    leaseOwner: r.lease_owner,
    leaseToken: r.lease_token,
    leaseExpiresAt: r.lease_expires_at,
    createdAt: r.created_at,
    lastActivityAt: r.last_activity_at,
  };
}
