/**
 * Builds sessions for the audit tests through sessiond's own SQL functions
 * (append_event, claim_session, commit_run, ack_effects, release_session),
 * exactly as the processor and the server would, without running either.
 */
import type { Db, Queryable } from "../../src/db/index.js";

export const OWNER = "audit-test";

export async function appendUser(db: Queryable, key: string, requestId: string, text: string): Promise<number> {
  const [row] = await db.query<{ seq: number }>(
    "select seq from sessiond.append_event($1, 'user_message', jsonb_build_object('text', $2::text), $3)",
    [key, text, requestId],
  );
  if (!row) throw new Error("append_event returned nothing");
  return row.seq;
}

export async function claim(db: Queryable, key: string, ttlMs = 60_000): Promise<number> {
  const [row] = await db.query<{ token: number | null }>("select sessiond.claim_session($1, $2, $3) as token", [
    key,
    OWNER,
    ttlMs,
  ]);
  if (row?.token == null) throw new Error(`could not claim ${key}`);
  return row.token;
}

export interface Outcome {
  seq: number;
  status?: "processed" | "failed" | "superseded";
  error?: string;
}

export interface Effect {
  type: string;
  eventSeq?: number;
  delivery?: "client" | "handler";
  payload?: Record<string, unknown>;
  availableAt?: string;
  dedupeKey?: string;
}

function effectJson(e: Effect) {
  return {
    type: e.type,
    delivery: e.delivery ?? "client",
    payload: e.payload ?? {},
    ...(e.eventSeq !== undefined ? { event_seq: e.eventSeq } : {}),
    ...(e.availableAt ? { available_at: e.availableAt } : {}),
    ...(e.dedupeKey ? { dedupe_key: e.dedupeKey } : {}),
  };
}

/** commit_run with these outcomes and effects under `token`; returns the new effects' seqs. */
export async function commit(
  db: Queryable,
  key: string,
  token: number,
  outcomes: Outcome[],
  effects: Effect[],
): Promise<number[]> {
  const rows = await db.query<{ seq: number }>("select seq from sessiond.commit_run($1, $2, $3, $4)", [
    key,
    token,
    outcomes.map((o) => ({
      seq: o.seq,
      status: o.status ?? "processed",
      ...(o.error ? { error: o.error } : {}),
      started_at: new Date().toISOString(),
    })),
    effects.map(effectJson),
  ]);
  return rows.map((r) => r.seq);
}

export async function enqueue(db: Queryable, key: string, effects: Effect[]): Promise<number[]> {
  const rows = await db.query<{ seq: number }>("select seq from sessiond.enqueue_effects($1, $2)", [
    key,
    effects.map(effectJson),
  ]);
  return rows.map((r) => r.seq);
}

export async function ack(db: Queryable, key: string, upTo: number): Promise<void> {
  await db.query("select sessiond.ack_effects($1, $2)", [key, upTo]);
}

export async function release(db: Queryable, key: string, token: number): Promise<void> {
  await db.query("select sessiond.release_session($1, $2, $3)", [key, OWNER, token]);
}

export function reply(eventSeq: number, requestId: string, content: string): Effect {
  return {
    type: "send_message",
    eventSeq,
    payload: { requestId, role: "assistant", content, final: true },
  };
}

export function errorEffect(eventSeq: number, requestId: string, code: string, message: string): Effect {
  return { type: "error", eventSeq, payload: { requestId, code, message } };
}

/**
 * A healthy session of two exchanges, both replies acked, the lease given back:
 * events 1..2 processed, effects 1..2 (send_message), acked_seq 2.
 */
export async function healthyConversation(db: Queryable, key: string): Promise<void> {
  await appendUser(db, key, "r1", "hello there");
  let token = await claim(db, key);
  await commit(db, key, token, [{ seq: 1 }], [reply(1, "r1", "Hi! How can I help?")]);
  await release(db, key, token);
  await ack(db, key, 1);
  await appendUser(db, key, "r2", "what is\nsessiond?");
  token = await claim(db, key);
  await commit(db, key, token, [{ seq: 2 }], [reply(2, "r2", "A durable session runtime.")]);
  await release(db, key, token);
  await ack(db, key, 2);
}

class Rollback extends Error {}

/** Runs `fn` in a transaction that is always rolled back, returning what `fn` returned. */
export async function rolledBack<T>(db: Db, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  let result: { value: T } | undefined;
  await db
    .transaction(async (tx) => {
      result = { value: await fn(tx) };
      throw new Rollback();
    })
    .catch((error: unknown) => {
      if (!(error instanceof Rollback)) throw error;
    });
  if (!result) throw new Error("the transaction did not run");
  return result.value;
}

let counter = 0;
/** A session key unique to this test process. */
export function key(prefix = "audit"): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}
