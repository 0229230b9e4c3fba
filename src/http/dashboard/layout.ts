// The dashboard's page shell: one stylesheet, a navigation bar, and scripts loaded only from this server
// (/assets/...), under a Content-Security-Policy that refuses inline scripts, so nothing read from memcached
// or the log files can run in the browser even if it reached the page as markup.
import { escapeHtml } from "../page.js";

export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

export const PAGES = [
  { path: "/", title: "Overview" },
  { path: "/log", title: "Log" },
  { path: "/stats", title: "Stats" },
  { path: "/jobs", title: "Jobs" },
] as const;

export type PagePath = (typeof PAGES)[number]["path"];

export const DASHBOARD_CSS = String.raw`:root{color-scheme:light dark;--accent:#2563eb;--muted:rgba(127,127,127,.75);--line:rgba(127,127,127,.25);--warn:#b45309;--bad:#dc2626;--good:#16a34a}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:Canvas;color:CanvasText}
header{display:flex;align-items:baseline;gap:1.5em;padding:.8em 1.5em;border-bottom:1px solid var(--line)}
header strong{font-size:1.1em}
header nav{display:flex;gap:1em}
header nav a{color:inherit;text-decoration:none;padding:.2em 0;border-bottom:2px solid transparent}
header nav a[aria-current=page]{border-bottom-color:var(--accent);font-weight:600}
header .status{margin-left:auto;font-size:.9em;color:var(--muted)}
main{padding:1.2em 1.5em;max-width:80em}
h1{font-size:1.3em;margin:.2em 0 .8em}
h2{font-size:1.05em;margin:1.4em 0 .5em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.3em .9em .3em 0;border-bottom:1px solid var(--line);vertical-align:top}
td.num,th.num{text-align:right}
.cards{display:flex;flex-wrap:wrap;gap:1em}
.card{border:1px solid var(--line);border-radius:.5em;padding:.8em 1em;min-width:14em}
.card .value{font-size:1.6em;font-variant-numeric:tabular-nums}
.card .label{color:var(--muted);font-size:.9em}
.warning{border-left:4px solid var(--warn);padding:.5em .8em;margin:.8em 0;background:rgba(180,83,9,.08)}
.error{color:var(--bad)}
.muted{color:var(--muted)}
.toolbar{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;margin:.5em 0 .8em}
button,input,select{font:inherit}
pre,code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
`;

/** The tab's icon: three bars, as a log, a chart and a progress bar. */
export const DASHBOARD_ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2563eb"/><rect x="3" y="4" width="10" height="2" fill="#fff"/><rect x="3" y="7" width="7" height="2" fill="#fff"/><rect x="3" y="10" width="4" height="2" fill="#fff"/></svg>`;

export interface PageOptions {
  /** The navigation entry shown as current. */
  path: PagePath;
  /** Markup of the page's main part; every value in it must already be escaped. */
  body: string;
  /** Script files under /assets/ that the page loads, in order (e.g. "log.js"), or paths from "/" (e.g. "/embed.js"). */
  scripts: readonly string[];
  /** Stylesheets under /assets/ (e.g. "uPlot.min.css"). */
  styles?: readonly string[];
}

/** A whole dashboard page. */
export function dashboardPage(options: PageOptions): string {
  const title = PAGES.find((p) => p.path === options.path)!.title;
  const nav = PAGES.map(
    (p) =>
      `<a href="${p.path}"${p.path === options.path ? ' aria-current="page"' : ""}>${escapeHtml(p.title)}</a>`,
  ).join("");
  const styles = (options.styles ?? []).map((s) => `<link rel="stylesheet" href="/assets/${escapeHtml(s)}">`);
  const scripts = options.scripts.map(
    (s) => `<script src="${s.startsWith("/") ? "" : "/assets/"}${escapeHtml(s)}" defer></script>`,
  );
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)} · memipc</title>
<link rel="icon" href="/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/dashboard.css">
${styles.join("\n")}
${scripts.join("\n")}
</head>
<body>
<header><strong>memipc</strong><nav>${nav}</nav><span class="status" id="status"></span></header>
<main>
<h1>${escapeHtml(title)}</h1>
${options.body}
</main>
</body>
</html>
`;
}

/** Headers of every dashboard page. */
export function pageHeaders(html: string): Record<string, string | number> {
  return {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Length": Buffer.byteLength(html),
    "Cache-Control": "no-store",
    "Content-Security-Policy": DASHBOARD_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
  };
}
