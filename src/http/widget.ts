// The progress bar as browser code, shared by the job page (inline) and /embed.js (on a web app's own pages):
// `memipcProgress(element, jobId, { base, token, cancel })`, or `<div data-memipc-job="ID">` found on load.
// It draws into the element (reusing markup the server rendered there), follows the job through the events
// endpoint, and shows text with textContent only, so nothing a job writes can run as markup.

/** The bar's styles: the page inlines them; the widget adds them once to a page that lacks them. */
export const WIDGET_STYLE_ID = "memipc-progress-style";

export const WIDGET_CSS = String.raw`.memipc-job{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:42em}
.memipc-head{display:flex;justify-content:space-between;align-items:baseline;gap:1em;margin-bottom:.4em}
.memipc-label{font-weight:600;overflow-wrap:anywhere}
.memipc-state{font-size:.9em;font-weight:600;text-align:right;overflow-wrap:anywhere}
.memipc-track{position:relative;height:.9em;border-radius:.45em;background:rgba(127,127,127,.22);overflow:hidden}
.memipc-fill{position:absolute;left:0;top:0;bottom:0;width:0;background:#2563eb;transition:width .3s ease}
.memipc-indeterminate .memipc-fill{width:30%;animation:memipc-slide 1.3s ease-in-out infinite}
@keyframes memipc-slide{from{left:-30%}to{left:100%}}
.memipc-job[data-state=done] .memipc-fill{background:#16a34a}
.memipc-job[data-state=failed] .memipc-fill{background:#dc2626}
.memipc-job[data-state=cancelled] .memipc-fill,.memipc-job[data-state=stalled] .memipc-fill{background:#9ca3af}
.memipc-job[data-state=failed] .memipc-state{color:#dc2626}
.memipc-job[data-state=stalled] .memipc-state{color:#b45309}
.memipc-figures{display:flex;flex-wrap:wrap;gap:.4em 1.2em;margin-top:.35em;font-variant-numeric:tabular-nums;opacity:.8}
.memipc-figures span:empty{display:none}
.memipc-message{margin-top:.35em;min-height:1.45em;overflow-wrap:anywhere;white-space:pre-wrap}
.memipc-note{font-size:.9em;opacity:.8}
.memipc-note:empty{display:none}
.memipc-cancel{margin-top:.5em;font:inherit;padding:.25em .9em;cursor:pointer}
.memipc-cancel[hidden]{display:none}
`;

export const WIDGET_JS = String.raw`(function () {
  "use strict";
  if (typeof window.memipcProgress === "function") return;
  var FINAL = { done: true, failed: true, cancelled: true };
  var PARTS = [
    ["head", "div", null], ["label", "span", "head"], ["state", "span", "head"],
    ["track", "div", null], ["fill", "div", "track"],
    ["figures", "div", null], ["percent", "span", "figures"], ["count", "span", "figures"],
    ["rate", "span", "figures"], ["eta", "span", "figures"],
    ["message", "div", null], ["note", "div", null], ["cancel", "button", null]
  ];
  var RETRY_MS = 5000;
  var script = document.currentScript;
  var scriptUrl = script && script.src ? new URL(script.src, document.baseURI) : null;
  // Loaded as /embed.js: the API is where the script came from. Inline on the job page: this page's server.
  var DEFAULT_BASE = scriptUrl ? scriptUrl.href.replace(/\/embed\.js(?:[?#].*)?$/, "") : location.origin;
  var DEFAULT_TOKEN = (scriptUrl || new URL(location.href)).searchParams.get("token") || "";

  function ensureStyle() {
    if (document.getElementById("memipc-progress-style")) return;
    var style = document.createElement("style");
    style.id = "memipc-progress-style";
    style.textContent = CSS;
    (document.head || document.documentElement).appendChild(style);
  }

  function part(parent, name, tag) {
    var found = parent.querySelector(".memipc-" + name);
    if (found) return found;
    var made = document.createElement(tag);
    made.className = "memipc-" + name;
    if (tag === "button") { made.type = "button"; made.textContent = "Cancel"; }
    parent.appendChild(made);
    return made;
  }

  function number(n) {
    if (n === null || n === undefined || !isFinite(n)) return "";
    return n >= 100 || Math.round(n) === n ? Math.round(n).toLocaleString("en-US") : n.toFixed(n >= 10 ? 1 : 2);
  }

  function duration(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function percent(job) {
    if (job.state === "done") return 100;
    if (typeof job.total !== "number" || job.total <= 0) return null;
    return Math.max(0, Math.min(100, Math.floor((job.done / job.total) * 100)));
  }

  function stateText(job) {
    if (job.state === "failed") return "failed: " + (job.error || "unknown error");
    return job.state;
  }

  function Widget(element, id, options) {
    this.root = element;
    this.id = String(id);
    this.base = options.base === undefined || options.base === null
      ? DEFAULT_BASE
      : new URL(String(options.base), document.baseURI).href.replace(/\/+$/, "");
    this.token = options.token === undefined || options.token === null ? DEFAULT_TOKEN : String(options.token);
    this.job = null;
    this.source = null;
    this.timer = null;
    this.closed = false;
    this.cancelling = false;
    ensureStyle();
    element.classList.add("memipc-job");
    element.setAttribute("data-memipc-job", this.id);
    var self = this;
    this.parts = {};
    PARTS.forEach(function (p) {
      self.parts[p[0]] = part(p[2] ? self.parts[p[2]] : element, p[0], p[1]);
    });
    this.parts.track.setAttribute("role", "progressbar");
    this.parts.track.setAttribute("aria-valuemin", "0");
    this.parts.track.setAttribute("aria-valuemax", "100");
    this.parts.note.setAttribute("aria-live", "polite");
    this.parts.cancel.hidden = !options.cancel;
    this.wantsCancel = !!options.cancel;
    this.parts.cancel.addEventListener("click", function () { self.cancel(); });
    this.connect();
  }

  Widget.prototype.url = function (path, withToken) {
    var url = this.base + "/api/jobs/" + encodeURIComponent(this.id) + path;
    return withToken && this.token ? url + "?token=" + encodeURIComponent(this.token) : url;
  };

  Widget.prototype.headers = function () {
    return this.token ? { Authorization: "Bearer " + this.token } : {};
  };

  Widget.prototype.render = function (job) {
    var p = this.parts;
    this.job = job;
    this.root.setAttribute("data-state", job.state);
    p.label.textContent = job.label;
    p.state.textContent = this.cancelling && job.state === "running" ? "cancelling…" : stateText(job);
    var pct = percent(job);
    var running = job.state === "running";
    p.track.classList.toggle("memipc-indeterminate", pct === null && running);
    if (pct === null) {
      p.fill.style.width = running ? "" : "100%";
      p.percent.textContent = "";
      p.track.removeAttribute("aria-valuenow");
    } else {
      p.fill.style.width = pct + "%";
      p.percent.textContent = pct + "%";
      p.track.setAttribute("aria-valuenow", String(pct));
    }
    p.count.textContent = typeof job.total === "number" ? number(job.done) + " / " + number(job.total) : number(job.done);
    p.rate.textContent = running && typeof job.rate === "number" ? number(job.rate) + "/s" : "";
    p.eta.textContent = running && typeof job.eta === "number" ? duration(job.eta) + " left" : "";
    p.message.textContent = job.message || "";
    var open = !FINAL[job.state];
    p.cancel.hidden = !(this.wantsCancel && open);
    p.cancel.disabled = this.cancelling;
    if (!open) p.note.textContent = "";
  };

  Widget.prototype.missing = function (why) {
    this.root.setAttribute("data-state", "missing");
    this.parts.state.textContent = why;
    this.parts.cancel.hidden = true;
    this.parts.track.classList.remove("memipc-indeterminate");
  };

  Widget.prototype.connect = function () {
    if (this.closed) return;
    var self = this;
    var source = new EventSource(this.url("/events", true));
    this.source = source;
    source.addEventListener("job", function (event) {
      self.parts.note.textContent = "";
      var job = JSON.parse(event.data);
      self.render(job);
      if (FINAL[job.state]) source.close();
    });
    source.addEventListener("gone", function () {
      source.close();
      self.missing("expired");
    });
    source.addEventListener("error", function () {
      if (source.readyState !== 2) {
        if (!self.job || !FINAL[self.job.state]) self.parts.note.textContent = "connection lost, reconnecting…";
        return;
      }
      // Refused (404, 401, 503) or told to stop (204, the final version is here already): ask once why.
      if (self.job && FINAL[self.job.state]) return;
      self.fetchOnce();
    });
  };

  Widget.prototype.fetchOnce = function () {
    var self = this;
    fetch(this.url("", false), { headers: this.headers(), cache: "no-store" }).then(function (response) {
      if (response.status === 404) return self.missing("not found");
      if (response.status === 401) return self.missing("not allowed: the token is missing or wrong");
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json().then(function (job) {
        self.render(job);
        if (!FINAL[job.state]) self.retry();
      });
    }).catch(function () {
      self.parts.note.textContent = "cannot reach the server, retrying…";
      self.retry();
    });
  };

  Widget.prototype.retry = function () {
    var self = this;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.connect(); }, RETRY_MS);
  };

  Widget.prototype.cancel = function () {
    var self = this;
    var p = this.parts;
    this.cancelling = true;
    p.cancel.disabled = true;
    p.state.textContent = "cancelling…";
    fetch(this.url("/cancel", false), { method: "POST", headers: this.headers() }).then(function (response) {
      if (response.status === 202) {
        p.note.textContent = "cancel requested: the job stops at its next step";
        return;
      }
      return response.json().then(function (body) {
        self.cancelling = false;
        p.cancel.disabled = false;
        p.note.textContent = (body && body.error) || "cancel refused (HTTP " + response.status + ")";
        if (self.job) self.render(self.job);
      });
    }).catch(function () {
      self.cancelling = false;
      p.cancel.disabled = false;
      p.note.textContent = "cancel failed: cannot reach the server";
    });
  };

  Widget.prototype.close = function () {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
  };

  window.memipcProgress = function (element, jobId, options) {
    if (!element || typeof element.appendChild !== "function") throw new TypeError("memipcProgress: element must be a DOM element");
    if (element.memipcWidget) element.memipcWidget.close();
    var widget = new Widget(element, jobId, options || {});
    element.memipcWidget = widget;
    return { close: function () { widget.close(); } };
  };

  function scan() {
    var found = document.querySelectorAll("[data-memipc-job]");
    for (var i = 0; i < found.length; i++) {
      var element = found[i];
      if (element.memipcWidget) continue;
      window.memipcProgress(element, element.getAttribute("data-memipc-job"), {
        base: element.getAttribute("data-memipc-base"),
        cancel: element.hasAttribute("data-memipc-cancel")
      });
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
`.replace("style.textContent = CSS;", () => `style.textContent = ${JSON.stringify(WIDGET_CSS)};`);

/** What /embed.js serves. */
export const EMBED_JS = `// memipc progress bars: memipcProgress(element, jobId, { base, token, cancel }) or <div data-memipc-job="ID">.\n${WIDGET_JS}`;
