/** Append and read events: thin calls of the SQL functions in migrations/. */
import type { Queryable } from "../db/index.js";

export interface SessionEvent {
  id: string;
  sessionKey: string;
  seq: number;
  type: string;
  payload: Record<string, unknown>;
  requestId: string;
  createdAt: Date;
}

export interface AppendedEvent extends SessionEvent {
  /** True when (sessionKey, requestId) was appended before: nothing changed. */
  duplicate: boolean;
}

export interface AppendEventInput {
  sessionKey: string;
  type: string;
  payload: Record<string, unknown>;
  requestId: string;
  /** Refuse (SQLSTATE 55P03) when the session has unprocessed events. */
  onlyIfIdle?: boolean;
}

interface EventRow {
  id: string;
  session_key: string;
  seq: number;
  type: string;
  payload: Record<string, unknown>;
  request_id: string;
  created_at: Date;
  duplicate?: boolean;
}

function toEvent(row: EventRow): SessionEvent {
  return {
    id: row.id,
    sessionKey: row.session_key,
    seq: row.seq,
    type: row.type,
    payload: row.payload,
    requestId: row.request_id,
    createdAt: row.created_at,
  };
}

/** Appends an event (idempotent by requestId); see sessiond.append_event. */
export async function appendEvent(db: Queryable, input: AppendEventInput): Promise<AppendedEvent> {
  const [row] = await db.query<EventRow & { duplicate: boolean }>(
    "select * from sessiond.append_event($1, $2, $3, $4, $5)",
    [input.sessionKey, input.type, input.payload, input.requestId, input.onlyIfIdle ?? false],
  );
  if (!row) throw new Error("append_event returned no row");
  return { ...toEvent(row), duplicate: row.duplicate };
}

/** The events of a session with seq > afterSeq, in order. */
export async function readEvents(
  db: Queryable,
  sessionKey: string,
  afterSeq = 0,
  limit = 1000,
): Promise<SessionEvent[]> {
  const rows = await db.query<EventRow>(
    "select * from sessiond.events where session_key = $1 and seq > $2 order by seq limit $3",
    [sessionKey, afterSeq, limit],
  );
  return rows.map(toEvent);
}

/** One event by seq, or undefined. */
export async function readEvent(db: Queryable, sessionKey: string, seq: number): Promise<SessionEvent | undefined> {
  const [row] = await db.query<EventRow>("select * from sessiond.events where session_key = $1 and seq = $2", [
    sessionKey,
    seq,
  ]);
  return row ? toEvent(row) : undefined;
}
