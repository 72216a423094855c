/**
 * A child-process fixture for test/chaos/dead-connection.int.test.ts: runs
 * `count` transactions on the Postgres database at `url`, each of whose
 * connection dies in the middle (the backend terminates itself), and prints
 * `survived <n failed transactions>`. Run in a child because the bug it
 * guards against (postgres.js writing to the dead socket from a
 * setImmediate) kills the whole process, which a test must see from outside.
 */
import { createPostgresDb } from "../../../src/db/index.js";

const [url, count = "20"] = process.argv.slice(2);
if (!url) throw new Error("usage: dead-connection-transactions.ts <postgres url> [count]");
const db = createPostgresDb(url, { max: 2, applicationName: "sessiond-dead-tx" });
let failed = 0;
for (let i = 0; i < Number(count); i++) {
  try {
    await db.transaction(async (tx) => {
      await tx.query("select 1");
      await tx.query("select pg_terminate_backend(pg_backend_pid())");
    });
  } catch {
    failed += 1;
  }
}
// The pool still works afterwards (a statement may first meet a connection that is just closing).
for (let attempt = 1; ; attempt++) {
  try {
    await db.query("select 1");
    break;
  } catch (error) {
    if (attempt >= 5) throw error;
  }
}
// Let any write deferred to a setImmediate run (that is where the bug threw), then report.
await new Promise((resolve) => setTimeout(resolve, 50));
console.log(`survived ${failed}`);
// Not db.close(): after a terminated statement postgres.js waits out its 5 s end timeout.
process.exit(0);
