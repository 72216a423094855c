/**
 * `sessiond effects list [--status <status>] [--limit <n>] [--json]` and
 * `sessiond effects retry <effect id>`: the operator's view of the outbox.
 * The CLI entry point passes the arguments after `effects`.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { type Db, DbError } from "../db/index.js";
import { EFFECT_STATUSES, type EffectSummary, listEffects, retryEffect } from "../effects/admin.js";
import { ExitCode } from "./command.js";

export const EFFECTS_USAGE = `usage:
  sessiond effects list [--status ${EFFECT_STATUSES.join("|")}] [--limit <1..10000>] [--json]
  sessiond effects retry <effect id>`;

const listArgs = z.object({
  status: z.enum(EFFECT_STATUSES, { error: `--status must be one of ${EFFECT_STATUSES.join(", ")}` }).optional(),
  limit: z.coerce
    .number({ error: "--limit must be a number" })
    .int({ error: "--limit must be a whole number" })
    .min(1, { error: "--limit must be at least 1" })
    .max(10_000, { error: "--limit must be at most 10000" })
    .default(100),
  json: z.boolean().default(false),
});

const effectId = z.uuid({ error: "the effect id must be a UUID (see `sessiond effects list`)" });

function oneLine(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

function formatRow(e: EffectSummary): string {
  return [
    e.id,
    e.status,
    e.type,
    `${e.sessionKey}#${e.seq}`,
    `${e.attempts}/${e.maxAttempts}`,
    e.updatedAt.toISOString(),
    e.lastError === null ? "" : oneLine(e.lastError),
  ].join("\t");
}

function toJson(e: EffectSummary): string {
  return JSON.stringify(e);
}

/**
 * Runs `effects <subcommand>`; `argv` is what follows `effects`. Writes lines
 * with `out` and returns the exit code: 0 done, 1 the database refused (e.g.
 * no dead or failed effect with that id), 2 usage error.
 */
export async function runEffectsCommand(db: Db, argv: string[], out: (line: string) => void): Promise<number> {
  const [subcommand, ...rest] = argv;
  let parsed: ReturnType<
    typeof parseArgs<{
      options: { status: { type: "string" }; limit: { type: "string" }; json: { type: "boolean" } };
      allowPositionals: true;
      strict: true;
    }>
  >;
  try {
    parsed = parseArgs({
      args: rest,
      options: { status: { type: "string" }, limit: { type: "string" }, json: { type: "boolean" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    out(`error: ${(error as Error).message}`);
    out(EFFECTS_USAGE);
    return ExitCode.usage;
  }
  const { values, positionals } = parsed;

  try {
    if (subcommand === "list") {
      const args = listArgs.safeParse(values);
      if (!args.success || positionals.length > 0) {
        out(`error: ${args.success ? `unexpected argument ${positionals[0]}` : args.error.issues[0]?.message}`);
        out(EFFECTS_USAGE);
        return ExitCode.usage;
      }
      const effects = await listEffects(db, { status: args.data.status, limit: args.data.limit });
      if (args.data.json) {
        for (const e of effects) out(toJson(e));
      } else {
        out(["id", "status", "type", "session#seq", "attempts", "updated_at", "last_error"].join("\t"));
        for (const e of effects) out(formatRow(e));
        out(`(${effects.length} effect${effects.length === 1 ? "" : "s"})`);
      }
      return ExitCode.ok;
    }
    if (subcommand === "retry") {
      const id = effectId.safeParse(positionals[0]);
      if (positionals.length !== 1 || !id.success || Object.keys(values).length > 0) {
        out(`error: ${id.success ? "retry takes exactly one effect id and no options" : id.error.issues[0]?.message}`);
        out(EFFECTS_USAGE);
        return ExitCode.usage;
      }
      const effect = await retryEffect(db, id.data);
      out(`effect ${effect.id} (${effect.type}, ${effect.sessionKey}#${effect.seq}) is pending again`);
      return ExitCode.ok;
    }
  } catch (error) {
    if (error instanceof DbError) {
      out(`error: ${error.message}`);
      return ExitCode.failed;
    }
    throw error;
  }
  out(subcommand ? `error: unknown subcommand ${JSON.stringify(subcommand)}` : "error: missing subcommand");
  out(EFFECTS_USAGE);
  return ExitCode.usage;
}
