/**
 * Found by the database-faults chaos suite: a sessiond process died with
 * `TypeError: Cannot read properties of null (reading 'write')` when one of
 * its transactions lost its connection (pg_terminate_backend). postgres.js
 * 3.4.9 sends ROLLBACK on the transaction's connection after the callback
 * throws, even when that connection is gone, and its deferred write then
 * throws from a setImmediate (porsager/postgres#1154, #1208; no release fixes
 * it yet). The Postgres Db's transaction() now never lets a lost connection
 * reach that ROLLBACK (src/db/postgres.ts).
 *
 * The fixture runs in a child process, since the bug ends the process.
 */
import { spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPostgresDatabase, postgresAvailable } from "../support/db.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const COUNT = 5;

describe.skipIf(!postgresAvailable)("a transaction whose connection dies", () => {
  let fresh: Awaited<ReturnType<typeof freshPostgresDatabase>> | undefined;
  beforeAll(async () => {
    fresh = await freshPostgresDatabase();
  });
  afterAll(async () => {
    await fresh?.drop();
  });

  it(`fails with a connection error and leaves the process alive (${COUNT} times)`, async () => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "test/support/chaos/dead-connection-transactions.ts"),
        fresh?.url ?? "",
        String(COUNT),
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const code = await new Promise<number | null>((done) => child.once("exit", (exit) => done(exit)));
    expect(output).not.toContain("TypeError");
    expect(code, output).toBe(0);
    expect(output).toContain(`survived ${COUNT}`);
  }, 60_000);
});
