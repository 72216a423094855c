import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // test/chaos runs in every `npm test` in its short form; `npm run chaos`
    // (CHAOS=long) runs only test/chaos, in its long form (see docs/reliability.md).
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Most files wait on Postgres, sockets and child processes rather than the CPU, so three
    // workers finish sooner than two on this 2-core machine. Files share a worker's module
    // cache (no isolation): LangGraph and friends load once per worker instead of once per
    // file, which was a third of the suite's time. Test files keep no state across files.
    maxWorkers: 3,
    isolate: false,
    reporters: ["default"],
    // No results cache: with it vitest starts files in the order of the last run's durations, which
    // starts the heaviest files (servers spawned, flooded, killed) together on the two cores; without
    // it files start largest first, as in a fresh clone (CI). Same commit, this machine: 107–135 s
    // (11 runs) with the cache, 92.5–112.5 s (8 runs, median 100 s) without.
    cache: false,
  },
});
