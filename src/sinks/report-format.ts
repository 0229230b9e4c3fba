// A day report as text (aligned columns with a sparkline of each hourly shape), Markdown tables, CSV (one row
// per metric, RFC 4180) or JSON (the fields below, pretty-printed). HTML is report-html's job.
import { localIso, type Change, type DayReport, type TimerReport } from "./report.js";

export const ReportFormat = { text: "text", md: "md", csv: "csv", json: "json", html: "html" } as const;
export type ReportFormat = (typeof ReportFormat)[keyof typeof ReportFormat];
/** The formats formatReport writes; HTML comes from formatHtml. */
export type TextReportFormat = Exclude<ReportFormat, "html">;

/** The file name extension of each format. */
export const REPORT_EXTENSIONS: Record<ReportFormat, string> = {
  text: "txt",
  md: "md",
  csv: "csv",
  json: "json",
  html: "html",
};

/** Version of the JSON layout; raised when a field changes meaning or goes away (new fields do not). */
export const REPORT_JSON_VERSION = 1;

export function formatReport(report: DayReport, format: TextReportFormat): string {
  switch (format) {
    case "text":
      return formatText(report);
    case "md":
      return formatMarkdown(report);
    case "csv":
      return formatCsv(report);
    case "json":
      return formatJson(report);
  }
}

// ---- Shared with the HTML report ----

const BLOCKS = "▁▂▃▄▅▆▇█";

/** One block character per value, scaled to the largest: ▁ for 0 (and the smallest values), █ for the largest. */
export function sparkline(values: readonly number[]): string {
  const top = Math.max(0, ...values);
  return values
    .map((v) => BLOCKS[v <= 0 || top === 0 ? 0 : Math.max(0, Math.ceil((v / top) * 8) - 1)])
    .join("");
}

/** An hour's name: its local time, with the offset when the time occurs twice that day (clocks went back). */
export function hourName(report: DayReport, index: number): string {
  const hour = report.hours[index]!;
  const twice = report.hours.filter((h) => h.label === hour.label).length > 1;
  return twice ? `${hour.label}${hour.offset}` : hour.label;
}

/** "+20 (+25.0%)", "-3 (-100.0%)", "+5 (new)" when the other day counted 0, "n/a" without data. */
export function formatChange(change: Change): string {
  if (change.delta === undefined) return "n/a";
  const delta = change.delta > 0 ? `+${change.delta}` : `${change.delta}`;
  return `${delta} (${change.percent === undefined ? "new" : formatPercent(change.percent)})`;
}

export function formatPercent(percent: number): string {
  const rounded = Math.round(percent * 10) / 10;
  return `${rounded > 0 ? "+" : ""}${(rounded === 0 ? 0 : rounded).toFixed(1)}%`;
}

/** Milliseconds with three significant digits or more: 0.123, 4.57, 45.7, 457, 4570. */
export function formatMs(ms: number | undefined): string {
  if (ms === undefined) return "n/a";
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3);
}

/** The local time of an instant in the report's zone, for people: 2026-03-30 00:05:00 +02:00. */
export function formatTime(report: DayReport, ms: number): string {
  const iso = localIso(ms, report.timeZone);
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} ${iso.slice(19)}`;
}

/** "2 counters, 1 legacy counter, 1 timer, 1 gauge". */
export function formatTotals(report: DayReport): string {
  const { counters, legacy, timers, gauges } = report.totals;
  const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  return [
    plural(counters, "counter"),
    plural(legacy, "legacy counter"),
    plural(timers, "timer"),
    plural(gauges, "gauge"),
  ].join(", ");
}

/** "14:00 (40)", or "n/a" on a day without counts. */
export function formatBusiest(
  report: DayReport,
  busiestHour: number | undefined,
  hourly: readonly number[],
): string {
  return busiestHour === undefined ? "n/a" : `${hourName(report, busiestHour)} (${hourly[busiestHour]})`;
}

function counterName(c: { name: string; legacy: boolean }): string {
  return c.legacy ? `${c.name} (legacy)` : c.name;
}

function heading(report: DayReport): string {
  return `memipc stats for ${report.day}, ${report.timeZone} (${report.hours.length} hours)`;
}

function subheading(report: DayReport): string {
  return (
    `Generated ${formatTime(report, report.generatedAt)}; ` +
    `compared with ${report.dayBefore} (day before) and ${report.weekBefore} (week before).`
  );
}

function unconfirmedNote(report: DayReport): string | undefined {
  const names = report.counters.filter((c) => c.unconfirmed > 0).map((c) => c.name);
  return names.length === 0
    ? undefined
    : `Legacy collections not confirmed by memcached (counted, possibly again later): ${names.join(", ")}.`;
}

// ---- Text ----

type Align = "left" | "right";

/** Columns separated by two spaces, each as wide as its widest cell; no trailing spaces. */
function columns(header: readonly string[], rows: readonly string[][], align: readonly Align[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => [...row[i]!].length)));
  return all
    .map((row) =>
      row
        .map((cell, i) => {
          const pad = " ".repeat(widths[i]! - [...cell].length);
          return align[i] === "right" ? pad + cell : cell + pad;
        })
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function formatText(report: DayReport): string {
  const parts = [`${heading(report)}\n${subheading(report)}\n${formatTotals(report)}.`];
  if (report.counters.length > 0) {
    const rows = report.counters.map((c) => [
      counterName(c),
      String(c.total),
      formatChange(c.dayBefore),
      formatChange(c.weekBefore),
      formatBusiest(report, c.busiestHour, c.hourly),
      sparkline(c.hourly),
    ]);
    const header = ["counter", "total", "vs day before", "vs week before", "busiest hour", "hourly"];
    const align: Align[] = ["left", "right", "right", "right", "left", "left"];
    parts.push(`Counters\n${columns(header, rows, align)}`);
    const note = unconfirmedNote(report);
    if (note !== undefined) parts.push(note);
  }
  if (report.timers.length > 0) {
    const rows = report.timers.map((t) => timerCells(t, t.name));
    parts.push(`Timers\n${columns(TIMER_HEADER, rows, TIMER_ALIGN)}`);
  }
  if (report.gauges.length > 0) {
    const rows = report.gauges.map((g) => [g.name, String(g.last), String(g.min), String(g.max)]);
    parts.push(
      `Gauges\n${columns(["gauge", "last", "min", "max"], rows, ["left", "right", "right", "right"])}`,
    );
  }
  if (report.counters.length + report.timers.length + report.gauges.length === 0) {
    parts.push("No stats were collected that day.");
  }
  return parts.join("\n\n") + "\n";
}

const TIMER_HEADER = ["timer", "count", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms", "hourly count"];
const TIMER_ALIGN: Align[] = ["left", "right", "right", "right", "right", "right", "right", "left"];

/** A timer's row in the text and Markdown tables, with its name as given (escaped or not). */
function timerCells(t: TimerReport, name: string): string[] {
  return [
    name,
    String(t.count),
    formatMs(t.p50Ms),
    formatMs(t.p90Ms),
    formatMs(t.p99Ms),
    formatMs(t.maxMs),
    formatMs(t.meanMs),
    sparkline(t.hourly),
  ];
}

// ---- Markdown ----

/** Escapes what Markdown would read as markup, and the pipe that would split a table cell. */
function md(text: string): string {
  return text.replace(/[\\`*_{}[\]<>()#+!|~]/g, (c) => `\\${c}`);
}

function mdTable(header: readonly string[], rows: readonly string[][], align: readonly Align[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(align.map((a) => (a === "right" ? "--:" : "---"))), ...rows.map(line)].join(
    "\n",
  );
}

function formatMarkdown(report: DayReport): string {
  const parts = [
    `# Stats for ${report.day}`,
    `Time zone ${md(report.timeZone)} (${report.hours.length} hours). ${subheading(report)}\n\n${formatTotals(report)}.`,
  ];
  if (report.counters.length > 0) {
    const rows = report.counters.map((c) => [
      md(c.name) + (c.legacy ? " _(legacy)_" : ""),
      String(c.total),
      formatChange(c.dayBefore),
      formatChange(c.weekBefore),
      formatBusiest(report, c.busiestHour, c.hourly),
      sparkline(c.hourly),
    ]);
    const header = [
      "counter",
      "total",
      `vs ${report.dayBefore}`,
      `vs ${report.weekBefore}`,
      "busiest hour",
      "hourly",
    ];
    parts.push(
      `## Counters\n\n${mdTable(header, rows, ["left", "right", "right", "right", "left", "left"])}`,
    );
    const note = unconfirmedNote(report);
    if (note !== undefined) parts.push(md(note));
  }
  if (report.timers.length > 0) {
    const rows = report.timers.map((t) => timerCells(t, md(t.name)));
    parts.push(`## Timers\n\n${mdTable(TIMER_HEADER, rows, TIMER_ALIGN)}`);
  }
  if (report.gauges.length > 0) {
    const rows = report.gauges.map((g) => [md(g.name), String(g.last), String(g.min), String(g.max)]);
    parts.push(
      `## Gauges\n\n${mdTable(["gauge", "last", "min", "max"], rows, ["left", "right", "right", "right"])}`,
    );
  }
  if (report.counters.length + report.timers.length + report.gauges.length === 0) {
    parts.push("No stats were collected that day.");
  }
  return parts.join("\n\n") + "\n";
}

// ---- CSV ----

/**
 * The CSV columns, one row per metric. `kind` is counter, legacy, timer or gauge; a column that does not
 * apply to the kind, or has no value, is empty. Times are local with their offset; `hourly` holds one count
 * per local hour, separated by spaces; non-whole numbers are rounded to 3 decimals.
 */
export const CSV_COLUMNS = [
  "day",
  "time_zone",
  "kind",
  "name",
  "total",
  "day_before",
  "day_before_change",
  "day_before_percent",
  "week_before",
  "week_before_change",
  "week_before_percent",
  "busiest_hour",
  "busiest_hour_count",
  "count",
  "p50_ms",
  "p90_ms",
  "p99_ms",
  "max_ms",
  "mean_ms",
  "last",
  "min",
  "max",
  "hourly",
] as const;
type CsvColumn = (typeof CSV_COLUMNS)[number];

/** A CSV field: quoted when it holds a comma, a quote or a line break, with quotes doubled (RFC 4180). */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

function formatCsv(report: DayReport): string {
  const rows: Array<Partial<Record<CsvColumn, string | number | undefined>>> = [];
  for (const c of report.counters) {
    rows.push({
      kind: c.legacy ? "legacy" : "counter",
      name: c.name,
      total: c.total,
      day_before: c.dayBefore.base,
      day_before_change: c.dayBefore.delta,
      day_before_percent: c.dayBefore.percent,
      week_before: c.weekBefore.base,
      week_before_change: c.weekBefore.delta,
      week_before_percent: c.weekBefore.percent,
      busiest_hour:
        c.busiestHour === undefined
          ? undefined
          : localIso(report.hours[c.busiestHour]!.start, report.timeZone),
      busiest_hour_count: c.busiestHour === undefined ? undefined : c.hourly[c.busiestHour],
      hourly: c.hourly.join(" "),
    });
  }
  for (const t of report.timers) {
    rows.push({
      kind: "timer",
      name: t.name,
      count: t.count,
      p50_ms: t.p50Ms,
      p90_ms: t.p90Ms,
      p99_ms: t.p99Ms,
      max_ms: t.maxMs,
      mean_ms: t.meanMs,
      hourly: t.hourly.join(" "),
    });
  }
  for (const g of report.gauges)
    rows.push({ kind: "gauge", name: g.name, last: g.last, min: g.min, max: g.max });
  const lines = [CSV_COLUMNS.join(",")];
  for (const row of rows) {
    const full: Partial<Record<CsvColumn, string | number | undefined>> = {
      day: report.day,
      time_zone: report.timeZone,
      ...row,
    };
    lines.push(
      CSV_COLUMNS.map((column) => {
        const value = full[column];
        return csvField(value === undefined ? "" : typeof value === "number" ? String(round(value)) : value);
      }).join(","),
    );
  }
  return lines.map((line) => line + "\r\n").join("");
}

// ---- JSON ----

/**
 * The JSON layout (`format: "memipc-day-report"`, `version` REPORT_JSON_VERSION). Absent values are null, so
 * every field is always there. Times are local with their offset ("2026-03-29T00:00:00+01:00"); non-whole
 * numbers are rounded to 3 decimals; `hourly` arrays have one entry per element of `hours`.
 *
 *   day, timeZone, start, end, generatedAt, dayBefore, weekBefore (days compared with)
 *   hours[]:    { start, label ("HH:MM"), offset ("±HH:MM") }
 *   totals:     { counters, legacy, timers, gauges } (number of names)
 *   counters[]: { name, legacy, total, dayBefore, weekBefore, busiestHour, hourly[], unconfirmed }
 *               dayBefore, weekBefore: { total, change, percent } (null without data; percent also null
 *               when the other day counted 0); busiestHour: { index, label, start, count } or null
 *   timers[]:   { name, count, p50Ms, p90Ms, p99Ms, maxMs, meanMs, hourly[] }
 *   gauges[]:   { name, last, min, max }
 */
function formatJson(report: DayReport): string {
  const zone = report.timeZone;
  const change = (c: Change) => ({
    total: c.base ?? null,
    change: c.delta ?? null,
    percent: maybe(c.percent),
  });
  const out = {
    format: "memipc-day-report",
    version: REPORT_JSON_VERSION,
    day: report.day,
    timeZone: zone,
    start: localIso(report.start, zone),
    end: localIso(report.end, zone),
    generatedAt: localIso(report.generatedAt, zone),
    dayBefore: report.dayBefore,
    weekBefore: report.weekBefore,
    hours: report.hours.map((h) => ({ start: localIso(h.start, zone), label: h.label, offset: h.offset })),
    totals: report.totals,
    counters: report.counters.map((c) => ({
      name: c.name,
      legacy: c.legacy,
      total: c.total,
      dayBefore: change(c.dayBefore),
      weekBefore: change(c.weekBefore),
      busiestHour:
        c.busiestHour === undefined
          ? null
          : {
              index: c.busiestHour,
              label: report.hours[c.busiestHour]!.label,
              start: localIso(report.hours[c.busiestHour]!.start, zone),
              count: c.hourly[c.busiestHour],
            },
      hourly: c.hourly,
      unconfirmed: c.unconfirmed,
    })),
    timers: report.timers.map((t) => ({
      name: t.name,
      count: t.count,
      p50Ms: maybe(t.p50Ms),
      p90Ms: maybe(t.p90Ms),
      p99Ms: maybe(t.p99Ms),
      maxMs: maybe(t.maxMs),
      meanMs: maybe(t.meanMs),
      hourly: t.hourly,
    })),
    gauges: report.gauges.map((g) => ({
      name: g.name,
      last: round(g.last),
      min: round(g.min),
      max: round(g.max),
    })),
  };
  // Arrays of numbers (the hourly counts) stay on one line each.
  const text = JSON.stringify(out, null, 2).replace(
    /\[\s+([-\d.e+,\s]+?)\s+\]/g,
    (_, items: string) => `[${items.split(/,\s+/).join(", ")}]`,
  );
  return text + "\n";
}

function maybe(value: number | undefined): number | null {
  return value === undefined ? null : round(value);
}

/** Rounded to 3 decimals (a microsecond, for ms). */
function round(value: number): number {
  return Number.isInteger(value) ? value : Math.round(value * 1000) / 1000;
}
