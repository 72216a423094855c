/**
 * Session tokens: `v1.<payload>.<signature>`, where payload is the base64url
 * JSON `{"k": sessionKey, "exp": unixSeconds}` and signature is the base64url
 * HMAC-SHA256 of `v1.<payload>` under the server secret. A token binds its
 * holder to one session key until it expires; nothing else is in it.
 *
 * Only characters legal in an HTTP token appear (base64url and dots), so a
 * token also fits in `Sec-WebSocket-Protocol` as `bearer.<token>`.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { BEARER_SUBPROTOCOL_PREFIX, isSessionKey } from "./protocol.js";

const VERSION = "v1";
/** Tokens may not live longer than this. */
export const MAX_TOKEN_TTL_SECONDS = 366 * 24 * 3600;

const PayloadSchema = z.object({ k: z.string(), exp: z.number().int().positive() });

function sign(secret: string, body: string): Buffer {
  return createHmac("sha256", secret).update(body).digest();
}

export interface MintOptions {
  /** Lifetime in seconds (default 24 h, at most MAX_TOKEN_TTL_SECONDS). */
  ttlSeconds?: number;
  /** Now, in ms since the epoch (tests). */
  now?: number;
}

/** Mints a token for one session key. */
export function mintToken(secret: string, sessionKey: string, options: MintOptions = {}): string {
  if (!isSessionKey(sessionKey)) throw new Error(`invalid session key ${JSON.stringify(sessionKey)}`);
  const ttl = options.ttlSeconds ?? 24 * 3600;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
    throw new Error(`token ttl must be 1..${MAX_TOKEN_TTL_SECONDS} seconds`);
  }
  const exp = Math.floor((options.now ?? Date.now()) / 1000) + ttl;
  const body = `${VERSION}.${Buffer.from(JSON.stringify({ k: sessionKey, exp })).toString("base64url")}`;
  return `${body}.${sign(secret, body).toString("base64url")}`;
}

export type VerifiedToken =
  | { ok: true; sessionKey: string; expiresAt: number }
  | { ok: false; reason: "malformed" | "bad_signature" | "expired" };

/** Checks a token's signature (timing-safe) and expiry. */
export function verifyToken(secret: string, token: string, now = Date.now()): VerifiedToken {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] !== VERSION || token.length > 2000) return { ok: false, reason: "malformed" };
  const body = `${parts[0]}.${parts[1]}`;
  const given = Buffer.from(parts[2] as string, "base64url");
  const expected = sign(secret, body);
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return { ok: false, reason: "bad_signature" };
  let payload: z.infer<typeof PayloadSchema>;
  try {
    const parsed = PayloadSchema.safeParse(JSON.parse(Buffer.from(parts[1] as string, "base64url").toString("utf8")));
    if (!parsed.success) return { ok: false, reason: "malformed" };
    payload = parsed.data;
  } catch {
    return { ok: false, reason: "malformed" };
  }
  const expiresAt = payload.exp * 1000;
  if (expiresAt <= now) return { ok: false, reason: "expired" };
  return { ok: true, sessionKey: payload.k, expiresAt };
}

export type Authorization =
  | { ok: true; expiresAt: number }
  | { ok: false; status: 401 | 403; code: "unauthorized" | "forbidden"; message: string };

/** Decides whether `token` (possibly absent) may act on `sessionKey`. */
export function authorize(
  secret: string,
  token: string | undefined,
  sessionKey: string,
  now = Date.now(),
): Authorization {
  if (!token) return { ok: false, status: 401, code: "unauthorized", message: "a bearer token is required" };
  const verified = verifyToken(secret, token, now);
  if (!verified.ok) {
    const message =
      verified.reason === "expired" ? "the token has expired" : "the token is not valid (malformed or wrong signature)";
    return { ok: false, status: 401, code: "unauthorized", message };
  }
  if (verified.sessionKey !== sessionKey) {
    return { ok: false, status: 403, code: "forbidden", message: "the token is for another session" };
  }
  return { ok: true, expiresAt: verified.expiresAt };
}

/**
 * The token of a request: `Authorization: Bearer <token>`, else a
 * `bearer.<token>` entry of `Sec-WebSocket-Protocol`, else (GET only, for
 * EventSource) the `access_token` query parameter.
 */
export function tokenFromRequest(headers: Headers, url: URL, method: string): string | undefined {
  const authorization = headers.get("authorization");
  if (authorization) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match?.[1];
  }
  const protocols = headers.get("sec-websocket-protocol");
  if (protocols) {
    for (const entry of protocols.split(",")) {
      const value = entry.trim();
      if (value.startsWith(BEARER_SUBPROTOCOL_PREFIX)) return value.slice(BEARER_SUBPROTOCOL_PREFIX.length);
    }
  }
  if (method === "GET") return url.searchParams.get("access_token") ?? undefined;
  return undefined;
}

/** Where the embedded default keeps its generated secret. */
export function secretPath(dataDir: string): string {
  return join(dataDir, "secret");
}

/**
 * Reads the secret kept in `dataDir`, creating it (32 random bytes, mode
 * 0600) on first use. Safe against two processes creating it at once: the
 * file is created exclusively and the loser reads the winner's secret.
 */
export async function loadOrCreateSecret(dataDir: string): Promise<{ secret: string; created: boolean }> {
  const path = secretPath(dataDir);
  const fresh = randomBytes(32).toString("base64url");
  try {
    await writeFile(path, `${fresh}\n`, { mode: 0o600, flag: "wx" });
    return { secret: fresh, created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) {
    throw new Error(`${path} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
  }
  const secret = (await readFile(path, "utf8")).trim();
  if (secret.length < 32) throw new Error(`${path} holds no usable secret (fewer than 32 characters)`);
  return { secret, created: false };
}

/** Parses a TTL such as `3600`, `90s`, `15m`, `24h` or `7d` into seconds. */
export function parseTtl(text: string): number {
  const match = /^(\d+)\s*([smhd]?)$/.exec(text.trim());
  if (!match) throw new Error(`invalid ttl ${JSON.stringify(text)}: use seconds or a number with s, m, h or d`);
  const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[match[2] as "" | "s" | "m" | "h" | "d"];
  const seconds = Number(match[1]) * unit;
  if (seconds < 1 || seconds > MAX_TOKEN_TTL_SECONDS) {
    throw new Error(`invalid ttl ${JSON.stringify(text)}: must be between 1 second and 366 days`);
  }
  return seconds;
}
