/**
 * `sessiond verify [--stale-after <seconds>] [--json]`: checks sessiond's
 * invariants on the live database (sessiond.verify()) and names each
 * violation. The CLI entry point passes the arguments after `verify`.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { cell, formatTable, verify } from "../audit/index.js";
import { DbError, type Queryable } from "../db/index.js";

export const VERIFY_USAGE = `usage:
  sessiond verify [--stale-after <seconds>] [--json]
    exits 0 and prints "ok" when every invariant holds, 1 naming each violation.
    --stale-after: how long a lease or effect claim may stay expired (default 30)`;

const staleAfter = z.coerce
  .number({ error: "--stale-after must be a number of seconds" })
  .min(0, { error: "--stale-after must be at least 0" })
  .max(31_536_000, { error: "--stale-after must be at most a year" })
  .default(30);

/**
 * Runs `verify`; `argv` is what follows `verify`. Writes lines with `out` and
 * returns the exit code: 0 healthy, 1 violations (or the database refused), 2
 * usage error.
 */
export async function runVerifyCommand(db: Queryable, argv: string[], out: (line: string) => void): Promise<number> {
  let values: { "stale-after"?: string; json?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: { "stale-after": { type: "string" }, json: { type: "boolean" } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    out(`error: ${(error as Error).message}`);
    out(VERIFY_USAGE);
    return 2;
  }
  const seconds = staleAfter.safeParse(values["stale-after"]);
  if (!seconds.success || positionals.length > 0) {
    out(`error: ${seconds.success ? `unexpected argument ${positionals[0]}` : seconds.error.issues[0]?.message}`);
    out(VERIFY_USAGE);
    return 2;
  }

  let violations: Awaited<ReturnType<typeof verify>>;
  try {
    violations = await verify(db, { staleAfterMs: seconds.data * 1000 });
  } catch (error) {
    if (error instanceof DbError) {
      out(`error: ${error.message}`);
      return 1;
    }
    throw error;
  }

  if (values.json) {
    for (const v of violations) out(JSON.stringify(v));
  } else if (violations.length > 0) {
    const lines = formatTable(
      [{ header: "check" }, { header: "session" }, { header: "detail" }],
      violations.map((v) => [v.check, v.sessionKey, cell(v.detail)]),
    );
    for (const line of lines) out(line);
    out(`${violations.length} violation${violations.length === 1 ? "" : "s"}`);
  } else {
    out("ok");
  }
  return violations.length > 0 ? 1 : 0;
}
