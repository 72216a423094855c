/**
 * `sessiond audit <sessionKey> [--json]`: a session's events and effects,
 * interleaved, as an aligned table (sessiond.session_timeline).
 * `sessiond audit --stuck [--json]`: work that is not moving
 * (sessiond.stuck_work). The CLI entry point passes the arguments after `audit`.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  cell,
  formatMs,
  formatTable,
  type SessionSummary,
  type StuckItem,
  sessionSummary,
  stuck,
  type TimelineEntry,
  timeline,
} from "../audit/index.js";
import { DbError, type Queryable } from "../db/index.js";

export const AUDIT_USAGE = `usage:
  sessiond audit <sessionKey> [--json]   the session's events and effects, in order
  sessiond audit --stuck [--json]        expired leases and claims, waiting events, failed and dead effects`;

const sessionKey = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$/, {
  error: "a session key is 1..200 characters of [A-Za-z0-9._:@-], starting with a letter or digit",
});

/** Time of day in UTC to the millisecond; the header line carries the date. */
function clock(at: Date): string {
  return at.toISOString().slice(11, 23);
}

function header(s: SessionSummary): string {
  return [
    `session ${s.sessionKey}`,
    `events ${s.processedSeq}/${s.lastSeq} processed`,
    `effects ${s.ackedSeq}/${s.effectSeq} acked`,
    `lease ${s.leaseState}${s.leaseOwner ? ` (${s.leaseOwner}, token ${s.leaseToken})` : ""}`,
    `created ${s.createdAt.toISOString()}`,
    `last activity ${s.lastActivityAt.toISOString()}`,
  ].join(" · ");
}

function timelineRow(e: TimelineEntry): string[] {
  const status = (e.attempts ?? 0) > 1 ? `${e.status} ×${e.attempts}` : e.status;
  const summary = e.error ? `${cell(e.summary)} — error: ${cell(e.error)}` : cell(e.summary);
  return [
    clock(e.at),
    e.kind,
    String(e.seq),
    e.kind === "effect" && e.eventSeq !== null ? `←${e.eventSeq}` : "",
    e.type,
    e.delivery ?? "",
    status,
    cell(e.requestId),
    formatMs(e.latencyMs),
    summary,
  ];
}

function printTimeline(summary: SessionSummary, entries: TimelineEntry[], out: (line: string) => void): void {
  out(header(summary));
  const lines = formatTable(
    [
      { header: "at (UTC)" },
      { header: "kind" },
      { header: "seq", align: "right" },
      { header: "cause" },
      { header: "type" },
      { header: "via" },
      { header: "status" },
      { header: "request" },
      { header: "took", align: "right" },
      { header: "summary" },
    ],
    entries.map(timelineRow),
  );
  for (const line of lines) out(line);
  out(
    `(${entries.length} row${entries.length === 1 ? "" : "s"}; took: append → outcome for events, enqueue → done/acked for effects)`,
  );
}

function printStuck(items: StuckItem[], out: (line: string) => void): void {
  if (items.length === 0) {
    out("nothing is stuck");
    return;
  }
  const lines = formatTable(
    [
      { header: "since" },
      { header: "age", align: "right" },
      { header: "reason" },
      { header: "session" },
      { header: "what" },
      { header: "detail" },
    ],
    items.map((s) => [
      s.since.toISOString(),
      formatMs(s.ageMs),
      s.reason,
      s.sessionKey,
      s.kind === "session" ? "session" : `${s.kind} ${s.seq} ${s.type ?? ""}`.trim(),
      cell(s.detail),
    ]),
  );
  for (const line of lines) out(line);
  out(`(${items.length} stuck item${items.length === 1 ? "" : "s"})`);
}

/**
 * Runs `audit`; `argv` is what follows `audit`. Writes lines with `out` and
 * returns the exit code: 0 done, 1 no such session, 2 usage error.
 */
export async function runAuditCommand(db: Queryable, argv: string[], out: (line: string) => void): Promise<number> {
  let values: { stuck?: boolean; json?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: { stuck: { type: "boolean" }, json: { type: "boolean" } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    out(`error: ${(error as Error).message}`);
    out(AUDIT_USAGE);
    return 2;
  }

  try {
    if (values.stuck) {
      if (positionals.length > 0) {
        out("error: --stuck takes no session key");
        out(AUDIT_USAGE);
        return 2;
      }
      const items = await stuck(db);
      if (values.json) for (const item of items) out(JSON.stringify(item));
      else printStuck(items, out);
      return 0;
    }

    if (positionals.length !== 1) {
      out(positionals.length === 0 ? "error: missing session key" : "error: audit takes one session key");
      out(AUDIT_USAGE);
      return 2;
    }
    const key = sessionKey.safeParse(positionals[0]);
    if (!key.success) {
      out(`error: ${key.error.issues[0]?.message}`);
      out(AUDIT_USAGE);
      return 2;
    }
    const summary = await sessionSummary(db, key.data);
    if (!summary) {
      out(`error: no session ${key.data}`);
      return 1;
    }
    const entries = await timeline(db, key.data);
    if (values.json) for (const entry of entries) out(JSON.stringify(entry));
    else printTimeline(summary, entries, out);
    return 0;
  } catch (error) {
    if (error instanceof DbError) {
      out(`error: ${error.message}`);
      return 1;
    }
    throw error;
  }
}
