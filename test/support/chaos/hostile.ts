/**
 * Hostile inputs, drawn from a seeded Rng so every run can be replayed:
 * WebSocket frames (random JSON, malformed and truncated JSON, type-confused
 * fields, oversize, binary, invalid UTF-8), HTTP requests (methods, paths,
 * bodies, headers), session keys (path traversal, encoded slashes, unicode,
 * 10 KB, SQL metacharacters, NUL) and tokens (forged, expired, tampered,
 * cross-session, malformed). Each generator names the kind of input it made,
 * so the report can say what was tried.
 */
import { createHmac } from "node:crypto";
import { isSessionKey } from "../../../src/server/protocol.js";
import { pct } from "./fuzz-io.js";
import type { Rng } from "./prng.js";

/** Values that confuse a schema: wrong types, edge numbers, hostile strings. */
const CONFUSING: readonly unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  -0,
  1.5,
  2 ** 53 + 2,
  -(2 ** 53),
  1e308,
  "",
  " ",
  "0",
  "-1",
  "1e9",
  "NaN",
  "null",
  [],
  [1, "a"],
  {},
  { $gt: "" },
  JSON.parse('{"__proto__": {"polluted": true}}'),
  "\u0000",
  "a\u0000b",
  "\ud800",
  "\udfff\ud800",
  "\u202e\u2066",
  "🔥🚀",
  "'; drop table sessiond.events; --",
  "' or '1'='1",
  "<script>alert(1)</script>",
  "../../etc/passwd",
  "%00%2F..",
  "\r\nSet-Cookie: x=1",
  "$" + "{process.exit()}",
  "{{7*7}}",
];

const PRINTABLE = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
const WIDE = 'aé中𝄞\u0000\u0007\u202e\ufeff\ud83d\ude00\n\t"\\';

export function confusing(rng: Rng): unknown {
  if (rng.chance(0.3)) return randomString(rng, rng.int(0, 40));
  return rng.pick(CONFUSING);
}

export function randomString(rng: Rng, length: number): string {
  return rng.chance(0.7) ? rng.string(length, PRINTABLE) : rng.string(length, WIDE);
}

/** A random JSON value, up to `depth` levels deep. */
export function randomJson(rng: Rng, depth = 3): unknown {
  const roll = rng.int(0, depth > 0 ? 7 : 4);
  switch (roll) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.chance(0.5) ? rng.int(-1e6, 1e6) : (rng.next() - 0.5) * 10 ** rng.int(0, 300);
    case 3:
    case 4:
      return confusing(rng);
    case 5:
      return Array.from({ length: rng.int(0, 4) }, () => randomJson(rng, depth - 1));
    default: {
      const out: Record<string, unknown> = {};
      for (let i = rng.int(0, 4); i > 0; i--) {
        out[
          rng.chance(0.5)
            ? rng.pick(["type", "requestId", "text", "seq", "after", "value", "strategy"])
            : randomString(rng, 6)
        ] = randomJson(rng, depth - 1);
      }
      return out;
    }
  }
}

/** A valid frame of each type, as a base to break. */
function validFrame(rng: Rng, n: number): Record<string, unknown> {
  switch (rng.int(0, 3)) {
    case 0:
      return { type: "message", requestId: `fz-${n}`, text: `fuzz ${n}` };
    case 1:
      return { type: "ack", seq: rng.int(0, 3) };
    case 2:
      return { type: "resume", after: rng.int(0, 3) };
    default:
      return { type: "answer", requestId: `fz-a-${n}`, value: randomJson(rng, 2) };
  }
}

export interface WsInput {
  kind: string;
  data: string | Buffer;
  binary?: boolean;
}

/** One hostile WebSocket frame (`maxPayload`: the server's limit, for the oversize kind). */
export function wsFrame(rng: Rng, n: number, maxPayload: number): WsInput {
  const roll = rng.int(0, 99);
  if (roll < 15) return { kind: "random-json", data: JSON.stringify(randomJson(rng, 4)) ?? "null" };
  if (roll < 35) {
    const frame = validFrame(rng, n);
    const field = rng.pick(Object.keys(frame));
    frame[field === "type" && rng.chance(0.5) ? "type" : field] = confusing(rng);
    if (rng.chance(0.3)) frame[randomString(rng, 5)] = confusing(rng);
    return { kind: "type-confused", data: JSON.stringify(frame) ?? "{}" };
  }
  if (roll < 50) {
    const text = JSON.stringify(validFrame(rng, n));
    return { kind: "truncated", data: text.slice(0, rng.int(0, text.length - 1)) };
  }
  if (roll < 58) return { kind: "malformed-json", data: randomString(rng, rng.int(1, 200)) };
  if (roll < 63) {
    const nested = rng.int(100, 20_000);
    return {
      kind: "deep-nesting",
      data: `{"type":"answer","requestId":"fz-deep-${n}","value":${"[".repeat(nested)}${"]".repeat(nested)}}`,
    };
  }
  if (roll < 67)
    return {
      kind: "oversize",
      data: JSON.stringify({
        type: "message",
        requestId: `fz-big-${n}`,
        text: "x".repeat(maxPayload + rng.int(1, 5000)),
      }),
    };
  if (roll < 69) {
    // Just under the frame limit: stored as an event, its reply may exceed the database's payload limit.
    const text = rng.string(maxPayload - 200 - rng.int(0, 2000), "abcdefghij");
    return { kind: "near-limit", data: JSON.stringify({ type: "message", requestId: `fz-near-${n}`, text }) };
  }
  if (roll < 77) return { kind: "binary", data: rng.bytes(rng.int(0, 300)), binary: true };
  if (roll < 80)
    return {
      kind: "invalid-utf8",
      data: Buffer.concat([
        Buffer.from('{"type":"message","text":"'),
        Buffer.from([0xc3, 0x28, 0xff, 0xfe]),
        Buffer.from('"}'),
      ]),
    };
  if (roll < 85) {
    const frame = validFrame(rng, n);
    const hostile = rng.pick(["\u0000", "a\u0000b", "\ud800", "🔥".repeat(50), "\u202e", "'; drop table x; --"]);
    if ("text" in frame) frame.text = hostile;
    if ("requestId" in frame && rng.chance(0.5)) frame.requestId = hostile;
    return { kind: "hostile-string", data: JSON.stringify(frame) };
  }
  if (roll < 90) {
    return {
      kind: "proto-pollution",
      data: `{"type":"message","requestId":"fz-p-${n}","text":"p","__proto__":{"type":"ack"},"constructor":{"prototype":{"x":1}}}`,
    };
  }
  return { kind: "valid", data: JSON.stringify(validFrame(rng, n)) };
}

export interface HostileKey {
  kind: string;
  /** As it goes into the path (already percent-encoded where the kind says so). */
  path: string;
  /** The key as the server would decode it, for forging a token bound to it. */
  decoded: string;
}

/** A session key that must be refused with 400 bad_session_key. */
export function hostileKey(rng: Rng, victim: string): HostileKey {
  const enc = pct;
  const pick = rng.int(0, 13);
  const raw = (kind: string, path: string, decoded: string) => ({ kind, path, decoded });
  switch (pick) {
    case 0:
      return raw("traversal", `..%2F${victim}`, `../${victim}`);
    case 1:
      return raw("traversal-dots", "%2e%2e", "..");
    case 2:
      return raw("encoded-slash", `a%2F${victim}`, `a/${victim}`);
    case 3: {
      const key = rng.pick(["ключ", "🔑", "a\u202eb", "ａｂｃ", "naïve"]);
      return raw("unicode", enc(key), key);
    }
    case 4: {
      const key = "k".repeat(10 * 1024);
      return raw("10kb", key, key);
    }
    case 5: {
      const key = rng.pick(["a';drop table sessiond.events;--", "a' or '1'='1", 'a"; select pg_sleep(10);--', "a\\'"]);
      return raw("sql", enc(key), key);
    }
    case 6:
      return raw("nul", `a%00${victim}`, `a\u0000${victim}`);
    case 7:
      return raw("leading-dash", "-abc", "-abc");
    case 8: {
      const key = "a".repeat(201);
      return raw("201-chars", key, key);
    }
    case 9:
      return raw("space", "a%20b", "a b");
    case 10:
      return raw("percent-garbage", "%zz%", "%zz%");
    case 11:
      return raw("double-encoded", `..%252F${victim}`, `..%2F${victim}`);
    case 12:
      return raw("newline", "a%0Ab", "a\nb");
    default: {
      const drawn = randomString(rng, rng.int(1, 30));
      // A random string may happen to be a valid key: a leading "." never is.
      const key = isSessionKey(drawn) ? `.${drawn}` : drawn;
      return raw("random", enc(key), key);
    }
  }
}

/** A token in the server's format, signed with `secret`, whatever the payload. */
export function signToken(secret: string, payload: unknown, version = "v1"): string {
  const body = `${version}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

export interface HostileToken {
  kind: string;
  token: string;
  /** 401 for a token that is not valid, 403 for a valid one bound to another key. */
  expect: 401 | 403;
}

/**
 * A token that must not open session `key`. Its "cross-session" kind is a
 * valid token for `other` (so `other` must never be the session the request
 * goes to).
 */
export function hostileToken(rng: Rng, secret: string, key: string, other: string): HostileToken {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const valid = signToken(secret, { k: key, exp });
  const [version, payload, signature] = valid.split(".") as [string, string, string];
  switch (rng.int(0, 12)) {
    case 0:
      return { kind: "cross-session", token: signToken(secret, { k: other, exp }), expect: 403 };
    case 1:
      return {
        kind: "expired",
        token: signToken(secret, { k: key, exp: Math.floor(Date.now() / 1000) - rng.int(1, 1e6) }),
        expect: 401,
      };
    case 2:
      return { kind: "wrong-secret", token: signToken(`${secret}-not`, { k: key, exp }), expect: 401 };
    case 3: {
      // Another session's payload under this session's signature.
      const tampered = Buffer.from(JSON.stringify({ k: other, exp })).toString("base64url");
      return { kind: "tampered-payload", token: `${version}.${tampered}.${signature}`, expect: 401 };
    }
    case 4:
      return {
        kind: "random-signature",
        token: `${version}.${payload}.${rng.bytes(32).toString("base64url")}`,
        expect: 401,
      };
    case 5:
      return { kind: "truncated", token: valid.slice(0, rng.int(0, valid.length - 1)), expect: 401 };
    case 6:
      return { kind: "other-version", token: `v2.${payload}.${signature}`, expect: 401 };
    case 7:
      return { kind: "huge", token: `${valid}${"A".repeat(rng.int(2000, 8000))}`, expect: 401 };
    case 8:
      return { kind: "extra-parts", token: `${valid}.${signature}`, expect: 401 };
    case 9:
      return {
        kind: "bad-payload-types",
        token: signToken(
          secret,
          rng.pick([
            { k: [key], exp },
            { k: key, exp: `${exp}` },
            { k: key, exp: 1.5 },
            { k: key },
            [key, exp],
            null,
            "v1",
          ]),
        ),
        expect: 401,
      };
    case 10:
      return { kind: "none-alg", token: `${version}.${payload}.`, expect: 401 };
    case 11:
      return {
        kind: "garbage",
        token: rng.string(rng.int(1, 100), "abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_."),
        expect: 401,
      };
    default:
      return { kind: "empty-signature-part", token: `${version}..${signature}`, expect: 401 };
  }
}

/** An HTTP body that a sessiond endpoint must refuse or accept cleanly. */
export function httpBody(rng: Rng, n: number, maxPayload: number): { kind: string; body: Buffer | string } {
  const roll = rng.int(0, 9);
  switch (roll) {
    case 0:
      return { kind: "random-json", body: JSON.stringify(randomJson(rng, 4)) ?? "null" };
    case 1: {
      const body = {
        requestId: confusing(rng),
        text: confusing(rng),
        strategy: confusing(rng),
        seq: confusing(rng),
        value: randomJson(rng, 2),
      };
      return { kind: "type-confused", body: JSON.stringify(body) };
    }
    case 2: {
      const text = JSON.stringify({ requestId: `fz-h-${n}`, text: "hello" });
      return { kind: "truncated", body: text.slice(0, rng.int(0, text.length - 1)) };
    }
    case 3:
      return { kind: "random-bytes", body: rng.bytes(rng.int(0, 500)) };
    case 4:
      return {
        kind: "oversize",
        body: JSON.stringify({ requestId: `fz-hb-${n}`, text: "y".repeat(maxPayload + rng.int(1, 10_000)) }),
      };
    case 5:
      return { kind: "empty", body: "" };
    case 6: {
      const nested = rng.int(100, 30_000);
      return {
        kind: "deep-nesting",
        body: `{"requestId":"fz-hd-${n}","value":${'{"a":'.repeat(nested)}1${"}".repeat(nested)}}`,
      };
    }
    case 7:
      return {
        kind: "hostile-string",
        body: JSON.stringify({
          requestId: rng.pick([`fz-hs-${n}`, "\u0000", "a\u0000b", "\ud800"]),
          text: rng.pick(["\u0000", "\ud800", "x\u0000y", "🔥", "\u202e"]),
          seq: 0,
        }),
      };
    case 8:
      return {
        kind: "valid",
        body: JSON.stringify({ requestId: `fz-hv-${n}`, text: `http fuzz ${n}`, seq: rng.int(0, 2), value: "yes" }),
      };
    default:
      return {
        kind: "proto-pollution",
        body: `{"requestId":"fz-hp-${n}","text":"p","__proto__":{"seq":1},"constructor":{"prototype":{"x":1}}}`,
      };
  }
}

/**
 * Signs of an internal leaking out: a stack frame, a source path, an error
 * class name with its message, a driver or SQL detail.
 */
const LEAKS: readonly RegExp[] = [
  /\n\s*at\s/,
  /\bat\s+(async\s+)?[\w.<>$]+\s+\(/,
  /(\/work\/|\/home\/|node_modules|file:\/\/|node:internal|\.ts:\d+|\.m?js:\d+)/,
  /\b\w*(Error|Exception):\s/,
  /(PostgresError|DbError|SQLSTATE|ZodError|pg_catalog|sessiond\.\w+\(|syntax error at or near)/,
];

/** The first leak pattern `text` matches, or undefined. */
export function leak(text: string): string | undefined {
  return LEAKS.find((pattern) => pattern.test(text))?.source;
}
