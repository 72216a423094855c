/**
 * Load for the chaos suites: every client keeps up to `inflight` messages
 * without a reply, sending the next one as soon as a reply arrives, until
 * `stopSending()`. `drain()` then waits until every message sent has its reply.
 */
import type { ChaosClient } from "./chaos-client.js";
import type { Rng } from "./prng.js";

export interface ConversationOptions {
  /** Unanswered messages per client at a time (default 2). */
  inflight?: number;
  rng: Rng;
}

export class Conversations {
  readonly clients: readonly ChaosClient[];
  readonly #inflight: number;
  readonly #rng: Rng;
  #sending = false;
  readonly #unsubscribe: Array<() => void> = [];
  readonly #onSend = new Set<(client: ChaosClient, requestId: string) => void>();

  constructor(clients: readonly ChaosClient[], options: ConversationOptions) {
    this.clients = clients;
    this.#inflight = options.inflight ?? 2;
    this.#rng = options.rng;
  }

  /** Starts sending (clients must be started). */
  start(): void {
    this.#sending = true;
    for (const client of this.clients) {
      this.#unsubscribe.push(
        client.onFrame((frame) => {
          if (typeof frame.seq === "number") this.#topUp(client);
        }),
      );
      this.#topUp(client);
    }
  }

  /** No new messages from now on (resends of unaccepted ones still happen). */
  stopSending(): void {
    this.#sending = false;
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
  }

  /** Calls `listener` right after each new message is sent. */
  onSend(listener: (client: ChaosClient, requestId: string) => void): () => void {
    this.#onSend.add(listener);
    return () => this.#onSend.delete(listener);
  }

  get sent(): number {
    return this.clients.reduce((n, c) => n + c.sent.size, 0);
  }

  get answered(): number {
    return this.clients.reduce((n, c) => n + c.answered(), 0);
  }

  /** Resolves once `count` more replies than now have arrived (across clients). */
  async progress(count: number, ms: number): Promise<void> {
    const target = this.answered + count;
    const first = this.clients[0];
    if (!first) return;
    const deadline = Date.now() + ms;
    // Any client's waiter is woken by its own frames only, so poll them in turn with short waits.
    while (this.answered < target) {
      if (Date.now() > deadline) {
        throw new Error(`no progress: ${this.answered}/${target} replies after ${ms} ms`);
      }
      await Promise.race(this.clients.map((c) => c.until(() => this.answered >= target, { ms: 250 }).catch(() => {})));
    }
  }

  /** Waits until every message sent so far has its reply. */
  async drain(ms: number): Promise<void> {
    await Promise.all(
      this.clients.map((c) => c.until(() => c.outstanding() === 0, { ms, what: "a reply to every message" })),
    );
  }

  #topUp(client: ChaosClient): void {
    while (this.#sending && client.outstanding() < this.#inflight) {
      const n = client.sent.size + 1;
      const requestId = client.send(`note ${n} ${this.#rng.string(6, "abcdefghijklmnopqrstuvwxyz")}`);
      for (const listener of this.#onSend) listener(client, requestId);
    }
  }
}
