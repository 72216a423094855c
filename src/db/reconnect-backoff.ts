/**
 * How long a Db waits before its next connection attempt after a close.
 *
 * postgres.js's own `backoff(retries)` counts `retries` only for closes with a
 * socket error. A server that refuses a connection (ALLOW_CONNECTIONS false,
 * too many clients, a database starting up or shutting down) answers with an
 * error message and closes cleanly, so the count stayed 0 and the driver waited
 * 5–10 ms: a LISTEN connection whose database refused it came back ~30 times a
 * second, each attempt a backend forked and torn down — measured at 0.7 of a
 * core of Postgres CPU per listener, at the very moment the database was in
 * trouble. (And on one path the driver asks no backoff at all: see
 * connectionPacer below, which is where this delay is applied.)
 *
 * So the streak of closes is counted here: a close that follows the previous
 * one within its delay plus STREAK_GAP_MS continues the streak and doubles
 * the delay, up to MAX_DELAY_MS; a close after a quiet spell (a terminated
 * backend, a connection's lifetime ending) starts again at FIRST_DELAY_MS, so
 * a single lost connection is back at once. Closes closer together than any
 * retry could follow (SIBLING_MS: a pool's connections terminated at once)
 * share one step of the streak instead of each adding one. Each delay is
 * jittered to between half and all of it, so processes do not retry in step.
 */

import { connect, type Socket } from "node:net";

/** The delay of the first close of a streak. */
export const FIRST_DELAY_MS = 10;
/** The longest delay between two attempts. */
export const MAX_DELAY_MS = 2_000;
/** A close this long after the previous delay ended starts a new streak. */
export const STREAK_GAP_MS = 1_000;
/** Closes closer together than this are siblings (no retry is that quick: every delay is at least this). */
export const SIBLING_MS = FIRST_DELAY_MS / 2;

/** The streak of closes of one Db: called at each close, it gives the delay before the next attempt, in ms. */
export function reconnectBackoff(
  now: () => number = () => performance.now(),
  random: () => number = Math.random,
): () => number {
  let streak = 0;
  let lastAt = Number.NEGATIVE_INFINITY;
  let lastDelayMs = 0;
  return () => {
    const at = now();
    const gap = at - lastAt;
    if (gap > lastDelayMs + STREAK_GAP_MS) streak = 0;
    else if (gap >= SIBLING_MS) streak += 1;
    lastAt = at;
    const full = Math.min(FIRST_DELAY_MS * 2 ** streak, MAX_DELAY_MS);
    lastDelayMs = full * (0.5 + random() / 2);
    return lastDelayMs;
  };
}

/** What postgres.js hands a `socket` factory: its parsed connection options. */
export interface SocketTarget {
  host: string[];
  port: number[];
  path?: string | false;
}

/** A `socket` factory for postgres.js (its `socket` option) that a pool's end can stop. */
export interface PacedSockets {
  (target: SocketTarget): Promise<Socket>;
  /**
   * The pool is being ended: an attempt still waiting for its turn, or asked for later (the
   * driver may still reconnect), fails instead of opening a connection nobody would end.
   */
  stop(): void;
}

/**
 * Paces a Db's connection attempts: each new socket waits until the streak of
 * quick closes above allows it. `sockets()` gives one pool its factory; the
 * pools and lanes of a Db share the pacing.
 *
 * The driver's `backoff` is not enough on its own: it is asked only on one of
 * its paths. A connection that closes while it still holds the statement it
 * was opened for reconnects at once, without asking (porsager/postgres#1193),
 * and that is what a refusing database (ALLOW_CONNECTIONS false, too many
 * clients, starting up) produces after a connection was lost mid-statement:
 * the driver keeps the lost statement as the connection's current one, takes
 * the refusal at the next startup for that statement's error, and neither
 * answers nor fails the statement it reconnects for. One pool made 724
 * connection attempts in two seconds of refusal that way (`test/chaos`
 * db-faults), each a Postgres backend forked. Sockets are where every path
 * meets, so the pacing lives here; a factory connects as the driver would (a
 * Unix socket path, else the hosts in turn) and returns the socket before it
 * is connected, as the driver's own is.
 */
export function connectionPacer(
  now: () => number = () => performance.now(),
  random: () => number = Math.random,
): { sockets(): PacedSockets } {
  const delayAfterClose = reconnectBackoff(now, random);
  let nextAt = Number.NEGATIVE_INFINITY;
  let hostIndex = 0;
  return {
    sockets() {
      let stopped = false;
      const waiting = new Set<() => void>();
      const factory = async (target: SocketTarget): Promise<Socket> => {
        const wait = nextAt - now();
        if (wait > 0 && !stopped) {
          await new Promise<void>((resolve) => {
            const wake = () => {
              clearTimeout(timer);
              waiting.delete(wake);
              resolve();
            };
            const timer = setTimeout(wake, wait);
            waiting.add(wake);
          });
        }
        // The driver fails the statements waiting for this connection and leaves it closed. With the
        // driver's code for an ended pool: callers take it for the lost connection it is (a run is
        // not failed for it, see isConnectionError).
        if (stopped) {
          throw Object.assign(new Error("the database connection pool is closed"), { code: "CONNECTION_ENDED" });
        }
        let socket: Socket;
        if (target.path) socket = connect(target.path);
        else {
          const i = hostIndex % target.port.length;
          hostIndex = i + 1;
          const [host, port] = [target.host[i] as string, target.port[i] as number];
          // The driver names the endpoint in its connection errors from these.
          socket = Object.assign(connect(port, host), { host, port });
        }
        socket.once("close", () => {
          nextAt = Math.max(nextAt, now() + delayAfterClose());
        });
        return socket;
      };
      return Object.assign(factory, {
        stop() {
          stopped = true;
          for (const wake of [...waiting]) wake();
        },
      });
    },
  };
}
