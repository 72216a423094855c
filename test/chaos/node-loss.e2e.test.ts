/**
 * Node loss: three `sessiond serve` processes on one Postgres, each with its
 * own clients, under load. One is killed with SIGKILL while it streams a
 * reply. Its clients reconnect to the survivors; the sessions whose leases it
 * held stay blocked until their leases expire (a short lease here) and are
 * then taken over by a survivor with a larger fencing token. Nothing is
 * answered twice; every message is answered once (the books of
 * test/support/chaos/checks.ts). The long form repeats this, restarting the
 * killed node each time and killing another.
 */
import { describe, expect, it } from "vitest";
import type { ChaosClient } from "../support/chaos/chaos-client.js";
import { auditConversations } from "../support/chaos/checks.js";
import { Conversations } from "../support/chaos/conversation.js";
import { useChaosHarness } from "../support/chaos/harness.js";
import { leaseSnapshot, type Orphan, takeovers } from "../support/chaos/leases.js";
import { scale, seedFor, timeoutMs } from "../support/chaos/mode.js";
import { Rng } from "../support/chaos/prng.js";
import { percentile, report } from "../support/chaos/report.js";
import type { ServerProcess } from "../support/chaos/server-process.js";
import { postgresAvailable } from "../support/db.js";

const NODES = 3;
const SESSIONS = scale(6, 12);
const ROUNDS = scale(1, 8);
const LEASE_MS = 1500;

const ENV = {
  SESSIOND_TOKEN_DELAY_MS: "8",
  SESSIOND_LEASE_MS: String(LEASE_MS),
  SESSIOND_SWEEP_MS: "200",
  SESSIOND_RATE_LIMIT: "1000",
  SESSIOND_RATE_BURST: "1000",
};

describe.skipIf(!postgresAvailable)("chaos: node loss", () => {
  const ready = useChaosHarness(ENV);

  it(
    `three nodes, one killed under load (${ROUNDS} round(s)): the others take its sessions over, no duplicate replies`,
    async () => {
      const h = await ready();
      const rng = new Rng(seedFor("node-loss"));
      const nodes: ServerProcess[] = await Promise.all(
        Array.from({ length: NODES }, (_, i) => h.start({ name: `node-${i}` })),
      );
      // A client sticks to its home node while it lives, else goes to the next live one.
      const urlFor = (home: number) => () => {
        for (let step = 0; step < NODES; step++) {
          const node = nodes[(home + step) % NODES];
          if (node?.alive) return node.url;
        }
        return undefined;
      };
      const clients: ChaosClient[] = [];
      for (let i = 0; i < SESSIONS; i++) {
        const client = h.client(`node-loss-${i}`, urlFor(i % NODES), rng.fork(`client-${i}`));
        clients.push(client);
        client.start();
      }
      const load = new Conversations(clients, { inflight: 2, rng: rng.fork("texts") });
      load.start();
      await load.progress(SESSIONS, 60_000);

      const orphans: Orphan[] = [];
      const firstReplyMs: number[] = [];
      const fencing: string[] = [];
      let deadOwners = 0;
      for (let round = 0; round < ROUNDS; round++) {
        // Kill the node that holds the lease of a session while it streams that session's reply
        // (it is mid-run). The lease names the node (its owner is in its banner); the socket does
        // not: after a node died, a session's client may sit on one survivor while another runs it.
        let victim = -1;
        let onVictim: ChaosClient[] = [];
        await new Promise<void>((resolve) => {
          let looking = false;
          const offs = clients.map((client) =>
            client.onFrame((frame) => {
              if (victim !== -1 || looking || frame.type !== "token") return;
              looking = true;
              h.db
                .query<{ lease_owner: string | null }>(
                  "select lease_owner from sessiond.sessions where session_key = $1",
                  [client.sessionKey],
                )
                .then(
                  ([row]) => {
                    looking = false;
                    const on = nodes.findIndex((node) => node.alive && node.owner === row?.lease_owner);
                    if (victim !== -1 || on === -1) return;
                    victim = on;
                    onVictim = clients.filter((c) => c.connectedTo === nodes[on]?.url);
                    nodes[on]?.child.kill("SIGKILL");
                    for (const off of offs) off();
                    resolve();
                  },
                  () => {
                    looking = false;
                  },
                );
            }),
          );
        });
        const killedAt = Date.now();
        await nodes[victim]?.kill9();
        const snapshot = await leaseSnapshot(h.db);
        const victimOwner = nodes[victim]?.owner;
        const leased = new Set(snapshot.filter((r) => r.lease_owner === victimOwner).map((r) => r.session_key));
        // Its clients and the clients of the sessions it ran get answers again (from the survivors).
        const waiting = clients.filter(
          (c) => (onVictim.includes(c) || leased.has(c.sessionKey)) && c.outstanding() > 0,
        );
        const seen = await takeovers(h.db, snapshot, killedAt, 30_000);
        deadOwners += seen.deadOwners.length;
        orphans.push(...seen.orphans);
        expect(seen.deadOwners, "exactly one lease owner died").toHaveLength(1);
        for (const client of waiting) {
          const before = [...client.sent.values()].filter((m) => m.repliedAt === undefined).map((m) => m.requestId);
          await client.until(() => before.some((id) => client.sent.get(id)?.repliedAt !== undefined), {
            ms: 30_000,
            what: "a reply after the node died",
          });
          const at = Math.min(...before.map((id) => client.sent.get(id)?.repliedAt ?? Number.POSITIVE_INFINITY));
          firstReplyMs.push(at - killedAt);
        }
        // Whatever the dead node had not committed was committed by a later lease holder.
        for (const orphan of seen.orphans) {
          const late = await h.db.query<{ seq: number; lease_token: number }>(
            "select seq, lease_token from sessiond.event_outcomes where session_key = $1 and seq > $2 and lease_token <= $3",
            [orphan.sessionKey, orphan.processedSeq, orphan.token],
          );
          for (const row of late)
            fencing.push(`${orphan.sessionKey}: event ${row.seq} committed with token ${row.lease_token}`);
        }
        if (round < ROUNDS - 1) {
          nodes[victim] = await h.start({ name: `node-${victim}-r${round + 1}` });
          await load.progress(NODES, 30_000);
        }
      }
      load.stopSending();
      await load.drain(60_000);

      const { problems, stats } = await auditConversations(h.db, clients);
      const crashed = h.servers.filter((s) => !s.alive && !s.stoppedByUs).map((s) => s.name);
      const takeoverMs = orphans.map((o) => o.takenOverMs);
      report("node-loss", {
        seed: rng.seed,
        nodes: NODES,
        rounds: ROUNDS,
        kills: ROUNDS,
        leaseMs: LEASE_MS,
        orphanedSessions: orphans.length,
        takeoverMsMax: Math.max(...takeoverMs),
        takeoverMsP50: percentile(takeoverMs, 50),
        firstReplyAfterKillMsMax: Math.max(...firstReplyMs),
        ...stats,
        problems: problems.length,
      });
      expect(crashed, "a server died without being killed").toEqual([]);
      expect(deadOwners).toBe(ROUNDS);
      expect(orphans.length, "the killed nodes held leases").toBeGreaterThan(0);
      expect(fencing).toEqual([]);
      expect(problems).toEqual([]);
      expect(stats.lost).toBe(0);
    },
    timeoutMs(120_000, 1_800_000),
  );
});
