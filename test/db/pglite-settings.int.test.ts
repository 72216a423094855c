import { afterAll, expect, it } from "vitest";
import type { PgliteDb } from "../../src/db/index.js";
import { freshPglite, TEST_PGLITE_SETTINGS } from "../support/db.js";

let db: PgliteDb | undefined;
afterAll(async () => {
  await db?.close();
});

it("PGlite starts with the settings it is given (the test databases' small shared buffers)", async () => {
  db = await freshPglite();
  const [row] = await db.query<{ shared_buffers: string }>("show shared_buffers");
  expect(row?.shared_buffers).toBe(TEST_PGLITE_SETTINGS.shared_buffers);
  // The rest of PGlite's own start parameters still hold.
  const [path] = await db.query<{ search_path: string }>("show search_path");
  expect(path?.search_path).toBe("public");
});
