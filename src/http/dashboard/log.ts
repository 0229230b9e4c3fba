// The dashboard's log page (`/log`): a live tail of a stream's drained files over Server-Sent Events
// (GET /api/log/events), with pause and a filter in the browser, and older records a page at a time
// (GET /api/log/entries). Records are read from the files the drainer writes, so the page shows exactly
// what was drained: entries, gap records and late entries, each with the cursor it starts at.
import type { IncomingMessage, ServerResponse } from "node:http";
import { eventWriter, openEvents } from "../event-stream.js";
import { escapeHtml } from "../page.js";
import { sendError, sendJson } from "../responses.js";
import { DEFAULT_SSE_HEARTBEAT, DEFAULT_SSE_RETRY } from "../server.js";
import {
  POSITION_FORMAT,
  comparePositions,
  detectFormat,
  extensionOf,
  formatPosition,
  parsePosition,
  readPageBefore,
  type LogPosition,
} from "../../sinks/log-files.js";
import { dashboardPage, pageHeaders } from "./layout.js";
import { DEFAULT_LOG_POLL, LogFeeds, recordEvents, recordJson } from "./log-feeds.js";
import { JS, type DashboardModule, type RouteContext } from "./routes.js";
import type { DashboardSource } from "./source.js";

export const DEFAULT_PAGE_LIMIT = 100; // records per page of /api/log/entries without ?limit=
export const MAX_PAGE_LIMIT = 1000; // largest ?limit= and ?backlog=
export const DEFAULT_BACKLOG = 100; // records an event stream starts with, before the live ones
export const DEFAULT_MAX_LOG_STREAMS = 100; // log event streams open at once; more are refused with 503
const STREAM_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$/; // as the file sink accepts them

export interface LogModuleOptions {
  /** ms between looks at a followed stream's files. */
  pollEvery: number;
  /** ms between heartbeat comments on an idle event stream. */
  heartbeat: number;
  /** ms a browser waits before reconnecting a dropped event stream. */
  retry: number;
  /** Log event streams open at once. */
  maxStreams: number;
}

export function defaultLogModuleOptions(): LogModuleOptions {
  return {
    pollEvery: DEFAULT_LOG_POLL,
    heartbeat: DEFAULT_SSE_HEARTBEAT,
    retry: DEFAULT_SSE_RETRY,
    maxStreams: DEFAULT_MAX_LOG_STREAMS,
  };
}

/** The log module with its settings (tests shorten them); `logModule` uses the defaults. */
export function createLogModule(source: DashboardSource, options: Partial<LogModuleOptions> = {}): LogModule {
  return new LogModule(source, { ...defaultLogModuleOptions(), ...options });
}

export const logModule = (source: DashboardSource): DashboardModule => createLogModule(source);

export class LogModule implements DashboardModule {
  readonly source: DashboardSource;
  readonly options: LogModuleOptions;
  readonly feeds: LogFeeds;
  /** The event streams open now, each with what ends it. */
  readonly #open = new Map<ServerResponse, () => void>();

  constructor(source: DashboardSource, options: LogModuleOptions) {
    this.source = source;
    this.options = options;
    this.feeds = new LogFeeds(source.logsDir, options.pollEvery);
  }

  /** Log event streams open now. */
  get streams(): number {
    return this.#open.size;
  }

  readonly routes = [
    { path: "/log", methods: ["GET"] as const, handle: (c: RouteContext) => this.#page(c) },
    { path: "/api/log/streams", methods: ["GET"] as const, handle: (c: RouteContext) => this.#streams(c) },
    { path: "/api/log/entries", methods: ["GET"] as const, handle: (c: RouteContext) => this.#entries(c) },
    { path: "/api/log/events", methods: ["GET"] as const, handle: (c: RouteContext) => this.#events(c) },
  ];

  readonly assets = { "log.js": { type: JS, body: LOG_JS } };

  close(): void {
    this.feeds.close();
    for (const end of [...this.#open.values()]) end();
  }

  async #page({ response, url }: RouteContext): Promise<void> {
    const streams = this.source.streams;
    const asked = url.searchParams.get("stream");
    const selected = asked !== null && streams.includes(asked) ? asked : streams[0];
    const options = streams
      .map(
        (s) =>
          `<option value="${escapeHtml(s)}"${s === selected ? " selected" : ""}>${escapeHtml(s)}</option>`,
      )
      .join("");
    const body =
      streams.length === 0
        ? `<p class="muted">No drainer runs in this process (memipc serve --no-drain), so there is no log to show.</p>`
        : `${LOG_STYLE}
<div class="toolbar">
<label>Stream <select id="stream">${options}</select></label>
<button type="button" id="pause" aria-pressed="false">Pause</button>
<label>Filter <input type="search" id="filter" placeholder="text in seq, node or data" size="30"></label>
<span id="tail-state" class="muted" aria-live="polite">connecting…</span>
<span id="shown" class="muted"></span>
</div>
<table id="log">
<thead><tr><th class="num">seq</th><th>time</th><th>node</th><th>data</th></tr></thead>
<tbody id="entries"></tbody>
</table>
<p><button type="button" id="older" hidden>Load older entries</button> <span id="older-state" class="muted"></span></p>
<noscript>The live log needs JavaScript; the records are at /api/log/entries?stream=NAME.</noscript>`;
    const html = dashboardPage({ path: "/log", body, scripts: ["dashboard.js", "log.js"] });
    response.writeHead(200, pageHeaders(html));
    response.end(html);
  }

  async #streams({ response }: RouteContext): Promise<void> {
    sendJson(response, 200, { streams: this.source.streams });
  }

  /** The stream named by ?stream=, or undefined after answering 400 or 404. */
  #stream(url: URL, response: ServerResponse): string | undefined {
    const known = this.source.streams;
    const list = known.length === 0 ? "none: no drainer runs here" : known.join(", ");
    const stream = url.searchParams.get("stream");
    if (stream === null || stream === "") {
      sendError(response, 400, `name the log stream: ?stream=NAME, one of: ${list}`);
      return undefined;
    }
    if (!STREAM_NAME.test(stream)) {
      sendError(
        response,
        400,
        `stream ${JSON.stringify(stream.slice(0, 200))} is not a stream name (letters, digits, "_", "-" and ".", ` +
          `not starting with "."): use one of: ${list}`,
      );
      return undefined;
    }
    if (!known.includes(stream)) {
      sendError(response, 404, `there is no stream ${stream} here: this server drains ${list}`);
      return undefined;
    }
    return stream;
  }

  async #entries({ response, url }: RouteContext): Promise<void> {
    const stream = this.#stream(url, response);
    if (stream === undefined) return;
    const limit = count(url, "limit", DEFAULT_PAGE_LIMIT, 1, response);
    if (limit === undefined) return;
    const beforeText = url.searchParams.get("before");
    let before: LogPosition | undefined;
    if (beforeText !== null && beforeText !== "") {
      before = parsePosition(beforeText);
      if (before === undefined) {
        sendError(
          response,
          400,
          `before=${JSON.stringify(beforeText.slice(0, 100))} is not a cursor: pass the "next" of the previous ` +
            `page, or a record's "cursor" (${POSITION_FORMAT}); leave it out for the newest records`,
        );
        return;
      }
    }
    const dir = this.source.logsDir;
    const format = await detectFormat(dir, stream);
    const page = await readPageBefore(dir, stream, extensionOf(format), before, limit);
    const records = page.lines.map((line) => recordJson(line, format)).filter((r) => r.kind !== "checkpoint");
    sendJson(response, 200, {
      stream,
      format,
      records,
      next: page.more && records.length > 0 ? records[records.length - 1]!.cursor : null,
    });
  }

  async #events({ request, response, url }: RouteContext): Promise<void> {
    const stream = this.#stream(url, response);
    if (stream === undefined) return;
    const backlog = count(url, "backlog", DEFAULT_BACKLOG, 0, response);
    if (backlog === undefined) return;
    if (this.#open.size >= this.options.maxStreams) {
      sendError(
        response,
        503,
        `too many log streams open (${this.options.maxStreams}): close other log pages or try again later`,
        { "Retry-After": "5" },
      );
      return;
    }
    const lastId = header(request, "last-event-id");
    const resumeAfter = lastId === undefined ? undefined : parsePosition(lastId);
    await this.#serveEvents(response, stream, backlog, resumeAfter);
  }

  /** One browser's event stream: the last `backlog` records (after `resumeAfter`), then each new one. */
  #serveEvents(
    response: ServerResponse,
    stream: string,
    backlog: number,
    resumeAfter: LogPosition | undefined,
  ): Promise<void> {
    return new Promise<void>((resolve) => {
      let ended = false;
      let live = false;
      let held = ""; // records that came while the backlog was being read
      let heartbeat: ReturnType<typeof setInterval> | undefined;
      let unwatch = (): void => undefined;
      const end = (): void => {
        if (ended) return;
        ended = true;
        this.#open.delete(response);
        unwatch();
        clearInterval(heartbeat);
        if (!response.headersSent && !response.destroyed) {
          sendError(response, 503, "the dashboard is closing: try again later");
        } else if (!response.writableEnded && !response.destroyed) {
          response.end();
        }
        resolve();
      };
      const write = eventWriter(response, () => ended, end);
      this.#open.set(response, end);
      response.once("close", end);

      const start = async (): Promise<void> => {
        const watching = await this.feeds.watch(stream, {
          records: (events) => {
            if (live) write(events);
            else held += events;
          },
          problem: (message) => {
            const data = JSON.stringify({ error: message });
            if (live) write(`event: problem\ndata: ${data}\n\n`);
          },
        });
        unwatch = watching.unwatch;
        if (ended) return unwatch();
        const format = watching.format;
        const at = watching.position;
        let lines =
          at === undefined || backlog === 0
            ? { lines: [], more: at !== undefined && at.offset > 0 }
            : await readPageBefore(this.source.logsDir, stream, extensionOf(format), at, backlog);
        if (ended) return;
        let skipped = false;
        if (resumeAfter !== undefined) {
          const newer = lines.lines.filter((line) => comparePositions(line.position, resumeAfter) > 0);
          skipped = newer.length === lines.lines.length && lines.more;
          lines = { lines: newer, more: lines.more };
        }
        openEvents(response, write, this.options.retry);
        const oldest = lines.lines[lines.lines.length - 1];
        if (skipped && oldest !== undefined) {
          const data = { after: formatPosition(resumeAfter!), before: formatPosition(oldest.position) };
          write(`event: skipped\ndata: ${JSON.stringify(data)}\n\n`);
        }
        write(recordEvents([...lines.lines].reverse(), format));
        const state = {
          stream,
          format,
          position: at === undefined ? null : formatPosition(at),
          more: lines.more,
          oldest: oldest === undefined ? null : formatPosition(oldest.position),
        };
        write(`event: live\ndata: ${JSON.stringify(state)}\n\n`);
        live = true;
        if (held !== "") write(held);
        held = "";
        heartbeat = setInterval(() => write(": heartbeat\n\n"), this.options.heartbeat);
      };
      start().catch((error: unknown) => {
        if (ended) return;
        if (!response.headersSent) {
          sendError(
            response,
            500,
            `the files of stream ${stream} could not be read: ${(error as Error).message}`,
          );
        }
        end();
      });
    });
  }
}

/** A whole number query parameter from `min` to MAX_PAGE_LIMIT, or undefined after answering 400. */
function count(
  url: URL,
  name: string,
  fallback: number,
  min: number,
  response: ServerResponse,
): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null || text === "") return fallback;
  const value = /^\d{1,7}$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= MAX_PAGE_LIMIT)) {
    sendError(
      response,
      400,
      `${name}=${JSON.stringify(text.slice(0, 50))} is not allowed: give a whole number from ${min} to ` +
        `${MAX_PAGE_LIMIT} (default ${fallback})`,
    );
    return undefined;
  }
  return value;
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

const LOG_STYLE = `<style>
#log{width:100%;table-layout:fixed}
#log th:nth-child(1){width:7em}#log th:nth-child(2){width:7.5em}#log th:nth-child(3){width:9em}
#log td{overflow-wrap:anywhere}
#log td.data{white-space:pre-wrap;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
#log tr.gap td{background:rgba(180,83,9,.12);color:var(--warn);font-style:italic}
#log tr.late td{background:rgba(37,99,235,.08)}
#log tr.line td.data{color:var(--muted)}
#log tr.note td{color:var(--muted);font-style:italic;text-align:center}
.tag{display:inline-block;font-size:.75em;font-style:normal;padding:0 .45em;margin-left:.4em;border-radius:.8em;border:1px solid currentColor}
.tag.late{color:var(--accent)}
.tag.gap{color:var(--warn)}
#pause[aria-pressed=true]{font-weight:600}
</style>`;

const LOG_JS = String.raw`(function () {
  "use strict";
  var m = window.memipc, el = m.el;
  var MAX_ROWS = 5000;     // rows kept on the page; the oldest go first (Load older brings them back)
  var MAX_HELD = 10000;    // records held while paused
  var PAGE = 100;          // records per Load older
  function $(id) { return document.getElementById(id); }
  var select = $("stream");
  if (!select) return;
  var stream = select.value;
  var rows = $("entries"), pauseButton = $("pause"), filterInput = $("filter"), state = $("tail-state");
  var olderButton = $("older"), olderState = $("older-state"), shown = $("shown");
  var paused = false, held = [], dropped = 0, pending = [], flushTimer = null;
  var filter = "", oldest = null, hasOlder = false, loading = false, started = false;

  select.addEventListener("change", function () {
    location.href = "/log?stream=" + encodeURIComponent(select.value);
  });

  function dataText(data) { return typeof data === "string" ? data : JSON.stringify(data); }
  function timeCell(ms) {
    if (ms === null || ms === undefined) return el("td", { "class": "muted", text: "–" });
    var d = new Date(ms);
    return el("td", { title: d.toISOString(), text: d.toLocaleTimeString() });
  }
  var REASONS = { "hole-timeout": "numbers taken but never written in time", reset: "the counter was reset (memcached restarted, evicted or flushed)", rollover: "the counter rolled over", refused: "the server refused the entry (over its item size limit)" };

  /** A record as a table row; every value goes in as text. */
  function row(r) {
    var tr, search;
    if (r.kind === "entry") {
      var seq = el("td", { "class": "num", text: r.part === null || r.part === undefined ? r.seq : r.part + ":" + r.seq });
      if (r.late) seq.appendChild(el("span", { "class": "tag late", title: "written after its gap was recorded", text: "late" }));
      tr = el("tr", { "class": r.late ? "entry late" : "entry" }, seq, timeCell(r.time),
        el("td", { text: r.node === null ? "–" : r.node }), el("td", { "class": "data", text: dataText(r.data) }));
      search = r.seq + " " + (r.node || "") + " " + dataText(r.data) + (r.late ? " late" : "");
    } else if (r.kind === "gap") {
      var missing = r.to - r.from + 1;
      var text = "gap: " + missing + (missing === 1 ? " entry" : " entries") + " missing (" + r.reason + ": " + (REASONS[r.reason] || "see the docs") + ")";
      tr = el("tr", { "class": "gap" },
        el("td", { "class": "num", text: (r.part === null || r.part === undefined ? "" : r.part + ":") + (r.from === r.to ? r.from : r.from + "–" + r.to) }), timeCell(r.time),
        el("td", null, el("span", { "class": "tag gap", text: "gap" })), el("td", { "class": "data", text: text }));
      search = r.from + " " + r.to + " " + text;
    } else {
      tr = el("tr", { "class": "line" }, el("td"), el("td"), el("td"), el("td", { "class": "data", text: r.text }));
      search = r.text;
    }
    tr.setAttribute("data-cursor", r.cursor);
    tr.setAttribute("data-search", search.toLowerCase());
    tr.hidden = !matches(tr);
    return tr;
  }
  function note(text) {
    var tr = el("tr", { "class": "note" }, el("td", { colspan: 4, text: text }));
    tr.setAttribute("data-search", "");
    return tr;
  }
  function matches(tr) {
    var search = tr.getAttribute("data-search");
    return !filter || search === "" || search.indexOf(filter) >= 0;
  }
  function count() {
    var all = 0, visible = 0;
    for (var i = 0; i < rows.rows.length; i++) {
      if (!rows.rows[i].getAttribute("data-cursor")) continue;
      all++;
      if (!rows.rows[i].hidden) visible++;
    }
    shown.textContent = filter ? visible + " of " + all + " shown" : all + " shown";
  }
  function trim() {
    var cut = false;
    while (rows.rows.length > MAX_ROWS) { rows.removeChild(rows.lastChild); cut = true; }
    if (cut) {
      for (var last = rows.lastChild; last; last = last.previousSibling) {
        if (last.getAttribute("data-cursor")) { oldest = last.getAttribute("data-cursor"); break; }
      }
      hasOlder = true;
    }
    olderButton.hidden = !hasOlder;
  }
  /** Newest records at the top: records come oldest first. */
  function addNewest(records) {
    var first = rows.firstChild;
    var fragment = document.createDocumentFragment();
    for (var i = records.length - 1; i >= 0; i--) fragment.appendChild(records[i].nodeType ? records[i] : row(records[i]));
    rows.insertBefore(fragment, first);
    if (oldest === null) {
      for (var j = 0; j < records.length; j++) if (records[j].cursor) { oldest = records[j].cursor; break; }
    }
    trim();
    count();
  }
  function addOlder(records) {
    records.forEach(function (r) { rows.appendChild(row(r)); });
    count();
  }

  function flush() {
    flushTimer = null;
    var batch = pending;
    pending = [];
    if (batch.length > 0) addNewest(batch);
  }
  function take(record) {
    if (paused) {
      held.push(record);
      if (held.length > MAX_HELD) { held.shift(); dropped++; }
      pauseButton.textContent = "Resume (" + (held.length + dropped) + " new)";
      return;
    }
    pending.push(record);
    if (flushTimer === null) flushTimer = setTimeout(flush, 100);
  }

  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
    if (paused) {
      pauseButton.textContent = "Resume";
      state.textContent = "paused: new entries are held";
      return;
    }
    pauseButton.textContent = "Pause";
    state.textContent = "following";
    var batch = held;
    if (dropped > 0) batch.unshift(note(dropped + " entries were not kept while paused; they are in the drained files"));
    held = [];
    dropped = 0;
    pending = pending.concat(batch);
    flush();
  });

  filterInput.addEventListener("input", function () {
    filter = filterInput.value.trim().toLowerCase();
    for (var i = 0; i < rows.rows.length; i++) rows.rows[i].hidden = !matches(rows.rows[i]);
    count();
  });

  olderButton.addEventListener("click", function () {
    if (loading || oldest === null) return;
    loading = true;
    olderState.textContent = "loading…";
    m.getJson("/api/log/entries?stream=" + encodeURIComponent(stream) + "&before=" + encodeURIComponent(oldest) + "&limit=" + PAGE)
      .then(function (page) {
        addOlder(page.records);
        if (page.records.length > 0) oldest = page.records[page.records.length - 1].cursor;
        hasOlder = page.next !== null;
        olderButton.hidden = !hasOlder;
        olderState.textContent = hasOlder ? "" : "that is the oldest entry in the files";
      }, function () { olderState.textContent = ""; })
      .then(function () { loading = false; });
  });

  var source = new EventSource("/api/log/events?stream=" + encodeURIComponent(stream));
  source.addEventListener("record", function (event) { take(JSON.parse(event.data)); });
  source.addEventListener("skipped", function () {
    take(note("entries written while the connection was down are not shown here; they are in the drained files"));
  });
  source.addEventListener("live", function (event) {
    var info = JSON.parse(event.data);
    if (!started) {
      // The first connection's backlog: Load older goes on from its oldest record.
      started = true;
      if (info.oldest) oldest = info.oldest;
      hasOlder = info.more;
    }
    olderButton.hidden = !hasOlder;
    if (!paused) state.textContent = "following";
    m.status("", false);
  });
  source.addEventListener("problem", function (event) { m.status(JSON.parse(event.data).error, true); });
  source.addEventListener("error", function () {
    state.textContent = source.readyState === EventSource.CLOSED ? "disconnected: reload the page" : "reconnecting…";
  });
  count();
})();
`;
