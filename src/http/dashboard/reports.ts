// The dashboard's daily reports: the files the collector writes into DATA/reports (`YYYY-MM-DD.<ext>`), listed
// by day (`GET /api/reports`) and served for viewing or download (`GET /reports/FILE`). Only plain files
// directly in that folder, named as reports are, are ever served: no other path can be reached through it.
import { constants } from "node:fs";
import { lstat, open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { REPORT_EXTENSIONS, ReportFormat } from "../../sinks/report-format.js";
import { sendError, sendJson } from "../responses.js";
import { JS, type DashboardModuleFactory } from "./routes.js";

/** The asset the stats page loads to show the list. */
export const REPORTS_JS_ASSET = "reports.js";

/** A report's file name: a day and a known extension, nothing else (no folders, no hidden files). */
const REPORT_FILE = /^(\d{4}-\d{2}-\d{2})\.([a-z]+)$/;

/** Report formats by file extension, in the order the list shows them. */
const FORMATS_BY_EXTENSION = new Map<string, ReportFormat>(
  [ReportFormat.html, ReportFormat.md, ReportFormat.json, ReportFormat.csv, ReportFormat.text].map((f) => [
    REPORT_EXTENSIONS[f],
    f,
  ]),
);
const FORMAT_ORDER = [...FORMATS_BY_EXTENSION.values()];

const CONTENT_TYPES: Record<ReportFormat, string> = {
  html: "text/html; charset=utf-8",
  md: "text/markdown; charset=utf-8",
  json: "application/json; charset=utf-8",
  csv: "text/csv; charset=utf-8",
  text: "text/plain; charset=utf-8",
};

/**
 * A report opened from the dashboard runs no script and reaches nothing (its own header says as much; this
 * one also applies to the text formats, and `sandbox` keeps it off the dashboard's origin).
 */
const REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox";

export interface ReportFile {
  file: string;
  format: ReportFormat;
  bytes: number;
  /** Last written, ms since 1970. */
  modified: number;
}

export interface ReportDay {
  /** YYYY-MM-DD. */
  day: string;
  files: ReportFile[];
}

/** The report files in `dir`, by day, newest first; none when the folder does not exist yet. */
export async function listReports(dir: string): Promise<ReportDay[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const byDay = new Map<string, ReportFile[]>();
  for (const name of names) {
    const format = reportFormat(name);
    if (format === undefined) continue;
    let info;
    try {
      info = await lstat(join(dir, name));
    } catch {
      continue; // removed since the listing
    }
    if (!info.isFile()) continue; // folders and symbolic links are not served, so not listed
    const day = name.slice(0, 10);
    const files = byDay.get(day) ?? [];
    files.push({ file: name, format, bytes: info.size, modified: Math.round(info.mtimeMs) });
    byDay.set(day, files);
  }
  return [...byDay]
    .sort(([a], [b]) => (a < b ? 1 : a > b ? -1 : 0))
    .map(([day, files]) => ({
      day,
      files: files.sort((a, b) => FORMAT_ORDER.indexOf(a.format) - FORMAT_ORDER.indexOf(b.format)),
    }));
}

/** The format of a report file name, or undefined when `name` is not one. */
function reportFormat(name: string): ReportFormat | undefined {
  const match = REPORT_FILE.exec(name);
  return match === null ? undefined : FORMATS_BY_EXTENSION.get(match[2]!);
}

/** The "Daily reports" part of the stats page; reports.js fills the table. */
export function reportsSection(): string {
  return `<section id="reports">
<h2>Daily reports</h2>
<p class="muted">Written by the collector shortly after midnight, one file per format. Open one to view it, or
download it.</p>
<p id="no-reports" class="muted" hidden>No reports yet: the first is written the night after the collector
starts (or run <code>memipc report</code>).</p>
<table id="reports-table" hidden><thead><tr><th>day</th><th>files</th><th>written</th></tr></thead><tbody></tbody></table>
</section>`;
}

const REPORTS_JS = String.raw`(function () {
  "use strict";
  var m = window.memipc;
  var table = document.getElementById("reports-table");
  if (!table) return;
  var body = table.querySelector("tbody");
  var empty = document.getElementById("no-reports");
  function fileLinks(files) {
    var cell = m.el("td");
    files.forEach(function (f, i) {
      var href = "/reports/" + encodeURIComponent(f.file);
      if (i > 0) cell.appendChild(document.createTextNode(" · "));
      cell.appendChild(m.el("a", { href: href, title: "view " + f.file, text: f.format }));
      cell.appendChild(document.createTextNode(" "));
      cell.appendChild(m.el("a", { href: href + "?download=1", download: f.file, "class": "muted",
        title: "download " + f.file, text: "(" + m.bytes(f.bytes) + " ⤓)" }));
    });
    return cell;
  }
  function refresh() {
    m.getJson("/api/reports").then(function (answer) {
      var days = answer.reports || [];
      while (body.firstChild) body.removeChild(body.firstChild);
      days.forEach(function (d) {
        var written = Math.max.apply(null, d.files.map(function (f) { return f.modified; }));
        body.appendChild(m.el("tr", { "data-day": d.day },
          m.el("td", { "class": "mono", text: d.day }),
          fileLinks(d.files),
          m.el("td", { "class": "muted", title: new Date(written).toLocaleString(), text: m.ago(written) })));
      });
      table.hidden = days.length === 0;
      empty.hidden = days.length > 0;
    }, function () { /* shown in the header by getJson */ });
  }
  refresh();
  setInterval(function () { if (!document.hidden) refresh(); }, 300000);
})();
`;

export const reportsModule: DashboardModuleFactory = (source) => ({
  routes: [
    {
      path: "/api/reports",
      methods: ["GET"],
      async handle({ response }) {
        sendJson(response, 200, { reports: await listReports(source.reportsDir) });
      },
    },
    {
      // Where a user who types the folder's address ends up: the list on the stats page.
      path: /^\/reports\/?$/,
      methods: ["GET"],
      async handle({ response }) {
        response.writeHead(302, { Location: "/stats#reports", "Content-Length": 0 });
        response.end();
      },
    },
    {
      path: /^\/reports\/([^/]+)$/,
      methods: ["GET"],
      async handle({ request, response, url, params }) {
        const name = params[0]!;
        const format = reportFormat(name);
        if (format === undefined) {
          const extensions = [...FORMATS_BY_EXTENSION.keys()].join(", ");
          return sendError(
            response,
            400,
            `${JSON.stringify(name)} is not a report's name: reports are named YYYY-MM-DD.EXT with EXT one of ` +
              `${extensions} (see /api/reports)`,
          );
        }
        const path = join(source.reportsDir, name);
        let handle;
        try {
          // O_NOFOLLOW: a symbolic link put in the folder is refused, not followed out of it.
          handle = await open(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "ENOENT" || code === "ELOOP" || code === "EISDIR" || code === "ENOTDIR") {
            return sendError(response, 404, notFound(name));
          }
          throw error;
        }
        try {
          const info = await handle.stat();
          if (!info.isFile()) return sendError(response, 404, notFound(name));
          // Read through the handle opened above: a report replaced meanwhile (by rename) changes nothing.
          const body = await handle.readFile();
          const download = url.searchParams.has("download");
          response.writeHead(200, {
            "Content-Type": CONTENT_TYPES[format],
            "Content-Length": body.length,
            "Content-Disposition": `${download ? "attachment" : "inline"}; filename="${name}"`,
            "Last-Modified": new Date(info.mtimeMs).toUTCString(),
            "Cache-Control": "no-cache",
            "Content-Security-Policy": REPORT_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
          });
          response.end(request.method === "HEAD" ? undefined : body);
        } finally {
          await handle.close();
        }
      },
    },
  ],
  assets: { [REPORTS_JS_ASSET]: { type: JS, body: REPORTS_JS } },
});

function notFound(name: string): string {
  return `there is no report ${name} (see /api/reports for the ones written)`;
}
