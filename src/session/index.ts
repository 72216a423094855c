export { RUN_CONFIG_KEY, SessiondCheckpointer, type SessiondCheckpointerOptions } from "./checkpointer.js";
export { LEASE_LOST, OUT_OF_ORDER } from "./leases.js";
export {
  type Logger,
  type ProcessorHooks,
  type ProcessorOptions,
  type RunCheckpointer,
  SessionProcessor,
  silentLogger,
} from "./processor.js";
export { GraphRunner, messageText, type RunnableGraph, UnsupportedEventError } from "./run.js";
export { chooseBatch, isPermanent } from "./run-policy.js";
export {
  createRuntime,
  type DoubleTextStrategy,
  type GraphLike,
  type ResumeInput,
  type Runtime,
  type RuntimeOptions,
  type SendMessageInput,
  SessionBusyError,
} from "./runtime.js";
export { TokenBus, type TokenFrame, type TokenListener } from "./token-bus.js";
