/**
 * The real command: `node src/cli/bin.mjs serve` in a child process with a
 * temporary data directory (embedded PGlite, generated secret), one chat over
 * a WebSocket, then SIGTERM and a clean exit.
 *
 * The data directory is seeded from the migrated dump global setup built:
 * PGlite's initdb alone takes 10+ s on a small machine, which this suite
 * cannot afford twice. Startup still runs the migrations (a no-op here) and
 * generates the secret on first start.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, inject, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { createPgliteDb } from "../../src/db/index.js";
import { TestClient } from "../server/client.js";
import { reply } from "../server/fixture.js";
import { TEST_PGLITE_SETTINGS } from "../support/db.js";

const children: ChildProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function collect(child: ChildProcess) {
  let out = "";
  let waiter: (() => void) | undefined;
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    waiter?.();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    waiter?.();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    get text() {
      return out;
    },
    exited,
    async match(pattern: RegExp, ms = 60_000): Promise<RegExpMatchArray> {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = pattern.exec(out);
        if (found) return found;
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no ${pattern} in output:\n${out}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
          waiter = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
}

it("sessiond serve: starts on a fresh data directory, chats, and exits cleanly on SIGTERM", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sessiond-serve-"));
  dirs.push(dir);
  const seeded = await createPgliteDb({
    dataDir: join(dir, "data"),
    loadDataDir: new Blob([await readFile(inject("pgliteDump"))]),
    settings: TEST_PGLITE_SETTINGS,
  });
  await seeded.close();
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: "0", SESSIOND_DATA_DIR: dir, SESSIOND_LOG_LEVEL: "warn" };
  delete env.DATABASE_URL;
  delete env.SESSIOND_SECRET;
  const child = spawn(process.execPath, ["src/cli/bin.mjs", "serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  const output = collect(child);
  const [, url] = await output.match(/sessiond listening on (http:\/\/127\.0\.0\.1:\d+)/);
  await output.match(/token: +npx sessiond token <sessionKey>/);
  expect((await stat(join(dir, "secret"))).mode & 0o777).toBe(0o600);
  expect((await stat(join(dir, "data"))).isDirectory()).toBe(true);

  // `sessiond token` reads the secret the server generated.
  const lines: string[] = [];
  const code = await main(["token", "cli-chat"], { out: (l) => lines.push(l), err: (l) => lines.push(l), env });
  expect(code).toBe(0);
  const client = await TestClient.connect(url as string, "cli-chat", { token: lines[0] as string });
  try {
    client.send({ type: "message", requestId: "c1", text: "hello from the cli test" });
    expect((await client.waitForType("message", "c1", 30_000)).content).toBe(reply("hello from the cli test"));
    child.kill("SIGTERM");
    expect((await client.closed).code).toBe(1012);
  } finally {
    client.ws.terminate();
  }
  expect(await output.exited).toBe(0);
  expect(output.text).toContain("SIGTERM; shutting down");
}, 120_000);
