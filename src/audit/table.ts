/** Plain-text tables for the audit commands: columns padded to align, two spaces apart. */

export interface Column {
  header: string;
  /** Numbers read best right-aligned. Default left. */
  align?: "left" | "right";
}

/** Collapses whitespace (a payload may hold newlines) so a cell stays on one line. */
export function cell(value: unknown): string {
  if (value === null || value === undefined) return "";
  return String(value).replace(/\s+/g, " ").trim();
}

/**
 * The lines of a table: a header row, then one line per row. The last column
 * is not padded, so long summaries do not drag trailing spaces along.
 */
export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string[] {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (values: readonly string[]) =>
    columns
      .map((c, i) => {
        const value = values[i] ?? "";
        if (i === columns.length - 1) return value;
        const width = widths[i] ?? 0;
        return c.align === "right" ? value.padStart(width) : value.padEnd(width);
      })
      .join("  ")
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...rows.map(line)];
}

/** A duration for people: 820 ms, 45.2 s, 12.5 min, 3.1 h, 2.0 d. */
export function formatMs(ms: number | null): string {
  if (ms === null) return "";
  const abs = Math.abs(ms);
  if (abs < 1_000) return `${Math.round(ms)} ms`;
  if (abs < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  if (abs < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (abs < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}
