// The job page (`GET /jobs/:id`): the job as it stands, rendered on the server with every value HTML-escaped,
// then kept live by the inline widget. Self-contained: its only requests go to this server's API.
import { createHash } from "node:crypto";
import { FINAL_STATES, JobState, type JobView } from "../progress/index.js";
import { WIDGET_CSS, WIDGET_JS, WIDGET_STYLE_ID } from "./widget.js";

const PAGE_CSS = `:root{color-scheme:light dark}
body{margin:0;padding:2.5em 1.5em;background:Canvas;color:CanvasText}
main{max-width:42em;margin:0 auto}
main>p{font:12px/1.4 system-ui,sans-serif;opacity:.6;margin-top:2em}`;

/** The page's only script, allowed by its hash (Content-Security-Policy), so injected markup cannot run. */
const SCRIPT_HASH = createHash("sha256").update(WIDGET_JS, "utf8").digest("base64");

export const PAGE_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${SCRIPT_HASH}'`,
  "style-src 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** The page for job `id` (already validated); `view` undefined renders "not found". */
export function jobPage(id: string, view: JobView | undefined): string {
  const title = view === undefined ? `job ${id}` : view.label;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)} · memipc</title>
<style id="${WIDGET_STYLE_ID}">${WIDGET_CSS}</style>
<style>${PAGE_CSS}</style>
</head>
<body>
<main>
${view === undefined ? missingMarkup(id) : jobMarkup(view)}
<p>job ${escapeHtml(id)} · memipc</p>
</main>
<script>${WIDGET_JS}</script>
</body>
</html>
`;
}

/** The widget's markup, filled in: what the page shows before (or without) script. */
function jobMarkup(view: JobView): string {
  const pct = percent(view);
  const running = view.state === JobState.running;
  const width = pct === null ? (running ? "" : "100%") : `${pct}%`;
  const count = view.total === null ? figure(view.done) : `${figure(view.done)} / ${figure(view.total)}`;
  const cancellable = !FINAL_STATES.has(view.state);
  return `<div id="job" class="memipc-job" data-memipc-job="${escapeHtml(view.id)}" data-memipc-cancel data-memipc-base=".." data-state="${escapeHtml(view.state)}">
<div class="memipc-head"><span class="memipc-label">${escapeHtml(view.label)}</span><span class="memipc-state">${escapeHtml(stateText(view))}</span></div>
<div class="memipc-track${pct === null && running ? " memipc-indeterminate" : ""}" role="progressbar" aria-valuemin="0" aria-valuemax="100"${pct === null ? "" : ` aria-valuenow="${pct}"`}><div class="memipc-fill"${width === "" ? "" : ` style="width:${width}"`}></div></div>
<div class="memipc-figures"><span class="memipc-percent">${pct === null ? "" : `${pct}%`}</span><span class="memipc-count">${escapeHtml(count)}</span><span class="memipc-rate"></span><span class="memipc-eta"></span></div>
<div class="memipc-message">${escapeHtml(view.message)}</div>
<div class="memipc-note" aria-live="polite"></div>
<button type="button" class="memipc-cancel"${cancellable ? "" : " hidden"}>Cancel</button>
</div>`;
}

function missingMarkup(id: string): string {
  return `<div id="job" class="memipc-job" data-state="missing">
<div class="memipc-head"><span class="memipc-label">job ${escapeHtml(id)}</span><span class="memipc-state">not found</span></div>
<div class="memipc-message">There is no such job: it never started, or it finished long enough ago to expire.</div>
</div>`;
}

/** As the widget computes it: 100 when done, else done/total floored, null when the total is unknown. */
function percent(view: JobView): number | null {
  if (view.state === JobState.done) return 100;
  if (view.total === null || view.total <= 0) return null;
  return Math.max(0, Math.min(100, Math.floor((view.done / view.total) * 100)));
}

function stateText(view: JobView): string {
  return view.state === JobState.failed ? `failed: ${view.error ?? "unknown error"}` : view.state;
}

function figure(n: number): string {
  return Number.isInteger(n) ? n.toLocaleString("en-US") : String(n);
}
