/**
 * The bench chart: one self-contained SVG (no scripts, no external fonts or
 * styles) with a panel per view — latency histograms on a log axis with the
 * p50/p99 of each mode marked, throughput over time, and bars for the
 * single-number results. Histograms pool every run; bars show the median
 * across runs; the time series come from the first run.
 */
import type { BenchResult, ScalarResult, SeriesResult, TimeSeriesResult } from "./result.js";
import { BINS_PER_DECADE, binLowerEdge, HISTOGRAM_LOG_MIN, type Histogram } from "./stats.js";

const WIDTH = 1280;
const PANEL_W = 620;
const PANEL_H = 290;
const GAP = 20;
const PAD = { left: 62, right: 16, top: 42, bottom: 40 };
const PALETTE: Record<string, string> = {
  sessiond: "#1f77b4",
  notify: "#1f77b4",
  direct: "#ff7f0e",
  "poll-only": "#d62728",
  "sessiond-pglite": "#2ca02c",
  postgres: "#7f7f7f",
  pglite: "#2ca02c",
};
const EXTRA = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];

function color(mode: string, index: number): string {
  return PALETTE[mode] ?? EXTRA[index % EXTRA.length] ?? "#333";
}

export function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function shorten(value: string, max: number): string {
  return value.length <= max ? value : `${value.slice(0, max - 1)}…`;
}

function fmt(value: number): string {
  if (!Number.isFinite(value)) return "—";
  const abs = Math.abs(value);
  if (abs >= 10_000) return `${(value / 1000).toFixed(0)}k`;
  if (abs >= 1000) return `${(value / 1000).toFixed(1)}k`;
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

interface Panel {
  title: string;
  render(x: number, y: number, w: number, h: number): string;
}

function text(x: number, y: number, content: string, attrs = ""): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${escapeXml(content)}</text>`;
}

function frame(x: number, y: number, title: string, body: string): string {
  return [
    `<g>`,
    `<rect x="${x}" y="${y}" width="${PANEL_W}" height="${PANEL_H}" fill="#fff" stroke="#ddd"/>`,
    text(x + 10, y + 20, title, 'font-size="13" font-weight="bold"'),
    body,
    `</g>`,
  ].join("\n");
}

function mergeHistograms(list: readonly Histogram[]): Map<number, number> {
  const merged = new Map<number, number>();
  for (const h of list) for (const [i, c] of h.bins) merged.set(i, (merged.get(i) ?? 0) + c);
  return merged;
}

/** Latency histograms of one metric, every mode, on a log x axis. */
function histogramPanel(title: string, series: readonly SeriesResult[], summary: BenchResult["summary"]): Panel {
  const modes = [...new Set(series.map((s) => s.mode))];
  const data = modes.map((mode) => {
    const bins = mergeHistograms(series.filter((s) => s.mode === mode).map((s) => s.histogram));
    const total = [...bins.values()].reduce((a, b) => a + b, 0);
    const row = summary.find(
      (r) => r.mode === mode && r.metric === series[0]?.metric && r.scenario === series[0]?.scenario,
    );
    return { mode, bins, total, row };
  });
  return {
    title,
    render(x0, y0, w, h) {
      const all = data.flatMap((d) => [...d.bins.keys()]);
      if (all.length === 0) return text(x0 + PAD.left, y0 + h / 2, "no samples", 'font-size="12" fill="#888"');
      const lo = Math.floor(Math.min(...all) / BINS_PER_DECADE);
      const hi = Math.max(lo + 1, Math.ceil((Math.max(...all) + 1) / BINS_PER_DECADE));
      const loIndex = lo * BINS_PER_DECADE;
      const hiIndex = hi * BINS_PER_DECADE;
      const top = PAD.top + 8 + data.length * 14;

      const plotW = w - PAD.left - PAD.right;
      const plotH = h - top - PAD.bottom;
      const px = (index: number) => x0 + PAD.left + ((index - loIndex) / (hiIndex - loIndex)) * plotW;
      const pv = (value: number) => px((Math.log10(value) - HISTOGRAM_LOG_MIN) * BINS_PER_DECADE);
      const maxShare = Math.max(
        0.0001,
        ...data.map((d) => Math.max(0, ...[...d.bins.values()].map((c) => c / Math.max(1, d.total)))),
      );
      const py = (share: number) => y0 + top + plotH - (share / maxShare) * plotH;
      const parts: string[] = [];
      // Axes and decade grid.
      for (let decade = lo; decade <= hi; decade++) {
        const gx = px(decade * BINS_PER_DECADE);
        parts.push(`<line x1="${gx}" y1="${y0 + top}" x2="${gx}" y2="${y0 + top + plotH}" stroke="#eee"/>`);
        const edge = binLowerEdge(decade * BINS_PER_DECADE);
        parts.push(text(gx, y0 + top + plotH + 14, `${fmt(edge)}`, 'font-size="10" text-anchor="middle" fill="#555"'));
      }
      parts.push(
        text(
          x0 + PAD.left + plotW / 2,
          y0 + h - 8,
          `${series[0]?.unit ?? ""} (log scale)`,
          'font-size="10" text-anchor="middle" fill="#555"',
        ),
      );
      parts.push(
        text(
          x0 + 14,
          y0 + top + plotH / 2,
          "share of samples",
          `font-size="10" fill="#555" transform="rotate(-90 ${x0 + 14} ${y0 + top + plotH / 2})" text-anchor="middle"`,
        ),
      );
      parts.push(
        `<line x1="${x0 + PAD.left}" y1="${y0 + top + plotH}" x2="${x0 + PAD.left + plotW}" y2="${y0 + top + plotH}" stroke="#999"/>`,
      );
      for (const tick of [0.5, 1]) {
        const ty = py(maxShare * tick);
        parts.push(
          text(
            x0 + PAD.left - 4,
            ty + 3,
            `${(maxShare * tick * 100).toFixed(0)}%`,
            'font-size="9" text-anchor="end" fill="#777"',
          ),
        );
      }
      data.forEach((d, i) => {
        const c = color(d.mode, i);
        const points: string[] = [`${px(loIndex).toFixed(1)},${py(0).toFixed(1)}`];
        for (let b = loIndex; b < hiIndex; b++) {
          const share = (d.bins.get(b) ?? 0) / Math.max(1, d.total);
          points.push(`${px(b).toFixed(1)},${py(share).toFixed(1)}`, `${px(b + 1).toFixed(1)},${py(share).toFixed(1)}`);
        }
        points.push(`${px(hiIndex).toFixed(1)},${py(0).toFixed(1)}`);
        parts.push(
          `<polygon points="${points.join(" ")}" fill="${c}" fill-opacity="0.18" stroke="${c}" stroke-width="1.2"/>`,
        );
        if (d.row) {
          for (const [value, dash] of [
            [d.row.p50, "4 3"],
            [d.row.p99, "1 2"],
          ] as const) {
            if (value > 0) {
              const mx = pv(value);
              parts.push(
                `<line x1="${mx.toFixed(1)}" y1="${y0 + top}" x2="${mx.toFixed(1)}" y2="${y0 + top + plotH}" stroke="${c}" stroke-dasharray="${dash}"/>`,
              );
            }
          }
        }
        const legend = d.row
          ? `${d.mode}: n=${d.row.n}  p50 ${fmt(d.row.p50)}  p99 ${fmt(d.row.p99)} ${series[0]?.unit ?? ""}`
          : d.mode;
        const ly = y0 + PAD.top + 2 + i * 14;
        parts.push(`<rect x="${x0 + PAD.left}" y="${ly - 9}" width="10" height="10" fill="${c}"/>`);
        parts.push(text(x0 + PAD.left + 14, ly, legend, 'font-size="11"'));
      });
      parts.push(
        text(x0 + w - PAD.right, y0 + 20, "dashed: p50, dotted: p99", 'font-size="10" text-anchor="end" fill="#777"'),
      );
      return parts.join("\n");
    },
  };
}

/** Throughput over time: every step of a scenario laid end to end, one colour per mode. */
function timelinePanel(title: string, series: readonly TimeSeriesResult[]): Panel {
  return {
    title,
    render(x0, y0, w, h) {
      const plotW = w - PAD.left - PAD.right;
      const plotH = h - PAD.top - PAD.bottom;
      const totalMs = series.reduce((sum, s) => sum + s.values.length * s.bucketMs, 0);
      if (totalMs === 0) return text(x0 + PAD.left, y0 + h / 2, "no data", 'font-size="12" fill="#888"');
      const maxY = Math.max(1, ...series.flatMap((s) => s.values)) * 1.1;
      const px = (msValue: number) => x0 + PAD.left + (msValue / totalMs) * plotW;
      const py = (v: number) => y0 + PAD.top + plotH - (v / maxY) * plotH;
      const parts: string[] = [];
      for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
        const ty = py(maxY * tick);
        parts.push(`<line x1="${x0 + PAD.left}" y1="${ty}" x2="${x0 + PAD.left + plotW}" y2="${ty}" stroke="#eee"/>`);
        parts.push(text(x0 + PAD.left - 4, ty + 3, fmt(maxY * tick), 'font-size="9" text-anchor="end" fill="#777"'));
      }
      const modes = [...new Set(series.map((s) => s.mode))];
      let offset = 0;
      for (const s of series) {
        const c = color(s.mode, modes.indexOf(s.mode));
        const points = s.values.map((v, i) => `${px(offset + (i + 0.5) * s.bucketMs).toFixed(1)},${py(v).toFixed(1)}`);
        if (points.length > 0)
          parts.push(`<polyline points="${points.join(" ")}" fill="none" stroke="${c}" stroke-width="1.5"/>`);
        const label = s.metric.replace(/^.*?(\d[\d,]* sessions × \d+).*$/, "$1");
        const mid = px(offset + (s.values.length * s.bucketMs) / 2);
        parts.push(
          text(
            mid,
            y0 + PAD.top + plotH + 14,
            label.replace(" sessions", "s"),
            `font-size="9" text-anchor="middle" fill="${c}"`,
          ),
        );
        offset += s.values.length * s.bucketMs;
        parts.push(
          `<line x1="${px(offset)}" y1="${y0 + PAD.top}" x2="${px(offset)}" y2="${y0 + PAD.top + plotH}" stroke="#f2f2f2"/>`,
        );
      }
      modes.forEach((mode, i) => {
        const ly = y0 + 34;
        parts.push(
          `<rect x="${x0 + w - 200 + i * 95}" y="${ly - 9}" width="10" height="10" fill="${color(mode, i)}"/>`,
        );
        parts.push(text(x0 + w - 186 + i * 95, ly, mode, 'font-size="11"'));
      });
      parts.push(
        text(
          x0 + PAD.left + plotW / 2,
          y0 + h - 8,
          `${series[0]?.unit ?? ""} per ${series[0]?.bucketMs ?? 0} ms bucket, steps end to end (sessions × in flight)`,
          'font-size="10" text-anchor="middle" fill="#555"',
        ),
      );
      return parts.join("\n");
    },
  };
}

/** A bar's metric, shortened: "throughput, 100 sessions (best window)" → "100 sessions". */
function barLabel(metric: string): string {
  const step = /^throughput, (\d[\d,]*) sessions \(best window\)$/.exec(metric);
  if (step) return `${step[1]} sessions`;
  return metric.replace(/^single-row insert commits\/s, /, "inserts, ").replace(/ \(best of before\/after\)$/, "");
}

/** Horizontal bars of single numbers (medians across runs). */
function barsPanel(title: string, rows: ReadonlyArray<ScalarResult & { spread?: [number, number] }>): Panel {
  return {
    title,
    render(x0, y0, w, h) {
      const plotW = w - 250 - 110;
      const barH = Math.min(22, (h - PAD.top - 20) / Math.max(1, rows.length) - 4);
      const max = Math.max(1e-9, ...rows.map((r) => r.spread?.[1] ?? r.value));
      const parts: string[] = [];
      const modes = [...new Set(rows.map((r) => r.mode))];
      rows.forEach((r, i) => {
        const y = y0 + PAD.top + i * (barH + 4);
        const c = color(r.mode, modes.indexOf(r.mode));
        const bw = Math.max(1, (r.value / max) * plotW);
        parts.push(
          text(
            x0 + 240,
            y + barH * 0.7,
            shorten(`${barLabel(r.metric)} — ${r.mode}`, 46),
            'font-size="10" text-anchor="end"',
          ),
        );
        parts.push(
          `<rect x="${x0 + 245}" y="${y}" width="${bw.toFixed(1)}" height="${barH}" fill="${c}" fill-opacity="0.8"/>`,
        );
        if (r.spread && r.spread[0] !== r.spread[1]) {
          const a = x0 + 245 + (r.spread[0] / max) * plotW;
          const b = x0 + 245 + (r.spread[1] / max) * plotW;
          parts.push(`<line x1="${a}" y1="${y + barH / 2}" x2="${b}" y2="${y + barH / 2}" stroke="#222"/>`);
        }
        parts.push(text(x0 + 249 + bw, y + barH * 0.7, `${fmt(r.value)} ${r.unit}`, 'font-size="10" fill="#222"'));
      });
      return parts.join("\n");
    },
  };
}

const HISTOGRAM_METRICS: Array<[number, RegExp]> = [
  [1, /statement end/],
  [2, /model 0 ms/],
  [3, /under load/],
  [4, /token lag/],
  [7, /model 0 ms/],
];

/** The SVG document for a bench result. */
export function renderChart(result: BenchResult): string {
  const panels: Panel[] = [];
  const series = result.runs.flatMap((r) => r.series);
  for (const [scenario, pattern] of HISTOGRAM_METRICS) {
    const metrics = [
      ...new Set(
        series
          .filter((s) => s.scenario === scenario && pattern.test(s.metric) && s.unit !== "msg/s")
          .map((s) => s.metric),
      ),
    ];
    // Under load: only the largest step, to keep the sheet readable.
    const chosen = scenario === 3 ? metrics.slice(-1) : metrics;
    for (const metric of chosen) {
      const group = series.filter((s) => s.scenario === scenario && s.metric === metric);
      panels.push(histogramPanel(`S${scenario} · ${metric}`, group, result.summary));
    }
  }
  const firstRun = result.runs[0];
  for (const scenario of [3, 7]) {
    const ts = firstRun?.timeseries.filter((t) => t.scenario === scenario) ?? [];
    if (ts.length === 0) continue;
    panels.push(timelinePanel(`S${scenario} · throughput over time (delivered messages/s)`, ts));
  }
  const barGroups: Array<[string, (s: ScalarResult) => boolean]> = [
    [
      "S3 · best throughput and the database's commit rate",
      (s) => s.scenario === 3 && /^throughput|insert commits/.test(s.metric),
    ],
    ["S5 · memory per idle connection", (s) => s.scenario === 5 && /per connection/.test(s.metric)],
    ["S7 · PGlite against Postgres", (s) => s.scenario === 7 && /^throughput|insert commits/.test(s.metric)],
  ];
  for (const [title, pick] of barGroups) {
    const rows = result.scalarSummary.filter(pick);
    if (rows.length > 0) panels.push(barsPanel(title, rows));
  }
  const s6 = result.summary.filter((r) => r.scenario === 6);
  if (s6.length > 0) {
    panels.push(
      barsPanel(
        "S6 · replay catch-up rate (median reconnect)",
        s6.map((r) => ({
          scenario: 6,
          metric: "catch-up",
          mode: r.mode,
          unit: r.unit,
          value: r.p50,
          spread: r.p50Spread,
        })),
      ),
    );
  }

  const rows = Math.max(1, Math.ceil(panels.length / 2));
  const headerH = 70;
  const height = headerH + rows * (PANEL_H + GAP);
  const m = result.machine;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${WIDTH}" height="${height}" fill="#fafafa"/>`,
    text(
      GAP,
      28,
      `sessiond bench — ${result.profileName}, ${result.runs.length} run${result.runs.length === 1 ? "" : "s"}, ${result.runs[0]?.startedAt ?? ""}`,
      'font-size="18" font-weight="bold"',
    ),
    text(
      GAP,
      50,
      `${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.postgres?.split(" on ")[0] ?? "Postgres ?"}; load before run 1: ${result.runs[0]?.loadBefore.map((l) => l.toFixed(2)).join(" ") ?? "?"}`,
      'font-size="12" fill="#444"',
    ),
  ];
  panels.forEach((panel, i) => {
    const x = GAP + (i % 2) * (PANEL_W + GAP);
    const y = headerH + Math.floor(i / 2) * (PANEL_H + GAP);
    parts.push(frame(x, y, panel.title.slice(0, 95), panel.render(x, y, PANEL_W, PANEL_H)));
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
