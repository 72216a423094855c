/** `sessiond bench`: the scenarios, the direct-mode baseline server, the result shape and its chart. */
export { renderChart } from "./chart.js";
export { type DirectServer, type DirectServerOptions, startDirectServer } from "./direct-server.js";
export { PLANS, type Plan, type ProfileName } from "./plan.js";
export { summarizeCpuProfile } from "./profile.js";
export { formatReport, summarizeRuns } from "./report.js";
export type { BenchResult, RunResult, SummaryRow } from "./result.js";
export { type BenchOptions, type BenchOutput, runBench, SCENARIOS } from "./run.js";
