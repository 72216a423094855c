/**
 * pg_dump of the sessiond schema, normalised for test/schema.sql (used by
 * schema-dump.int.test.ts; a plain module so a script can produce the same text).
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

/**
 * Drops what varies with the pg_dump build or the run rather than the schema:
 * the header comments naming versions, \restrict/\unrestrict (their key is
 * random per dump), SET and set_config lines, and blank-line runs. Comment
 * blocks that name an object ("-- Name: …") stay: they make the file readable.
 */
export function normaliseDump(dump: string): string {
  const lines = dump
    .split("\n")
    .map((line) => line.trimEnd())
    .filter(
      (line) =>
        !/^\\(un)?restrict\b/.test(line) && !/^SET \w+ = /.test(line) && !/^SELECT pg_catalog\.set_config\(/.test(line),
    );
  const blocks = lines
    .join("\n")
    .split(/\n{2,}/)
    .filter((block) => block.trim() !== "")
    // A block of comment lines only, naming no object, is a header ("PostgreSQL database dump", "Dumped from …").
    .filter((block) => !block.split("\n").every((line) => /^--( |$)/.test(line)) || /^-- Name: /m.test(block));
  return `${blocks.join("\n\n")}\n`;
}

/** `pg_dump --schema-only --no-owner --no-privileges --schema=sessiond` of a database, normalised. */
export async function dumpSessiondSchema(url: string): Promise<string> {
  const { stdout } = await promisify(execFile)(
    "pg_dump",
    ["--schema-only", "--no-owner", "--no-privileges", "--schema=sessiond", `--dbname=${url}`],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  return normaliseDump(stdout);
}
