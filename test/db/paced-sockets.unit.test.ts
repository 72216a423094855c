import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { isConnectionError } from "../../src/db/index.js";
import { connectionPacer, FIRST_DELAY_MS, type PacedSockets } from "../../src/db/reconnect-backoff.js";

/** A loopback server that counts connections and closes each at once (a refusing database, as TCP sees it). */
async function refusing(): Promise<{ server: Server; port: number; accepted: () => number }> {
  let accepted = 0;
  const server = createServer((socket) => {
    accepted += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port, accepted: () => accepted };
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

/** Opens one socket from `factory` and waits until the server has closed it. */
async function attempt(factory: PacedSockets, target: Parameters<PacedSockets>[0]) {
  const socket: Socket = await factory(target);
  socket.on("error", () => {});
  await once(socket, "close");
  return socket;
}

describe("connectionPacer", () => {
  it("holds each attempt after quick closes for the streak's delay (10, 20 ms …), whichever connection asks", async () => {
    const a = await refusing();
    servers.push(a.server);
    // The clock and the waits are vitest's; the sockets are real.
    vi.useFakeTimers({ toFake: ["setTimeout", "performance"] });
    try {
      const factory = connectionPacer(undefined, () => 1).sockets(); // no jitter: the full delay
      const target = { host: ["127.0.0.1"], port: [a.port] };
      await attempt(factory, target); // the first attempt waits for nothing; refused at t = 0
      for (const delay of [FIRST_DELAY_MS, FIRST_DELAY_MS * 2, FIRST_DELAY_MS * 4]) {
        let opened = false;
        const next = factory(target).then((socket) => {
          opened = true;
          return socket;
        });
        await vi.advanceTimersByTimeAsync(delay - 1);
        expect(opened).toBe(false);
        await vi.advanceTimersByTimeAsync(1);
        expect(opened).toBe(true);
        const socket = await next;
        socket.on("error", () => {});
        await once(socket, "close"); // refused again, at once: the streak goes on
      }
      expect(a.accepted()).toBe(4);
    } finally {
      vi.useRealTimers();
    }
  });

  it("a stopped factory (its pool ended) opens nothing more: a waiting attempt fails at once", async () => {
    const a = await refusing();
    servers.push(a.server);
    const pacer = connectionPacer(undefined, () => 1);
    const ended = pacer.sockets();
    const target = { host: ["127.0.0.1"], port: [a.port] };
    await attempt(ended, target);
    await attempt(ended, target); // now the next attempt waits 20 ms
    const waiting = ended(target);
    ended.stop();
    await expect(waiting).rejects.toThrow("pool is closed");
    // A connection error to its callers, not a statement's failure (a run must not fail for it).
    expect(isConnectionError(await waiting.catch((error: unknown) => error))).toBe(true);
    await expect(ended(target)).rejects.toThrow("pool is closed");
    // Another pool of the same Db goes on (after its turn).
    await attempt(pacer.sockets(), target);
    expect(a.accepted()).toBe(3);
  });

  it("takes the hosts in turn, as the driver does, and names the endpoint on the socket", async () => {
    const [a, b] = [await refusing(), await refusing()];
    servers.push(a.server, b.server);
    const factory = connectionPacer().sockets();
    const target = { host: ["127.0.0.1", "127.0.0.1"], port: [a.port, b.port] };
    const ports: unknown[] = [];
    for (let i = 0; i < 3; i++) ports.push(((await attempt(factory, target)) as Socket & { port: number }).port);
    expect(ports).toEqual([a.port, b.port, a.port]);
    expect([a.accepted(), b.accepted()]).toEqual([2, 1]);
  });
});
