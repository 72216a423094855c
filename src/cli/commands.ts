/**
 * The subcommand table of `sessiond`. To add a command, write
 * `src/cli/<name>-command.ts` exporting its run function and add one line
 * here: `dbCommand(…)` if it wants the configured database (the signature
 * `(db, argv, out) => Promise<exitCode>`), `standaloneCommand(…)` if it sets
 * itself up (`(argv, io) => Promise<exitCode>`).
 */
import { type CommandSpec, dbCommand, standaloneCommand } from "./command.js";

export const commands: Record<string, CommandSpec> = {
  serve: standaloneCommand(
    "run the server: HTTP + WebSocket, session processing, effect delivery",
    async () => (await import("./serve-command.js")).runServeCommand,
  ),
  migrate: standaloneCommand(
    "apply the committed migrations to the configured database",
    async () => (await import("./migrate-command.js")).runMigrateCommand,
  ),
  token: standaloneCommand(
    "mint a client token for one session: token <sessionKey> [--ttl 24h]",
    async () => (await import("./token-command.js")).runTokenCommand,
  ),
  effects: dbCommand(
    "list effects by status, retry a dead one: effects list|retry …",
    async () => (await import("./effects-command.js")).runEffectsCommand,
  ),
  bench: standaloneCommand(
    "measure latency, throughput and scale: bench [--quick] [--scenario N] [--runs N]",
    async () => (await import("./bench-command.js")).runBenchCli,
  ),
  audit: dbCommand(
    "print a session's timeline, or the stuck work: audit <sessionKey> | audit --stuck",
    async () => (await import("./audit-command.js")).runAuditCommand,
  ),
  verify: dbCommand(
    "check sessiond's invariants on the live database; exit 1 naming each violation",
    async () => (await import("./verify-command.js")).runVerifyCommand,
  ),
};
