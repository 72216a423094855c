/** Shared pieces of the effects tests: enqueueing, reading rows, waiting for runner outcomes. */
import type { Queryable } from "../../src/db/index.js";
import type { EffectOutcome } from "../../src/effects/index.js";

let keys = 0;
/** A session key unique to this test process. */
export function sessionKey(prefix = "fx"): string {
  keys += 1;
  return `${prefix}-${process.pid}-${keys}`;
}

export interface EnqueueItem {
  type: string;
  payload?: Record<string, unknown>;
  ordered?: boolean;
  max_attempts?: number;
  dedupe_key?: string;
}

/** Enqueues handler effects with sessiond.enqueue_effects; returns their ids and seqs in order. */
export async function enqueue(db: Queryable, key: string, items: EnqueueItem[]) {
  return db.query<{ id: string; seq: number; dedupe_key: string }>(
    "select id, seq, dedupe_key from sessiond.enqueue_effects($1, $2)",
    [key, items.map((item) => ({ payload: {}, ...item }))],
  );
}

export interface EffectState {
  status: string;
  attempts: number;
  last_error: string | null;
  claimed_by: string | null;
}

export async function effectState(db: Queryable, id: string): Promise<EffectState> {
  const [row] = await db.query<EffectState>(
    "select status, attempts, last_error, claimed_by from sessiond.effects where id = $1",
    [id],
  );
  if (!row) throw new Error(`no effect ${id}`);
  return row;
}

/**
 * Records a runner's outcomes; `waitFor` resolves with the first outcome (past
 * or future) that matches, or rejects after `ms`.
 */
export function outcomeRecorder() {
  const outcomes: EffectOutcome[] = [];
  const waiters = new Set<{ match: (o: EffectOutcome) => boolean; resolve: (o: EffectOutcome) => void }>();
  return {
    outcomes,
    onOutcome(outcome: EffectOutcome) {
      outcomes.push(outcome);
      for (const waiter of waiters) {
        if (waiter.match(outcome)) {
          waiters.delete(waiter);
          waiter.resolve(outcome);
        }
      }
    },
    waitFor(match: (o: EffectOutcome) => boolean, what: string, ms = 10_000): Promise<EffectOutcome> {
      const seen = outcomes.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = {
          match,
          resolve: (o: EffectOutcome) => {
            clearTimeout(timer);
            resolve(o);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no outcome "${what}" within ${ms} ms; saw ${JSON.stringify(outcomes.map(summary))}`));
        }, ms);
        waiters.add(waiter);
      });
    },
  };
}

function summary(o: EffectOutcome) {
  return { id: o.effect.id, attempt: o.effect.attempts, status: o.status };
}

/** A promise with its resolve function, to hold a handler until the test lets it go. */
export function gate<T = void>() {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Resolves when `count()` reaches `n` (checked on every `bump`), or rejects after `ms`. */
export function counter(ms = 10_000) {
  let value = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  return {
    get value() {
      return value;
    },
    bump() {
      value += 1;
      for (const w of [...waiters]) {
        if (value >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    reach(n: number, what: string): Promise<void> {
      if (value >= n) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${what}: reached ${value}, not ${n}, within ${ms} ms`)), ms);
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
  };
}

/** Re-checks `check` until it returns something other than undefined/false, or fails after `ms`. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false>,
  what: string,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
