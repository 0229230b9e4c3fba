// The dashboard's jobs page (`/jobs`): recent jobs, newest first, each a live progress bar with its cancel
// button: the same widget as /embed.js and the job page, following each running job over its event stream.
import { dashboardPage, pageHeaders } from "./layout.js";
import { JS, type DashboardModuleFactory } from "./routes.js";

const JOBS_REFRESH = 3000; // ms between reads of the job list (bars update on their own event streams)

const JOBS_JS = String.raw`(function () {
  "use strict";
  var m = window.memipc;
  var list = document.getElementById("jobs");
  var empty = document.getElementById("no-jobs");
  var shown = {};
  function meta(job) {
    return "job " + job.id + " · on " + job.node + " · started " + new Date(job.startedAt).toLocaleString();
  }
  function refresh() {
    m.getJson("/api/jobs").then(function (body) {
      var jobs = body.jobs || [];
      empty.hidden = jobs.length > 0;
      var before = list.firstChild;
      jobs.forEach(function (job) {
        var entry = shown[job.id];
        if (!entry) {
          var bar = m.el("div", { "class": "memipc-job" });
          entry = m.el("li", { "class": "job", "data-job": job.id }, bar, m.el("div", { "class": "muted job-meta", text: meta(job) }));
          shown[job.id] = entry;
          window.memipcProgress(bar, job.id, { base: location.origin, cancel: true });
        }
        // Newest first: place each job in the list's order.
        if (entry !== before) list.insertBefore(entry, before);
        else before = before.nextSibling;
      });
    }, function () { /* shown in the header by getJson */ });
  }
  refresh();
  setInterval(refresh, ${JOBS_REFRESH});
})();
`;

const JOBS_CSS_EXTRA = `<style>
#jobs{list-style:none;padding:0;margin:0;display:grid;gap:1.4em;max-width:46em}
.job-meta{font-size:.85em;margin-top:.3em}
</style>`;

export const jobsModule: DashboardModuleFactory = () => ({
  routes: [
    {
      path: "/jobs",
      methods: ["GET"],
      async handle({ response }) {
        const html = dashboardPage({
          path: "/jobs",
          body: `${JOBS_CSS_EXTRA}
<p class="muted">Jobs started in the last hours on any node, newest first. Bars follow each job live; Cancel asks
the job to stop at its next step.</p>
<p id="no-jobs" hidden>No jobs yet. A job appears here as soon as a process starts one (see the README's
progress section, or <code>memipc progress</code>).</p>
<ol id="jobs"></ol>`,
          scripts: ["dashboard.js", "/embed.js", "jobs.js"],
        });
        response.writeHead(200, pageHeaders(html));
        response.end(html);
      },
    },
  ],
  assets: { "jobs.js": { type: JS, body: JOBS_JS } },
});
