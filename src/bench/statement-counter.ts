/**
 * Counts and times the statements a sessiond server sends through its Db: a
 * wrapper around the Db handed to startServer (the Db itself is untouched).
 * Each statement is labelled by the sessiond function it calls, else by its
 * verb and the tables it names; its time is from the call to the resolved
 * promise (round trip plus queueing for a pool connection). Transactions are
 * counted and timed whole (BEGIN to COMMIT).
 */
import type { Db, Queryable } from "../db/index.js";
import type { StatementCounts } from "./host-protocol.js";

export class StatementCounter {
  #byStatement = new Map<string, { count: number; ms: number }>();
  #transactions = 0;
  #transactionMs = 0;
  /** Labels by statement text (a server sends a few dozen distinct texts; keep the regexes off the hot path). */
  readonly #labels = new Map<string, string>();

  static empty(): StatementCounts {
    return { total: 0, totalMs: 0, transactions: 0, transactionMs: 0, byStatement: [] };
  }

  /** `sessiond.fn()` for a function call, else the verb and the tables it names. */
  static label(text: string): string {
    const flat = text.replace(/\s+/g, " ").trim();
    const call = /sessiond\.([a-z_]+)\(/.exec(flat);
    if (call) return `sessiond.${call[1]}()`;
    const verb = /^(with|select|insert|update|delete)\b/i.exec(flat)?.[1]?.toLowerCase() ?? flat.slice(0, 20);
    const tables = [
      ...new Set([...flat.matchAll(/\b(?:from|into|update|join) (sessiond\.[a-z_]+)/gi)].map((m) => m[1])),
    ];
    return `${verb} ${tables.join(" + ") || flat.slice(0, 40)}`;
  }

  #record(text: string, inTransaction: boolean, ms: number): void {
    let label = this.#labels.get(text);
    if (label === undefined) {
      label = StatementCounter.label(text);
      this.#labels.set(text, label);
    }
    const key = inTransaction ? `tx: ${label}` : label;
    const entry = this.#byStatement.get(key);
    if (entry) {
      entry.count += 1;
      entry.ms += ms;
    } else {
      this.#byStatement.set(key, { count: 1, ms });
    }
  }

  wrap(db: Db): Db {
    const counted = (target: Queryable, inTransaction: boolean): Queryable => ({
      query: async (text, params) => {
        const started = performance.now();
        try {
          return await target.query(text, params);
        } finally {
          this.#record(text, inTransaction, performance.now() - started);
        }
      },
    });
    return {
      kind: db.kind,
      query: counted(db, false).query,
      transaction: async (fn) => {
        const started = performance.now();
        try {
          return await db.transaction((tx) => fn(counted(tx, true)));
        } finally {
          this.#transactions += 1;
          this.#transactionMs += performance.now() - started;
        }
      },
      listen: (channel, onNotify, onReconnect) => db.listen(channel, onNotify, onReconnect),
      close: () => db.close(),
    };
  }

  /** What was counted since the last call; then starts over. */
  take(): StatementCounts {
    const byStatement = [...this.#byStatement.entries()]
      .map(([label, { count, ms }]): [string, number, number] => [label, count, ms])
      .sort((a, b) => b[1] - a[1]);
    const result: StatementCounts = {
      total: byStatement.reduce((n, [, c]) => n + c, 0),
      totalMs: byStatement.filter(([label]) => !label.startsWith("tx: ")).reduce((n, [, , ms]) => n + ms, 0),
      transactions: this.#transactions,
      transactionMs: this.#transactionMs,
      byStatement,
    };
    this.#byStatement = new Map();
    this.#transactions = 0;
    this.#transactionMs = 0;
    return result;
  }
}
