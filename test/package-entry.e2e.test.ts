/**
 * The package as a library user's plain Node sees it: `import("sessiond")` with no TypeScript
 * loader (package.json "exports" → src/index.mjs). Before, the entry was src/index.ts itself and
 * such an import failed with ERR_UNKNOWN_FILE_EXTENSION.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import * as lib from "../src/index.js";

it("plain Node imports the package by name and gets every value src/index.ts exports", async () => {
  const script = `const m = await import("sessiond");
process.stdout.write(JSON.stringify(Object.fromEntries(Object.entries(m).map(([k, v]) => [k, typeof v]))));`;
  // Run in the repository: Node resolves the package's own name through its "exports" (self-reference).
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
    timeout: 60_000,
  });
  const exported = Object.fromEntries(Object.entries(lib).map(([k, v]) => [k, typeof v]));
  expect(JSON.parse(stdout)).toEqual(exported);
});
