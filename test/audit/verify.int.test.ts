/**
 * sessiond.verify(): passes on a healthy database, and catches each invariant
 * broken on purpose with direct SQL. Every break happens in a transaction that
 * is rolled back, so the database stays healthy for the next case.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { VERIFY_CHECKS, verify } from "../../src/audit/index.js";
import type { Queryable } from "../../src/db/index.js";
import { describeEachDb } from "../support/db.js";
import {
  appendUser,
  claim,
  commit,
  enqueue,
  errorEffect,
  healthyConversation,
  key,
  release,
  reply,
  rolledBack,
} from "./build.js";

/** A healthy session inside `tx`, then `breakIt`; returns verify's findings. */
async function brokenWith(tx: Queryable, breakIt: (key: string) => Promise<void>, staleAfterMs?: number) {
  const k = key("broken");
  await healthyConversation(tx, k);
  expect(await verify(tx), "the session must be healthy before it is broken").toEqual([]);
  await breakIt(k);
  return { key: k, violations: await verify(tx, staleAfterMs === undefined ? {} : { staleAfterMs }) };
}

describeEachDb("sessiond.verify", (t) => {
  beforeAll(async () => {
    // A database that has seen everything verify looks at, all of it legitimate.
    await healthyConversation(t.db, key("healthy"));

    const failed = key("failed");
    await appendUser(t.db, failed, "f1", "this run fails");
    let token = await claim(t.db, failed);
    await commit(
      t.db,
      failed,
      token,
      [{ seq: 1, status: "failed", error: "Error: model unavailable" }],
      [errorEffect(1, "f1", "run_failed", "Error: model unavailable")],
    );
    await release(t.db, failed, token);

    const superseded = key("superseded");
    await appendUser(t.db, superseded, "s1", "first");
    await appendUser(t.db, superseded, "s2", "no wait, this");
    token = await claim(t.db, superseded);
    await commit(
      t.db,
      superseded,
      token,
      [{ seq: 1, status: "superseded" }, { seq: 2 }],
      [errorEffect(1, "s1", "superseded", "a newer message interrupted this one"), reply(2, "s2", "ok")],
    );
    await release(t.db, superseded, token);

    const interrupted = key("interrupt");
    await appendUser(t.db, interrupted, "i1", "book a flight");
    token = await claim(t.db, interrupted);
    await commit(
      t.db,
      interrupted,
      token,
      [{ seq: 1 }],
      [{ type: "interrupt", eventSeq: 1, payload: { requestId: "i1", value: { question: "Approve?" } } }],
    );
    // A live lease and an unprocessed event are normal, not a violation.
    await appendUser(t.db, interrupted, "i2", "yes");

    const handler = key("handler");
    await enqueue(t.db, handler, [{ type: "audit.note", delivery: "handler" }]);
    const [claimed] = await t.db.query<{ seq: number }>(
      "select seq from sessiond.claim_effects('runner-1', array['audit.note'], 1, 60000)",
    );
    await t.db.query("select sessiond.complete_effect($1, $2, 'runner-1')", [handler, claimed?.seq]);
  });

  it("finds nothing wrong with a healthy database", async () => {
    expect(await verify(t.db)).toEqual([]);
    expect(await verify(t.db, { staleAfterMs: 0 })).toEqual([]);
  });

  it("reports event seq gaps", async () => {
    const { key: k, violations } = await rolledBack(t.db, (tx) =>
      brokenWith(tx, async (k) => {
        await appendUser(tx, k, "r3", "three");
        await appendUser(tx, k, "r4", "four");
        await tx.query("delete from sessiond.events where session_key = $1 and seq = 3", [k]);
      }),
    );
    expect(violations).toEqual([
      { check: "event_seq_gap_free", sessionKey: k, detail: "last_seq 4, 3 event(s), highest seq 4; missing: 3" },
    ]);
  });

  it("reports events beyond last_seq", async () => {
    const { key: k, violations } = await rolledBack(t.db, (tx) =>
      brokenWith(tx, async (k) => {
        await tx.query(
          "insert into sessiond.events (session_key, seq, type, request_id) values ($1, 3, 'user_message', 'sneaky')",
          [k],
        );
      }),
    );
    expect(violations).toEqual([
      { check: "event_seq_gap_free", sessionKey: k, detail: "last_seq 2, 3 event(s), highest seq 3; missing: none" },
    ]);
  });

  it("reports processed_seq past last_seq", async () => {
    const { key: k, violations } = await rolledBack(t.db, (tx) =>
      brokenWith(tx, async (k) => {
        await tx.query("alter table sessiond.sessions drop constraint processed_not_past_last");
        await tx.query("update sessiond.sessions set processed_seq = last_seq + 1 where session_key = $1", [k]);
      }),
    );
    expect(violations).toEqual([
      { check: "processed_not_past_last", sessionKey: k, detail: "processed_seq 3 is past last_seq 2" },
    ]);
  });

  describe("one reply per user event", () => {
    it("reports a processed user event with two replies", async () => {
      const { key: k, violations } = await rolledBack(t.db, (tx) =>
        brokenWith(tx, async (k) => {
          // A dedupe key of its own: the default one would make this a duplicate of the first reply.
          await enqueue(tx, k, [{ ...reply(2, "r2", "and a second reply"), dedupeKey: "second-reply" }]);
        }),
      );
      expect(violations).toEqual([
        {
          check: "one_reply_per_user_event",
          sessionKey: k,
          detail: "user event 2 is processed with 2 final send_message/interrupt effect(s); expected exactly 1",
        },
      ]);
    });

    it("accepts several replies to one event when exactly one is final", async () => {
      const { violations } = await rolledBack(t.db, (tx) =>
        brokenWith(tx, async (k) => {
          await appendUser(tx, k, "r3", "talk twice");
          const token = await claim(tx, k);
          const first = reply(3, "r3", "part one");
          const second = reply(3, "r3", "part two");
          await commit(
            tx,
            k,
            token,
            [{ seq: 3 }],
            [
              { ...first, payload: { ...first.payload, final: false }, dedupeKey: "part-1" },
              { ...second, dedupeKey: "part-2" },
            ],
          );
          await release(tx, k, token);
        }),
      );
      expect(violations).toEqual([]);
    });

    it("reports a processed user event with no reply", async () => {
      const { key: k, violations } = await rolledBack(t.db, (tx) =>
        brokenWith(tx, async (k) => {
          await appendUser(tx, k, "r3", "hello?");
          const token = await claim(tx, k);
          await commit(tx, k, token, [{ seq: 3 }], []);
          await release(tx, k, token);
        }),
      );
      expect(violations).toEqual([
        {
          check: "one_reply_per_user_event",
          sessionKey: k,
          detail: "user event 3 is processed with 0 final send_message/interrupt effect(s); expected exactly 1",
        },
      ]);
    });

    it("reports a failed user event without an error effect", async () => {
      const { key: k, violations } = await rolledBack(t.db, (tx) =>
        brokenWith(tx, async (k) => {
          await appendUser(tx, k, "r3", "this fails silently");
          const token = await claim(tx, k);
          await commit(tx, k, token, [{ seq: 3, status: "failed", error: "boom" }], []);
          await release(tx, k, token);
        }),
      );
      expect(violations).toEqual([
        {
          check: "one_reply_per_user_event",
          sessionKey: k,
          detail: "user event 3 is failed with 0 error effect(s); expected exactly 1",
        },
      ]);
    });
  });

  it("reports a processed event without an outcome", async () => {
    const { key: k, violations } = await rolledBack(t.db, (tx) =>
      brokenWith(tx, async (k) => {
        await tx.query("delete from sessiond.event_outcomes where session_key = $1 and seq = 1", [k]);
      }),
    );
    expect(violations).toEqual([
      {
        check: "one_outcome_per_processed_event",
        sessionKey: k,
        detail: "event 1 is at or below processed_seq 2 but has 0 outcome(s)",
      },
    ]);
  });

  it("reports an outcome for an event past processed_seq", async () => {
    const { key: k, violations } = await rolledBack(t.db, (tx) =>
      brokenWith(tx, async (k) => {
        await tx.query("update sessiond.sessions set processed_seq = 1 where session_key = $1", [k]);
      }),
    );
    expect(violations).toEqual([
      {
        check: "one_outcome_per_processed_event",
        sessionKey: k,
        detail: "event 2 has an outcome (processed) but is past processed_seq 1",
      },
    ]);
  });

  it("reports duplicate dedupe keys", async () => {
    const { key: k, violations } = await rolledBack(t.db, (tx) =>
      brokenWith(tx, async (k) => {
        await tx.query("alter table sessiond.effects drop constraint effects_dedupe_key_unique");
        await tx.query(
          `insert into sessiond.effects (session_key, seq, type, delivery, dedupe_key)
           select f.session_key, 3, 'audit.note', 'handler', f.dedupe_key
             from sessiond.effects f where f.session_key = $1 and f.seq = 1`,
          [k],
        );
        await tx.query("update sessiond.sessions set effect_seq = 3 where session_key = $1", [k]);
      }),
    );
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({ check: "unique_dedupe_key", sessionKey: k });
    expect(violations[0]?.detail).toMatch(/^dedupe key .+ is used by effects 1, 3$/);
  });

  it("reports effect seq gaps", async () => {
    const { key: k, violations } = await rolledBack(t.db, (tx) =>
      brokenWith(tx, async (k) => {
        await enqueue(tx, k, [
          { type: "audit.note", delivery: "handler" },
          { type: "audit.note", delivery: "handler" },
        ]);
        await tx.query("delete from sessiond.effects where session_key = $1 and seq = 3", [k]);
      }),
    );
    expect(violations).toEqual([
      {
        check: "effect_seq_gap_free",
        sessionKey: k,
        detail: "effect_seq 4, 3 effect(s), highest seq 4; missing: 3",
      },
    ]);
  });

  it("reports acked_seq past the effect head", async () => {
    const { key: k, violations } = await rolledBack(t.db, (tx) =>
      brokenWith(tx, async (k) => {
        await tx.query("alter table sessiond.sessions drop constraint acked_not_past_head");
        await tx.query("update sessiond.sessions set acked_seq = effect_seq + 5 where session_key = $1", [k]);
      }),
    );
    expect(violations).toEqual([
      { check: "acked_not_past_head", sessionKey: k, detail: "acked_seq 7 is past effect_seq 2" },
    ]);
  });

  it("reports a lease expired longer than stale_after on a session with work", async () => {
    const found = await rolledBack(t.db, async (tx) => {
      const { key: k, violations } = await brokenWith(tx, async (k) => {
        await appendUser(tx, k, "r3", "anyone there?");
        await claim(tx, k);
        await tx.query(
          "update sessiond.sessions set lease_expires_at = now() - interval '1 minute' where session_key = $1",
          [k],
        );
      });
      return { key: k, violations, lenient: await verify(tx, { staleAfterMs: 120_000 }) };
    });
    expect(found.violations).toHaveLength(1);
    expect(found.violations[0]).toMatchObject({ check: "lease_not_stale", sessionKey: found.key });
    expect(found.violations[0]?.detail).toMatch(
      /^lease of audit-test \(token \d+\) expired at .+, 60(\.0)? s ago, with 1 unprocessed event\(s\)$/,
    );
    // Expired for a minute is within a two-minute allowance.
    expect(found.lenient).toEqual([]);
  });

  it("reports an effect claim expired longer than stale_after", async () => {
    const found = await rolledBack(t.db, async (tx) => {
      const { key: k, violations } = await brokenWith(tx, async (k) => {
        await enqueue(tx, k, [{ type: "audit.note", delivery: "handler" }]);
        await tx.query("select * from sessiond.claim_effects('runner-2', array['audit.note'], 10, 60000)");
        await tx.query(
          "update sessiond.effects set claim_expires_at = now() - interval '5 minutes' where session_key = $1 and seq = 3",
          [k],
        );
      });
      return { key: k, violations, lenient: await verify(tx, { staleAfterMs: 600_000 }) };
    });
    expect(found.violations).toHaveLength(1);
    expect(found.violations[0]).toMatchObject({ check: "claim_not_stale", sessionKey: found.key });
    expect(found.violations[0]?.detail).toMatch(
      /^effect 3 \(audit\.note\) executing: claim of runner-2 expired at .+, 300(\.0)? s ago$/,
    );
    expect(found.lenient).toEqual([]);
  });

  it("names only checks it declares", async () => {
    const rows = await rolledBack(t.db, async (tx) => {
      const k = key("many");
      await healthyConversation(tx, k);
      await tx.query("alter table sessiond.sessions drop constraint acked_not_past_head");
      await tx.query("update sessiond.sessions set acked_seq = 99, processed_seq = 0 where session_key = $1", [k]);
      await tx.query("delete from sessiond.events where session_key = $1 and seq = 1", [k]);
      return verify(tx);
    });
    expect(new Set(rows.map((r) => r.check))).toEqual(
      new Set(["acked_not_past_head", "event_seq_gap_free", "one_outcome_per_processed_event"]),
    );
    for (const row of rows) expect(VERIFY_CHECKS).toContain(row.check);
  });
});
