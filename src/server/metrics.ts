/**
 * Prometheus metrics, hand-written: a few counters and gauges kept in this
 * process, a delivery latency histogram, and the effect counts by status read
 * from the database at scrape time. Text exposition format 0.0.4.
 */
import type { Queryable } from "../db/index.js";

/** Delivery latency buckets, in seconds. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

class Histogram {
  readonly counts = LATENCY_BUCKETS.map(() => 0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    const value = Math.max(0, seconds);
    this.sum += value;
    this.count += 1;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (value <= (LATENCY_BUCKETS[i] as number)) this.counts[i] = (this.counts[i] as number) + 1;
    }
  }
}

export class Metrics {
  eventsAppended = 0;
  duplicateEvents = 0;
  runsStarted = 0;
  runsCommitted = 0;
  framesDelivered = 0;
  tokensSent = 0;
  listenerReconnects = 0;
  relayNotifiesSent = 0;
  relayTokensReceived = 0;
  openSockets = 0;
  openStreams = 0;
  readonly rejectedFrames = new Map<string, number>();
  readonly closes = new Map<number, number>();
  readonly deliveryLatency = new Histogram();

  rejected(code: string): void {
    this.rejectedFrames.set(code, (this.rejectedFrames.get(code) ?? 0) + 1);
  }

  closed(code: number): void {
    this.closes.set(code, (this.closes.get(code) ?? 0) + 1);
  }

  /** Records one durable frame sent, created at `createdAt`. */
  delivered(createdAt: Date): void {
    this.framesDelivered += 1;
    this.deliveryLatency.observe((Date.now() - createdAt.getTime()) / 1000);
  }

  /** The exposition text; `db` is asked for effect counts (omitted if it fails). */
  async render(db: Queryable): Promise<string> {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: Array<[string, number]>) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
    };
    metric("sessiond_events_appended_total", "counter", "Events appended through this process (duplicates excluded).", [
      ["", this.eventsAppended],
    ]);
    metric("sessiond_duplicate_events_total", "counter", "Appends answered with an existing event (same requestId).", [
      ["", this.duplicateEvents],
    ]);
    metric("sessiond_runs_started_total", "counter", "Runs started by this process.", [["", this.runsStarted]]);
    metric("sessiond_runs_committed_total", "counter", "Runs committed by this process.", [["", this.runsCommitted]]);
    metric("sessiond_frames_delivered_total", "counter", "Durable frames sent to clients.", [
      ["", this.framesDelivered],
    ]);
    metric("sessiond_tokens_sent_total", "counter", "Live token frames sent to clients.", [["", this.tokensSent]]);
    metric("sessiond_open_sockets", "gauge", "Open WebSocket connections.", [["", this.openSockets]]);
    metric("sessiond_open_streams", "gauge", "Open SSE streams.", [["", this.openStreams]]);
    metric("sessiond_listener_reconnects_total", "counter", "Times a LISTEN connection was re-established.", [
      ["", this.listenerReconnects],
    ]);
    metric("sessiond_token_relay_notifies_total", "counter", "Token relay NOTIFYs sent.", [
      ["", this.relayNotifiesSent],
    ]);
    metric("sessiond_token_relay_received_total", "counter", "Relayed tokens republished to local sockets.", [
      ["", this.relayTokensReceived],
    ]);
    metric(
      "sessiond_rejected_frames_total",
      "counter",
      "Inbound frames answered with an error, by code.",
      [...this.rejectedFrames].map(([code, n]) => [`{code="${code}"}`, n]),
    );
    metric(
      "sessiond_socket_closes_total",
      "counter",
      "WebSocket closes initiated by the server, by close code.",
      [...this.closes].map(([code, n]) => [`{code="${code}"}`, n]),
    );
    const h = this.deliveryLatency;
    lines.push(
      "# HELP sessiond_delivery_latency_seconds From an effect's commit (created_at) to its frame being sent.",
      "# TYPE sessiond_delivery_latency_seconds histogram",
    );
    LATENCY_BUCKETS.forEach((le, i) => {
      lines.push(`sessiond_delivery_latency_seconds_bucket{le="${le}"} ${h.counts[i]}`);
    });
    lines.push(
      `sessiond_delivery_latency_seconds_bucket{le="+Inf"} ${h.count}`,
      `sessiond_delivery_latency_seconds_sum ${h.sum}`,
      `sessiond_delivery_latency_seconds_count ${h.count}`,
    );
    try {
      const rows = await db.query<{ status: string; n: number }>(
        "select status, count(*)::int as n from sessiond.effects group by status order by status",
      );
      const byStatus = new Map(rows.map((r) => [r.status, r.n]));
      metric(
        "sessiond_effects",
        "gauge",
        "Effects in the database, by status.",
        ["pending", "executing", "completed", "failed", "dead"].map((s) => [`{status="${s}"}`, byStatus.get(s) ?? 0]),
      );
    } catch {
      // The database is unreachable: /readyz says so; metrics still answer.
    }
    return `${lines.join("\n")}\n`;
  }
}
