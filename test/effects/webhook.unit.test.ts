import { describe, expect, it } from "vitest";
import { EffectRegistry, EffectValidationError, webhookEffect } from "../../src/effects/index.js";

function registry(allowedHosts: string[]) {
  return new EffectRegistry().register(webhookEffect({ allowedHosts }));
}

function rejection(allowedHosts: string[], payload: unknown): EffectValidationError {
  try {
    registry(allowedHosts).validate("webhook", payload);
  } catch (error) {
    expect(error).toBeInstanceOf(EffectValidationError);
    return error as EffectValidationError;
  }
  throw new Error("expected validate to throw");
}

describe("webhook payload schema (checked at emit time)", () => {
  it("accepts an allow-listed URL and keeps the payload as emitted", () => {
    const payload = { url: "https://hooks.example.com/a?x=1", body: { ok: true }, headers: { "X-Token": "t" } };
    expect(registry(["hooks.example.com"]).validate("webhook", payload)).toEqual({
      type: "webhook",
      payload,
      delivery: "handler",
      ordered: false,
      maxAttempts: 10,
    });
  });

  it("rejects a host that is not on the allow-list, naming the host and the list", () => {
    const error = rejection(["hooks.example.com"], { url: "https://evil.example.net/steal", body: {} });
    expect(error.message).toMatch(/host evil\.example\.net is not on the webhook allow-list \(hooks\.example\.com\)/);
  });

  it("allows nothing with an empty allow-list, and says so", () => {
    expect(rejection([], { url: "https://hooks.example.com/", body: {} }).message).toMatch(/allow-list is empty/);
  });

  it("matches a host:port entry on that port only, and *.domain on subdomains only", () => {
    const r = registry(["127.0.0.1:8080", "*.example.com"]);
    expect(() => r.validate("webhook", { url: "http://127.0.0.1:8080/x", body: null })).not.toThrow();
    expect(() => r.validate("webhook", { url: "https://a.b.example.com/", body: 1 })).not.toThrow();
    expect(rejection(["127.0.0.1:8080"], { url: "http://127.0.0.1:9090/x", body: null }).message).toMatch(
      /127\.0\.0\.1:9090 is not on/,
    );
    expect(rejection(["*.example.com"], { url: "https://example.com/", body: null }).message).toMatch(/not on/);
    expect(rejection(["*.example.com"], { url: "https://badexample.com/", body: null }).message).toMatch(/not on/);
  });

  it.each([
    ["a non-http scheme", { url: "file:///etc/passwd", body: {} }, /http or https/],
    ["credentials in the URL", { url: "https://u:p@hooks.example.com/", body: {} }, /credentials/],
    ["a relative URL", { url: "/hook", body: {} }, /not an absolute URL/],
    ["a missing body", { url: "https://hooks.example.com/" }, /body is required/],
    ["a body that is not JSON", { url: "https://hooks.example.com/", body: { n: 1n } }, /body must be a JSON value/],
    ["an unknown key", { url: "https://hooks.example.com/", body: {}, method: "GET" }, /Unrecognized key/],
    [
      "an Idempotency-Key header",
      { url: "https://hooks.example.com/", body: {}, headers: { "Idempotency-Key": "mine" } },
      /set by sessiond/,
    ],
    [
      "a header value with a line break",
      { url: "https://hooks.example.com/", body: {}, headers: { "X-A": "a\r\nHost: evil" } },
      /control characters/,
    ],
  ])("rejects %s", (_why, payload, message) => {
    expect(rejection(["hooks.example.com"], payload).message).toMatch(message);
  });

  it("requires an allow-list and refuses malformed entries when the type is defined", () => {
    expect(() => webhookEffect({} as { allowedHosts: string[] })).toThrow(/allowedHosts is required/);
    expect(() => webhookEffect({ allowedHosts: ["https://hooks.example.com/"] })).toThrow(/invalid allowedHosts entry/);
  });
});
