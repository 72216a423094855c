/**
 * Live tokens, in memory. A run publishes each streamed token here; the server
 * subscribes per session and forwards them to sockets. Tokens are not durable:
 * the durable reply is the send_message effect committed at the end of the run.
 */

/** One streamed piece of an assistant reply. */
export interface TokenFrame {
  sessionKey: string;
  /** The requestId of the event being answered. */
  requestId: string;
  /** The seq of the event being answered. */
  eventSeq: number;
  /** 0, 1, 2, … within this run. */
  index: number;
  text: string;
}

export type TokenListener = (frame: TokenFrame) => void;

/** In-process pub/sub of live tokens by session key. */
export class TokenBus {
  readonly #bySession = new Map<string, Set<TokenListener>>();
  readonly #all = new Set<TokenListener>();

  /** Listens to one session's tokens; returns the unsubscribe function. */
  subscribe(sessionKey: string, listener: TokenListener): () => void {
    let set = this.#bySession.get(sessionKey);
    if (!set) {
      set = new Set();
      this.#bySession.set(sessionKey, set);
    }
    set.add(listener);
    return () => {
      const current = this.#bySession.get(sessionKey);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.#bySession.delete(sessionKey);
    };
  }

  /** Listens to every session's tokens (the cross-process relay uses this). */
  subscribeAll(listener: TokenListener): () => void {
    this.#all.add(listener);
    return () => this.#all.delete(listener);
  }

  /** True when someone in this process watches the session. */
  hasSubscribers(sessionKey: string): boolean {
    return this.#bySession.has(sessionKey);
  }

  /** Delivers a token to this process's subscribers of its session (and to subscribeAll listeners). */
  publish(frame: TokenFrame, options: { local?: boolean } = {}): void {
    for (const listener of this.#bySession.get(frame.sessionKey) ?? []) listener(frame);
    if (!options.local) for (const listener of this.#all) listener(frame);
  }

  /** How many session subscriptions are open (for leak checks and metrics). */
  get size(): number {
    let n = 0;
    for (const set of this.#bySession.values()) n += set.size;
    return n;
  }
}
