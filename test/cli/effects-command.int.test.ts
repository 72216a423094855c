import { expect, it } from "vitest";
import { runEffectsCommand } from "../../src/cli/effects-command.js";
import type { Db } from "../../src/db/index.js";
import { effectState, enqueue, sessionKey } from "../effects/helpers.js";
import { describeEachDb } from "../support/db.js";

async function run(db: Db, ...argv: string[]) {
  const lines: string[] = [];
  const code = await runEffectsCommand(db, argv, (line) => lines.push(line));
  return { code, lines, text: lines.join("\n") };
}

/** Claims and fails an effect for good through the SQL functions a runner uses. */
async function makeDead(db: Db, type: string, error: string) {
  const [fx] = await enqueue(db, sessionKey("cli"), [{ type }]);
  const claimed = await db.query("select * from sessiond.claim_effects('cli-test', array[$1], 10, 30000)", [type]);
  expect(claimed).toHaveLength(1);
  const [row] = await db.query<{ status: string }>(
    "select sessiond.fail_effect($1, $2, 'cli-test', $3, true) as status",
    [(claimed[0] as { session_key: string }).session_key, (claimed[0] as { seq: number }).seq, error],
  );
  expect(row?.status).toBe("dead");
  return fx!;
}

describeEachDb("sessiond effects (command)", (t) => {
  it("lists dead effects with their error, and retries one by id", async () => {
    const dead = await makeDead(t.db, "cli.hook", "receiver said:\n  410 gone");
    const [alive] = await enqueue(t.db, sessionKey("cli"), [{ type: "cli.other" }]);

    const list = await run(t.db, "list", "--status", "dead");
    expect(list.code).toBe(0);
    expect(list.lines[0]).toBe("id\tstatus\ttype\tsession#seq\tattempts\tupdated_at\tlast_error");
    const line = list.lines.find((l) => l.startsWith(dead.id));
    expect(line).toMatch(/\tdead\tcli\.hook\t.+#1\t1\/10\t\d{4}-\d\d-\d\dT.+\treceiver said: 410 gone$/);
    expect(list.text).not.toContain(alive!.id);

    const json = await run(t.db, "list", "--status", "dead", "--json", "--limit", "1");
    expect(json.code).toBe(0);
    expect(json.lines).toHaveLength(1);
    expect(JSON.parse(json.lines[0]!)).toMatchObject({ status: "dead", lastError: "receiver said:\n  410 gone" });

    const retry = await run(t.db, "retry", dead.id);
    expect(retry).toMatchObject({ code: 0, lines: [expect.stringMatching(/is pending again$/)] });
    expect(await effectState(t.db, dead.id)).toMatchObject({ status: "pending", attempts: 0 });
    expect((await run(t.db, "list", "--status", "dead")).text).not.toContain(dead.id);

    // A pending effect is not retried: the database refuses, exit code 1.
    const again = await run(t.db, "retry", dead.id);
    expect(again.code).toBe(1);
    expect(again.text).toMatch(/no dead or failed effect with id/);
  });

  it.each([
    [[], /missing subcommand/],
    [["frobnicate"], /unknown subcommand "frobnicate"/],
    [["list", "--status", "zombie"], /--status must be one of pending, executing, completed, failed, dead/],
    [["list", "--limit", "0"], /--limit must be at least 1/],
    [["list", "--limit", "lots"], /--limit must be a number/],
    [["list", "--colour"], /Unknown option '--colour'/],
    [["retry"], /the effect id must be a UUID/],
    [["retry", "not-a-uuid"], /the effect id must be a UUID/],
    [["retry", "6f1c1c3e-0000-4000-8000-000000000000", "extra"], /exactly one effect id/],
  ])("answers %j with a usage error (exit 2)", async (argv, message) => {
    const result = await run(t.db, ...argv);
    expect(result.code).toBe(2);
    expect(result.lines[0]).toMatch(message);
    expect(result.text).toContain("usage:");
  });
});
