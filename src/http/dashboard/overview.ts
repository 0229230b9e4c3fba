// The dashboard's overview (`/`, and its figures as JSON at GET /api/overview): memcached servers' health,
// each stream's drainer (with a row per partition under a partitioned stream), the collector's last pass and
// jobs by state, refreshed every 2 s by the browser.
// However many browsers watch, the figures are read at most once per OVERVIEW_MAX_AGE.
import { sendJson } from "../responses.js";
import { dashboardPage, pageHeaders } from "./layout.js";
import { readOverview, type Overview } from "./overview-data.js";
import { JS, type DashboardModuleFactory } from "./routes.js";
import type { DashboardSource } from "./source.js";

export const OVERVIEW_REFRESH = 2000; // ms between the browser's reads of /api/overview
export const OVERVIEW_MAX_AGE = 1000; // ms an overview read is reused for other requests

const OVERVIEW_JS = String.raw`(function () {
  "use strict";
  var m = window.memipc, el = m.el;
  function $(id) { return document.getElementById(id); }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function position(p) { return p ? p.seq + " (epoch " + p.epoch + ")" : "–"; }
  function percent(ratio) { return ratio === null || ratio === undefined ? "–" : m.fmt(ratio * 100, 1) + " %"; }
  function figure(label, value, className, title) {
    return el("div", { "class": "figure" + (className ? " " + className : ""), title: title || null },
      el("span", { "class": "label", text: label }), el("span", { "class": "value", text: value }));
  }

  function renderWarnings(warnings) {
    var box = clear($("warnings"));
    warnings.forEach(function (text) { box.appendChild(el("div", { "class": "warning", role: "alert", text: text })); });
  }

  function renderServers(servers) {
    var box = clear($("servers"));
    servers.forEach(function (s) {
      var card = el("div", { "class": "card server " + (s.up ? "up" : "down"), "data-server": s.server },
        el("div", { "class": "server-head" }, el("strong", { "class": "mono", text: s.server }),
          el("span", { "class": "badge " + (s.up ? "good" : "bad"), text: s.up ? "up" : "down" })));
      if (!s.up) {
        card.appendChild(el("div", { "class": "error", text: s.error || "no reply" }));
        box.appendChild(card);
        return;
      }
      var evicted = s.evictions !== null && s.evictions > 0;
      var used = s.limitBytes ? " (" + m.fmt(100 * s.bytes / s.limitBytes, 1) + " %)" : "";
      card.appendChild(el("div", { "class": "figures" },
        figure("items", m.fmt(s.items, 0)),
        figure("memory", m.bytes(s.bytes) + " of " + m.bytes(s.limitBytes) + used),
        figure("hit ratio", percent(s.hitRatio), null, m.fmt(s.hits, 0) + " hits, " + m.fmt(s.misses, 0) + " misses"),
        figure("connections", m.fmt(s.connections, 0)),
        figure("evictions", m.fmt(s.evictions, 0), evicted ? "warn" : null,
          evicted ? "items evicted to make room: undrained log entries can be lost" : null)));
      if (evicted) {
        card.appendChild(el("div", { "class": "warning", text: "Evictions: log entries not drained yet can be lost. Give memcached more memory." }));
      }
      var about = [s.version ? "version " + s.version : null, s.uptime !== null ? "up " + m.fmt(s.uptime / 3600, 1) + " h" : null];
      card.appendChild(el("div", { "class": "muted small", text: about.filter(Boolean).join(" · ") }));
      box.appendChild(card);
    });
  }

  function renderStreams(streams) {
    var body = clear($("streams-body"));
    $("streams").hidden = streams.length === 0;
    $("no-streams").hidden = streams.length > 0;
    streams.forEach(function (s) {
      var other = s.state === "standby" ? s.activeElsewhere : null;
      var shown = other || s;
      var parts = other ? other.partitions : s.partitions;
      var state = s.state === "active" ? "active" : other ? "standby (" + other.owner + " drains)" : "standby";
      // A partitioned stream has no head or cursor of its own: the rows under it give each partition's.
      var where = parts
        ? [el("td", { "class": "parts muted", colspan: 2, text: m.fmt(parts.length, 0) + " partitions" })]
        : [el("td", { "class": "num", text: position(shown.head) }), el("td", { "class": "num", text: position(shown.cursor) })];
      body.appendChild(el("tr", { "data-stream": s.stream },
        el("td", null, el("a", { href: "/log?stream=" + encodeURIComponent(s.stream), text: s.stream })),
        el("td", { "class": s.state === "active" ? "good" : "muted", text: state }),
        where[0], where[1],
        el("td", { "class": "num" + (shown.lag > 0 ? " warn-text" : ""), text: m.fmt(shown.lag, 0) }),
        el("td", { "class": "num", text: m.fmt(shown.entriesPerSecond, 1) }),
        el("td", { "class": "num" + (s.gaps > 0 ? " warn-text" : ""), text: m.fmt(s.gaps, 0) }),
        el("td", { "class": "num", text: m.fmt(s.late, 0) }),
        el("td", { text: m.ago(shown.lastDrainAt) }),
        el("td", { "class": s.lastError ? "error" : "muted", text: s.lastError || "none" })));
      (parts || []).forEach(function (p) {
        body.appendChild(el("tr", { "class": "partition", "data-partition-of": s.stream, "data-partition": p.partition },
          el("td", { "class": "muted sub", text: "partition " + p.partition }),
          el("td", { "class": "muted", title: "entries written from this partition since the drainer started", text: m.fmt(p.entries, 0) + " entries" }),
          el("td", { "class": "num", text: position(p.head) }),
          el("td", { "class": "num", text: position(p.cursor) }),
          el("td", { "class": "num" + (p.lag > 0 ? " warn-text" : ""), text: m.fmt(p.lag, 0) }),
          el("td"),
          el("td", { "class": "num" + (p.gaps > 0 ? " warn-text" : ""), text: m.fmt(p.gaps, 0) }),
          el("td", { "class": "num", text: m.fmt(p.late, 0) }),
          el("td"), el("td")));
      });
    });
  }

  function renderCollector(c) {
    var box = clear($("collector"));
    if (!c) {
      box.appendChild(el("p", { "class": "muted", text: "No collector runs in this process (memipc serve --no-collect, or another node collects)." }));
      return;
    }
    box.appendChild(el("div", { "class": "cards" },
      figure("last pass", m.ago(c.lastPassAt)),
      figure("passes", m.fmt(c.passes, 0)),
      figure("buckets stored", m.fmt(c.buckets, 0)),
      figure("values stored", m.fmt(c.values, 0)),
      figure("legacy counters taken", m.fmt(c.legacy, 0)),
      figure("newest bucket", c.newestBucketAt === null ? "none" : new Date(c.newestBucketAt).toLocaleString())));
    if (c.lastError) box.appendChild(el("p", { "class": "error", text: "last error: " + c.lastError }));
  }

  function renderJobs(jobs) {
    var counts = clear($("job-states"));
    Object.keys(jobs.byState).forEach(function (state) {
      var n = jobs.byState[state];
      counts.appendChild(figure(state, m.fmt(n, 0), n > 0 ? "state-" + state : null));
    });
    $("jobs-error").textContent = jobs.error || "";
    var body = clear($("jobs-body"));
    $("recent-jobs").hidden = jobs.recent.length === 0;
    jobs.recent.forEach(function (j) {
      var count = j.total === null ? m.fmt(j.done, 0) : m.fmt(j.done, 0) + " / " + m.fmt(j.total, 0);
      body.appendChild(el("tr", null,
        el("td", null, el("a", { href: "/jobs/" + encodeURIComponent(j.id), text: j.label })),
        el("td", { "class": "state-" + j.state, text: j.state }),
        el("td", { "class": "num", text: count }),
        el("td", { text: j.message }),
        el("td", { text: m.ago(j.startedAt) })));
    });
  }

  var timer = null;
  function refresh() {
    clearTimeout(timer);
    m.getJson("/api/overview").then(function (o) {
      renderWarnings(o.warnings);
      renderServers(o.servers);
      renderStreams(o.streams);
      renderCollector(o.collector);
      renderJobs(o.jobs);
      $("updated").textContent = "Updated " + new Date(o.time).toLocaleTimeString() + "; refreshes every ${OVERVIEW_REFRESH / 1000} s.";
    }, function () { /* shown in the header by getJson */ }).then(function () {
      timer = setTimeout(refresh, ${OVERVIEW_REFRESH});
    });
  }
  refresh();
})();
`;

const OVERVIEW_BODY = `<style>
.server{min-width:22em}
.server-head{display:flex;justify-content:space-between;gap:1em;margin-bottom:.5em}
.badge{font-size:.8em;padding:.1em .6em;border-radius:1em;border:1px solid currentColor}
.good{color:var(--good)}.bad{color:var(--bad)}
.server.down{border-color:var(--bad)}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(9em,1fr));gap:.5em 1em}
.figure{display:flex;flex-direction:column}
.figure .label{color:var(--muted);font-size:.85em}
.figure .value{font-variant-numeric:tabular-nums}
.cards > .figure{border:1px solid var(--line);border-radius:.5em;padding:.5em .8em;min-width:9em}
.server .figure .value{font-size:1.15em}
.figure.warn .value,.warn-text{color:var(--warn);font-weight:600}
.small{font-size:.85em;margin-top:.4em}
.state-failed,.state-stalled{color:var(--bad)}.state-done{color:var(--good)}
tr.partition td{font-size:.9em;border-bottom-style:dotted}
td.sub{padding-left:1.5em}
td.parts{text-align:center}
</style>
<div id="warnings"></div>
<h2>memcached</h2>
<div class="cards" id="servers"><p class="muted">Loading…</p></div>
<h2>Log streams</h2>
<table id="streams" hidden>
<thead><tr><th>stream</th><th>drainer</th><th class="num">head</th><th class="num">cursor</th><th class="num">lag</th><th class="num">entries/s</th><th class="num">gaps</th><th class="num">late</th><th>last drain</th><th>last error</th></tr></thead>
<tbody id="streams-body"></tbody>
</table>
<p id="no-streams" class="muted" hidden>No drainer runs in this process (memipc serve --no-drain).</p>
<h2>Stats collector</h2>
<div id="collector"></div>
<h2>Jobs</h2>
<div class="cards" id="job-states"></div>
<p id="jobs-error" class="error"></p>
<table id="recent-jobs" hidden>
<thead><tr><th>job</th><th>state</th><th class="num">done</th><th>message</th><th>started</th></tr></thead>
<tbody id="jobs-body"></tbody>
</table>
<p id="updated" class="muted"><noscript>The overview needs JavaScript; its figures are at /api/overview.</noscript></p>`;

/** Reads the overview at most once per `maxAge` ms (counted from when a read ends); requests share a read. */
export class OverviewCache {
  readonly #source: DashboardSource;
  readonly #maxAge: number;
  #pending: Promise<Overview> | undefined;
  #last: { at: number; overview: Overview } | undefined;

  constructor(source: DashboardSource, maxAge = OVERVIEW_MAX_AGE) {
    this.#source = source;
    this.#maxAge = maxAge;
  }

  read(): Promise<Overview> {
    if (this.#pending !== undefined) return this.#pending;
    if (this.#last !== undefined && Date.now() - this.#last.at < this.#maxAge) {
      return Promise.resolve(this.#last.overview);
    }
    const pending = readOverview(this.#source);
    this.#pending = pending;
    pending.then(
      (overview) => {
        this.#last = { at: Date.now(), overview };
        this.#pending = undefined;
      },
      () => {
        this.#pending = undefined; // the next request tries again
      },
    );
    return pending;
  }
}

export const overviewModule: DashboardModuleFactory = (source) => {
  const cache = new OverviewCache(source);
  return {
    routes: [
      {
        path: "/",
        methods: ["GET"],
        async handle({ response }) {
          const html = dashboardPage({
            path: "/",
            body: OVERVIEW_BODY,
            scripts: ["dashboard.js", "overview.js"],
          });
          response.writeHead(200, pageHeaders(html));
          response.end(html);
        },
      },
      {
        path: "/api/overview",
        methods: ["GET"],
        async handle({ response }) {
          sendJson(response, 200, await cache.read());
        },
      },
    ],
    assets: { "overview.js": { type: JS, body: OVERVIEW_JS } },
  };
};
