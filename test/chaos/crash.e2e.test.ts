/**
 * Process crashes: one real `sessiond serve` process on real Postgres, driven
 * by resilient WebSocket clients, is killed with SIGKILL at chosen moments —
 * right after a message was sent (mid-append), while a reply streams
 * (mid-run), on a reply's last token (mid-commit), right as a durable frame
 * arrives (mid-delivery), or after a random pause — and restarted, cycle after
 * cycle. The clients reconnect with ?after=<lastSeq> and resend what was not
 * accepted. At the end the books must balance: verify() is clean, every
 * message has exactly one reply stored and delivered once after dedupe, no
 * gap in any client's seqs, and each message sits in its checkpoint history
 * exactly once (see test/support/chaos/checks.ts).
 */
import { describe, expect, it } from "vitest";
import type { ChaosClient, Frame } from "../support/chaos/chaos-client.js";
import { auditConversations, type ClientBooks } from "../support/chaos/checks.js";
import { Conversations } from "../support/chaos/conversation.js";
import { useChaosHarness } from "../support/chaos/harness.js";
import { scale, seedFor, timeoutMs } from "../support/chaos/mode.js";
import { Rng } from "../support/chaos/prng.js";
import { report } from "../support/chaos/report.js";
import type { ServerProcess } from "../support/chaos/server-process.js";
import { postgresAvailable } from "../support/db.js";

const CYCLES = scale(3, 40);
const SESSIONS = scale(3, 8);
const MOMENTS = ["append", "run", "commit", "delivery", "random"] as const;
type Moment = (typeof MOMENTS)[number];

const ENV = {
  SESSIOND_TOKEN_DELAY_MS: "8",
  SESSIOND_LEASE_MS: "1000",
  SESSIOND_SWEEP_MS: "200",
  SESSIOND_RATE_LIMIT: "1000",
  SESSIOND_RATE_BURST: "1000",
};

/**
 * Calls `hit` synchronously at the first occurrence of `moment` (or after
 * `fallbackMs`: then the kill lands wherever the server happens to be);
 * resolves with whether the moment itself was caught.
 */
function strike(moment: Moment, load: Conversations, rng: Rng, hit: () => void, fallbackMs = 10_000): Promise<boolean> {
  return new Promise((resolve) => {
    const cleanups: Array<() => void> = [];
    let done = false;
    const fire = (caught: boolean) => {
      if (done) return;
      done = true;
      hit();
      for (const cleanup of cleanups) cleanup();
      resolve(caught);
    };
    const fallback = setTimeout(() => fire(false), moment === "random" ? rng.int(0, 400) : fallbackMs);
    cleanups.push(() => clearTimeout(fallback));
    if (moment === "random") return;
    if (moment === "append") {
      cleanups.push(load.onSend(() => fire(true)));
      return;
    }
    const matches = (frame: Frame) =>
      moment === "run"
        ? frame.type === "token"
        : moment === "commit"
          ? frame.type === "token" && typeof frame.text === "string" && frame.text.endsWith("conversation)")
          : frame.type === "message" && typeof frame.seq === "number";
    for (const client of load.clients) cleanups.push(client.onFrame((frame) => matches(frame) && fire(true)));
  });
}

describe.skipIf(!postgresAvailable)("chaos: process crashes", () => {
  const ready = useChaosHarness(ENV);

  it(
    `kill -9 at random moments for ${CYCLES} cycles: nothing lost, nothing twice`,
    async () => {
      const h = await ready();
      const rng = new Rng(seedFor("crash"));
      let server: ServerProcess | undefined = await h.start({ name: "crash-0" });
      const live = () => (server?.alive ? server.url : undefined);
      const clients: ChaosClient[] = [];
      for (let i = 0; i < SESSIONS; i++) clients.push(h.client(`crash-${i}`, live, rng.fork(`client-${i}`)));
      for (const client of clients) client.start();
      const load = new Conversations(clients, { inflight: 2, rng: rng.fork("texts") });
      load.start();
      await load.progress(SESSIONS, 30_000);

      const moments: Record<string, { tried: number; caught: number }> = {};
      const started = Date.now();
      for (let cycle = 1; cycle <= CYCLES; cycle++) {
        const moment = cycle <= MOMENTS.length ? (MOMENTS[cycle - 1] as Moment) : rng.pick(MOMENTS);
        const dying: ServerProcess = server;
        const caught = await strike(moment, load, rng, () => dying.child.kill("SIGKILL"));
        const tally = moments[moment] ?? { tried: 0, caught: 0 };
        moments[moment] = tally;
        tally.tried += 1;
        if (caught) tally.caught += 1;
        await dying.kill9();
        server = undefined;
        server = await h.start({ name: `crash-${cycle}` });
        // The restarted process must get work done before the next kill.
        await load.progress(1, 30_000);
      }
      load.stopSending();
      await load.drain(60_000);

      const { problems, stats } = await auditConversations(h.db, clients);
      const crashed = h.servers.filter((s) => !s.alive && !s.stoppedByUs).map((s) => s.name);
      report("crash", {
        seed: rng.seed,
        cycles: CYCLES,
        kills: CYCLES,
        moments,
        ...stats,
        seconds: Math.round((Date.now() - started) / 1000),
        problems: problems.length,
      });
      expect(crashed, "a server died without being killed").toEqual([]);
      expect(problems).toEqual([]);
      expect(stats.lost).toBe(0);
      expect(stats.messages).toBeGreaterThan(CYCLES);
    },
    timeoutMs(120_000, 1_800_000),
  );

  it("the books catch a lost, a doubled, an unsent and a skipped reply", async () => {
    const h = await ready();
    const client = h.clients[0];
    if (!client || client.sent.size < 2) throw new Error("the crash test left no conversation to check");
    const copy = (): ClientBooks => ({
      sessionKey: client.sessionKey,
      sent: new Map([...client.sent].map(([id, m]) => [id, { ...m }])),
      replies: new Map([...client.replies].map(([id, frames]) => [id, [...frames]])),
      durable: [...client.durable],
      gaps: [...client.gaps],
      duplicatesDropped: client.duplicatesDropped,
      connects: client.connects,
    });
    const [first, second] = [...client.sent.keys()] as [string, string];
    const clean = await auditConversations(h.db, [copy()]);
    expect(clean.problems).toEqual([]);

    const lost = copy();
    lost.replies.delete(first);
    const doubled = copy();
    doubled.replies.get(second)?.push(doubled.replies.get(second)?.[0] as Frame);
    const unsent = copy();
    unsent.sent.delete(first);
    const skipped = copy();
    skipped.durable.splice(0, 1);
    const found = async (books: ClientBooks) => (await auditConversations(h.db, [books])).problems.join("\n");
    expect(await found(lost)).toContain(`${first} reached the client 0 times`);
    expect(await found(doubled)).toContain(`${second} reached the client 2 times`);
    expect(await found(unsent)).toContain("was never sent");
    expect(await found(skipped)).toContain("the client kept seqs");
    expect((await auditConversations(h.db, [lost])).stats.lost).toBe(1);
  });
});
