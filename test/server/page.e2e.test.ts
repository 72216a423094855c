/**
 * The browser page and the endpoints it uses.
 *
 * - HTTP, on PGlite and real Postgres: the page and its assets, the session
 *   timeline (same auth as every session route), and the dev token (embedded
 *   PGlite + loopback address + loopback Host + no foreign Origin, else 404).
 * - The page itself, in headless Debian Chromium driven by playwright-core
 *   (never a downloaded browser): chat, a reload in the middle of a streamed
 *   reply, a server restart with a message sent while it is down; every reply
 *   shows exactly once. A screenshot goes to test-results/page-chat.png.
 *
 * The reload must land mid-stream for certain, so the model holds the second
 * reply after its first tokens until the test lets it go (a gate, no timing).
 * Without Chromium the browser test is skipped with a loud notice, except with
 * REQUIRE_POSTGRES=1 (CI), where it fails.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CallbackManagerForLLMRun } from "@langchain/core/callbacks/manager";
import type { BaseMessage } from "@langchain/core/messages";
import type { ChatGenerationChunk } from "@langchain/core/outputs";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { LocalChatModel } from "../../src/agent/local-model.js";
import { sessionHead } from "../../src/server/delivery.js";
import type { SessiondServer } from "../../src/server/index.js";
import { describeEachDb } from "../support/db.js";
import { eventually, gate } from "../support/wait.js";
import { reply, useServers } from "./fixture.js";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const haveChromium = existsSync(CHROMIUM);
const requireBrowser = process.env.REQUIRE_POSTGRES === "1";
if (!haveChromium && !requireBrowser) {
  console.warn(
    `\n${"!".repeat(78)}\n!! SKIPPING the browser test: no Chromium at ${CHROMIUM} (run .ci/install-chromium)\n${"!".repeat(78)}\n`,
  );
}

/** A GET with full control of the headers (fetch will not send another Host). */
function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describeEachDb("page endpoints", (t) => {
  const servers = useServers(t);

  it("GET / serves the page and its module, with a strict content security policy", async () => {
    const server = await servers.start();
    const page = await get(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(page.body).toContain('<script type="module" src="/page/chat.js"></script>');
    const script = await get(`${server.url}/page/chat.js`);
    expect(script.status).toBe(200);
    expect(script.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(script.body).toContain("class ChatSession");
    expect((await get(`${server.url}/page/chat.css`)).headers["content-type"]).toBe("text/css; charset=utf-8");
    expect((await get(`${server.url}/page/other.js`)).status).toBe(404);
  });

  it("GET /v1/sessions/:key/timeline: the session's events and effects, for that session's token only", async () => {
    const server = await servers.start();
    const key = `timeline-${t.kind}`;
    const url = `${server.url}/v1/sessions/${key}/timeline`;
    expect((await get(url)).status).toBe(401);
    expect((await get(url, { authorization: `Bearer ${server.mintToken("someone-else")}` })).status).toBe(403);
    const auth = { authorization: `Bearer ${server.mintToken(key)}` };
    expect(JSON.parse((await get(url, auth)).body)).toEqual({ sessionKey: key, total: 0, entries: [] });

    const posted = await fetch(`${server.url}/v1/sessions/${key}/messages`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ requestId: "t1", text: "for the timeline" }),
    });
    expect(posted.status).toBe(202);
    const body = await eventually(
      async () => {
        const parsed = JSON.parse((await get(url, auth)).body) as {
          total: number;
          entries: Array<Record<string, unknown>>;
        };
        return parsed.total === 2 ? parsed : undefined;
      },
      { what: "the event and its reply in the timeline" },
    );
    expect(body.entries.map((e) => [e.kind, e.seq, e.eventSeq, e.type, e.status, e.requestId, e.summary])).toEqual([
      ["event", 1, 1, "user_message", "processed", "t1", "for the timeline"],
      ["effect", 1, 1, "send_message", "pending", "t1", reply("for the timeline")],
    ]);
    const last = JSON.parse((await get(`${url}?limit=1`, auth)).body) as { total: number; entries: unknown[] };
    expect(last.total).toBe(2);
    expect(last.entries).toEqual([body.entries[1]]);
    const bad = await get(`${url}?limit=0`, auth);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ type: "error", code: "bad_frame" });
  });

  it(`GET /v1/dev/token: ${t.kind === "pglite" ? "a working token on loopback only" : "404 with DATABASE_URL-style Postgres"}`, async () => {
    const server = await servers.start();
    const url = `${server.url}/v1/dev/token?session=dev-page`;
    const answer = await get(url);
    if (t.kind === "postgres") {
      expect(answer.status).toBe(404);
      expect(JSON.parse(answer.body)).toMatchObject({ type: "error", code: "not_found" });
      return;
    }
    expect(answer.status).toBe(200);
    expect(answer.headers["cache-control"]).toBe("no-store");
    const { token, sessionKey } = JSON.parse(answer.body) as { token: string; sessionKey: string };
    expect(sessionKey).toBe("dev-page");
    const timeline = `${server.url}/v1/sessions/dev-page/timeline`;
    expect((await get(timeline, { authorization: `Bearer ${token}` })).status).toBe(200);
    expect((await get(`${server.url}/v1/sessions/other/timeline`, { authorization: `Bearer ${token}` })).status).toBe(
      403,
    );

    // Loopback names pass; another Host (DNS rebinding) or a foreign Origin gets a 404.
    const port = server.port;
    expect((await get(url, { host: `localhost:${port}` })).status).toBe(200);
    expect((await get(url, { host: `[::1]:${port}` })).status).toBe(200);
    expect((await get(url, { origin: `http://localhost:${port}` })).status).toBe(200);
    expect((await get(url, { host: `attacker.example:${port}` })).status).toBe(404);
    expect((await get(url, { host: `127.0.0.1.attacker.example:${port}` })).status).toBe(404);
    expect((await get(url, { origin: "https://attacker.example" })).status).toBe(404);
    expect((await get(url, { origin: "null" })).status).toBe(404);
    const badKey = await get(`${server.url}/v1/dev/token?session=-bad`);
    expect(badKey.status).toBe(400);
    expect(JSON.parse(badKey.body)).toMatchObject({ code: "bad_session_key" });
  });
});

/**
 * The local model, holding one call's stream after `holdAfter` tokens until
 * `release` opens (the tokens before it have reached the token bus by then).
 */
class HeldModel extends LocalChatModel {
  readonly release = gate();
  readonly held = gate();
  constructor(
    readonly holdCall: number,
    readonly holdAfter: number,
  ) {
    super({ tokenDelayMs: 15 });
  }

  override async *_streamResponseChunks(
    messages: BaseMessage[],
    options: this["ParsedCallOptions"],
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    let index = 0;
    for await (const chunk of super._streamResponseChunks(messages, options, runManager)) {
      if (this.calls === this.holdCall && index === this.holdAfter) {
        this.held.open();
        await this.release.promise;
      }
      yield chunk;
      index += 1;
    }
  }
}

/**
 * Records every streaming bubble the page replaces (they live briefly), as
 * `window.__streaming`; an init script, so it runs again after each reload.
 * A string: this project compiles without the DOM library.
 */
const RECORD_STREAMING_BUBBLES = `
  const seen = [];
  Object.defineProperty(window, "__streaming", { value: seen });
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      for (const node of mutation.removedNodes) {
        if (node instanceof HTMLElement && node.dataset.streamingEventSeq) {
          seen.push({ eventSeq: node.dataset.streamingEventSeq, text: node.querySelector(".body")?.textContent ?? "" });
        }
      }
    }
  }).observe(document, { childList: true, subtree: true });
`;

/**
 * One Chromium for both blocks (a launch costs seconds of CPU): each block's
 * server has a port, so an origin, of its own, and with it its own storage.
 */
let browser: Promise<{ context: BrowserContext; profile: string }> | undefined;
function sharedBrowser(): Promise<{ context: BrowserContext; profile: string }> {
  browser ??= (async () => {
    const profile = await mkdtemp(join(tmpdir(), "sessiond-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 760 },
    });
    return { context, profile };
  })();
  return browser;
}
afterAll(async () => {
  const launched = await browser?.catch(() => undefined);
  await launched?.context.close();
  if (launched) await rm(launched.profile, { recursive: true, force: true });
});

describeEachDb(
  "the chat page in Chromium",
  (t) => {
    const servers = useServers(t);
    let context: BrowserContext | undefined;

    beforeAll(async () => {
      if (!haveChromium) {
        throw new Error(`REQUIRE_POSTGRES=1 (CI) but there is no Chromium at ${CHROMIUM}: run .ci/install-chromium`);
      }
      context = (await sharedBrowser()).context;
    });

    /** How many elements match `selector` (and contain `text`). */
    async function count(page: Page, selector: string, text?: string): Promise<number> {
      const all = await page.locator(selector).allTextContents();
      return text === undefined ? all.length : all.filter((s) => s.includes(text)).length;
    }

    /** The page, and the script errors and console errors it logs (but the `expected` ones). */
    async function openPage(expected: RegExp): Promise<{ page: Page; problems: string[] }> {
      const page = context?.pages()[0] ?? (await context!.newPage());
      page.removeAllListeners("pageerror");
      page.removeAllListeners("console");
      const problems: string[] = [];
      page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
      page.on("console", (message) => {
        if (message.type() === "error" && !expected.test(message.text())) problems.push(`console: ${message.text()}`);
      });
      return { page, problems };
    }

    if (t.kind === "postgres") {
      it("asks for a token when it cannot mint one, refuses a bad one, and chats with a good one", async () => {
        const server = await servers.start();
        const key = "page-paste";
        // The dev token's 404 and the refused token's 403 are expected.
        const { page, problems } = await openPage(/status of 40[34]/);
        try {
          await page.goto(`${server.url}/?session=${key}`);
          await page.locator("#token-panel:not([hidden])").waitFor();
          expect(await page.locator("#token-command").textContent()).toBe(`npx sessiond token ${key}`);
          expect(await page.locator("#send").isDisabled()).toBe(true);
          await page.fill("#token-input", server.mintToken("someone-else"));
          await page.click("#token-form button[type=submit]");
          await page.locator("#token-error:not([hidden])").waitFor();
          expect(await page.locator("#token-error").textContent()).toBe("the token is for another session");

          await page.fill("#token-input", server.mintToken(key));
          await page.click("#token-form button[type=submit]");
          await page.locator('#status[data-state="live"]').waitFor();
          expect(await page.locator("#token-panel").isHidden()).toBe(true);
          await page.fill("#message-input", "hello postgres");
          await page.press("#message-input", "Enter");
          await page.locator('li.assistant[data-seq="1"]').waitFor();
          expect(await page.locator('li.assistant[data-seq="1"] .body').textContent()).toBe(reply("hello postgres"));
          await eventually(async () => (await sessionHead(t.db, key)).acked === 1, { what: "the ack of seq 1" });

          // The pasted token is kept: a reload goes straight back to the conversation.
          await page.reload();
          await page.locator('#status[data-state="live"]').waitFor();
          expect(await count(page, "li.assistant")).toBe(1);
          expect(problems).toEqual([]);
        } finally {
          await page.goto("about:blank");
        }
      }, 60_000);
      return;
    }

    it("chats, survives a reload mid-stream and a server restart, and shows every reply once", async () => {
      const model = new HeldModel(2, 3);
      const key = "page-e2e";
      let server: SessiondServer = await servers.start({ model });
      // While the server is down, the page's attempts to reach it fail (and Chromium logs them).
      const { page, problems } = await openPage(/ERR_CONNECTION_REFUSED|WebSocket connection/);
      await page.addInitScript(RECORD_STREAMING_BUBBLES);
      try {
        await page.goto(`${server.url}/?session=${key}`);
        await page.locator('#status[data-state="live"]').waitFor();

        // 1. A message and its reply.
        await page.fill("#message-input", "hello page");
        await page.press("#message-input", "Enter");
        await page.locator('li.assistant[data-seq="1"]').waitFor();
        expect(await page.locator('li.assistant[data-seq="1"] .body').textContent()).toBe(reply("hello page"));

        // 2. Another; reload while its reply is held after three streamed tokens.
        await page.fill("#message-input", "second message");
        await page.press("#message-input", "Enter");
        await model.held.promise;
        await page.waitForFunction(
          `(document.querySelector("li.streaming .body")?.textContent ?? "").split(" ").length >= 3`,
        );
        expect((await sessionHead(t.db, key)).head, "the reply is not committed before the reload").toBe(1);
        await page.reload();
        await page.locator('#status[data-state="live"]').waitFor();
        expect(await count(page, "li.assistant")).toBe(1);
        model.release.open();
        const second = reply("second message", 2);
        await page.locator('li.assistant[data-seq="2"]').waitFor();
        expect(await count(page, 'li.assistant[data-seq="2"]')).toBe(1);
        expect(await count(page, "li.msg", second)).toBe(1);
        expect(await count(page, "li.user", "second message")).toBe(1);
        expect(await count(page, "li.streaming")).toBe(0);
        // After the reload the rest of the reply streamed live, joined mid-way ("… "), then the message replaced it.
        const bubbles = (await page.evaluate("window.__streaming")) as Array<{ eventSeq: string; text: string }>;
        expect(bubbles.filter((b) => b.eventSeq === "2").map((b) => b.text.startsWith("… "))).toContain(true);

        // The page acked what it showed, and the timeline panel says so.
        await eventually(async () => (await sessionHead(t.db, key)).acked === 2, { what: "the ack of seq 2" });
        await page.locator('#timeline tr[data-kind="effect"][data-seq="2"][data-status="completed"]').waitFor();
        expect(await page.locator("#messages").getAttribute("data-last-seq")).toBe("2");

        // 3. The server goes away; a message written meanwhile is sent once it is back.
        const port = server.port;
        await server.close({ graceMs: 0 });
        await page.locator('#status[data-state="offline"]').waitFor();
        await page.fill("#message-input", "while you were away");
        await page.press("#message-input", "Enter");
        await page.locator("li.user.pending").waitFor();
        server = await servers.start({ model, port });
        const third = reply("while you were away", 3);
        await page.locator('li.assistant[data-seq="3"]').waitFor({ timeout: 20_000 });
        expect(await count(page, "li.user", "while you were away")).toBe(1);
        expect(await count(page, "li.user.pending")).toBe(0);
        expect(await count(page, "li.msg", third)).toBe(1);
        expect(await count(page, "li.assistant")).toBe(3);
        expect(await page.locator('li.assistant[data-seq="3"] .body').textContent()).toBe(third);
        await eventually(async () => (await sessionHead(t.db, key)).acked === 3, { what: "the ack of seq 3" });
        await page.locator('#timeline tr[data-kind="effect"][data-seq="3"][data-status="completed"]').waitFor();

        await mkdir("test-results", { recursive: true });
        await page.screenshot({ path: "test-results/page-chat.png" });
        expect(problems).toEqual([]);
      } finally {
        model.release.open();
        await page.goto("about:blank");
      }
    }, 60_000);

    it("starts over from the server's version when its stored copy is ahead of the server (resume from 0)", async () => {
      const server = await servers.start();
      const key = "page-reset";
      const posted = await fetch(`${server.url}/v1/sessions/${key}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${server.mintToken(key)}`, "content-type": "application/json" },
        body: JSON.stringify({ requestId: "r1", text: "the server's version" }),
      });
      expect(posted.status).toBe(202);
      await eventually(async () => (await sessionHead(t.db, key)).head === 1, { what: "the reply" });

      // A copy from an older database under the same key: seq 7 is beyond the server's head.
      const stale = {
        lastSeq: 7,
        entries: [{ kind: "assistant", seq: 7, eventSeq: 7, requestId: "old", role: "assistant", content: "stale" }],
        outbox: [],
      };
      // Chromium asks for /favicon.ico on the stylesheet's URL: a 404.
      const { page, problems } = await openPage(/status of 404/);
      try {
        await page.goto(`${server.url}/page/chat.css`);
        await page.evaluate(
          `localStorage.setItem("sessiond.session.${key}", ${JSON.stringify(JSON.stringify(stale))})`,
        );
        await page.goto(`${server.url}/?session=${key}`);
        await page.locator('li.assistant[data-seq="1"]').waitFor();
        expect(await page.locator('li.assistant[data-seq="1"] .body').textContent()).toBe(
          reply("the server's version"),
        );
        expect(await count(page, "li.msg")).toBe(1);
        expect(await page.locator("#notice").textContent()).toContain("cannot resume after seq 7");
        expect(await page.locator("#messages").getAttribute("data-last-seq")).toBe("1");
        expect(problems).toEqual([]);
      } finally {
        await page.goto("about:blank");
      }
    });
  },
  haveChromium || requireBrowser ? ["pglite", "postgres"] : [],
);
