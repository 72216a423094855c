/**
 * Development only: `npx tsx src/db/rehash-cli.ts` fixes the hash chain after
 * editing an unreleased committed migration (see rehashCommittedMigrations).
 */
import { rehashCommittedMigrations } from "./migrate.js";

const changed = await rehashCommittedMigrations();
console.log(changed.length ? `rehashed: ${changed.join(", ")}` : "hash chain already consistent");
