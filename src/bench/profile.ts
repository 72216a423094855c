/**
 * Summarises a V8 CPU profile (`node --cpu-prof`): self time per function
 * and per category (driver, LangChain/LangGraph, ws, zod, sessiond's own
 * code, garbage collection, idle…). Each sample's time is the gap to the
 * next sample, attributed to the function on top of the stack. A second
 * view charges natives (builtins, node internals, GC) to the nearest caller
 * that belongs to a component, so each component's total includes the
 * runtime work it caused.
 */
import { readFile } from "node:fs/promises";
import { relative } from "node:path";
import type { ProfileEntry, ProfileSummary } from "./result.js";

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const CATEGORIES: Array<[RegExp, string]> = [
  [/node_modules\/postgres\//, "postgres.js driver"],
  [/node_modules\/@electric-sql\//, "PGlite"],
  [/node_modules\/@langchain\/|node_modules\/langsmith\//, "LangChain / LangGraph"],
  [/node_modules\/zod\//, "zod"],
  [/node_modules\/ws\//, "ws"],
  [/node_modules\/(hono|@hono)\//, "hono"],
  [/node_modules\/pino|node_modules\/thread-stream|node_modules\/sonic-boom/, "pino"],
  [/node_modules\/(tsx|esbuild|get-tsconfig)\//, "tsx loader"],
  [/node_modules\/uuid\/|node_modules\/@cfworker\//, "LangChain / LangGraph"],
  [/\/src\/bench\//, "bench host"],
  [/\/src\//, "sessiond"],
  [/^node:|^internal\//, "node internals"],
  [/node_modules\//, "other packages"],
];

/** Categories that are not anyone's code: their time is charged to the nearest caller that is. */
const UNOWNED = new Set([
  "V8 / native builtins",
  "node internals",
  "V8 / native (program)",
  "root",
  "garbage collection",
]);

function category(name: string, url: string): string {
  if (name === "(garbage collector)") return "garbage collection";
  if (name === "(idle)") return "idle";
  if (name === "(program)") return "V8 / native (program)";
  if (name === "(root)") return "root";
  for (const [pattern, label] of CATEGORIES) if (pattern.test(url)) return label;
  return url === "" ? "V8 / native builtins" : "other";
}

function location(url: string, line: number): string {
  if (!url) return "(native)";
  let path = url.replace(/^file:\/\//, "");
  const nm = path.lastIndexOf("node_modules/");
  if (nm >= 0) path = path.slice(nm + "node_modules/".length);
  else if (path.startsWith("/")) path = relative(process.cwd(), path);
  // tsx compiles TypeScript without keeping line numbers in the profile: name the file only.
  return path.endsWith(".ts") ? path : `${path}:${line + 1}`;
}

/** Reads and summarises a .cpuprofile file; `top` functions by self time. */
export async function summarizeCpuProfile(file: string, workload: string, top = 20): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, "utf8")) as CpuProfile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const n = profile.samples.length;
  for (let i = 0; i < n; i++) {
    const next = i + 1 < n ? (profile.timeDeltas[i + 1] as number) : 0;
    const id = profile.samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, next));
  }
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const categoryOf = (node: CpuProfileNode) =>
    category(node.callFrame.functionName || "(anonymous)", node.callFrame.url);
  /** The category of the nearest caller that is code of ours or of a package (natives charged to who called them). */
  const ownerOf = (id: number): string => {
    let current: number | undefined = id;
    while (current !== undefined) {
      const node = nodes.get(current);
      if (!node) break;
      const cat = categoryOf(node);
      if (!UNOWNED.has(cat)) return cat;
      current = parents.get(current);
    }
    const own = nodes.get(id);
    return own ? categoryOf(own) : "other";
  };
  const byFunction = new Map<string, ProfileEntry>();
  const byCategory = new Map<string, number>();
  const byOwner = new Map<string, number>();
  let sampledUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = nodes.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || "(anonymous)";
    const cat = category(name, url);
    sampledUs += us;
    if (cat === "idle") idleUs += us;
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + us);
    const owner = ownerOf(id);
    byOwner.set(owner, (byOwner.get(owner) ?? 0) + us);
    const key = `${name}@${url}:${lineNumber}`;
    const entry = byFunction.get(key) ?? {
      functionName: name,
      location: location(url, lineNumber),
      category: cat,
      selfMs: 0,
      selfPercent: 0,
    };
    entry.selfMs += us / 1000;
    byFunction.set(key, entry);
  }
  const busyMs = (sampledUs - idleUs) / 1000;
  const percent = (msValue: number) => (busyMs > 0 ? (msValue / busyMs) * 100 : 0);
  const entries = [...byFunction.values()]
    .filter((e) => e.category !== "idle")
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top)
    .map((e) => ({ ...e, selfMs: round(e.selfMs), selfPercent: round(percent(e.selfMs)) }));
  return {
    workload,
    totalMs: round((profile.endTime - profile.startTime) / 1000),
    sampledMs: round(sampledUs / 1000),
    top: entries,
    byCategory: [...byCategory.entries()]
      .map(([cat, us]) => ({
        category: cat,
        selfMs: round(us / 1000),
        selfPercent: cat === "idle" ? 0 : round(percent(us / 1000)),
      }))
      .sort((a, b) => b.selfMs - a.selfMs),
    byOwner: [...byOwner.entries()]
      .filter(([owner]) => owner !== "idle")
      .map(([owner, us]) => ({ category: owner, selfMs: round(us / 1000), selfPercent: round(percent(us / 1000)) }))
      .sort((a, b) => b.selfMs - a.selfMs),
    file,
  };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
