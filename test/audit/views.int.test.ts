/**
 * The audit views on sessions built with sessiond's own SQL functions. States
 * that are not "healthy" (stuck work) are built in rolled-back transactions.
 */
import { describe, expect, it } from "vitest";
import { sessionSummary, stuck, timeline } from "../../src/audit/index.js";
import type { Queryable } from "../../src/db/index.js";
import { describeEachDb } from "../support/db.js";
import {
  ack,
  appendUser,
  claim,
  commit,
  enqueue,
  errorEffect,
  healthyConversation,
  key,
  OWNER,
  release,
  reply,
  rolledBack,
} from "./build.js";

/** Event 1 answered and acked, event 2 failed (error effect, not acked), event 3 waiting; one handler effect. */
async function mixedSession(db: Queryable, k: string) {
  await appendUser(db, k, "r1", "hello");
  let token = await claim(db, k);
  await commit(db, k, token, [{ seq: 1 }], [reply(1, "r1", "Hi!\nHow can I help?")]);
  await release(db, k, token);
  await ack(db, k, 1);
  await appendUser(db, k, "r2", "break please");
  token = await claim(db, k);
  await commit(
    db,
    k,
    token,
    [{ seq: 2, status: "failed", error: "Error: model unavailable" }],
    [
      errorEffect(2, "r2", "run_failed", "Error: model unavailable"),
      { type: "audit.note", delivery: "handler", eventSeq: 2 },
    ],
  );
  await release(db, k, token);
  await appendUser(db, k, "r3", "still there?");
}

function ms(value: number | null): number {
  expect(value).not.toBeNull();
  expect(Number.isFinite(value)).toBe(true);
  return value as number;
}

describeEachDb("audit views", (t) => {
  describe("session_timeline", () => {
    it("interleaves events and effects in order with statuses, summaries and timings", async () => {
      const k = key("timeline");
      await mixedSession(t.db, k);
      const rows = await timeline(t.db, k);
      expect(rows.map((r) => [r.kind, r.seq, r.eventSeq, r.type, r.status, r.requestId, r.delivery])).toEqual([
        ["event", 1, 1, "user_message", "processed", "r1", null],
        ["effect", 1, 1, "send_message", "completed", "r1", "client"],
        ["event", 2, 2, "user_message", "failed", "r2", null],
        ["effect", 2, 2, "error", "pending", "r2", "client"],
        ["effect", 3, 2, "audit.note", "pending", null, "handler"],
        ["event", 3, 3, "user_message", "pending", "r3", null],
      ]);
      expect(rows.map((r) => r.summary)).toEqual([
        "hello",
        "Hi! How can I help?",
        "break please",
        "run_failed: Error: model unavailable",
        "{}",
        "still there?",
      ]);
      const [e1, f1, e2, f2, , e3] = rows;
      expect(e2?.error).toBe("Error: model unavailable");
      expect(ms(e1?.latencyMs ?? null)).toBeGreaterThanOrEqual(0);
      expect(e1?.startedAt).toBeInstanceOf(Date);
      expect(e1?.runMs).not.toBeNull();
      expect(f1?.finishedAt).toBeInstanceOf(Date);
      expect(ms(f1?.latencyMs ?? null)).toBeGreaterThanOrEqual(0);
      expect(f2?.finishedAt).toBeNull();
      expect(f2?.latencyMs).toBeNull();
      expect(e3?.finishedAt).toBeNull();
      for (let i = 1; i < rows.length; i++) {
        expect((rows[i]?.at.getTime() ?? 0) >= (rows[i - 1]?.at.getTime() ?? 0)).toBe(true);
      }
    });

    it("calls an event behind processed_seq without an outcome no_outcome", async () => {
      const status = await rolledBack(t.db, async (tx) => {
        const k = key("no-outcome");
        await healthyConversation(tx, k);
        await tx.query("delete from sessiond.event_outcomes where session_key = $1 and seq = 2", [k]);
        return (await timeline(tx, k)).filter((r) => r.kind === "event").map((r) => r.status);
      });
      expect(status).toEqual(["processed", "no_outcome"]);
    });

    it("truncates long payloads to one line of 120 characters", async () => {
      const k = key("long");
      await appendUser(t.db, k, "r1", `${"word ".repeat(50)}\n\nend`);
      const [row] = await timeline(t.db, k);
      expect(row?.summary).toHaveLength(120);
      expect(row?.summary.endsWith("…")).toBe(true);
      expect(row?.summary).not.toMatch(/\n|\s{2}/);
    });
  });

  describe("effect_backlog", () => {
    it("counts open effects by status and type with the oldest age", async () => {
      const type = `audit.backlog${process.pid}`;
      const a = key("backlog");
      const b = key("backlog");
      await enqueue(t.db, a, [
        { type, delivery: "handler" },
        { type, delivery: "handler" },
      ]);
      await enqueue(t.db, b, [{ type, delivery: "handler" }]);
      const [claimed] = await t.db.query<{ seq: number; session_key: string }>(
        "select seq, session_key from sessiond.claim_effects('runner-b', array[$1], 1, 60000)",
        [type],
      );
      await t.db.query("select sessiond.fail_effect($1, $2, 'runner-b', 'HTTP 503')", [
        claimed?.session_key,
        claimed?.seq,
      ]);
      await enqueue(t.db, b, [{ type, delivery: "handler", dedupeKey: "done" }]);
      // The failed one waits out its backoff, so this claims one of the pending ones; it completes.
      const [done] = await t.db.query<{ seq: number; session_key: string }>(
        "select seq, session_key from sessiond.claim_effects('runner-c', array[$1], 1, 60000)",
        [type],
      );
      await t.db.query("select sessiond.complete_effect($1, $2, 'runner-c')", [done?.session_key, done?.seq]);

      const rows = await t.db.query<{
        status: string;
        delivery: string;
        effects: number;
        sessions: number;
        oldest_at: Date;
        oldest_age_ms: number;
        next_due_at: Date | null;
        max_attempts_used: number;
      }>(
        "select status, delivery, effects, sessions, oldest_at, oldest_age_ms, next_due_at, max_attempts_used from sessiond.effect_backlog where type = $1 order by status",
        [type],
      );
      // 4 enqueued: one failed, one completed (not in the backlog), two pending.
      expect(rows.map((r) => [r.status, r.delivery, r.effects, r.max_attempts_used])).toEqual([
        ["failed", "handler", 1, 1],
        ["pending", "handler", 2, 0],
      ]);
      const pending = rows[1];
      expect(pending?.sessions).toBeGreaterThanOrEqual(1);
      expect(pending?.oldest_at).toBeInstanceOf(Date);
      expect(ms(pending?.oldest_age_ms ?? null)).toBeGreaterThanOrEqual(0);
      expect(pending?.next_due_at).toBeInstanceOf(Date);
      const [all] = await t.db.query<{ n: number }>(
        "select count(*)::int as n from sessiond.effects where type = $1 and status <> 'completed'",
        [type],
      );
      expect(rows.reduce((sum, r) => sum + r.effects, 0)).toBe(all?.n);
    });
  });

  describe("stuck_work", () => {
    it("lists expired leases, waiting events, expired claims, overdue, failed and dead effects", async () => {
      const found = await rolledBack(t.db, async (tx) => {
        // Anything waiting at all counts as stuck here, so the waiting event shows up.
        await tx.query("set local sessiond.stuck_after = '0 seconds'");
        const k = key("stuck");
        await appendUser(tx, k, "r1", "hello");
        await claim(tx, k);
        await tx.query(
          "update sessiond.sessions set lease_expires_at = now() - interval '10 seconds' where session_key = $1",
          [k],
        );
        await enqueue(tx, k, [
          { type: "audit.claimed", delivery: "handler" },
          { type: "audit.failing", delivery: "handler" },
          { type: "audit.doomed", delivery: "handler" },
          { type: "audit.waiting", delivery: "handler", availableAt: new Date(Date.now() - 3_600_000).toISOString() },
          { type: "audit.client", delivery: "client" },
        ]);
        await tx.query(
          "select * from sessiond.claim_effects('runner-s', array['audit.claimed', 'audit.failing', 'audit.doomed'], 10, 60000)",
        );
        await tx.query(
          "update sessiond.effects set claim_expires_at = now() - interval '2 seconds' where session_key = $1 and seq = 1",
          [k],
        );
        await tx.query("select sessiond.fail_effect($1, 2, 'runner-s', 'HTTP 503')", [k]);
        await tx.query("select sessiond.fail_effect($1, 3, 'runner-s', 'HTTP 400', true)", [k]);
        return { key: k, items: (await stuck(tx)).filter((s) => s.sessionKey === k) };
      });
      const byReason = new Map(found.items.map((s) => [s.reason, s]));
      expect([...byReason.keys()].sort()).toEqual([
        "claim_expired",
        "effect_dead",
        "effect_failed",
        "effect_overdue",
        "lease_expired",
        "unprocessed_events",
      ]);
      expect(found.items).toHaveLength(6);
      expect(byReason.get("lease_expired")).toMatchObject({ kind: "session", seq: null });
      expect(byReason.get("lease_expired")?.detail).toMatch(
        new RegExp(
          `^lease of ${OWNER} \\(token \\d+\\) expired with 1 unprocessed event\\(s\\) \\(processed 0 of 1\\)$`,
        ),
      );
      expect(byReason.get("lease_expired")?.ageMs).toBe(10_000);
      expect(byReason.get("unprocessed_events")).toMatchObject({ kind: "event", seq: 1, type: "user_message" });
      expect(byReason.get("unprocessed_events")?.detail).toMatch(/lease: expired/);
      expect(byReason.get("claim_expired")).toMatchObject({ kind: "effect", seq: 1, type: "audit.claimed" });
      expect(byReason.get("claim_expired")?.detail).toBe("executing: claim of runner-s (attempt 1 of 10) expired");
      expect(byReason.get("effect_failed")).toMatchObject({ seq: 2, type: "audit.failing" });
      expect(byReason.get("effect_failed")?.detail).toMatch(/^attempt 1 of 10 failed, next at .+: HTTP 503$/);
      expect(byReason.get("effect_dead")).toMatchObject({ seq: 3, type: "audit.doomed" });
      expect(byReason.get("effect_dead")?.detail).toMatch(
        /^dead after 1 attempt\(s\): HTTP 400 \(retry: sessiond effects retry [0-9a-f-]{36}\)$/,
      );
      expect(byReason.get("effect_overdue")).toMatchObject({ seq: 4, type: "audit.waiting" });
      // Sorted by how long each has waited.
      const since = found.items.map((s) => s.since.getTime());
      expect([...since].sort((a, b) => a - b)).toEqual(since);
    });

    it("lists nothing for a healthy session, and a fresh event only after stuck_after", async () => {
      const found = await rolledBack(t.db, async (tx) => {
        const k = key("calm");
        await healthyConversation(tx, k);
        await appendUser(tx, k, "r3", "just arrived");
        const before = (await stuck(tx)).filter((s) => s.sessionKey === k);
        await tx.query("set local sessiond.stuck_after = '0 seconds'");
        const after = (await stuck(tx)).filter((s) => s.sessionKey === k);
        return { before, after };
      });
      expect(found.before).toEqual([]);
      expect(found.after.map((s) => [s.reason, s.seq])).toEqual([["unprocessed_events", 3]]);
      expect(found.after[0]?.detail).toMatch(/lease: none$/);
    });
  });

  describe("message_latency", () => {
    it("follows each user message from append to processed to acked", async () => {
      const k = key("latency");
      await mixedSession(t.db, k);
      const rows = await t.db.query<{
        seq: number;
        request_id: string;
        status: string;
        appended_at: Date;
        started_at: Date | null;
        processed_at: Date | null;
        reply_seq: number | null;
        reply_type: string | null;
        acked: boolean;
        acked_at: Date | null;
        queue_ms: number | null;
        run_ms: number | null;
        processed_ms: number | null;
        ack_ms: number | null;
        total_ms: number | null;
      }>("select * from sessiond.message_latency where session_key = $1 order by seq", [k]);
      expect(rows.map((r) => [r.seq, r.request_id, r.status, r.reply_seq, r.reply_type, r.acked])).toEqual([
        [1, "r1", "processed", 1, "send_message", true],
        [2, "r2", "failed", 2, "error", false],
        [3, "r3", "pending", null, null, false],
      ]);
      const [answered, failed, waiting] = rows;
      expect(answered?.acked_at).toBeInstanceOf(Date);
      expect(answered?.started_at).toBeInstanceOf(Date);
      expect(ms(answered?.processed_ms ?? null)).toBeGreaterThanOrEqual(0);
      expect(ms(answered?.ack_ms ?? null)).toBeGreaterThanOrEqual(0);
      expect(ms(answered?.total_ms ?? null)).toBeCloseTo(
        (answered?.processed_ms ?? Number.NaN) + (answered?.ack_ms ?? Number.NaN),
        0,
      );
      expect(answered?.queue_ms).not.toBeNull();
      expect(answered?.run_ms).not.toBeNull();
      expect(failed?.processed_at).toBeInstanceOf(Date);
      expect(failed?.acked_at).toBeNull();
      expect(failed?.ack_ms).toBeNull();
      expect(waiting?.processed_at).toBeNull();
      expect(waiting?.total_ms).toBeNull();

      await ack(t.db, k, 2);
      const [after] = await t.db.query<{ acked: boolean; acked_at: Date | null }>(
        "select acked, acked_at from sessiond.message_latency where session_key = $1 and seq = 2",
        [k],
      );
      expect(after?.acked).toBe(true);
      expect(after?.acked_at).toBeInstanceOf(Date);
    });
  });

  describe("session_summary", () => {
    it("counts a session's events and effects and shows its cursors and lease", async () => {
      const k = key("summary");
      await mixedSession(t.db, k);
      const summary = await sessionSummary(t.db, k);
      expect(summary).toMatchObject({
        sessionKey: k,
        events: 3,
        userMessages: 3,
        failed: 1,
        superseded: 0,
        effects: 3,
        openEffects: 2,
        deadEffects: 0,
        lastSeq: 3,
        processedSeq: 2,
        unprocessed: 1,
        effectSeq: 3,
        ackedSeq: 1,
        unacked: 2,
        leaseState: "free",
        leaseOwner: null,
        leaseExpiresAt: null,
      });
      expect(summary?.lastActivityAt.getTime()).toBeGreaterThanOrEqual(summary?.createdAt.getTime() ?? Number.NaN);

      const token = await claim(t.db, k);
      expect(await sessionSummary(t.db, k)).toMatchObject({ leaseState: "held", leaseOwner: OWNER, leaseToken: token });
      await t.db.query(
        "update sessiond.sessions set lease_expires_at = now() - interval '1 second' where session_key = $1",
        [k],
      );
      expect(await sessionSummary(t.db, k)).toMatchObject({ leaseState: "expired", leaseOwner: OWNER });
      expect(await sessionSummary(t.db, key("nobody"))).toBeUndefined();
    });
  });
});
