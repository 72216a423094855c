/**
 * Emitting effects from inside a graph run. The processor puts an
 * EffectCollector into the run's config; a node or tool calls
 * `emitEffect(config, type, payload)`. The payload is validated right there
 * (an unregistered type or a bad payload throws at emit time), and the
 * collected effects commit in the run's transaction with the checkpoint.
 */
import type { EffectRegistry, ValidatedEffect } from "./registry.js";

/** The configurable key under which a run carries its collector. */
export const EFFECTS_CONFIG_KEY = "sessiond_effects";

export interface EmitOptions {
  /** Overrides the default dedupe key (session/event_seq/type/ordinal). */
  dedupeKey?: string;
  /** Do not run before this time (handler effects). */
  availableAt?: Date;
}

export interface PendingEffect extends ValidatedEffect {
  dedupeKey?: string;
  availableAt?: Date;
}

/** Collects the effects of one run. */
export class EffectCollector {
  readonly #registry: EffectRegistry;
  readonly #effects: PendingEffect[] = [];

  constructor(registry: EffectRegistry) {
    this.#registry = registry;
  }

  emit(type: string, payload: unknown, options: EmitOptions = {}): void {
    const valid = this.#registry.validate(type, payload);
    this.#effects.push({
      ...valid,
      ...(options.dedupeKey ? { dedupeKey: options.dedupeKey } : {}),
      ...(options.availableAt ? { availableAt: options.availableAt } : {}),
    });
  }

  /** Everything emitted so far, in order. */
  get effects(): readonly PendingEffect[] {
    return this.#effects;
  }
}

/** Emits an effect from a node or tool of a graph run by sessiond. */
export function emitEffect(
  config: { configurable?: Record<string, unknown> } | undefined,
  type: string,
  payload: unknown,
  options?: EmitOptions,
): void {
  const collector = config?.configurable?.[EFFECTS_CONFIG_KEY];
  if (!(collector instanceof EffectCollector)) {
    throw new Error("emitEffect: no sessiond run in this config (pass the node's config through)");
  }
  collector.emit(type, payload, options);
}
