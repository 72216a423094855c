/**
 * The effect registry: type → zod schema for the payload → where it goes.
 * `client` effects are delivered to the session's sockets and complete when a
 * client acks them; `handler` effects are run by the effect runner with the
 * registered handler, with retries, backoff and a dead letter.
 */
import { z } from "zod";
import type { Db } from "../db/index.js";

/** An effect as a handler sees it. */
export interface EffectRecord<P = unknown> {
  id: string;
  sessionKey: string;
  seq: number;
  eventSeq: number | null;
  type: string;
  payload: P;
  dedupeKey: string;
  /** 1 on the first attempt. */
  attempts: number;
  maxAttempts: number;
}

export interface EffectContext {
  db: Db;
  /** Aborted when the runner stops or the claim is about to expire. */
  signal: AbortSignal;
}

export type EffectHandler<P> = (effect: EffectRecord<P>, context: EffectContext) => Promise<void>;

export interface EffectDefinition<P = unknown> {
  /** Lowercase [a-z][a-z0-9_.]*, at most 64 characters. */
  type: string;
  /** Validates (and may transform) the payload when the effect is emitted. */
  schema: z.ZodType<P>;
  /** `client`: delivered to sockets, completed by ack. `handler`: run by `handler`. */
  delivery: "client" | "handler";
  /** Run one at a time, in seq order, with the session's other ordered effects. */
  ordered?: boolean;
  /** Attempts before the effect is dead (default 10). */
  maxAttempts?: number;
  /** Required for `handler` effects. Throw to fail (retried); throw PermanentEffectError to go dead at once. */
  handler?: EffectHandler<P>;
}

/** Thrown by a handler for a failure no retry can fix: the effect goes dead at once. */
export class PermanentEffectError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PermanentEffectError";
  }
}

/** Thrown at emit time for an unregistered type or an invalid payload. */
export class EffectValidationError extends Error {
  readonly code = "invalid_effect";
  constructor(message: string) {
    super(message);
    this.name = "EffectValidationError";
  }
}

/** A validated effect, ready for sessiond.enqueue_effects. */
export interface ValidatedEffect {
  type: string;
  payload: Record<string, unknown>;
  delivery: "client" | "handler";
  ordered: boolean;
  maxAttempts: number;
}

const TYPE_NAME = /^[a-z][a-z0-9_.]{0,63}$/;

export class EffectRegistry {
  readonly #types = new Map<string, EffectDefinition<unknown>>();

  /** Registers an effect type; a type can be registered once. */
  register<P>(definition: EffectDefinition<P>): this {
    if (!TYPE_NAME.test(definition.type))
      throw new Error(`invalid effect type name ${JSON.stringify(definition.type)}`);
    if (this.#types.has(definition.type)) throw new Error(`effect type ${definition.type} is already registered`);
    if (definition.delivery === "handler" && !definition.handler) {
      throw new Error(`effect type ${definition.type} has delivery "handler" but no handler`);
    }
    this.#types.set(definition.type, definition as EffectDefinition<unknown>);
    return this;
  }

  get(type: string): EffectDefinition<unknown> | undefined {
    return this.#types.get(type);
  }

  /** Validates an emitted effect; throws EffectValidationError with a clear message. */
  validate(type: string, payload: unknown): ValidatedEffect {
    const definition = this.#types.get(type);
    if (!definition) {
      throw new EffectValidationError(
        `effect type ${JSON.stringify(type)} is not registered (registered: ${[...this.#types.keys()].join(", ")})`,
      );
    }
    const parsed = definition.schema.safeParse(payload);
    if (!parsed.success) {
      throw new EffectValidationError(`invalid ${type} payload: ${z.prettifyError(parsed.error)}`);
    }
    const value = parsed.data;
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new EffectValidationError(`invalid ${type} payload: an effect payload must be a JSON object`);
    }
    return {
      type,
      payload: value as Record<string, unknown>,
      delivery: definition.delivery,
      ordered: definition.ordered ?? false,
      maxAttempts: definition.maxAttempts ?? 10,
    };
  }

  /** The types the effect runner claims: those with a handler. */
  handlerTypes(): string[] {
    return [...this.#types.values()].filter((d) => d.delivery === "handler").map((d) => d.type);
  }

  types(): string[] {
    return [...this.#types.keys()];
  }
}

/** Payload of `send_message`: one whole assistant message (never one per token). */
export const sendMessagePayload = z.object({
  requestId: z.string(),
  role: z.enum(["assistant", "user", "system", "tool"]).default("assistant"),
  content: z.string(),
  final: z.boolean().default(true),
});

/** Payload of `error`: tells the client an event could not be processed. */
export const errorPayload = z.object({
  requestId: z.string().optional(),
  code: z.string(),
  message: z.string(),
});

/** Payload of `interrupt`: the graph asked the human something and waits for a `resume`. */
export const interruptPayload = z.object({
  requestId: z.string(),
  value: z.unknown(),
});

/** A registry with sessiond's client-delivered types: send_message, error, interrupt. */
export function createEffectRegistry(): EffectRegistry {
  return new EffectRegistry()
    .register({ type: "send_message", schema: sendMessagePayload, delivery: "client" })
    .register({ type: "error", schema: errorPayload, delivery: "client" })
    .register({ type: "interrupt", schema: interruptPayload, delivery: "client" });
}
