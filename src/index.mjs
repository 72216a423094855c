// The package's entry for plain Node, which cannot load TypeScript: the library is its TypeScript
// sources (no build step, as for the `sessiond` command), imported here through tsx's scoped
// tsImport, which leaves the importing process without a global loader hook. Types come from
// src/index.ts (package.json "types"); test/package-entry.e2e.test.ts checks that this list
// names every value src/index.ts exports.
import { tsImport } from "tsx/esm/api";

const lib = await tsImport("./index.ts", import.meta.url);

export const {
  appendEvent,
  Channels,
  compileDefaultGraph,
  createDefaultGraph,
  createEffectRegistry,
  createModel,
  createOpenAiModel,
  createPgliteDb,
  createPostgresDb,
  createRuntime,
  DbError,
  EffectRegistry,
  EffectRunner,
  EffectValidationError,
  emitEffect,
  listEffects,
  LocalChatModel,
  migratePglite,
  migratePostgres,
  mintToken,
  openDb,
  PermanentEffectError,
  readEvents,
  retryEffect,
  SessionBusyError,
  SessionProcessor,
  SessiondCheckpointer,
  sessionSummary,
  SqlState,
  startServer,
  stuck,
  timeline,
  TokenBus,
  verify,
  verifyToken,
  webhookEffect,
} = lib;
