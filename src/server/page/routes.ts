/**
 * The routes of the browser page: the page itself (`GET /` and its two
 * assets, plain files next to this one, served as they are: no build step),
 * the session timeline as JSON, and the localhost-only dev token.
 *
 * The timeline route sits under `/v1/sessions/:key/`, so the app's session
 * middleware has already checked the key, the origin and the token by the
 * time it runs (mount these routes after that middleware).
 *
 * The dev token is what lets `npx sessiond serve` open in a browser with no
 * manual step. It mints a token for any session key, so it answers only when
 * all of these hold (else 404, as if the route did not exist):
 * - the server runs the embedded PGlite default (a single-user development
 *   setup; with DATABASE_URL tokens come from `sessiond token`);
 * - the request comes from a loopback address;
 * - its Host header names a loopback host (a DNS-rebinding page on another
 *   name reaches the same socket but cannot pass this);
 * - it carries no Origin header, or a loopback one (a page on another site
 *   may send the request, since CORS is open, but gets a 404).
 */
import { readFile } from "node:fs/promises";
import { getConnInfo } from "@hono/node-server/conninfo";
import { type Context, Hono } from "hono";
import { timeline } from "../../audit/views.js";
import type { Db } from "../../db/index.js";
import { mintToken } from "../auth.js";
import type { ServerConfig } from "../config.js";
import { ErrorCode, errorFrame, isSessionKey } from "../protocol.js";

/** Lifetime of a dev token. */
export const DEV_TOKEN_TTL_SECONDS = 24 * 3600;
/** Timeline rows returned by default, and at most. */
const TIMELINE_DEFAULT_LIMIT = 200;
const TIMELINE_MAX_LIMIT = 1000;

export interface PageDeps {
  db: Db;
  config: Pick<ServerConfig, "databaseUrl">;
  secret: string;
}

type PageEnv = { Variables: { sessionKey: string } };

const ASSETS = {
  "/": { file: "chat.html", type: "text/html; charset=utf-8" },
  "/page/chat.js": { file: "chat.js", type: "text/javascript; charset=utf-8" },
  "/page/chat.css": { file: "chat.css", type: "text/css; charset=utf-8" },
} as const;

/**
 * The page loads nothing but its own assets and talks only to its own origin
 * (`'self'` covers same-origin ws: and wss: in current browsers).
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const assetCache = new Map<string, Promise<string>>();

function asset(file: string): Promise<string> {
  let text = assetCache.get(file);
  if (!text) {
    text = readFile(new URL(`./${file}`, import.meta.url), "utf8");
    // A failed read is retried on the next request rather than cached.
    text.catch(() => assetCache.delete(file));
    assetCache.set(file, text);
  }
  return text;
}

/** 127.0.0.0/8, ::1, and IPv4-mapped loopback. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice(7) : address;
  return v4.startsWith("127.") || address === "::1";
}

/** A Host header (or an origin's host) naming a loopback host: localhost, 127.x.y.z or [::1], any port. */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  let hostname: string;
  try {
    hostname = new URL(`http://${host}`).hostname;
  } catch {
    return false;
  }
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

function isLoopbackOrigin(origin: string): boolean {
  try {
    const url = new URL(origin);
    return (url.protocol === "http:" || url.protocol === "https:") && isLoopbackHost(url.host);
  } catch {
    return false;
  }
}

function notFound(c: Context) {
  return c.json(errorFrame(ErrorCode.notFound, `no route for ${c.req.method} ${new URL(c.req.url).pathname}`), 404);
}

/** The page's routes; mount after the session middleware of `/v1/sessions/:key/*`. */
export function pageRoutes(deps: PageDeps): Hono<PageEnv> {
  const app = new Hono<PageEnv>();

  for (const [path, { file, type }] of Object.entries(ASSETS)) {
    app.get(path, async (c) =>
      c.body(await asset(file), 200, {
        "Content-Type": type,
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
      }),
    );
  }

  app.get("/v1/dev/token", (c) => {
    const embedded = !deps.config.databaseUrl && deps.db.kind === "pglite";
    const origin = c.req.header("origin");
    if (
      !embedded ||
      !isLoopbackAddress(getConnInfo(c).remote.address) ||
      !isLoopbackHost(c.req.header("host")) ||
      (origin !== undefined && !isLoopbackOrigin(origin))
    ) {
      return notFound(c);
    }
    const sessionKey = c.req.query("session") ?? "";
    if (!isSessionKey(sessionKey)) {
      return c.json(
        errorFrame(
          ErrorCode.badSessionKey,
          "?session= must be a session key: 1..200 characters of [A-Za-z0-9._:@-], starting with a letter or digit",
        ),
        400,
      );
    }
    const token = mintToken(deps.secret, sessionKey, { ttlSeconds: DEV_TOKEN_TTL_SECONDS });
    const expiresAt = new Date(Date.now() + DEV_TOKEN_TTL_SECONDS * 1000).toISOString();
    return c.json({ sessionKey, token, expiresAt }, 200, { "Cache-Control": "no-store" });
  });

  app.get("/v1/sessions/:key/timeline", async (c) => {
    const limitParam = c.req.query("limit") ?? String(TIMELINE_DEFAULT_LIMIT);
    const limit = /^\d{1,4}$/.test(limitParam) ? Number(limitParam) : 0;
    if (limit < 1 || limit > TIMELINE_MAX_LIMIT) {
      return c.json(
        errorFrame(ErrorCode.badFrame, `limit must be a whole number from 1 to ${TIMELINE_MAX_LIMIT}`),
        400,
      );
    }
    const sessionKey = c.get("sessionKey");
    const entries = await timeline(deps.db, sessionKey);
    return c.json({ sessionKey, total: entries.length, entries: entries.slice(-limit) });
  });

  return app;
}
