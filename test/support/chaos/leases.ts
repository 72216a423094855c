/**
 * Who held which lease when a process died, and when the others took over.
 *
 * Lease owners are random ids, so the suite cannot ask a process for its own.
 * It does not need to: a live owner renews its leases every third of the
 * lease time and gives them back when done, so each of its leases changes
 * long before it expires; a dead owner's leases stay exactly as they were
 * until they expire and another process claims them (with a larger fencing
 * token). `takeovers` watches the leases held at the moment of the kill until
 * every one has shown which kind it is and every dead one was taken over.
 */
import type { Queryable } from "../../../src/db/index.js";

export interface LeaseRow {
  session_key: string;
  lease_owner: string | null;
  lease_token: number;
  lease_expires_at: Date | null;
  processed_seq: number;
}

/** Every session's lease and processing cursor, now. */
export async function leaseSnapshot(db: Queryable): Promise<LeaseRow[]> {
  return db.query<LeaseRow>(
    "select session_key, lease_owner, lease_token, lease_expires_at, processed_seq from sessiond.sessions order by session_key",
  );
}

export interface Orphan {
  sessionKey: string;
  /** The dead owner's fencing token. */
  token: number;
  /** processed_seq when the owner died. */
  processedSeq: number;
  /** The token of whoever took over. */
  newToken: number;
  /** From the kill to the moment the test saw the new lease. */
  takenOverMs: number;
}

export interface Takeovers {
  deadOwners: string[];
  /** Sessions whose dead lease had nothing left to do (nobody needed to take them). */
  idle: string[];
  aliveOwners: string[];
  orphans: Orphan[];
}

/** Watches the leases held in `snapshot` (taken right after the kill at `killedAt`). */
export async function takeovers(
  db: Queryable,
  snapshot: readonly LeaseRow[],
  killedAt: number,
  ms = 30_000,
): Promise<Takeovers> {
  const held = snapshot.filter((r) => r.lease_owner !== null && r.lease_expires_at !== null);
  const alive = new Set<string>();
  /** Rows whose lease outlived its expiry unchanged: their owner is dead. */
  const expired = new Map<string, LeaseRow>();
  const taken = new Map<string, { newToken: number; at: number }>();
  const undecided = new Set(held.map((r) => r.session_key));
  const deadline = Date.now() + ms;
  for (;;) {
    const rows = await db.query<LeaseRow & { now: Date; last_seq: number }>(
      `select session_key, lease_owner, lease_token, lease_expires_at, processed_seq, last_seq, clock_timestamp() as now
         from sessiond.sessions where session_key = any($1::text[])`,
      [held.map((r) => r.session_key)],
    );
    const seenAt = Date.now();
    const current = new Map(rows.map((r) => [r.session_key, r]));
    for (const before of held) {
      const now = current.get(before.session_key);
      if (!now) continue;
      const owner = before.lease_owner as string;
      const expiresAt = (before.lease_expires_at as Date).getTime();
      const unchanged =
        now.lease_owner === owner &&
        now.lease_token === before.lease_token &&
        now.lease_expires_at?.getTime() === expiresAt;
      if (undecided.has(before.session_key)) {
        if (!unchanged && now.now.getTime() < expiresAt) {
          alive.add(owner); // renewed, released or handed on before it expired: its owner lives
          undecided.delete(before.session_key);
        } else if (now.now.getTime() >= expiresAt) {
          expired.set(before.session_key, before);
          undecided.delete(before.session_key);
        }
      }
      if (expired.has(before.session_key) && !taken.has(before.session_key) && now.lease_token > before.lease_token) {
        taken.set(before.session_key, { newToken: now.lease_token, at: seenAt });
      }
    }
    const dead = [...expired.values()].filter((r) => !alive.has(r.lease_owner as string));
    // A dead lease on a session with nothing left to do blocks nothing; nobody needs to take it.
    const idle = (r: LeaseRow) => {
      const now = current.get(r.session_key);
      return now !== undefined && now.lease_token === r.lease_token && now.processed_seq >= now.last_seq;
    };
    if (undecided.size === 0 && dead.every((r) => taken.has(r.session_key) || idle(r))) {
      return {
        deadOwners: [...new Set(dead.map((r) => r.lease_owner as string))],
        idle: dead.filter((r) => !taken.has(r.session_key)).map((r) => r.session_key),
        aliveOwners: [...alive],
        orphans: dead.flatMap((r) => {
          const t = taken.get(r.session_key);
          if (!t) return [];
          return {
            sessionKey: r.session_key,
            token: r.lease_token,
            processedSeq: r.processed_seq,
            newToken: t.newToken,
            takenOverMs: t.at - killedAt,
          };
        }),
      };
    }
    if (Date.now() > deadline) {
      throw new Error(
        `leases not settled within ${ms} ms: undecided ${[...undecided].join(", ")}; ` +
          `expired and not taken over: ${dead.filter((r) => !taken.has(r.session_key)).map((r) => r.session_key)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
