import type { Queryable } from "../../src/db/index.js";

let counter = 0;
/** A session key unique to this test process. */
export function uniqueKey(prefix = "s"): string {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

export interface ReplyRow {
  seq: number;
  event_seq: number;
  type: string;
  payload: { requestId?: string; content?: string; code?: string; value?: unknown };
  status: string;
}

/** The client-delivered effects of a session, in seq order. */
export async function clientEffects(db: Queryable, sessionKey: string): Promise<ReplyRow[]> {
  return db.query<ReplyRow>(
    "select seq, event_seq, type, payload, status from sessiond.effects where session_key = $1 and delivery = 'client' order by seq",
    [sessionKey],
  );
}

/** processed_seq and last_seq of a session. */
export async function cursor(db: Queryable, sessionKey: string) {
  const [row] = await db.query<{ processed_seq: number; last_seq: number }>(
    "select processed_seq, last_seq from sessiond.sessions where session_key = $1",
    [sessionKey],
  );
  return row;
}

/** Resolves when every appended event of the session has an outcome. */
export async function isCaughtUp(db: Queryable, sessionKey: string, lastSeq: number) {
  const row = await cursor(db, sessionKey);
  return row !== undefined && row.processed_seq >= lastSeq && row.last_seq === row.processed_seq;
}
