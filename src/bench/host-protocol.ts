/**
 * The commands the bench sends to its host process (the process under test)
 * over the IPC channel, and what each one answers. One request object
 * `{ id, command, params }` gets one reply `{ id, ok, result | error }`.
 */
import type { DispatchParams, DispatchSamples } from "./dispatch.js";

export interface HostMemory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

/** Statements a server ran: counts and summed durations (ms), by label ("tx: " inside transactions). */
export interface StatementCounts {
  total: number;
  /** Summed durations of the statements outside transactions. */
  totalMs: number;
  transactions: number;
  /** Summed durations of the transactions, BEGIN to COMMIT. */
  transactionMs: number;
  /** [label, count, summed ms], most frequent first. */
  byStatement: Array<[string, number, number]>;
}

export interface HostCommands {
  /** Opens (and migrates) a database under `id`: Postgres by URL, or PGlite in `dataDir`. */
  openDb: {
    params: { id: string; kind: "postgres" | "pglite"; url?: string; dataDir?: string; poolMax?: number };
    result: { kind: "postgres" | "pglite"; migrateMs: number };
  };
  closeDb: { params: { id: string }; result: null };
  /** Starts a sessiond server (startServer) on database `dbId` with the local model. */
  startSessiond: {
    params: { id: string; dbId: string; tokenDelayMs: number; concurrency: number; secret: string };
    result: { url: string };
  };
  /** Starts a direct-mode server (no database) with the local model. */
  startDirect: { params: { id: string; tokenDelayMs: number; secret: string }; result: { url: string } };
  stopServer: { params: { id: string }; result: null };
  /** Statements the sessiond server `id` ran since the last call (then reset). Direct servers run none. */
  statements: { params: { id: string }; result: StatementCounts };
  /** Open sockets of a server. */
  sockets: { params: { id: string }; result: { sockets: number } };
  /** The host's CPU time so far (user + system), ms. */
  cpu: { params: Record<string, never>; result: { ms: number } };
  /** Memory after full garbage collections. */
  memory: { params: Record<string, never>; result: HostMemory };
  /** Scenario 1 on database `dbId`: a runtime of its own plus one connection for appends. */
  dispatch: { params: DispatchParams & { dbId: string }; result: DispatchSamples };
  /** Single-row insert commits per second with `connections` connections (PGlite: one). */
  insertRate: {
    params: { dbId: string; connections: number; durationMs: number; bucketMs: number };
    result: { commits: number; elapsedMs: number; perBucket: number[] };
  };
  /** Enqueues `count` client-delivered send_message effects in one session. */
  seedEffects: { params: { dbId: string; sessionKey: string; count: number }; result: { head: number } };
  /** Events not yet processed on database `dbId`. */
  backlog: { params: { dbId: string }; result: { unprocessed: number } };
  /** Starts the V8 CPU profiler (node:inspector) in the host. */
  profileStart: { params: { samplingIntervalUs: number }; result: null };
  /** Stops the profiler and writes the profile (a .cpuprofile file, as --cpu-prof writes). */
  profileStop: { params: { file: string }; result: null };
  /** Closes every server and database, replies, then exits. */
  shutdown: { params: Record<string, never>; result: null };
}

export type HostCommand = keyof HostCommands;

export interface HostRequest<C extends HostCommand = HostCommand> {
  id: number;
  command: C;
  params: HostCommands[C]["params"];
}

export type HostReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string }
  | { ready: true; pid: number };
