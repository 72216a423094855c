import { chmod, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  authorize,
  loadOrCreateSecret,
  mintToken,
  parseTtl,
  secretPath,
  tokenFromRequest,
  verifyToken,
} from "../../src/server/auth.js";

const SECRET = "unit-secret-0123456789abcdef0123456789";

describe("session tokens", () => {
  it("mint and verify round-trip, binding one session key until expiry", () => {
    const now = Date.UTC(2030, 0, 1);
    const token = mintToken(SECRET, "user:42@app", { ttlSeconds: 60, now });
    expect(token).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(verifyToken(SECRET, token, now)).toEqual({ ok: true, sessionKey: "user:42@app", expiresAt: now + 60_000 });
    expect(verifyToken(SECRET, token, now + 59_999).ok).toBe(true);
    expect(verifyToken(SECRET, token, now + 60_000)).toEqual({ ok: false, reason: "expired" });
  });

  it("rejects another secret, a tampered payload or signature, and junk", () => {
    const token = mintToken(SECRET, "a");
    const [v, payload, signature] = token.split(".") as [string, string, string];
    expect(verifyToken("another-secret-0123456789abcdef0123", token)).toEqual({ ok: false, reason: "bad_signature" });
    const forged = Buffer.from(JSON.stringify({ k: "b", exp: 9_999_999_999 })).toString("base64url");
    expect(verifyToken(SECRET, `${v}.${forged}.${signature}`)).toEqual({ ok: false, reason: "bad_signature" });
    expect(verifyToken(SECRET, `${v}.${payload}.${signature.slice(0, -2)}`)).toEqual({
      ok: false,
      reason: "bad_signature",
    });
    expect(verifyToken(SECRET, `v2.${payload}.${signature}`)).toEqual({ ok: false, reason: "malformed" });
    expect(verifyToken(SECRET, "")).toEqual({ ok: false, reason: "malformed" });
    expect(verifyToken(SECRET, "a.b")).toEqual({ ok: false, reason: "malformed" });
  });

  it("authorize: 401 without or with a bad token, 403 for another session", () => {
    const token = mintToken(SECRET, "alice");
    expect(authorize(SECRET, undefined, "alice")).toMatchObject({ ok: false, status: 401, code: "unauthorized" });
    expect(authorize(SECRET, "nonsense", "alice")).toMatchObject({ ok: false, status: 401 });
    expect(authorize(SECRET, token, "bob")).toMatchObject({ ok: false, status: 403, code: "forbidden" });
    expect(authorize(SECRET, token, "alice")).toMatchObject({ ok: true });
  });

  it("refuses to mint for an invalid key or ttl", () => {
    expect(() => mintToken(SECRET, "-bad")).toThrow(/invalid session key/);
    expect(() => mintToken(SECRET, "ok", { ttlSeconds: 0 })).toThrow(/ttl/);
  });

  it("finds the token in the Authorization header, the subprotocols, or (GET only) access_token", () => {
    const url = new URL("http://x/v1/sessions/a/messages?access_token=q");
    expect(tokenFromRequest(new Headers({ authorization: "Bearer abc" }), url, "POST")).toBe("abc");
    expect(tokenFromRequest(new Headers({ authorization: "Basic abc" }), url, "GET")).toBeUndefined();
    expect(
      tokenFromRequest(
        new Headers({ "sec-websocket-protocol": "sessiond.v1, bearer.v1.p.s" }),
        new URL("http://x/"),
        "GET",
      ),
    ).toBe("v1.p.s");
    expect(tokenFromRequest(new Headers(), url, "GET")).toBe("q");
    expect(tokenFromRequest(new Headers(), url, "POST")).toBeUndefined();
  });

  it("parses TTLs", () => {
    expect(parseTtl("90")).toBe(90);
    expect(parseTtl("15m")).toBe(900);
    expect(parseTtl("24h")).toBe(86_400);
    expect(parseTtl("7d")).toBe(604_800);
    expect(() => parseTtl("0")).toThrow();
    expect(() => parseTtl("1y")).toThrow();
    expect(() => parseTtl("400d")).toThrow();
  });
});

describe("the embedded secret", () => {
  it("is created once with mode 0600 and read back after", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sessiond-secret-"));
    try {
      const first = await loadOrCreateSecret(dir);
      expect(first.created).toBe(true);
      expect(first.secret.length).toBeGreaterThanOrEqual(32);
      expect((await stat(secretPath(dir))).mode & 0o777).toBe(0o600);
      const second = await loadOrCreateSecret(dir);
      expect(second).toEqual({ secret: first.secret, created: false });
      const [a, b] = await Promise.all([loadOrCreateSecret(`${dir}/`), loadOrCreateSecret(dir)]);
      expect(a.secret).toBe(first.secret);
      expect(b.secret).toBe(first.secret);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses a secret file other users can read, and one too short", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sessiond-secret-"));
    try {
      await writeFile(secretPath(dir), "short\n", { mode: 0o600 });
      await expect(loadOrCreateSecret(dir)).rejects.toThrow(/no usable secret/);
      await chmod(secretPath(dir), 0o644);
      await expect(loadOrCreateSecret(dir)).rejects.toThrow(/readable by other users/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
