/**
 * The wire protocol, in one place: every frame a client may send (zod
 * schemas, validated at the edge), every frame the server sends (types), the
 * stable error codes and the WebSocket close codes. docs/protocol.md describes
 * the same things for client authors; keep the two in step.
 */
import { z } from "zod";

/** The WebSocket subprotocol sessiond speaks (echoed by the server). */
export const SUBPROTOCOL = "sessiond.v1";
/** Prefix of a bearer token carried as a subprotocol (browsers cannot set headers). */
export const BEARER_SUBPROTOCOL_PREFIX = "bearer.";

/** Same rule as the SQL domain sessiond.session_key. */
export const SESSION_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$/;

export function isSessionKey(value: string): boolean {
  return SESSION_KEY_PATTERN.test(value);
}

/** Stable error codes (error frames and HTTP error bodies). */
export const ErrorCode = {
  badJson: "bad_json",
  badFrame: "bad_frame",
  unknownType: "unknown_type",
  tooLarge: "too_large",
  rateLimited: "rate_limited",
  busy: "busy",
  ackBeyondHead: "ack_beyond_head",
  resumeBeyondHead: "resume_beyond_head",
  badSessionKey: "bad_session_key",
  unauthorized: "unauthorized",
  forbidden: "forbidden",
  notFound: "not_found",
  shuttingDown: "shutting_down",
  internal: "internal",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** WebSocket close codes the server uses. */
export const CloseCode = {
  /** The server closed the socket normally. */
  normal: 1000,
  /** A frame exceeded the maximum payload (sent by the ws library). */
  tooLarge: 1009,
  /** The server is shutting down or restarting: reconnect (to another node) and resume. */
  serviceRestart: 1012,
  /** The token expired while the socket was open: get a new token and reconnect. */
  tokenExpired: 4401,
  /** Too many rejected frames (bad JSON, bad frames, unknown types, rate limited) in a short time. */
  abuse: 4400,
  /** The client reads too slowly: its outbound buffer passed the limit. Reconnect and resume. */
  slowConsumer: 4408,
} as const;

const requestId = z.string().min(1, "requestId must not be empty").max(200, "requestId is at most 200 characters");
const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const StrategySchema = z.enum(["enqueue", "reject", "interrupt"]);

export const MessageFrameSchema = z.object({
  type: z.literal("message"),
  requestId,
  text: z.string().min(1, "text must not be empty"),
  strategy: StrategySchema.optional(),
});
export const AckFrameSchema = z.object({ type: z.literal("ack"), seq });
export const ResumeFrameSchema = z.object({ type: z.literal("resume"), after: seq });
/** How deeply an answer's `value` may nest: deeper JSON overflows the serialisers on its way to the database. */
export const MAX_VALUE_DEPTH = 64;

/** True when `value` nests at most `max` levels of arrays/objects (checked without recursion). */
export function nestsAtMost(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const [node, depth] = item;
    if (node === null || typeof node !== "object") continue;
    if (depth >= max) return false;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return true;
}

export const AnswerFrameSchema = z.object({
  type: z.literal("answer"),
  requestId,
  value: z
    .unknown()
    .refine((v) => nestsAtMost(v, MAX_VALUE_DEPTH), `value nests deeper than ${MAX_VALUE_DEPTH} levels`),
});

/** Client → server frames, by type. Unknown fields are ignored. */
export const ClientFrameSchemas = {
  message: MessageFrameSchema,
  ack: AckFrameSchema,
  resume: ResumeFrameSchema,
  answer: AnswerFrameSchema,
} as const;

export type MessageFrame = z.infer<typeof MessageFrameSchema>;
export type AckFrame = z.infer<typeof AckFrameSchema>;
export type ResumeFrame = z.infer<typeof ResumeFrameSchema>;
export type AnswerFrame = z.infer<typeof AnswerFrameSchema>;
export type ClientFrame = MessageFrame | AckFrame | ResumeFrame | AnswerFrame;

/** HTTP bodies. */
export const MessageBodySchema = MessageFrameSchema.omit({ type: true });
export const AnswerBodySchema = AnswerFrameSchema.omit({ type: true });
export const AckBodySchema = AckFrameSchema.omit({ type: true });

export type ParsedFrame = { ok: true; frame: ClientFrame } | { ok: false; code: ErrorCode; message: string };

/** Parses one inbound text frame; never throws. */
export function parseClientFrame(text: string): ParsedFrame {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, code: ErrorCode.badJson, message: "the frame is not valid JSON" };
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return { ok: false, code: ErrorCode.badFrame, message: "a frame must be a JSON object with a type" };
  }
  const type = (raw as { type?: unknown }).type;
  if (typeof type !== "string") {
    return { ok: false, code: ErrorCode.badFrame, message: "a frame must have a string type" };
  }
  if (!Object.hasOwn(ClientFrameSchemas, type)) {
    const known = Object.keys(ClientFrameSchemas).join(", ");
    return {
      ok: false,
      code: ErrorCode.unknownType,
      message: `unknown frame type ${JSON.stringify(type.slice(0, 64))} (known: ${known})`,
    };
  }
  const schema = ClientFrameSchemas[type as keyof typeof ClientFrameSchemas];
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    return { ok: false, code: ErrorCode.badFrame, message: `invalid ${type} frame: ${describeIssues(parsed.error)}` };
  }
  return { ok: true, frame: parsed.data as ClientFrame };
}

/** A short, single-line description of zod issues (no input echoed back). */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "(frame)"}: ${issue.message}`)
    .join("; ");
}

// ---------------------------------------------------------------------------
// Server → client frames.
// ---------------------------------------------------------------------------

export interface AcceptedFrame {
  type: "accepted";
  requestId: string;
  eventSeq: number;
  duplicate: boolean;
}

/** A live token (not durable, carries no seq). */
export interface TokenOutFrame {
  type: "token";
  requestId: string;
  eventSeq: number;
  index: number;
  text: string;
}

/** A durable assistant (or other role) message: one send_message effect. */
export interface MessageOutFrame {
  type: "message";
  seq: number;
  eventSeq: number | null;
  requestId: string;
  role: string;
  content: string;
}

/** The graph paused and asks the human something; answer with an `answer` frame. */
export interface InterruptOutFrame {
  type: "interrupt";
  seq: number;
  eventSeq: number | null;
  requestId: string;
  value: unknown;
}

/** An event could not be processed (an `error` effect). */
export interface FailureOutFrame {
  type: "failure";
  seq: number;
  eventSeq: number | null;
  requestId: string | null;
  code: string;
  message: string;
}

/** Any other client-delivered effect type. */
export interface EffectOutFrame {
  type: "effect";
  seq: number;
  eventSeq: number | null;
  effectType: string;
  payload: Record<string, unknown>;
}

/** A durable frame: it has a seq, is replayed on resume, and is acked by the client. */
export type DurableFrame = MessageOutFrame | InterruptOutFrame | FailureOutFrame | EffectOutFrame;

export interface ErrorOutFrame {
  type: "error";
  code: ErrorCode;
  message: string;
  requestId?: string;
}

export interface ResumedFrame {
  type: "resumed";
  after: number;
  head: number;
}

export type ServerFrame = AcceptedFrame | TokenOutFrame | DurableFrame | ErrorOutFrame | ResumedFrame;

export function errorFrame(code: ErrorCode, message: string, requestIdValue?: string): ErrorOutFrame {
  return { type: "error", code, message, ...(requestIdValue !== undefined ? { requestId: requestIdValue } : {}) };
}
