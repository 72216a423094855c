/**
 * `sessiond serve --psql-port`: the serve command, in this process, on a
 * temporary PGlite data directory (seeded from global setup's migrated dump),
 * with the psql port on a port the OS chose. A chat goes through the server,
 * and a real psql reads it back from sessiond.session_summary through the
 * port; stopping the command closes the port. Configuration errors (a bad
 * port, the port with DATABASE_URL) stop the command before it opens anything.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, expect, inject, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { runServeCommand } from "../../src/cli/serve-command.js";
import { createPgliteDb } from "../../src/db/index.js";
import { TestClient } from "../server/client.js";
import { reply } from "../server/fixture.js";
import { TEST_PGLITE_SETTINGS } from "../support/db.js";
import { eventually } from "../support/wait.js";

const exec = promisify(execFile);
const dirs: string[] = [];
const stops: AbortController[] = [];
const clients: TestClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  for (const stop of stops.splice(0)) stop.abort();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** psql, unaligned, tuples only; rejects when psql fails (e.g. nothing listens). */
async function psql(port: number, sql: string): Promise<string> {
  const { stdout } = await exec(
    "psql",
    ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-F", "|", "-c", sql],
    { timeout: 20_000, env: { ...process.env, PGCONNECT_TIMEOUT: "5", PGSSLMODE: "disable" } },
  );
  return stdout.trim();
}

it("serve --psql-port: psql reads the running server's embedded database; stopping closes the port", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sessiond-psql-port-"));
  dirs.push(dir);
  const seeded = await createPgliteDb({
    dataDir: join(dir, "data"),
    loadDataDir: new Blob([await readFile(inject("pgliteDump"))]),
    settings: TEST_PGLITE_SETTINGS,
  });
  await seeded.close();

  const out: string[] = [];
  const stop = new AbortController();
  stops.push(stop);
  const env = { PORT: "0", SESSIOND_DATA_DIR: dir, SESSIOND_LOG_LEVEL: "silent" };
  const io = { out: (line: string) => out.push(line), err: (line: string) => out.push(line), env };
  const running = runServeCommand(["--psql-port", "0"], io, { signal: stop.signal });
  const failed = running.then(() => new Error(`serve stopped early:\n${out.join("\n")}`));

  const psqlLine = await Promise.race([
    eventually(() => out.find((line) => line.includes("psql -h")), { ms: 60_000, what: "the psql line" }),
    failed.then((error) => Promise.reject(error)),
  ]);
  const port = Number(/psql -h 127\.0\.0\.1 -p (\d+) -U postgres postgres/.exec(psqlLine)?.[1]);
  const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out.join("\n"))?.[1] as string;
  expect(port).toBeGreaterThan(0);
  expect(url).toBeDefined();

  // Chat through the server (its dev token: embedded PGlite, asked from 127.0.0.1).
  const { token } = (await (await fetch(`${url}/v1/dev/token?session=psql-chat`)).json()) as { token: string };
  const client = await TestClient.connect(url, "psql-chat", { token, after: 0 });
  clients.push(client);
  client.send({ type: "message", requestId: "p1", text: "seen from psql" });
  expect((await client.waitForType("message", "p1", 30_000)).content).toBe(reply("seen from psql"));

  expect(
    await psql(port, "select session_key, user_messages, last_seq, effect_seq from sessiond.session_summary"),
  ).toBe("psql-chat|1|1|1");
  expect(
    await psql(port, "select type, summary from sessiond.session_timeline where kind = 'event' order by seq"),
  ).toBe("user_message|seen from psql");

  stop.abort();
  expect(await running).toBe(0);
  expect(out.join("\n")).toContain("sessiond: stopped; shutting down");
  // Nothing listens on the port any more: a TCP connect is refused.
  const refused = await new Promise<string>((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
  expect(refused).toBe("ECONNREFUSED");
}, 120_000);

it("serve refuses a bad psql port, and the psql port with DATABASE_URL, before starting anything", async () => {
  const run = async (argv: string[], env: Record<string, string>) => {
    const lines: string[] = [];
    const code = await main(["serve", ...argv], { out: (l) => lines.push(l), err: (l) => lines.push(l), env });
    return { code, text: lines.join("\n") };
  };
  const bad = await run(["--psql-port", "54x"], { PORT: "0", SESSIOND_LOG_LEVEL: "silent" });
  expect(bad.code).toBe(2);
  expect(bad.text).toContain('--psql-port: expected a port number 0..65535 (got "54x")');

  const withUrl = await run([], {
    DATABASE_URL: "postgres://nobody@127.0.0.1:1/none",
    SESSIOND_SECRET: "s".repeat(40),
    SESSIOND_PSQL_PORT: "5433",
  });
  expect(withUrl.code).toBe(2);
  expect(withUrl.text).toContain("SESSIOND_PSQL_PORT: the psql port exposes the embedded PGlite database");
});
