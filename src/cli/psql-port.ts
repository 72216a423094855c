/**
 * The psql port: the embedded PGlite database over the Postgres wire protocol
 * on a loopback address (pglite-socket's PGLiteSocketServer), so that
 * `psql -h 127.0.0.1 -p 5433 -U postgres` runs the audit queries against the
 * database a running `sessiond serve` owns.
 *
 * PGlite is ONE Postgres session. Every psql connection shares it with the
 * server, which is why this file puts a gate between the socket server and
 * PGlite:
 *
 * - PGlite serialises single statements (its query lock), and the server's
 *   transactions hold a second lock (its transaction lock) from BEGIN to
 *   COMMIT. pglite-socket takes only the first, so a psql statement could
 *   land inside a server transaction (and a psql error would abort it), and a
 *   server statement could land inside a psql BEGIN … ROLLBACK and be rolled
 *   back with it.
 * - The gate runs each psql message under the transaction lock, and keeps
 *   holding it while psql is inside a transaction block or in the middle of
 *   an extended-protocol sequence (Parse … Sync: the unnamed statement and
 *   portal are session state too). It lets go once psql is back at a
 *   statement boundary, outside any transaction.
 *
 * So psql statements interleave with the server's transactions but never
 * inside them, and the price is explicit: while a psql transaction is open,
 * the whole server waits (no event is appended, no run commits). Keep psql
 * transactions short; autocommit statements are fine. When a client
 * disconnects mid-transaction, or stays idle past idleTimeoutMs, pglite-socket
 * closes it and rolls its transaction back through the gate.
 *
 * Other consequences of the shared session, documented in docs/audit.md: SET
 * and other session state leak both ways, and NOTIFYs caused by psql
 * statements reach psql, not the server's listeners (the sweep picks such
 * work up within its interval).
 */
import type { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

export interface PsqlPortOptions {
  /** TCP port; 0 lets the OS choose (the chosen one is in the result). */
  port: number;
  /** A loopback address (default 127.0.0.1): there is no authentication. */
  host?: string;
  /** Concurrent client connections (default 8); they share the one session. */
  maxConnections?: number;
  /**
   * A connection that sends nothing for this long is closed, rolling back a
   * transaction it left open, so a forgotten psql `BEGIN` cannot stop the
   * server for longer (default 60 000 ms; 0 = never). psql reconnects by
   * itself on its next command.
   */
  idleTimeoutMs?: number;
}

export interface PsqlPort {
  readonly host: string;
  readonly port: number;
  /** A connection string for psql or postgres.js. */
  readonly url: string;
  /** Closes the port and its connections (an open psql transaction is rolled back). */
  stop(): Promise<void>;
}

/** Frontend messages after which the client is mid-sequence until its Sync. */
const MID_SEQUENCE = new Set(["P", "B", "E", "D", "C", "H", "d"].map((c) => c.charCodeAt(0)));
const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

function simpleQuery(sql: string): Uint8Array {
  const text = Buffer.from(`${sql}\0`, "utf8");
  const message = Buffer.alloc(5 + text.length);
  message.write("Q", 0, "latin1");
  message.writeInt32BE(4 + text.length, 1);
  text.copy(message, 5);
  return message;
}
const SYNC = Uint8Array.from([0x53, 0, 0, 0, 4]);

/**
 * The part of PGlite that PGLiteSocketServer uses, with psql messages gated
 * by PGlite's transaction lock as described above.
 */
class SessionGate {
  readonly #pglite: PGlite;
  /** Lets go of the transaction lock held for a client mid-transaction. */
  #release: (() => void) | undefined;
  #lastType = 0;

  constructor(pglite: PGlite) {
    this.#pglite = pglite;
  }

  get waitReady(): Promise<void> {
    return this.#pglite.waitReady;
  }

  /** pglite-socket asks this to keep other clients out: true only while a psql client holds the session. */
  isInTransaction(): boolean {
    return this.#release !== undefined;
  }

  execProtocolRawStream(message: Uint8Array, options: { onRawData: (data: Uint8Array) => void }): Promise<void> {
    this.#lastType = message[0] ?? 0;
    return this.#pglite.execProtocolRawStream(message, options);
  }

  runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#release) {
      // The client holding the session continues: the transaction lock is ours already.
      return this.#pglite
        .runExclusive(async () => {
          if (!this.#release) throw new Error("psql port: the session was released meanwhile");
          return fn();
        })
        .finally(() => this.#releaseAtBoundary());
    }
    return new Promise<T>((resolve, reject) => {
      this.#pglite
        ._runExclusiveTransaction(async () => {
          let settle: () => void;
          try {
            const value = await this.#pglite.runExclusive(fn);
            settle = () => resolve(value);
          } catch (error) {
            settle = () => reject(error);
          }
          if (!this.#atBoundary()) {
            const held = new Promise<void>((release) => {
              this.#release = release;
            });
            settle();
            await held;
          } else {
            settle();
          }
        })
        .catch(reject);
    });
  }

  /**
   * pglite-socket calls exec('ROLLBACK') when a client leaves mid-transaction.
   * A Sync first ends an unfinished extended-protocol sequence.
   */
  async exec(sql: string): Promise<void> {
    if (!this.#release) return;
    const message = Buffer.concat([SYNC, simpleQuery(sql)]);
    await this.runExclusive(async () => {
      this.#lastType = 0x51;
      await this.#pglite.execProtocolRaw(message);
    }).catch(() => {});
  }

  #atBoundary(): boolean {
    return !this.#pglite.isInTransaction() && !MID_SEQUENCE.has(this.#lastType);
  }

  #releaseAtBoundary(): void {
    if (this.#release && this.#atBoundary()) {
      const release = this.#release;
      this.#release = undefined;
      release();
    }
  }
}

/**
 * Exposes `pglite` over the Postgres wire protocol on a loopback address.
 * Resolves once the port listens; rejects if it is taken or the host is not
 * a loopback address (the port has no authentication: anyone who reaches it
 * is a superuser of the database).
 */
export async function startPsqlPort(pglite: PGlite, options: PsqlPortOptions): Promise<PsqlPort> {
  const host = options.host ?? "127.0.0.1";
  if (!LOOPBACK.has(host)) {
    throw new Error(
      `the psql port listens on loopback only (127.0.0.1, ::1 or localhost), not ${JSON.stringify(host)}`,
    );
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65_535) {
    throw new RangeError(`the psql port must be 0..65535, not ${options.port}`);
  }
  const gate = new SessionGate(pglite);
  const server = new PGLiteSocketServer({
    // The gate implements exactly the members PGLiteSocketServer uses.
    db: gate as unknown as PGlite,
    host,
    port: options.port,
    maxConnections: options.maxConnections ?? 8,
    idleTimeout: options.idleTimeoutMs ?? 60_000,
  });
  await server.start();
  const port = Number(server.getServerConn().split(":").pop());
  let stopped: Promise<void> | undefined;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  return {
    host,
    port,
    url: `postgres://postgres@${urlHost}:${port}/postgres?sslmode=disable`,
    stop() {
      stopped ??= (async () => {
        await server.stop();
        await gate.exec("ROLLBACK");
      })();
      return stopped;
    },
  };
}
