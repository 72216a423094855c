/**
 * The built-in `webhook` effect: POST a JSON body to an allow-listed URL.
 *
 * The allow-list is mandatory and checked twice: when the effect is emitted
 * (the payload schema rejects the URL with a clear message, so a bad URL never
 * reaches the outbox) and again by the handler (an effect enqueued by other
 * means, or after the list shrank, goes dead instead of being sent).
 *
 * Every attempt carries `Idempotency-Key: <the effect's dedupe key>`, the same
 * on every retry, so the receiver can drop repeats: delivery is at least once.
 * Redirects are not followed (they could leave the allow-list).
 *
 * Outcome by response: 2xx done; 408, 429, 5xx, timeouts and network errors
 * are retried with the runner's backoff; other 4xx and 3xx are permanent (the
 * effect goes dead at once, with the status and the start of the body kept).
 */
import { z } from "zod";
import { type EffectDefinition, type EffectRecord, PermanentEffectError } from "./registry.js";

export interface WebhookEffectOptions {
  /**
   * Hosts a webhook may be sent to: `example.com` (any port), `example.com:8443`
   * (that port only), `*.example.com` (its subdomains), `127.0.0.1`, `[::1]:8080`.
   * Required; an empty list allows nothing.
   */
  allowedHosts: readonly string[];
  /** Time for the whole request (response headers and the start of the body), in ms (default 10000). */
  timeoutMs?: number;
  /** The effect type name (default `webhook`). */
  type?: string;
  /** Attempts before the effect is dead (default 10). */
  maxAttempts?: number;
  /** Deliver a session's webhooks one at a time in seq order (default false). */
  ordered?: boolean;
}

/** A webhook effect's payload, as emitted. */
export interface WebhookPayload {
  /** An http(s) URL whose host is on the allow-list. */
  url: string;
  /** Any JSON value, sent as the request body. */
  body: z.core.util.JSONType;
  /** Extra request headers (not Host, Content-Length, Connection, Transfer-Encoding or Idempotency-Key). */
  headers?: Record<string, string>;
}

const HOST_ENTRY = /^(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:\d{1,5})?$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const RESERVED_HEADERS = new Set(["host", "content-length", "connection", "transfer-encoding", "idempotency-key"]);
const SNIPPET_CHARS = 300;

function normaliseHosts(hosts: readonly string[]): string[] {
  if (!Array.isArray(hosts))
    throw new TypeError("webhookEffect: allowedHosts is required (an array; empty allows none)");
  return hosts.map((entry) => {
    const host = String(entry).trim().toLowerCase();
    if (!HOST_ENTRY.test(host)) {
      throw new TypeError(
        `webhookEffect: invalid allowedHosts entry ${JSON.stringify(entry)} (use host, host:port or *.domain)`,
      );
    }
    return host;
  });
}

function hostAllowed(url: URL, allowed: readonly string[]): boolean {
  const hostname = url.hostname.toLowerCase();
  const host = url.host.toLowerCase();
  return allowed.some((entry) => {
    if (entry.startsWith("*.")) return hostname.endsWith(entry.slice(1)) && hostname.length > entry.length - 1;
    return entry === hostname || entry === host;
  });
}

function isJson(value: unknown): boolean {
  if (value === null || typeof value === "string" || typeof value === "boolean") return true;
  if (typeof value === "number") return Number.isFinite(value);
  if (Array.isArray(value)) return value.every(isJson);
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.values(value).every(isJson);
  }
  return false;
}

/** The payload schema of a webhook effect with this allow-list. */
export function webhookPayloadSchema(allowedHosts: readonly string[]): z.ZodType<WebhookPayload> {
  const allowed = normaliseHosts(allowedHosts);
  return z.strictObject({
    url: z
      .string({ error: "url must be a string" })
      .max(2048, { error: "url is longer than 2048 characters" })
      .superRefine((value, ctx) => {
        let url: URL;
        try {
          url = new URL(value);
        } catch {
          ctx.addIssue({ code: "custom", message: `url ${JSON.stringify(value)} is not an absolute URL` });
          return;
        }
        if (url.protocol !== "http:" && url.protocol !== "https:") {
          ctx.addIssue({ code: "custom", message: `url must use http or https, not ${url.protocol.slice(0, -1)}` });
          return;
        }
        if (url.username || url.password) {
          ctx.addIssue({ code: "custom", message: "url must not carry credentials (send them in headers)" });
          return;
        }
        if (!hostAllowed(url, allowed)) {
          ctx.addIssue({
            code: "custom",
            message: allowed.length
              ? `host ${url.host} is not on the webhook allow-list (${allowed.join(", ")})`
              : `host ${url.host} is not allowed: the webhook allow-list is empty`,
          });
        }
      }),
    body: z
      .unknown()
      .refine((value) => value !== undefined, { error: "body is required (any JSON value; null for none)" })
      .refine(isJson, { error: "body must be a JSON value (objects, arrays, strings, finite numbers, booleans, null)" })
      .transform((value) => value as z.core.util.JSONType),
    headers: z
      .record(z.string(), z.string({ error: "header values must be strings" }))
      .superRefine((headers, ctx) => {
        for (const [name, value] of Object.entries(headers)) {
          if (!HEADER_NAME.test(name)) {
            ctx.addIssue({ code: "custom", message: `header name ${JSON.stringify(name)} is not an HTTP token` });
          } else if (RESERVED_HEADERS.has(name.toLowerCase())) {
            ctx.addIssue({ code: "custom", message: `header ${name} is set by sessiond and cannot be overridden` });
          } else if (!HEADER_VALUE.test(value) || value.length > 8192) {
            ctx.addIssue({
              code: "custom",
              message: `header ${name}: values must be at most 8192 characters without control characters`,
            });
          }
        }
      })
      .optional(),
  });
}

/** A header-safe form of the dedupe key (stable across attempts). */
function idempotencyKey(dedupeKey: string): string {
  return /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/.test(dedupeKey) ? dedupeKey : encodeURIComponent(dedupeKey);
}

async function readSnippet(response: Response): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    while (text.length < SNIPPET_CHARS) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    // A body cut short tells the operator nothing more than the status does.
  } finally {
    await reader.cancel().catch(() => {});
  }
  return text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS)}…` : text;
}

function describeCause(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === "string" ? `${code}: ${cause.message}` : cause.message;
  }
  return String(cause);
}

/**
 * The built-in `webhook` effect type: `{ url, body, headers? }`, POSTed as JSON
 * with `Idempotency-Key` = the effect's dedupe key. Register it, then emit
 * `emitEffect(config, "webhook", { url, body })` from a graph node.
 */
export function webhookEffect(options: WebhookEffectOptions): EffectDefinition<WebhookPayload> {
  const schema = webhookPayloadSchema(options.allowedHosts);
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
    throw new RangeError(`webhookEffect: timeoutMs must be a positive integer, got ${String(options.timeoutMs)}`);
  }

  async function handler(effect: EffectRecord<WebhookPayload>, context: { signal: AbortSignal }): Promise<void> {
    const parsed = schema.safeParse(effect.payload);
    if (!parsed.success) {
      throw new PermanentEffectError(`invalid webhook payload: ${z.prettifyError(parsed.error)}`);
    }
    const { url, body, headers } = parsed.data;
    // No query string in messages: it may carry a token, and errors are stored.
    const target = (() => {
      const u = new URL(url);
      return `${u.origin}${u.pathname}`;
    })();
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([context.signal, timeout]);
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "sessiond-webhook",
          ...headers,
          "idempotency-key": idempotencyKey(effect.dedupeKey),
        },
        body: JSON.stringify(body),
        redirect: "manual",
        signal,
      });
    } catch (error) {
      if (timeout.aborted) throw new Error(`webhook POST ${target}: no response within ${timeoutMs} ms`);
      if (context.signal.aborted)
        throw new Error(`webhook POST ${target}: aborted (${describeCause(context.signal.reason)})`);
      throw new Error(`webhook POST ${target} failed: ${describeCause(error)}`, { cause: error });
    }
    if (response.ok) {
      await response.body?.cancel().catch(() => {});
      return;
    }
    const snippet = await readSnippet(response);
    const message = `webhook POST ${target} answered ${response.status}${snippet ? `: ${snippet}` : ""}`;
    const status = response.status;
    if (status === 408 || status === 429 || status >= 500) throw new Error(message);
    if (status >= 300 && status < 400) throw new PermanentEffectError(`${message} (redirects are not followed)`);
    if (status >= 400) throw new PermanentEffectError(message);
    throw new Error(message);
  }

  return {
    type: options.type ?? "webhook",
    schema,
    delivery: "handler",
    ...(options.ordered !== undefined ? { ordered: options.ordered } : {}),
    ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
    handler,
  };
}
