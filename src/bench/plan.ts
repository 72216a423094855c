/**
 * How much each scenario does, per profile: `full` (the numbers in
 * docs/benchmarks.md), `quick` (a smoke check under a minute) and `smoke`
 * (tiny counts, for the test suite). Every load loop is bounded by these
 * counts and durations.
 */

export type ProfileName = "full" | "quick" | "smoke";

export interface Plan {
  name: ProfileName;
  s1: { rounds: number; notifySamples: number; pollSamples: number; sweepMs: number; gapMs: number };
  s2: {
    rounds: number;
    /** Samples per mode per round with the zero-delay model. */
    fastSamples: number;
    /** Samples per mode per round with the ~1 s model. */
    slowSamples: number;
    /** Token delay of the ~1 s model (the default reply has 10 tokens). */
    slowTokenDelayMs: number;
    /** Sessions per mode the samples rotate over (the history stays short). */
    sessions: number;
  };
  s3: {
    /** Session counts, each with its in-flight windows tried in order until throughput stops rising. */
    steps: Array<{ sessions: number; windows: number[] }>;
    /** Shortest warm-up; it lasts until nine in ten sessions had a reply, at most maxWarmupMs. */
    warmupMs: number;
    maxWarmupMs: number;
    measureMs: number;
    bucketMs: number;
    /** Bound on waiting for the last replies after a window closes. */
    drainMs: number;
    insertConnections: number;
    insertMs: number;
    concurrency: number;
  };
  s4: { sessions: number; tokenDelayMs: number; rounds: number; concurrency: number };
  s5: { sockets: number };
  s6: { messages: number; reconnects: number };
  s7: { fastSamples: number; rounds: number; steps: Array<{ sessions: number; windows: number[] }>; measureMs: number };
}

export const PLANS: Record<ProfileName, Plan> = {
  full: {
    name: "full",
    s1: { rounds: 5, notifySamples: 200, pollSamples: 12, sweepMs: 2_000, gapMs: 3 },
    s2: { rounds: 5, fastSamples: 100, slowSamples: 3, slowTokenDelayMs: 100, sessions: 10 },
    s3: {
      steps: [
        { sessions: 1, windows: [1, 8, 32] },
        { sessions: 100, windows: [1, 4] },
        { sessions: 1_000, windows: [1] },
      ],
      warmupMs: 1_500,
      maxWarmupMs: 20_000,
      measureMs: 6_000,
      bucketMs: 250,
      drainMs: 10_000,
      insertConnections: 16,
      insertMs: 4_000,
      concurrency: 64,
    },
    s4: { sessions: 100, tokenDelayMs: 50, rounds: 5, concurrency: 128 },
    s5: { sockets: 10_000 },
    s6: { messages: 10_000, reconnects: 5 },
    s7: {
      fastSamples: 50,
      rounds: 3,
      steps: [
        { sessions: 1, windows: [1] },
        { sessions: 100, windows: [1] },
      ],
      measureMs: 5_000,
    },
  },
  quick: {
    name: "quick",
    s1: { rounds: 2, notifySamples: 40, pollSamples: 6, sweepMs: 2_000, gapMs: 2 },
    s2: { rounds: 2, fastSamples: 20, slowSamples: 1, slowTokenDelayMs: 100, sessions: 4 },
    s3: {
      // 1,000 sessions need tens of seconds to reach a steady state: full runs only.
      steps: [
        { sessions: 1, windows: [1] },
        { sessions: 100, windows: [1] },
      ],
      warmupMs: 300,
      maxWarmupMs: 3_000,
      measureMs: 1_000,
      bucketMs: 100,
      drainMs: 2_000,
      insertConnections: 16,
      insertMs: 1_000,
      concurrency: 64,
    },
    s4: { sessions: 100, tokenDelayMs: 50, rounds: 1, concurrency: 128 },
    s5: { sockets: 1_000 },
    s6: { messages: 2_000, reconnects: 2 },
    s7: { fastSamples: 10, rounds: 1, steps: [{ sessions: 10, windows: [1] }], measureMs: 1_000 },
  },
  smoke: {
    name: "smoke",
    s1: { rounds: 1, notifySamples: 4, pollSamples: 2, sweepMs: 200, gapMs: 1 },
    s2: { rounds: 1, fastSamples: 3, slowSamples: 1, slowTokenDelayMs: 5, sessions: 1 },
    s3: {
      steps: [{ sessions: 2, windows: [1] }],
      warmupMs: 100,
      maxWarmupMs: 1_000,
      measureMs: 300,
      bucketMs: 100,
      drainMs: 2_000,
      insertConnections: 2,
      insertMs: 200,
      concurrency: 8,
    },
    s4: { sessions: 3, tokenDelayMs: 5, rounds: 1, concurrency: 8 },
    s5: { sockets: 20 },
    s6: { messages: 50, reconnects: 1 },
    s7: { fastSamples: 2, rounds: 1, steps: [{ sessions: 2, windows: [1] }], measureMs: 300 },
  },
};
