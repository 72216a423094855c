/**
 * Operator functions: thin calls of sessiond.retry_effect and
 * sessiond.list_effects (the `sessiond effects retry|list` commands).
 */
import type { Queryable } from "../db/index.js";

export const EFFECT_STATUSES = ["pending", "executing", "completed", "failed", "dead"] as const;
export type EffectStatus = (typeof EFFECT_STATUSES)[number];

/** An effect row as an operator sees it. */
export interface EffectSummary {
  id: string;
  sessionKey: string;
  seq: number;
  eventSeq: number | null;
  type: string;
  delivery: "client" | "handler";
  ordered: boolean;
  payload: Record<string, unknown>;
  dedupeKey: string;
  status: EffectStatus;
  attempts: number;
  maxAttempts: number;
  availableAt: Date;
  lastError: string | null;
  claimedBy: string | null;
  claimExpiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  completedAt: Date | null;
}

interface EffectsRow {
  id: string;
  session_key: string;
  seq: number;
  event_seq: number | null;
  type: string;
  delivery: "client" | "handler";
  ordered: boolean;
  payload: Record<string, unknown>;
  dedupe_key: string;
  status: EffectStatus;
  attempts: number;
  max_attempts: number;
  available_at: Date;
  last_error: string | null;
  claimed_by: string | null;
  claim_expires_at: Date | null;
  created_at: Date;
  updated_at: Date;
  completed_at: Date | null;
}

function toSummary(row: EffectsRow): EffectSummary {
  return {
    id: row.id,
    sessionKey: row.session_key,
    seq: row.seq,
    eventSeq: row.event_seq,
    type: row.type,
    delivery: row.delivery,
    ordered: row.ordered,
    payload: row.payload,
    dedupeKey: row.dedupe_key,
    status: row.status,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    availableAt: row.available_at,
    lastError: row.last_error,
    claimedBy: row.claimed_by,
    claimExpiresAt: row.claim_expires_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
  };
}

/**
 * Makes a dead (or failed) effect pending again with its attempts reset and
 * wakes the runners; see sessiond.retry_effect. Rejects (DbError 22023) when
 * no dead or failed effect has this id.
 */
export async function retryEffect(db: Queryable, id: string): Promise<EffectSummary> {
  const [row] = await db.query<EffectsRow>("select * from sessiond.retry_effect($1)", [id]);
  if (!row) throw new Error("retry_effect returned no row");
  return toSummary(row);
}

/** Effects by status (all when absent), most recently changed first; see sessiond.list_effects. */
export async function listEffects(
  db: Queryable,
  options: { status?: EffectStatus | undefined; limit?: number | undefined } = {},
): Promise<EffectSummary[]> {
  const rows = await db.query<EffectsRow>("select * from sessiond.list_effects($1, $2)", [
    options.status ?? null,
    options.limit ?? 100,
  ]);
  return rows.map(toSummary);
}
