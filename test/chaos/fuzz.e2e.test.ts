/**
 * Hostile input against a real `sessiond serve` process: a seeded fuzzer
 * (CHAOS_SEED replays a run) sends random, malformed, truncated, oversize and
 * type-confused WebSocket frames and HTTP requests, hostile session keys,
 * forged, expired, tampered and cross-session tokens, and raw bytes no HTTP
 * client would send. Another session (the victim) holds a secret in its
 * messages.
 *
 * Throughout: the process never dies; no answer (HTTP body, frame, raw
 * response) carries a stack frame, a source path, an error class or a driver
 * detail; no HTTP status is 5xx and no frame says `internal`; error bodies
 * are the documented JSON shape; sockets close only with documented codes;
 * no request for the victim's session without its token succeeds, and the
 * victim's secret appears in no answer. At the end: verify() is clean, only
 * valid session keys that a valid token wrote to have rows, the victim's
 * events are exactly its own, and the server still chats.
 */
import { describe, expect, it } from "vitest";
import { verify } from "../../src/audit/index.js";
import { mintToken } from "../../src/server/auth.js";
import { ErrorCode, isSessionKey } from "../../src/server/protocol.js";
import { FuzzSocket, http, pct, rawTcp, upgrade } from "../support/chaos/fuzz-io.js";
import { useChaosHarness } from "../support/chaos/harness.js";
import {
  confusing,
  hostileKey,
  hostileToken,
  httpBody,
  leak,
  randomString,
  signToken,
  wsFrame,
} from "../support/chaos/hostile.js";
import { scale, seedFor, timeoutMs } from "../support/chaos/mode.js";
import { Rng } from "../support/chaos/prng.js";
import { report } from "../support/chaos/report.js";
import { CHAOS_SECRET } from "../support/chaos/server-process.js";
import { postgresAvailable } from "../support/db.js";

const INPUTS = scale(600, 20_000);
const MAX_PAYLOAD = 65_536;
/** The fuzzer's own session changes every this many inputs (a history that grows forever slows every run). */
const ROTATE_EVERY = 100;
const VICTIM = "fuzz-victim";
const CODES = new Set<string>(Object.values(ErrorCode));
/** Close codes docs/protocol.md names (1007: a text frame that is not UTF-8, refused by the WebSocket layer). */
const CLOSE_CODES = new Set([1007, 1009, 4400]);

const ENV = { SESSIOND_TOKEN_DELAY_MS: "0" };

describe.skipIf(!postgresAvailable)("chaos: hostile input", () => {
  const ready = useChaosHarness(ENV);

  it(
    `${INPUTS} hostile inputs: no crash, no stack trace, no cross-session access, only valid rows`,
    async () => {
      const h = await ready();
      const rng = new Rng(seedFor("fuzz"));
      const server = await h.start({ name: "fuzz" });
      const wsBase = server.url.replace(/^http/, "ws");
      let own = "fuzz-own-0";
      let ownToken = mintToken(CHAOS_SECRET, own);
      const ownKeys = new Set([own]);

      // The victim: a conversation holding a secret that only its own token may read.
      const secret = `victim-secret-${rng.string(16, "abcdefghijklmnopqrstuvwxyz0123456789")}`;
      const victim = h.client(VICTIM, () => server.url, rng.fork("victim"));
      victim.start();
      victim.send(`${secret} one`);
      victim.send(`${secret} two`);
      await victim.until(() => victim.outstanding() === 0, { what: "the victim's replies" });
      await victim.stop();

      const tried = new Map<string, number>();
      const count = (kind: string) => tried.set(kind, (tried.get(kind) ?? 0) + 1);
      const findings: string[] = [];
      const wroteTo = new Set<string>([VICTIM]);
      const statuses = new Map<number, number>();

      /** Checks one answer: no leak, not the victim's secret. */
      const scan = (where: string, text: string) => {
        if (text.includes(secret)) findings.push(`${where}: the victim's secret in ${text.slice(0, 200)}`);
        const found = leak(text);
        if (found) findings.push(`${where}: /${found}/ in ${text.slice(0, 300)}`);
      };
      /** Checks an HTTP answer: status, error shape, leaks. */
      const checkHttp = (where: string, result: { status: number; contentType: string; body: string }) => {
        statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
        if (result.status >= 500) findings.push(`${where}: status ${result.status} ${result.body.slice(0, 200)}`);
        if (
          result.contentType.includes("text/html") ||
          result.contentType.includes("javascript") ||
          result.contentType.includes("text/css")
        ) {
          return; // the chat page's static files
        }
        if (where.includes("/timeline") && result.status === 200 && result.body !== "") {
          // The timeline is the session's audit trail for its token holder: its `error` column is
          // the operator's detail of a failed run (docs/protocol.md). Everything else must be clean.
          const body = JSON.parse(result.body) as { entries: Array<Record<string, unknown>> };
          for (const entry of body.entries) delete entry.error;
          scan(where, JSON.stringify(body));
        } else {
          scan(where, result.body);
        }
        if (result.status >= 400 && result.body !== "") {
          try {
            const body = JSON.parse(result.body) as Record<string, unknown>;
            const keys = Object.keys(body).filter((k) => k !== "requestId");
            if (
              body.type !== "error" ||
              !CODES.has(String(body.code)) ||
              typeof body.message !== "string" ||
              keys.length !== 3
            ) {
              findings.push(`${where}: error body not in the documented shape: ${result.body.slice(0, 200)}`);
            }
            if (body.code === "internal") findings.push(`${where}: internal error`);
          } catch {
            findings.push(`${where}: error body is not JSON: ${result.body.slice(0, 200)}`);
          }
        }
      };

      const codes = new Map<string, number>();
      const closes: number[] = [];
      /** Scans what came back on a fuzz socket and closes it. */
      const finish = (socket: FuzzSocket) => {
        socket.close();
        for (const text of socket.received) {
          scan("ws frame", text);
          try {
            const frame = JSON.parse(text) as { type?: string; code?: string };
            if (frame.type === "error") {
              codes.set(String(frame.code), (codes.get(String(frame.code)) ?? 0) + 1);
              if (!CODES.has(String(frame.code)) || frame.code === "internal") {
                findings.push(`ws error frame ${text.slice(0, 200)}`);
              }
            }
          } catch {
            findings.push(`ws: a frame that is not JSON: ${text.slice(0, 100)}`);
          }
        }
        closes.push(...socket.closeCodes);
      };
      let socket = new FuzzSocket(`${wsBase}/v1/sessions/${own}/ws`, ownToken);
      const paths = ["messages", "ack", "answers", "timeline", "ws", "messages/x", pct(randomString(rng, 5))];
      const started = Date.now();
      for (let n = 0; n < INPUTS; n++) {
        if (n > 0 && n % ROTATE_EVERY === 0) {
          finish(socket);
          own = `fuzz-own-${n / ROTATE_EVERY}`;
          ownKeys.add(own);
          ownToken = mintToken(CHAOS_SECRET, own);
          socket = new FuzzSocket(`${wsBase}/v1/sessions/${own}/ws`, ownToken);
        }
        const roll = rng.int(0, 99);
        if (roll < 45) {
          // A hostile frame on the fuzzer's own socket.
          const input = wsFrame(rng, n, MAX_PAYLOAD);
          count(`ws:${input.kind}`);
          await socket.send(input.data, input.binary);
        } else if (roll < 75) {
          // An HTTP request: method, route, token, headers and body all drawn.
          const method = rng.pick(["GET", "GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]);
          const target = rng.int(0, 99);
          const key =
            target < 70
              ? own
              : target < 80
                ? VICTIM
                : `fz-${rng.string(rng.int(1, 20), "abcdefghijklmnop0123456789.:@-")}`;
          const route = rng.chance(0.9)
            ? `/v1/sessions/${pct(key)}/${rng.pick(paths)}`
            : rng.pick([
                "/",
                "/healthz",
                "/readyz",
                "/metrics",
                "/v1/dev/token?session=a",
                "/v1/sessions",
                "/v1/sessions/",
                `/${randomString(rng, 8).replace(/[^\w-]/g, "")}`,
              ]);
          const query = rng.chance(0.4)
            ? `?${rng.pick(["after", "limit", "access_token", "after", randomString(rng, 3).replace(/\W/g, "q")])}=${pct(String(confusing(rng)))}`
            : "";
          const auth = rng.int(0, 99);
          // Never the victim's token: every request on the victim's session must fail.
          const token =
            auth < 60
              ? key === VICTIM
                ? ownToken
                : mintToken(CHAOS_SECRET, isSessionKey(key) ? key : own)
              : auth < 85
                ? hostileToken(rng, CHAOS_SECRET, key, key === VICTIM ? own : VICTIM).token
                : undefined;
          const headers: Record<string, string> = {};
          if (token) {
            const where = rng.int(0, 9);
            if (where < 7)
              headers.authorization = rng.pick([
                `Bearer ${token}`,
                `bearer ${token}`,
                `Bearer  ${token} `,
                `Basic ${token}`,
                token,
              ]);
            else if (where < 9) headers["sec-websocket-protocol"] = `sessiond.v1, bearer.${token}`;
          }
          if (rng.chance(0.2)) headers.accept = "text/event-stream";
          if (rng.chance(0.2)) headers["last-event-id"] = String(confusing(rng)).replace(/[^\x20-\x7e]/g, "?");
          if (rng.chance(0.3))
            headers["content-type"] = rng.pick([
              "application/json",
              "text/plain",
              "multipart/form-data; boundary=x",
              "application/x-www-form-urlencoded",
              "application/json; charset=latin1",
            ]);
          if (rng.chance(0.1)) headers.origin = rng.pick(["https://evil.example", "null", "http://127.0.0.1"]);
          const body = ["POST", "PUT", "PATCH"].includes(method) ? httpBody(rng, n, MAX_PAYLOAD) : undefined;
          count(`http:${method}${body ? `:${body.kind}` : ""}`);
          const where = `http ${method} ${route}${query}`;
          const result = await http(server.url, {
            method,
            path: `${route}${query}`,
            headers,
            ...(body ? { body: body.body } : {}),
          });
          checkHttp(where, result);
          // A CORS preflight (OPTIONS) carries no credentials by design and answers with no body.
          const preflight = method === "OPTIONS" && result.body === "";
          if (key === VICTIM && route.startsWith(`/v1/sessions/${VICTIM}/`) && result.status < 400 && !preflight) {
            findings.push(`${where}: the victim's session answered ${result.status} without its token`);
          }
          if (result.status === 202) wroteTo.add(key);
        } else if (roll < 85) {
          // A hostile session key, with a token validly signed for exactly that key.
          const hostile = hostileKey(rng, VICTIM);
          count(`key:${hostile.kind}`);
          const token = signToken(CHAOS_SECRET, { k: hostile.decoded, exp: Math.floor(Date.now() / 1000) + 600 });
          const path = `/v1/sessions/${hostile.path}/${rng.pick(["messages", "ack", "ws", "timeline"])}`;
          if (path.endsWith("/ws") && rng.chance(0.5)) {
            const result = await upgrade(`${wsBase}${path}`, ["sessiond.v1"], { authorization: `Bearer ${token}` });
            if (result.status === 101) findings.push(`ws ${path.slice(0, 80)}: opened for a hostile key`);
            scan(`ws ${path.slice(0, 80)}`, result.body);
          } else {
            const method = rng.pick(["GET", "POST"]);
            const result = await http(server.url, {
              method,
              path,
              headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
              ...(method === "POST"
                ? { body: JSON.stringify({ requestId: `fz-k-${n}`, text: "hostile key", seq: 1 }) }
                : {}),
            });
            checkHttp(`key ${hostile.kind} ${method} ${path.slice(0, 80)}`, result);
            if (result.status < 400)
              findings.push(`key ${hostile.kind} ${path.slice(0, 80)}: answered ${result.status}`);
          }
        } else if (roll < 97) {
          // A token that must not open the fuzzer's own session (or the victim's).
          const target = rng.chance(0.5) ? own : VICTIM;
          const bad = hostileToken(rng, CHAOS_SECRET, target, target === own ? VICTIM : own);
          count(`token:${bad.kind}`);
          const via = rng.int(0, 2);
          if (via === 0) {
            const result = await upgrade(
              `${wsBase}/v1/sessions/${target}/ws`,
              ["sessiond.v1", `bearer.${bad.token}`],
              {},
            );
            if (result.status !== bad.expect)
              findings.push(`token ${bad.kind} on ws ${target}: ${result.status}, expected ${bad.expect}`);
            scan(`token ${bad.kind} ws`, result.body);
          } else {
            const method = via === 1 ? "GET" : "POST";
            const path = `/v1/sessions/${target}/messages${method === "GET" && rng.chance(0.5) ? `?access_token=${pct(bad.token)}` : ""}`;
            const headers: Record<string, string> = path.includes("access_token")
              ? {}
              : { authorization: `Bearer ${bad.token}` };
            const result = await http(server.url, {
              method,
              path,
              headers: { ...headers, "content-type": "application/json" },
              ...(method === "POST" ? { body: JSON.stringify({ requestId: `fz-t-${n}`, text: "forged" }) } : {}),
            });
            checkHttp(`token ${bad.kind} ${method} ${target}`, result);
            if (result.status !== bad.expect)
              findings.push(`token ${bad.kind} ${method} ${target}: ${result.status}, expected ${bad.expect}`);
          }
        } else {
          // Bytes no HTTP client sends.
          const raw = rng.pick([
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            `POST /v1/sessions/${own}/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"requestId":`,
            `GET /v1/sessions/${own}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n`,
            `GET /${"a".repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
            `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(20_000)}\r\n\r\n`,
            "\x00\x01\x02 garbage\r\n\r\n",
            "GET /healthz HTTP/9.9\r\n\r\n",
            `POST /v1/sessions/${own}/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot hex\r\n0\r\n\r\n`,
          ]);
          count(`raw:${raw.slice(0, 12).replace(/\W/g, "_")}`);
          const answer = await rawTcp(server.url, raw);
          const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1];
          if (status && Number(status) >= 500)
            findings.push(`raw ${JSON.stringify(raw.slice(0, 40))}: ${answer.slice(0, 100)}`);
          scan(`raw ${JSON.stringify(raw.slice(0, 40))}`, answer);
        }
        if (!server.alive) {
          findings.push(`the server died at input ${n}`);
          break;
        }
      }
      finish(socket);
      const seconds = (Date.now() - started) / 1000;
      for (const code of closes) if (!CLOSE_CODES.has(code)) findings.push(`ws closed with ${code}`);

      // The server still serves, and the database holds only valid rows.
      expect(server.alive, "the server process died").toBe(true);
      expect((await server.get("/healthz")).status).toBe(200);
      const after = h.client(VICTIM, () => server.url, rng.fork("victim-after"), "after-fuzz");
      Object.assign(after, { lastSeq: victim.lastSeq });
      after.start();
      after.send("still here");
      await after.until(() => after.outstanding() === 0, { what: "a reply after the fuzz" });
      await after.stop();
      const violations = await verify(h.db);
      const keys = (await h.db.query<{ session_key: string }>("select session_key from sessiond.sessions")).map(
        (r) => r.session_key,
      );
      const eventKeys = (
        await h.db.query<{ session_key: string }>("select distinct session_key from sessiond.events")
      ).map((r) => r.session_key);
      const victimEvents = await h.db.query<{ request_id: string }>(
        "select request_id from sessiond.events where session_key = $1 order by seq",
        [VICTIM],
      );
      const ownEvents = await h.db.query<{ n: number }>(
        "select count(*)::int as n from sessiond.events where session_key = any($1::text[])",
        [[...ownKeys]],
      );
      const errorLines = server.errorLines();
      report("fuzz", {
        seed: rng.seed,
        inputs: INPUTS,
        seconds: Math.round(seconds),
        kinds: Object.fromEntries([...tried].sort()),
        httpStatuses: Object.fromEntries([...statuses].sort()),
        wsErrorCodes: Object.fromEntries(codes),
        wsCloses: closes.length,
        sessions: keys.length,
        ownEvents: ownEvents[0]?.n,
        findings: findings.length,
        serverErrorLogLines: errorLines.length,
      });
      expect(findings.slice(0, 20)).toEqual([]);
      expect(violations).toEqual([]);
      expect(keys.every(isSessionKey)).toBe(true);
      expect(keys.filter((k) => !ownKeys.has(k) && !wroteTo.has(k))).toEqual([]);
      expect(eventKeys.filter((k) => !ownKeys.has(k) && !wroteTo.has(k))).toEqual([]);
      expect(victimEvents.map((e) => e.request_id)).toEqual([...victim.sent.keys(), ...after.sent.keys()]);
      expect(errorLines.slice(0, 5)).toEqual([]);
    },
    timeoutMs(120_000, 1_800_000),
  );
});
