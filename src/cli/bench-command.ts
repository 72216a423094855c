/**
 * `sessiond bench`: measures latency, throughput and scale against the goals
 * of docs/benchmarks.md, side by side with the baselines, in one run. It
 * starts what it needs (a host process with the servers under test on
 * 127.0.0.1; a throwaway database unless DATABASE_URL or --database-url is
 * given; embedded PGlite for scenarios 6 and 7), shows progress on stderr,
 * prints a table and writes a JSON result and an SVG chart.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { DEFAULT_ADMIN_URL } from "../bench/database.js";
import type { ProfileName } from "../bench/plan.js";
import { formatReport } from "../bench/report.js";
import { BenchInterrupted, runBench, SCENARIOS } from "../bench/run.js";
import type { CliIo } from "./command.js";

export const BENCH_USAGE = `usage:
  sessiond bench [--quick] [--scenario N]... [--runs N] [--profile] [--out DIR]
                 [--database-url URL | --admin-url URL] [--no-pglite]
    --quick          a smoke check in under a minute (smaller counts, shorter windows)
    --scenario N     run scenario N only (repeatable, or N,M); default all:
${Object.entries(SCENARIOS)
  .map(([id, s]) => `                       ${id}  ${s.title}`)
  .join("\n")}
    --runs N         repeat the whole bench N times (default 1); the table shows medians and spread
    --profile        afterwards, CPU-profile the server under load and list where the time goes
    --out DIR        where results go (default .bench); writes bench-<time>.json/.svg and latest.*
    --database-url   run against this database as is (default $DATABASE_URL)
    --admin-url      else create (and drop) a throwaway database here
                     (default $BENCH_ADMIN_URL or ${DEFAULT_ADMIN_URL})
    --no-pglite      skip the embedded PGlite parts (scenario 6's second mode, scenario 7)
    --smoke          tiny counts, for the test suite (numbers meaningless)`;

const scenarioList = z
  .array(z.string())
  .transform((values) =>
    values
      .flatMap((v) => v.split(","))
      .map((v) => v.trim())
      .filter(Boolean),
  )
  .pipe(
    z.array(
      z
        .string()
        .regex(/^\d+$/, { error: "--scenario must be a whole number" })
        .transform(Number)
        .refine((n) => n in SCENARIOS, { error: `--scenario must be one of ${Object.keys(SCENARIOS).join(", ")}` }),
    ),
  );

const runsSchema = z.coerce
  .number({ error: "--runs must be a number" })
  .int({ error: "--runs must be a whole number" })
  .min(1, { error: "--runs must be at least 1" })
  .max(20, { error: "--runs must be at most 20" });

export interface BenchCommandOptions {
  /** Progress lines (default: stderr). */
  progress?: (line: string) => void;
  env?: Record<string, string | undefined>;
}

/**
 * Runs `bench`; `argv` is what follows `bench`. Writes the report with `out`
 * and returns the exit code: 0 when every scenario ran (goals met or not: the
 * report says which), 1 when a scenario failed, 2 on a usage error.
 */
export async function runBenchCommand(
  argv: string[],
  out: (line: string) => void,
  options: BenchCommandOptions = {},
): Promise<number> {
  const env = options.env ?? process.env;
  let values: {
    quick?: boolean;
    smoke?: boolean;
    scenario?: string[];
    runs?: string;
    profile?: boolean;
    out?: string;
    "database-url"?: string;
    "admin-url"?: string;
    "no-pglite"?: boolean;
    help?: boolean;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        quick: { type: "boolean" },
        smoke: { type: "boolean" },
        scenario: { type: "string", multiple: true },
        runs: { type: "string" },
        profile: { type: "boolean" },
        out: { type: "string" },
        "database-url": { type: "string" },
        "admin-url": { type: "string" },
        "no-pglite": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    out(`error: ${(error as Error).message}`);
    out(BENCH_USAGE);
    return 2;
  }
  if (values.help) {
    out(BENCH_USAGE);
    return 0;
  }
  const usage = (message: string) => {
    out(`error: ${message}`);
    out(BENCH_USAGE);
    return 2;
  };
  if (positionals.length > 0) return usage(`unexpected argument ${positionals[0]}`);
  if (values.quick && values.smoke) return usage("--quick and --smoke exclude each other");
  const scenarios = scenarioList.safeParse(values.scenario ?? []);
  if (!scenarios.success) return usage(scenarios.error.issues[0]?.message ?? "bad --scenario");
  const runs = runsSchema.safeParse(values.runs ?? "1");
  if (!runs.success) return usage(runs.error.issues[0]?.message ?? "bad --runs");
  const databaseUrl = values["database-url"] ?? (env.DATABASE_URL?.trim() || undefined);
  const adminUrl = values["admin-url"] ?? (env.BENCH_ADMIN_URL?.trim() || undefined);
  if (values["database-url"] && values["admin-url"]) return usage("--database-url and --admin-url exclude each other");
  for (const [name, url] of [
    ["--database-url", databaseUrl],
    ["--admin-url", adminUrl],
  ] as const) {
    if (url && !/^postgres(ql)?:\/\//.test(url)) return usage(`${name} must be a postgres:// URL`);
  }
  const profile: ProfileName = values.smoke ? "smoke" : values.quick ? "quick" : "full";
  const chosen =
    scenarios.data.length > 0 ? [...new Set(scenarios.data)].sort((a, b) => a - b) : Object.keys(SCENARIOS).map(Number);
  const progress = options.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const started = performance.now();

  let output: Awaited<ReturnType<typeof runBench>>;
  try {
    output = await runBench({
      profile,
      scenarios: chosen,
      runs: runs.data,
      cpuProfile: values.profile ?? false,
      outDir: values.out ?? ".bench",
      ...(databaseUrl ? { databaseUrl } : {}),
      ...(adminUrl ? { adminUrl } : {}),
      pglite: !values["no-pglite"],
      progress,
      command: `sessiond bench ${argv.join(" ")}`.trim(),
    });
  } catch (error) {
    if (!(error instanceof BenchInterrupted)) throw error;
    out(`sessiond bench: ${error.message}; nothing written, the throwaway database is dropped`);
    return 130;
  }
  for (const line of formatReport(output.result)) out(line);
  out(`results: ${output.jsonPath}`);
  out(`chart:   ${output.svgPath}`);
  out(`took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (output.failures.length > 0) {
    for (const failure of output.failures) out(`FAILED: ${failure.split("\n")[0]}`);
    return 1;
  }
  return 0;
}

/** The `sessiond bench` entry of the command table: report on stdout, progress on stderr. */
export function runBenchCli(argv: string[], io: CliIo): Promise<number> {
  return runBenchCommand(argv, io.out, { progress: io.err, env: io.env });
}
