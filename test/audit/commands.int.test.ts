/** `sessiond audit` and `sessiond verify`: what they print and the exit codes they return. */
import { describe, expect, it } from "vitest";
import { AUDIT_USAGE, runAuditCommand } from "../../src/cli/audit-command.js";
import { runVerifyCommand, VERIFY_USAGE } from "../../src/cli/verify-command.js";
import type { Queryable } from "../../src/db/index.js";
import { describeEachDb } from "../support/db.js";
import { appendUser, claim, enqueue, healthyConversation, key, rolledBack } from "./build.js";

async function run(
  command: (db: Queryable, argv: string[], out: (line: string) => void) => Promise<number>,
  db: Queryable,
  argv: string[],
) {
  const lines: string[] = [];
  const code = await command(db, argv, (line) => lines.push(line));
  return { code, lines };
}

/** Where each header of the table's first line starts. */
function columnStarts(headerLine: string, headers: string[]): number[] {
  return headers.map((h) => {
    const at = headerLine.indexOf(h);
    expect(at, `header ${h}`).toBeGreaterThanOrEqual(0);
    return at;
  });
}

describeEachDb("audit and verify commands", (t) => {
  describe("sessiond audit <sessionKey>", () => {
    it("prints the session's timeline as an aligned table", async () => {
      const k = key("cli");
      await healthyConversation(t.db, k);
      const { code, lines } = await run(runAuditCommand, t.db, [k]);
      expect(code).toBe(0);
      expect(lines[0]).toMatch(
        new RegExp(
          `^session ${k} · events 2/2 processed · effects 2/2 acked · lease free · created \\S+ · last activity \\S+$`,
        ),
      );
      const [head, ...rest] = lines.slice(1);
      const body = rest.slice(0, -1);
      expect(rest.at(-1)).toMatch(/^\(4 rows; /);
      expect(body).toHaveLength(4);
      const starts = columnStarts(head ?? "", ["kind", "type", "status", "summary"]);
      // Every row has its kind, type, status and summary where the header says.
      const cells = body.map((line) => starts.map((s) => line.slice(s).split(/\s{2,}/)[0]));
      expect(cells).toEqual([
        ["event", "user_message", "processed", "hello there"],
        ["effect", "send_message", "completed", "Hi! How can I help?"],
        ["event", "user_message", "processed", "what is sessiond?"],
        ["effect", "send_message", "completed", "A durable session runtime."],
      ]);
      expect(body[1]).toMatch(/\s←1\s+send_message\s+client\s/);
      expect(body[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3}\s+event\s+1\s/);
    });

    it("prints JSON lines with --json", async () => {
      const k = key("cli-json");
      await healthyConversation(t.db, k);
      const { code, lines } = await run(runAuditCommand, t.db, [k, "--json"]);
      expect(code).toBe(0);
      const rows = lines.map((l) => JSON.parse(l) as { kind: string; seq: number; type: string });
      expect(rows.map((r) => [r.kind, r.seq, r.type])).toEqual([
        ["event", 1, "user_message"],
        ["effect", 1, "send_message"],
        ["event", 2, "user_message"],
        ["effect", 2, "send_message"],
      ]);
    });

    it("returns 1 for an unknown session and 2 for bad arguments", async () => {
      expect(await run(runAuditCommand, t.db, [key("nobody")])).toMatchObject({ code: 1 });
      expect((await run(runAuditCommand, t.db, [key("nobody")])).lines[0]).toMatch(/^error: no session /);
      for (const argv of [[], ["a/b"], ["one", "two"], ["--stuck", "one"], ["--bogus"]]) {
        const { code, lines } = await run(runAuditCommand, t.db, argv);
        expect(code, argv.join(" ")).toBe(2);
        expect(lines[0]).toMatch(/^error: /);
        expect(lines.at(-1)).toBe(AUDIT_USAGE);
      }
    });
  });

  describe("sessiond audit --stuck", () => {
    it("prints the stuck list", async () => {
      const { code, lines } = await rolledBack(t.db, async (tx) => {
        const k = key("cli-stuck");
        await appendUser(tx, k, "r1", "hello");
        await claim(tx, k);
        await tx.query(
          "update sessiond.sessions set lease_expires_at = now() - interval '90 seconds' where session_key = $1",
          [k],
        );
        return run(runAuditCommand, tx, ["--stuck"]);
      });
      expect(code).toBe(0);
      expect(lines[0]).toMatch(/^since\s+age\s+reason\s+session\s+what\s+detail$/);
      const row = lines.find((l) => l.includes("lease_expired"));
      expect(row).toMatch(/\s1\.5 min\s+lease_expired\s+cli-stuck-\S+\s+session\s+lease of audit-test/);
      expect(lines.at(-1)).toMatch(/^\(\d+ stuck items?\)$/);
    });

    it("says so when nothing is stuck", async () => {
      const { code, lines } = await rolledBack(t.db, async (tx) => {
        await tx.query("delete from sessiond.effects");
        await tx.query("delete from sessiond.sessions");
        await tx.query("delete from sessiond.events");
        return run(runAuditCommand, tx, ["--stuck"]);
      });
      expect({ code, lines }).toEqual({ code: 0, lines: ["nothing is stuck"] });
    });
  });

  describe("sessiond verify", () => {
    it('prints "ok" and returns 0 on a healthy database', async () => {
      await healthyConversation(t.db, key("cli-ok"));
      expect(await run(runVerifyCommand, t.db, [])).toEqual({ code: 0, lines: ["ok"] });
      expect(await run(runVerifyCommand, t.db, ["--stale-after", "0"])).toEqual({ code: 0, lines: ["ok"] });
    });

    it("names each violation and returns 1", async () => {
      const { key: k, result } = await rolledBack(t.db, async (tx) => {
        const k = key("cli-bad");
        await healthyConversation(tx, k);
        await tx.query("delete from sessiond.events where session_key = $1 and seq = 2", [k]);
        await enqueue(tx, k, [{ type: "audit.note", delivery: "handler" }]);
        await tx.query("select * from sessiond.claim_effects('runner-v', array['audit.note'], 10, 60000)");
        await tx.query(
          "update sessiond.effects set claim_expires_at = now() - interval '1 minute' where session_key = $1 and status = 'executing'",
          [k],
        );
        return { key: k, result: await run(runVerifyCommand, tx, []) };
      });
      expect(result.code).toBe(1);
      expect(result.lines[0]).toMatch(/^check\s+session\s+detail$/);
      expect(result.lines.slice(1, -1)).toEqual([
        expect.stringMatching(new RegExp(`^claim_not_stale\\s+${k}\\s+effect 3 \\(audit\\.note\\) executing`)),
        expect.stringMatching(
          new RegExp(`^event_seq_gap_free\\s+${k}\\s+last_seq 2, 1 event\\(s\\), highest seq 1; missing: 2$`),
        ),
      ]);
      expect(result.lines.at(-1)).toBe("2 violations");
    });

    it("prints JSON lines with --json", async () => {
      const result = await rolledBack(t.db, async (tx) => {
        const k = key("cli-json-bad");
        await healthyConversation(tx, k);
        await tx.query("update sessiond.sessions set processed_seq = 1 where session_key = $1", [k]);
        return run(runVerifyCommand, tx, ["--json"]);
      });
      expect(result.code).toBe(1);
      expect(result.lines.map((l) => JSON.parse(l))).toEqual([
        {
          check: "one_outcome_per_processed_event",
          sessionKey: expect.stringMatching(/^cli-json-bad-/),
          detail: "event 2 has an outcome (processed) but is past processed_seq 1",
        },
      ]);
    });

    it("returns 2 for bad arguments", async () => {
      for (const argv of [["--stale-after", "soon"], ["--stale-after", "-1"], ["extra"], ["--bogus"]]) {
        const { code, lines } = await run(runVerifyCommand, t.db, argv);
        expect(code, argv.join(" ")).toBe(2);
        expect(lines[0]).toMatch(/^error: /);
        expect(lines.at(-1)).toBe(VERIFY_USAGE);
      }
    });
  });
});
