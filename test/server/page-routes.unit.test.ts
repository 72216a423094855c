/** The dev token's address and Host checks (the route's e2e test covers the wiring). */
import { describe, expect, it } from "vitest";
import { isLoopbackAddress, isLoopbackHost } from "../../src/server/page/routes.js";

describe("isLoopbackAddress", () => {
  it("accepts 127.0.0.0/8, ::1 and IPv4-mapped loopback", () => {
    for (const address of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) {
      expect(isLoopbackAddress(address), address).toBe(true);
    }
  });
  it("refuses other addresses and none", () => {
    for (const address of ["10.0.0.1", "192.168.1.5", "::ffff:10.0.0.1", "fe80::1", "128.0.0.1", "", undefined]) {
      expect(isLoopbackAddress(address), String(address)).toBe(false);
    }
  });
});

describe("isLoopbackHost", () => {
  it("accepts localhost, 127.x.y.z and [::1], with or without a port", () => {
    for (const host of ["localhost", "localhost:8787", "127.0.0.1:8787", "127.9.9.9", "[::1]:8787", "LOCALHOST:1"]) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
  });
  it("refuses other names, look-alikes and junk", () => {
    for (const host of [
      "example.com",
      "localhost.example.com:8787",
      "127.0.0.1.nip.io",
      "0.0.0.0:8787",
      "10.0.0.1",
      "a b",
      "",
      undefined,
    ]) {
      expect(isLoopbackHost(host), String(host)).toBe(false);
    }
  });
});
