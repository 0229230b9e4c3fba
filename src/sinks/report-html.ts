// A day report as one self-contained HTML page: inline CSS (light and dark), inline SVG bar charts, no
// script and nothing fetched (its Content-Security-Policy forbids it), so it can be mailed or archived as is.
// Each chart carries `data-chart="<kind>:<name>"` and each bar `data-value`, for tests and scrapers.
import type { CounterReport, DayReport, TimerReport } from "./report.js";
import {
  formatBusiest,
  formatChange,
  formatMs,
  formatTime,
  formatTotals,
  hourName,
} from "./report-format.js";

/** Chart geometry in SVG user units; the SVG scales to its container's width. */
const HOURLY = { width: 340, height: 120, left: 30, right: 4, top: 8, bottom: 18 } as const;
const PERCENTILES = { width: 340, rowHeight: 22, left: 30, right: 64, top: 4 } as const;
const TICK_EVERY = 3; // hours between labels on the hourly axis

/** Escapes text for HTML content and for attribute values in double or single quotes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function formatHtml(report: DayReport): string {
  const title = `memipc stats for ${report.day}`;
  const sections = [counterSection(report), timerSection(report), gaugeSection(report)].filter(Boolean);
  const empty =
    sections.length === 0 ? `<p class="empty">No stats were collected that day.</p>` : sections.join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<header>
<h1>Stats for ${escapeHtml(report.day)}</h1>
<p class="meta">${escapeHtml(report.timeZone)} · ${report.hours.length} hours · generated ${escapeHtml(
    formatTime(report, report.generatedAt),
  )} · compared with ${escapeHtml(report.dayBefore)} (day before) and ${escapeHtml(report.weekBefore)} (week before)</p>
<p class="meta">${escapeHtml(formatTotals(report))}</p>
</header>
${empty}
</main>
</body>
</html>
`;
}

const STYLE = `
:root {
  --bg: #ffffff; --fg: #1c2230; --muted: #5c6576; --line: #dfe3ea; --card: #f6f7f9;
  --bar: #3567d6; --bar-alt: #c7702a;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #121519; --fg: #e5e8ee; --muted: #9aa3b2; --line: #2b313b; --card: #1a1e25;
    --bar: #6d9bff; --bar-alt: #f0a35e;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
main { max-width: 1180px; margin: 0 auto; padding: 28px 20px 56px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.meta, .note, .empty { color: var(--muted); margin: 2px 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 0.85rem; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.name { overflow-wrap: anywhere; }
/* Whether a rise is good depends on the counter: the arrows say which way, without judging. */
.up::before, .down::before { color: var(--muted); font-size: 0.75em; margin-right: 4px; }
.up::before { content: "▲"; }
.down::before { content: "▼"; }
.badge {
  display: inline-block; margin-left: 6px; padding: 0 6px; border: 1px solid var(--line); border-radius: 9px;
  color: var(--muted); font-size: 0.75rem; font-weight: 400; vertical-align: 1px;
}
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; margin-top: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card p { margin: 2px 0 8px; color: var(--muted); font-size: 0.85rem; font-variant-numeric: tabular-nums; }
svg { display: block; width: 100%; height: auto; overflow: visible; }
svg .bar { fill: var(--bar); }
svg .bar.alt { fill: var(--bar-alt); }
svg .axis { stroke: var(--line); stroke-width: 1; }
svg text { fill: var(--muted); font-size: 10px; font-family: inherit; font-variant-numeric: tabular-nums; }
.caption { margin: 10px 0 2px; }
`;

function trend(delta: number | undefined): string {
  return delta === undefined || delta === 0 ? "num" : delta > 0 ? "num up" : "num down";
}

function counterLabel(c: CounterReport): string {
  return `${escapeHtml(c.name)}${c.legacy ? `<span class="badge" title="plain memcached counter, collected by read-then-decr">legacy</span>` : ""}`;
}

function chartKey(c: CounterReport): string {
  return `${c.legacy ? "legacy" : "counter"}:${c.name}`;
}

function counterSection(report: DayReport): string {
  if (report.counters.length === 0) return "";
  const rows = report.counters.map(
    (c) =>
      `<tr><td class="name">${counterLabel(c)}</td><td class="num">${c.total}</td>` +
      `<td class="${trend(c.dayBefore.delta)}">${escapeHtml(formatChange(c.dayBefore))}</td>` +
      `<td class="${trend(c.weekBefore.delta)}">${escapeHtml(formatChange(c.weekBefore))}</td>` +
      `<td>${escapeHtml(formatBusiest(report, c.busiestHour, c.hourly))}</td></tr>`,
  );
  const unconfirmed = report.counters.filter((c) => c.unconfirmed > 0).map((c) => escapeHtml(c.name));
  const note =
    unconfirmed.length === 0
      ? ""
      : `<p class="note">Legacy collections not confirmed by memcached (counted, possibly again later): ${unconfirmed.join(", ")}.</p>`;
  const cards = report.counters.map(
    (c) =>
      `<section class="card"><h3>${counterLabel(c)}</h3>` +
      `<p>total ${c.total} · busiest ${escapeHtml(formatBusiest(report, c.busiestHour, c.hourly))}</p>` +
      hourlyChart(report, chartKey(c), `${c.name}: count per hour`, c.hourly, "") +
      `</section>`,
  );
  return `<section id="counters">
<h2>Counters</h2>
<table>
<thead><tr><th>counter</th><th class="num">total</th><th class="num">vs ${escapeHtml(report.dayBefore)}</th><th class="num">vs ${escapeHtml(report.weekBefore)}</th><th>busiest hour</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody>
</table>
${note}
<div class="cards">
${cards.join("\n")}
</div>
</section>`;
}

function timerSection(report: DayReport): string {
  if (report.timers.length === 0) return "";
  const rows = report.timers.map(
    (t) =>
      `<tr><td class="name">${escapeHtml(t.name)}</td><td class="num">${t.count}</td>` +
      [t.p50Ms, t.p90Ms, t.p99Ms, t.maxMs, t.meanMs]
        .map((ms) => `<td class="num">${formatMs(ms)}</td>`)
        .join("") +
      `</tr>`,
  );
  const cards = report.timers.map(
    (t) =>
      `<section class="card"><h3>${escapeHtml(t.name)}</h3>` +
      `<p>${t.count} samples · mean ${formatMs(t.meanMs)} ms</p>` +
      `<p class="caption">percentiles, ms</p>` +
      percentileChart(t) +
      `<p class="caption">samples per hour</p>` +
      hourlyChart(report, `timer-count:${t.name}`, `${t.name}: samples per hour`, t.hourly, " alt") +
      `</section>`,
  );
  return `<section id="timers">
<h2>Timers</h2>
<table>
<thead><tr><th>timer</th><th class="num">count</th><th class="num">p50 ms</th><th class="num">p90 ms</th><th class="num">p99 ms</th><th class="num">max ms</th><th class="num">mean ms</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody>
</table>
<div class="cards">
${cards.join("\n")}
</div>
</section>`;
}

function gaugeSection(report: DayReport): string {
  if (report.gauges.length === 0) return "";
  const rows = report.gauges.map(
    (g) =>
      `<tr><td class="name">${escapeHtml(g.name)}</td><td class="num">${g.last}</td>` +
      `<td class="num">${g.min}</td><td class="num">${g.max}</td></tr>`,
  );
  return `<section id="gauges">
<h2>Gauges</h2>
<table>
<thead><tr><th>gauge</th><th class="num">last</th><th class="num">min</th><th class="num">max</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody>
</table>
</section>`;
}

/** Coordinates rounded to 0.01 user units: short, and exact enough for any screen. */
function n(value: number): string {
  return String(Math.round(value * 100) / 100);
}

/** One bar per local hour, heights proportional to the values, the largest reaching the top. */
function hourlyChart(
  report: DayReport,
  key: string,
  label: string,
  values: readonly number[],
  variant: string,
): string {
  const { width, height, left, right, top, bottom } = HOURLY;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const highest = Math.max(0, ...values);
  const slot = plotWidth / Math.max(1, values.length);
  const gap = Math.min(3, slot * 0.2);
  const bars = values.map((value, i) => {
    const h = highest === 0 ? 0 : (value / highest) * plotHeight;
    return (
      `<rect class="bar${variant}" data-value="${value}" x="${n(left + i * slot + gap / 2)}" y="${n(top + plotHeight - h)}" ` +
      `width="${n(slot - gap)}" height="${n(h)}"><title>${escapeHtml(`${hourName(report, i)}: ${value}`)}</title></rect>`
    );
  });
  const ticks = report.hours
    .map((hour, i) =>
      i % TICK_EVERY === 0
        ? `<text x="${n(left + (i + 0.5) * slot)}" y="${height - 4}" text-anchor="middle">${escapeHtml(hour.label.slice(0, 2))}</text>`
        : "",
    )
    .join("");
  const base = top + plotHeight;
  return (
    `<svg data-chart="${escapeHtml(key)}" role="img" aria-label="${escapeHtml(label)}" viewBox="0 0 ${width} ${height}" ` +
    `xmlns="http://www.w3.org/2000/svg">` +
    `<line class="axis" x1="${left}" y1="${top}" x2="${width - right}" y2="${top}"/>` +
    `<line class="axis" x1="${left}" y1="${base}" x2="${width - right}" y2="${base}"/>` +
    `<text x="${left - 5}" y="${top + 4}" text-anchor="end">${highest}</text>` +
    `<text x="${left - 5}" y="${base}" text-anchor="end">0</text>` +
    bars.join("") +
    ticks +
    `</svg>`
  );
}

/** p50, p90, p99 and max as horizontal bars, lengths proportional to the ms, the largest full width. */
function percentileChart(t: TimerReport): string {
  const { width, rowHeight, left, right, top } = PERCENTILES;
  const rows: Array<[string, number | undefined]> = [
    ["p50", t.p50Ms],
    ["p90", t.p90Ms],
    ["p99", t.p99Ms],
    ["max", t.maxMs],
  ];
  const height = top * 2 + rows.length * rowHeight;
  const plotWidth = width - left - right;
  const highest = Math.max(0, ...rows.map(([, ms]) => ms ?? 0));
  const bars = rows.map(([name, ms], i) => {
    const y = top + i * rowHeight;
    const w = ms === undefined || highest === 0 ? 0 : (ms / highest) * plotWidth;
    const text = ms === undefined ? "n/a" : `${formatMs(ms)} ms`;
    return (
      `<text x="${left - 8}" y="${n(y + rowHeight / 2 + 4)}" text-anchor="end">${name}</text>` +
      (ms === undefined
        ? ""
        : `<rect class="bar" data-value="${ms}" data-label="${name}" x="${left}" y="${n(y + 4)}" width="${n(w)}" ` +
          `height="${rowHeight - 8}"><title>${name}: ${escapeHtml(text)}</title></rect>`) +
      `<text x="${n(left + w + 6)}" y="${n(y + rowHeight / 2 + 4)}">${escapeHtml(text)}</text>`
    );
  });
  return (
    `<svg data-chart="${escapeHtml(`timer:${t.name}`)}" role="img" aria-label="${escapeHtml(`${t.name}: percentiles in ms`)}" ` +
    `viewBox="0 0 ${width} ${height}" xmlns="http://www.w3.org/2000/svg">` +
    bars.join("") +
    `</svg>`
  );
}
