export {
  EFFECT_STATUSES,
  type EffectStatus,
  type EffectSummary,
  listEffects,
  retryEffect,
} from "./admin.js";
export {
  EFFECTS_CONFIG_KEY,
  EffectCollector,
  type EmitOptions,
  emitEffect,
  type PendingEffect,
} from "./emit.js";
export {
  createEffectRegistry,
  type EffectContext,
  type EffectDefinition,
  type EffectHandler,
  type EffectRecord,
  EffectRegistry,
  EffectValidationError,
  errorPayload,
  interruptPayload,
  PermanentEffectError,
  sendMessagePayload,
  type ValidatedEffect,
} from "./registry.js";
export {
  type EffectOutcome,
  type EffectOutcomeStatus,
  EffectRunner,
  type EffectRunnerLogger,
  type EffectRunnerOptions,
} from "./runner.js";
export { type WebhookEffectOptions, type WebhookPayload, webhookEffect, webhookPayloadSchema } from "./webhook.js";
