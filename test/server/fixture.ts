/**
 * Servers and clients for the server tests: `useServers(t)` registers an
 * afterEach (inside the describeEachDb block, so it runs before the leak
 * checks) that closes every client and server a test started.
 */
import { afterEach, expect } from "vitest";
import { LocalChatModel } from "../../src/agent/local-model.js";
import { type SessiondServer, type StartServerOptions, startServer } from "../../src/server/index.js";
import type { TestDb } from "../support/db.js";
import { gate } from "../support/wait.js";
import { type ConnectOptions, TestClient } from "./client.js";

export const SECRET = "test-secret-0123456789abcdef0123456789abcdef";

export function useServers(t: TestDb) {
  const servers: SessiondServer[] = [];
  const clients: TestClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.terminate()));
    for (const server of servers.splice(0)) {
      await server.close({ graceMs: 0 });
      expect(server.metrics.openSockets, "sockets left open").toBe(0);
      expect(server.metrics.openStreams, "streams left open").toBe(0);
    }
  });
  return {
    /** Starts a server on this block's database (which it does not close). */
    async start(options: StartServerOptions = {}): Promise<SessiondServer> {
      const server = await startServer({
        db: t.db,
        port: 0,
        secret: SECRET,
        logLevel: "silent",
        sweepMs: 200,
        runtimeOptions: { retryBaseMs: 5 },
        ...options,
      });
      servers.push(server);
      return server;
    },
    /** Connects a client with a token for `sessionKey` (unless options say otherwise). */
    async connect(server: SessiondServer, sessionKey: string, options: ConnectOptions = {}): Promise<TestClient> {
      const client = await TestClient.connect(server.url, sessionKey, {
        token: server.mintToken(sessionKey),
        ...options,
      });
      clients.push(client);
      return client;
    },
    track(client: TestClient): TestClient {
      clients.push(client);
      return client;
    },
  };
}

export function reply(text: string, turn = 1): string {
  return `[local model] You said: "${text}". (message ${turn * 2} in this conversation)`;
}

/**
 * A local model that holds its reply until `release.open()`: `called` opens when a run reached the
 * model, so a test can act while the session is provably busy.
 */
export function heldModel(text: string) {
  const release = gate();
  const called = gate();
  const model = new LocalChatModel({
    behaviour: async () => {
      called.open();
      await release.promise;
      return text;
    },
  });
  return { model, release, called };
}
