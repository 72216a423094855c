/**
 * Found by the database-faults chaos suite: postgres.js 3.4.9 leaves its type
 * query on connect unawaited, so a connection terminated at that moment ended
 * the whole `sessiond serve` process with an unhandled rejection. The CLI's
 * handler lets database connection errors pass (with a line on stderr) and
 * still ends the process on anything else.
 */
import { expect, it } from "vitest";
import { unhandledRejectionHandler } from "../../src/cli/main.js";
import { DbError } from "../../src/db/index.js";

it("an unawaited database connection error is reported, not fatal; any other rejection still is", () => {
  const lines: string[] = [];
  const handle = unhandledRejectionHandler({ err: (line) => lines.push(line) });
  handle(new DbError("terminating connection due to administrator command", "57P01"));
  handle(Object.assign(new Error("write CONNECTION_CLOSED 127.0.0.1:5432"), { code: "CONNECTION_CLOSED" }));
  expect(lines).toHaveLength(2);
  expect(lines[0]).toContain("terminating connection due to administrator command");
  const bug = new TypeError("x is not a function");
  expect(() => handle(bug)).toThrow(bug);
  expect(() => handle(new DbError("duplicate key value", "23505"))).toThrow("duplicate key value");
  expect(() => handle("a string")).toThrow();
});
