// The dashboard's stats page (`/stats`): a chart per counter, gauge and timer over a chosen range, timers'
// percentiles in a table, and the daily reports; and its JSON API over the collector's SQLite file. Charts are
// drawn by uPlot, served from this server like every other browser file, so the page works offline.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { ConfigError } from "../../errors.js";
import type { BucketValues, StatName } from "../../sinks/stats-db.js";
import { SeriesKind, StatsQueries, type CountSeries, type TimeRange } from "../../sinks/stats-queries.js";
import { bucketStart } from "../../stats/layout.js";
import { readBuckets } from "../../stats/reader.js";
import { sendError, sendJson } from "../responses.js";
import { dashboardPage, pageHeaders } from "./layout.js";
import { REPORTS_JS_ASSET, reportsSection } from "./reports.js";
import { CSS, JS, type DashboardModuleFactory, type RouteContext } from "./routes.js";
import type { DashboardSource } from "./source.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** Ranges the page offers, by the name `range=` takes. */
export const STATS_RANGES = { "1h": HOUR_MS, "6h": 6 * HOUR_MS, "24h": DAY_MS, "7d": 7 * DAY_MS } as const;
const DEFAULT_RANGE = DAY_MS; // ms back from now when a request names no range
const MAX_RANGE = 366 * DAY_MS; // ms: the longest range a request may ask for
const MAX_NAME = 250; // characters: legacy counters are memcached keys, up to 250 bytes
const MAX_CHARTS = 24; // charts per kind on the page; a filter narrows the rest down
const REFRESH_MS = 10_000; // ms between redraws of a range that ends now
const MAX_LIVE_BUCKETS = 10; // buckets not collected yet that a request reads from memcached, at most
const LIVE_READ_EVERY = 1000; // ms a reading of the live buckets serves the requests that follow it

const require = createRequire(import.meta.url);
const UPLOT_JS = readFileSync(require.resolve("uplot/dist/uPlot.iife.min.js"));
const UPLOT_CSS = readFileSync(require.resolve("uplot/dist/uPlot.min.css"));

const COLLECTOR_OFF =
  "stats are not collected in this process (memipc serve --no-collect): run memipc serve without " +
  "--no-collect, or open the dashboard of the process that collects";

const SERIES_KINDS = Object.values(SeriesKind) as string[];

const STATS_CSS_EXTRA = `<style>
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(26em,1fr));gap:1em;margin-bottom:.6em}
.chart{min-width:0;padding:.6em .8em}
.chart-head{display:flex;justify-content:space-between;align-items:baseline;gap:1em}
.chart-head h3{font-size:1em;margin:0;overflow-wrap:anywhere}
.chart-figure{font-size:.9em;white-space:nowrap}
.chart-plot{min-height:200px}
.toolbar button[aria-pressed=true]{font-weight:600;border-color:var(--accent)}
.uplot{font-family:inherit}
.u-legend{font-size:.85em}
#timers-table td.name{overflow-wrap:anywhere;max-width:30em}
</style>`;

const RANGE_LABELS: Record<keyof typeof STATS_RANGES, string> = {
  "1h": "Last hour",
  "6h": "6 h",
  "24h": "24 h",
  "7d": "7 days",
};

/** The stats page: markup only; stats.js fills it from the API. */
function statsPage(source: DashboardSource): string {
  const collecting = source.db !== undefined;
  const charts = collecting
    ? `<div class="toolbar" id="stats-range">
<span>Range</span>
${Object.keys(STATS_RANGES)
  .map(
    (r) => `<button type="button" data-range="${r}">${RANGE_LABELS[r as keyof typeof STATS_RANGES]}</button>`,
  )
  .join("\n")}
<label>from <input type="datetime-local" id="range-from"></label>
<label>to <input type="datetime-local" id="range-to"></label>
<button type="button" id="range-apply">Show</button>
<input type="search" id="stats-filter" placeholder="Filter names" aria-label="Filter names">
</div>
<div id="stats" data-max-charts="${MAX_CHARTS}">
<section data-kind="counter"><h2>Counters</h2><p class="muted chart-note"></p><div class="charts"></div></section>
<section data-kind="legacy"><h2>Legacy counters</h2><p class="muted chart-note"></p><div class="charts"></div></section>
<section data-kind="gauge"><h2>Gauges</h2><p class="muted chart-note"></p><div class="charts"></div></section>
<section data-kind="timer"><h2>Timers</h2>
<table id="timers-table"><thead><tr><th>name</th><th class="num">samples</th><th class="num">mean ms</th><th class="num">p50 ms</th><th class="num">p90 ms</th><th class="num">p99 ms</th><th class="num">max ms</th></tr></thead><tbody></tbody></table>
<p class="muted chart-note"></p><div class="charts"></div></section>
</div>`
    : `<p class="warning" id="stats-off">Stats are not collected in this process (it was started with
<code>memipc serve --no-collect</code>), so there is nothing to chart here. Run <code>memipc serve</code> without
<code>--no-collect</code>, or open the dashboard of the process that collects.</p>`;
  return `${STATS_CSS_EXTRA}
${charts}
${reportsSection()}`;
}

const STATS_JS = String.raw`(function () {
  "use strict";
  var m = window.memipc;
  var root = document.getElementById("stats");
  if (!root || typeof window.uPlot !== "function") return;
  var RANGES = ${JSON.stringify(STATS_RANGES)};
  var MAX_CHARTS = Number(root.getAttribute("data-max-charts")) || 24;
  var KINDS = ["counter", "legacy", "gauge", "timer"];
  var NAME_LISTS = { counter: "counters", legacy: "legacy", gauge: "gauges", timer: "timers" };
  var ACCENT = "#2563eb";
  var state = { range: "1h", from: null, to: null, filter: "" };
  var current = null; // the range being shown, { from, to } in ms
  var generation = 0; // answers to an older load are dropped
  var charts = {}; // kind + "\n" + name -> { card, box, figure, plot }
  var fromInput = document.getElementById("range-from");
  var toInput = document.getElementById("range-to");
  var filterInput = document.getElementById("stats-filter");

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function localInput(ms) {
    var d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }
  function stepText(s) {
    if (s % 86400 === 0) return s / 86400 + " d";
    if (s % 3600 === 0) return s / 3600 + " h";
    if (s % 60 === 0) return s / 60 + " min";
    return s + " s";
  }
  function rangeNow() {
    if (state.range) { var to = Date.now(); return { from: to - RANGES[state.range], to: to }; }
    return { from: state.from, to: state.to };
  }
  function saveState() {
    var q = new URLSearchParams();
    if (state.range) q.set("range", state.range);
    else { q.set("from", String(state.from)); q.set("to", String(state.to)); }
    if (state.filter) q.set("filter", state.filter);
    history.replaceState(null, "", location.pathname + "?" + q.toString() + location.hash);
  }
  function readState() {
    var q = new URLSearchParams(location.search);
    var from = Number(q.get("from")), to = Number(q.get("to"));
    if (q.get("from") && q.get("to") && from < to) { state.range = null; state.from = from; state.to = to; }
    else if (RANGES[q.get("range")]) state.range = q.get("range");
    state.filter = q.get("filter") || "";
    filterInput.value = state.filter;
  }
  function showControls() {
    var buttons = document.querySelectorAll("#stats-range [data-range]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].setAttribute("aria-pressed", buttons[i].getAttribute("data-range") === state.range ? "true" : "false");
    }
    fromInput.value = localInput(current.from);
    toInput.value = localInput(current.to);
  }
  function matches(name) {
    return !state.filter || name.toLowerCase().indexOf(state.filter.toLowerCase()) >= 0;
  }
  function colors() {
    var text = getComputedStyle(document.body).color;
    return { text: text, grid: "rgba(127,127,127,.22)" };
  }
  function num(u, v) { return v === null || v === undefined ? "–" : m.fmt(v, 2); }
  function plotWidth(box) { return Math.max(240, box.clientWidth || 400); }

  function options(kind, box) {
    var c = colors();
    var axis = { stroke: c.text, grid: { stroke: c.grid }, ticks: { stroke: c.grid } };
    var yAxis = { stroke: c.text, grid: { stroke: c.grid }, ticks: { stroke: c.grid }, size: 64,
      values: function (u, vals) { return vals.map(function (v) { return m.fmt(v, 2); }); } };
    var series = [{}];
    var zero = false;
    if (kind === "counter" || kind === "legacy") {
      zero = true;
      series.push({ label: "count", stroke: ACCENT, fill: "rgba(37,99,235,.15)", width: 1.5, value: num,
        paths: window.uPlot.paths.stepped({ align: 1 }) });
    } else if (kind === "gauge") {
      series.push({ label: "last", stroke: ACCENT, width: 1.5, value: num });
      series.push({ label: "min", stroke: "rgba(127,127,127,.8)", dash: [4, 4], width: 1, value: num });
      series.push({ label: "max", stroke: "rgba(127,127,127,.8)", dash: [4, 4], width: 1, value: num });
    } else {
      series.push({ label: "p50 ms", stroke: "#16a34a", width: 1.5, value: num });
      series.push({ label: "p90 ms", stroke: ACCENT, width: 1.5, value: num });
      series.push({ label: "p99 ms", stroke: "#b45309", width: 1.5, value: num });
      series.push({ label: "max ms", stroke: "rgba(127,127,127,.8)", dash: [4, 4], width: 1, value: num });
    }
    return {
      width: plotWidth(box),
      height: 180,
      series: series,
      axes: [axis, yAxis],
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: function () { return [current.from / 1000, current.to / 1000]; } },
        y: zero ? { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } : { auto: true }
      }
    };
  }
  function data(kind, s) {
    if (kind === "counter" || kind === "legacy") return [s.times, s.values];
    if (kind === "gauge") return [s.times, s.values, s.min, s.max];
    return [s.times, s.p50, s.p90, s.p99, s.max];
  }
  function figure(kind, s) {
    var per = " · per " + stepText(s.step);
    if (kind === "gauge") {
      var last = null;
      for (var i = s.values.length - 1; i >= 0 && last === null; i--) last = s.values[i];
      return "last " + m.fmt(last, 2) + per;
    }
    if (kind === "timer") return m.fmt(s.total, 0) + " samples" + per;
    return m.fmt(s.total, 0) + " in range" + per;
  }

  function chartFor(kind, name) {
    var key = kind + "\n" + name;
    var entry = charts[key];
    if (entry) return entry;
    var box = m.el("div", { "class": "chart-plot" });
    var fig = m.el("span", { "class": "muted chart-figure" });
    var card = m.el("div", { "class": "card chart", "data-kind": kind, "data-name": name },
      m.el("div", { "class": "chart-head" }, m.el("h3", { text: name }), fig), box);
    entry = charts[key] = { kind: kind, name: name, card: card, box: box, figure: fig, plot: null };
    return entry;
  }
  function drop(key) {
    var entry = charts[key];
    if (entry.plot) entry.plot.destroy();
    if (entry.card.parentNode) entry.card.parentNode.removeChild(entry.card);
    delete charts[key];
  }

  function showKind(kind, names, gen) {
    var section = root.querySelector("section[data-kind=" + kind + "]");
    var grid = section.querySelector(".charts");
    var note = section.querySelector(".chart-note");
    var shown = names.slice(0, MAX_CHARTS);
    var keep = {};
    shown.forEach(function (n) { keep[kind + "\n" + n] = true; });
    Object.keys(charts).forEach(function (key) { if (charts[key].kind === kind && !keep[key]) drop(key); });
    if (names.length === 0) note.textContent = state.filter ? "None match the filter in this range." : "None in this range.";
    else if (names.length > shown.length) note.textContent = "Showing " + shown.length + " of " + names.length + ": narrow them down with the filter.";
    else note.textContent = "";
    section.hidden = names.length === 0 && kind === "legacy" && !state.filter;
    shown.forEach(function (name) {
      var entry = chartFor(kind, name);
      grid.appendChild(entry.card); // keeps the cards in name order
      var url = "/api/stats/series?kind=" + kind + "&name=" + encodeURIComponent(name) +
        "&from=" + current.from + "&to=" + current.to;
      m.getJson(url).then(function (s) {
        if (gen !== generation || charts[kind + "\n" + name] !== entry) return;
        entry.figure.textContent = figure(kind, s);
        if (entry.plot) entry.plot.setData(data(kind, s));
        else entry.plot = new window.uPlot(options(kind, entry.box), data(kind, s), entry.box);
      }, function () { /* shown in the header by getJson */ });
    });
  }

  function showTimers(rows) {
    var body = document.querySelector("#timers-table tbody");
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (t) {
      body.appendChild(m.el("tr", { "data-name": t.name },
        m.el("td", { "class": "name mono", text: t.name }),
        m.el("td", { "class": "num", text: m.fmt(t.count, 0) }),
        m.el("td", { "class": "num", text: m.fmt(t.meanMs, 2) }),
        m.el("td", { "class": "num", text: m.fmt(t.p50Ms, 2) }),
        m.el("td", { "class": "num", text: m.fmt(t.p90Ms, 2) }),
        m.el("td", { "class": "num", text: m.fmt(t.p99Ms, 2) }),
        m.el("td", { "class": "num", text: m.fmt(t.maxMs, 2) })));
    });
    document.getElementById("timers-table").hidden = rows.length === 0;
  }

  function load() {
    var gen = ++generation;
    current = rangeNow();
    showControls();
    m.getJson("/api/stats/names").then(function (names) {
      if (gen !== generation) return;
      KINDS.forEach(function (kind) {
        var list = (names[NAME_LISTS[kind]] || []).filter(function (n) {
          return n.last >= current.from && matches(n.name);
        }).map(function (n) { return n.name; });
        showKind(kind, list, gen);
      });
    }, function () {});
    m.getJson("/api/stats/timers?from=" + current.from + "&to=" + current.to).then(function (body) {
      if (gen !== generation) return;
      showTimers(body.timers.filter(function (t) { return matches(t.name); }));
    }, function () {});
  }

  document.getElementById("stats-range").addEventListener("click", function (event) {
    var range = event.target && event.target.getAttribute && event.target.getAttribute("data-range");
    if (!range) return;
    state.range = range;
    saveState();
    load();
  });
  document.getElementById("range-apply").addEventListener("click", function () {
    var from = new Date(fromInput.value).getTime(), to = new Date(toInput.value).getTime();
    if (!(from < to)) { m.status("choose a start before the end of the range", true); return; }
    state.range = null; state.from = from; state.to = to;
    saveState();
    load();
  });
  var filterTimer = null;
  filterInput.addEventListener("input", function () {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(function () { state.filter = filterInput.value.trim(); saveState(); load(); }, 250);
  });
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      Object.keys(charts).forEach(function (key) {
        var entry = charts[key];
        if (entry.plot) entry.plot.setSize({ width: plotWidth(entry.box), height: 180 });
      });
    }, 150);
  });
  setInterval(function () { if (state.range && !document.hidden) load(); }, ${REFRESH_MS});
  readState();
  load();
})();
`;

export const statsModule: DashboardModuleFactory = (source) => {
  let queries: StatsQueries | undefined;
  // Every chart of a page asks for its series at once: one read of the live buckets serves them all.
  let live: { at: number; reading: Promise<LiveBuckets> } | undefined;
  const liveNow = (): Promise<LiveBuckets> => {
    const now = Date.now();
    if (live === undefined || now - live.at >= LIVE_READ_EVERY) {
      live = { at: now, reading: liveBuckets(source, now) };
    }
    return live.reading;
  };
  /** The read connection, opened on first use; undefined (after a 404) when this process does not collect. */
  const open = (response: RouteContext["response"]): StatsQueries | undefined => {
    if (source.db === undefined) {
      sendError(response, 404, COLLECTOR_OFF);
      return undefined;
    }
    queries ??= StatsQueries.open(source.db.file);
    return queries;
  };
  return {
    routes: [
      {
        path: "/stats",
        methods: ["GET"],
        async handle({ response }) {
          const html = dashboardPage({
            path: "/stats",
            body: statsPage(source),
            scripts: ["dashboard.js", "uPlot.iife.min.js", "stats.js", REPORTS_JS_ASSET],
            styles: ["uPlot.min.css"],
          });
          response.writeHead(200, pageHeaders(html));
          response.end(html);
        },
      },
      {
        path: "/api/stats/names",
        methods: ["GET"],
        async handle({ response }) {
          const q = open(response);
          if (q === undefined) return;
          const names = namesByKind(q.names());
          // Newest first, so each name added carries the newest bucket it was counted in.
          for (const bucket of [...(await liveNow()).buckets].reverse()) {
            for (const [list, rows] of [
              [names.counters!, bucket.counters],
              [names.gauges!, bucket.gauges],
              [names.timers!, bucket.timers],
            ] as const) {
              const known = new Set(list.map((n) => n.name));
              for (const { name } of rows) {
                if (!known.has(name)) list.push({ name, last: bucket.start * 1000 });
                known.add(name);
              }
            }
          }
          sendJson(response, 200, names);
        },
      },
      {
        path: "/api/stats/series",
        methods: ["GET"],
        async handle({ response, url }) {
          const q = open(response);
          if (q === undefined) return;
          const series = await compute(response, () => {
            const params = url.searchParams;
            const kind = params.get("kind") ?? SeriesKind.counter;
            if (!SERIES_KINDS.includes(kind)) {
              throw new ConfigError(
                `kind ${JSON.stringify(kind)} is not known: use ${SERIES_KINDS.join(", ")}`,
              );
            }
            const name = statName(params.get("name"));
            if (name === undefined) {
              throw new ConfigError(`name is required: the stat's name, 1 to ${MAX_NAME} characters`);
            }
            const stepText = params.get("step");
            const step = stepText === null ? undefined : whole(stepText, "step", "seconds");
            return q.series(kind as SeriesKind, name, timeRange(params), step);
          });
          if (series === undefined) return;
          if (series.kind === SeriesKind.counter) {
            addLive(series, await liveNow());
          }
          sendJson(response, 200, series);
        },
      },
      {
        path: "/api/stats/timers",
        methods: ["GET"],
        async handle({ response, url }) {
          const q = open(response);
          if (q === undefined) return;
          await answer(response, () => {
            const range = timeRange(url.searchParams);
            const name = statName(url.searchParams.get("name"));
            return { from: range.from, to: range.to, timers: q.timers(range, name) };
          });
        },
      },
    ],
    assets: {
      "stats.js": { type: JS, body: STATS_JS },
      "uPlot.iife.min.js": { type: JS, body: UPLOT_JS },
      "uPlot.min.css": { type: CSS, body: UPLOT_CSS },
    },
    close() {
      queries?.close();
      queries = undefined;
    },
  };
};

/** Sends what `work` returns as JSON, or a 400 with the message of a ConfigError it throws. */
async function answer(response: RouteContext["response"], work: () => unknown): Promise<void> {
  const body = await compute(response, work);
  if (body !== undefined) sendJson(response, 200, body);
}

/** What `work` returns, or undefined once a 400 with the message of a ConfigError it threw was sent. */
async function compute<T>(response: RouteContext["response"], work: () => T): Promise<T | undefined> {
  try {
    return work();
  } catch (error) {
    if (error instanceof ConfigError) {
      sendError(response, 400, error.message);
      return undefined;
    }
    throw error;
  }
}

/**
 * The buckets the collector has not stored yet (the one still open, and those within its grace period),
 * read from memcached as they stand, so charts move within seconds rather than after the collector's pass.
 * `starts` are every bucket read (unix s); a bucket without values had no counts.
 */
interface LiveBuckets {
  starts: number[];
  buckets: BucketValues[];
}

async function liveBuckets(source: DashboardSource, until: number): Promise<LiveBuckets> {
  const o = source.collector?.options;
  if (o === undefined || source.db === undefined) return { starts: [], buckets: [] };
  const size = o.bucketSeconds;
  const newest = bucketStart(o, until);
  const stored = source.db.lastBucket(size)?.start;
  const starts: number[] = [];
  for (let start = newest; start > (stored ?? -Infinity) && starts.length < MAX_LIVE_BUCKETS; start -= size) {
    starts.unshift(start);
  }
  if (starts.length === 0) return { starts, buckets: [] };
  try {
    const buckets = (await readBuckets(source.client, o, starts)).filter((b) => b !== undefined);
    return { starts, buckets };
  } catch {
    // memcached unreachable: the stored figures alone (the overview shows the server down)
    return { starts: [], buckets: [] };
  }
}

/** Adds the counts of buckets not collected yet to the steps that hold them; marks the series `live`. */
function addLive(series: CountSeries & { live?: boolean }, live: LiveBuckets): void {
  const first = series.times[0];
  if (first === undefined) return;
  const step = (start: number): number | undefined => {
    if (start * 1000 >= series.to) return undefined; // after the range asked for
    const i = Math.floor((start - first) / series.step);
    return i >= 0 && i < series.values.length ? i : undefined;
  };
  for (const start of live.starts) {
    const i = step(start);
    if (i === undefined) continue;
    series.values[i] ??= 0; // read, so known: no counts unless a bucket below says otherwise
    series.live = true;
  }
  for (const bucket of live.buckets) {
    const value = bucket.counters.find((c) => c.name === series.name)?.value;
    const i = step(bucket.start);
    if (value === undefined || i === undefined) continue;
    series.values[i] = (series.values[i] ?? 0) + value;
    series.total += value;
  }
}

/** Names by kind, each with the time (ms since 1970) of its newest value. */
function namesByKind(names: readonly StatName[]): Record<string, Array<{ name: string; last: number }>> {
  const out: Record<string, Array<{ name: string; last: number }>> = {
    counters: [],
    gauges: [],
    timers: [],
    legacy: [],
  };
  const lists = { counter: "counters", gauge: "gauges", timer: "timers", legacy: "legacy" } as const;
  for (const n of names) {
    // Bucket starts are unix seconds; legacy collections are already in ms.
    out[lists[n.kind]]!.push({ name: n.name, last: n.kind === "legacy" ? n.last : n.last * 1000 });
  }
  return out;
}

/** `from`/`to` (ms since 1970) or `range` (1h, 6h, 24h, 7d, ending now, or at `to`); the last 24 h by default. */
export function timeRange(params: URLSearchParams, now: number = Date.now()): TimeRange {
  const fromText = params.get("from");
  const toText = params.get("to");
  const rangeText = params.get("range");
  const to = toText === null ? now : whole(toText, "to", "milliseconds since 1970");
  let from: number;
  if (rangeText !== null) {
    if (fromText !== null) {
      throw new ConfigError("give either range or from, not both: range counts back from to (or now)");
    }
    const span = STATS_RANGES[rangeText as keyof typeof STATS_RANGES];
    if (span === undefined) {
      throw new ConfigError(
        `range ${JSON.stringify(rangeText)} is not known: use ${Object.keys(STATS_RANGES).join(", ")}, or from and to`,
      );
    }
    from = to - span;
  } else {
    from = fromText === null ? to - DEFAULT_RANGE : whole(fromText, "from", "milliseconds since 1970");
  }
  if (from >= to) throw new ConfigError(`from (${from}) must be before to (${to}), both in ms since 1970`);
  if (to - from > MAX_RANGE) {
    throw new ConfigError(
      `the range from ${from} to ${to} is longer than ${MAX_RANGE / DAY_MS} days: shorten it`,
    );
  }
  return { from, to };
}

function whole(text: string, what: string, unit: string): number {
  const value = /^\d{1,15}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value)) {
    throw new ConfigError(`${what} ${JSON.stringify(text)} must be a whole number of ${unit}`);
  }
  return value;
}

/** A `name` parameter: undefined when absent; a ConfigError when empty or too long. */
function statName(text: string | null): string | undefined {
  if (text === null) return undefined;
  if (text.length === 0 || text.length > MAX_NAME) {
    throw new ConfigError(`name must be 1 to ${MAX_NAME} characters, as the stat is named`);
  }
  return text;
}
