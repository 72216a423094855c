import { execFile } from "node:child_process";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import type { CliIo } from "../../src/cli/command.js";
import { commands } from "../../src/cli/commands.js";
import { main } from "../../src/cli/main.js";
import { createPostgresDb } from "../../src/db/index.js";
import { loadOrCreateSecret, verifyToken } from "../../src/server/auth.js";
import { freshPostgresDatabase, postgresAvailable } from "../support/db.js";
import { eventually } from "../support/wait.js";

const SECRET = "cli-secret-0123456789abcdef0123456789";
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function io(env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const value: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l), env };
  return { io: value, out, err };
}

describe("sessiond command line", () => {
  it("lists the commands on help, and refuses an unknown one with exit code 2", async () => {
    const help = io();
    expect(await main(["help"], help.io)).toBe(0);
    for (const name of ["serve", "migrate", "token", "effects"]) expect(help.out.join("\n")).toContain(`  ${name}`);
    const none = io();
    expect(await main([], none.io)).toBe(2);
    const unknown = io();
    expect(await main(["frobnicate"], unknown.io)).toBe(2);
    expect(unknown.err.join("\n")).toContain('unknown command "frobnicate"');
    expect(Object.keys(commands)).toEqual(expect.arrayContaining(["serve", "migrate", "token", "effects"]));
  });

  it("runs through a link to bin.mjs, as npm installs it (node_modules/.bin/sessiond, npx)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sessiond-bin-"));
    dirs.push(dir);
    const link = join(dir, "sessiond");
    await symlink(resolve("src/cli/bin.mjs"), link);
    const { stdout } = await promisify(execFile)(process.execPath, [link, "help"], { timeout: 30_000 });
    // Before, the command looked for its own file name in argv[1], found the link's, and ran nothing.
    expect(stdout).toContain("usage: sessiond <command>");
  });

  it("token: mints a token for the key with SESSIOND_SECRET and the ttl", async () => {
    const run = io({ SESSIOND_SECRET: SECRET });
    expect(await main(["token", "user-7", "--ttl", "15m"], run.io)).toBe(0);
    const verified = verifyToken(SECRET, run.out[0] as string);
    expect(verified).toMatchObject({ ok: true, sessionKey: "user-7" });
    if (verified.ok) expect(verified.expiresAt - Date.now()).toBeLessThanOrEqual(15 * 60_000);
  });

  it("token: usage errors and a missing secret with DATABASE_URL are exit code 2", async () => {
    const noKey = io({ SESSIOND_SECRET: SECRET });
    expect(await main(["token"], noKey.io)).toBe(2);
    expect(noKey.err.join("\n")).toContain("usage: sessiond token");
    const badKey = io({ SESSIOND_SECRET: SECRET });
    expect(await main(["token", "no spaces"], badKey.io)).toBe(2);
    const badTtl = io({ SESSIOND_SECRET: SECRET });
    expect(await main(["token", "k", "--ttl", "forever"], badTtl.io)).toBe(2);
    const noSecret = io({ DATABASE_URL: "postgres://localhost/x" });
    expect(await main(["token", "k"], noSecret.io)).toBe(2);
    expect(noSecret.err.join("\n")).toContain("SESSIOND_SECRET");
  });

  it("a bad configuration names the variable and exits 2", async () => {
    const run = io({ PORT: "nope" });
    expect(await main(["serve"], run.io)).toBe(2);
    expect(run.err.join("\n")).toContain('PORT: expected a whole number (got "nope")');
    const flag = io({});
    expect(await main(["serve", "--bogus", "1"], flag.io)).toBe(2);
    expect(flag.err.join("\n")).toContain("usage: sessiond serve");
  });

  it("token: without SESSIOND_SECRET, generates the embedded secret in SESSIOND_DATA_DIR once", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sessiond-cli-"));
    dirs.push(dir);
    const first = io({ SESSIOND_DATA_DIR: dir });
    expect(await main(["token", "k1"], first.io)).toBe(0);
    const second = io({ SESSIOND_DATA_DIR: dir });
    expect(await main(["token", "k2"], second.io)).toBe(0);
    const { secret } = await loadOrCreateSecret(dir);
    expect(verifyToken(secret, first.out[0] as string)).toMatchObject({ ok: true, sessionKey: "k1" });
    expect(verifyToken(secret, second.out[0] as string)).toMatchObject({ ok: true, sessionKey: "k2" });
  });
});

describe.skipIf(!postgresAvailable)("database commands on Postgres", () => {
  it("migrate, then effects list and a usage error, on DATABASE_URL", async () => {
    const fresh = await freshPostgresDatabase();
    try {
      const migrate = io({ DATABASE_URL: fresh.url });
      expect(await main(["migrate"], migrate.io)).toBe(0);
      expect(migrate.out).toEqual(["migrated the Postgres database (DATABASE_URL)"]);
      const list = io({ DATABASE_URL: fresh.url, SESSIOND_MIGRATE: "off" });
      expect(await main(["effects", "list", "--json"], list.io)).toBe(0);
      expect(list.err).toEqual([]);
      const bad = io({ DATABASE_URL: fresh.url, SESSIOND_MIGRATE: "off" });
      expect(await main(["effects", "frob"], bad.io)).toBe(2);
      // graphile-migrate keeps its pool a moment after it returns and exits the process if that pool's
      // connection dies: wait until it has gone before dropping the database under it.
      const probe = createPostgresDb(fresh.url, { max: 1 });
      try {
        await eventually(
          async () => {
            const [row] = await probe.query<{ n: number }>(
              "select count(*)::int as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
            );
            return row?.n === 0;
          },
          { what: "graphile-migrate's pool to close", every: 50 },
        );
      } finally {
        await probe.close();
      }
    } finally {
      await fresh.drop();
    }
  });
});
