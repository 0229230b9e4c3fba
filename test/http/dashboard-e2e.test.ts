// The dashboard end to end, as an operator sees it: `memipc serve` and `memipc demo` run as real processes,
// and Debian's chromium (headless, through playwright-core) opens every page. Each shows real data within
// seconds and keeps moving: the overview's drained count rises, the log tail grows, the stats chart of
// http.requests fills, the demo's job bar moves on the jobs page and on its own page through the demo's proxy.
// A log entry made of markup shows as text and runs nothing. A daemon with a token answers 401 without it.
// Screenshots of every page go to test-artifacts/dashboard-*.png.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Page } from "playwright-core";
import { randomName, run, startDemo, startServe, waitFor } from "../cli/run-cli.js";
import { ARTIFACTS, launchChromium } from "../helpers/browser.js";

const TEST_TIMEOUT_MS = 150_000;
const SHOWN_WITHIN_MS = 15_000; // a page shows real data, or shows it moving, within this
const MARKUP = `<img src=x onerror="window.__memipcXss=1"><script>window.__memipcXss=2</script>`;
const TOKEN = "e2e-token-0123456789abcdef";

const dir = mkdtempSync(join(tmpdir(), "memipc-dashboard-e2e-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The text of the first element matching `selector`, or "" when there is none yet. */
async function text(page: Page, selector: string): Promise<string> {
  const found = page.locator(selector).first();
  return (await found.count()) === 0 ? "" : ((await found.textContent()) ?? "");
}

/** Waits until `read` gives a value other than `first` (the page moved by itself). */
async function changes(read: () => Promise<string>, first: string, what: string): Promise<string> {
  let now = first;
  await waitFor(
    async () => {
      now = await read();
      return now !== "" && now !== first;
    },
    what,
    SHOWN_WITHIN_MS,
  );
  return now;
}

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `dashboard-${name}.png`), fullPage: true });
}

test(
  "dashboard: serve and demo as processes; every page shows live data in chromium; markup in the log is text",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const browser = await launchChromium(t);
    if (browser === undefined) return;
    const namespace = randomName("ns");
    const serve = await startServe(t, ["--data-dir", join(dir, "data"), "--namespace", namespace]);
    const { memcached, dashboard } = serve;
    const { jobPage } = await startDemo(t, serve, namespace, ["--rate", "50", "--step-ms", "100"]);

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("dialog", (dialog) => {
      problems.push(`dialog: ${dialog.message()}`);
      void dialog.dismiss();
    });
    page.on("console", (message) => {
      // Failed requests are reported below with their address.
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
        problems.push(`console: ${message.text()}`);
      }
    });
    page.on("response", (response) => {
      const path = new URL(response.url()).pathname;
      // The demo's web servers have no icon; the dashboard has its own.
      if (response.status() >= 400 && path !== "/favicon.ico") problems.push(`${response.status()} ${path}`);
    });

    // Overview: the server is up, the stream is drained by this process, and its cursor moves.
    await page.goto(`${dashboard}/`);
    await page.locator(".card.server.up").first().waitFor({ timeout: SHOWN_WITHIN_MS });
    const streamRow = '#streams-body tr[data-stream="log"]';
    await page.locator(streamRow).waitFor({ timeout: SHOWN_WITHIN_MS });
    assert.match(await text(page, streamRow), /active/);
    const cursor = () => text(page, `${streamRow} td:nth-child(4)`);
    await changes(cursor, await cursor(), "the overview's cursor of stream log to move");
    assert.equal(await page.locator(".card.server.up").count(), 1);
    await screenshot(page, "overview");

    // Log: the live tail grows; an entry made of markup arrives as text and runs nothing.
    await page.goto(`${dashboard}/log?stream=log`);
    await page.locator("#entries tr.entry").first().waitFor({ timeout: SHOWN_WITHIN_MS });
    const rows = async () => String(await page.locator("#entries tr.entry").count());
    await changes(rows, await rows(), "the log tail to grow");
    const logged = await run(t, ["log", "--memcached", memcached, "--namespace", namespace, MARKUP]);
    assert.equal(logged.code, 0, logged.stderr);
    const markupRow = page.locator("#entries tr.entry", { hasText: "window.__memipcXss=2" });
    await markupRow.first().waitFor({ timeout: SHOWN_WITHIN_MS });
    assert.ok(
      (await markupRow.first().textContent())!.includes(MARKUP),
      "the entry is shown as it was written",
    );
    assert.equal(await page.locator("#entries img").count(), 0, "no element was made from the entry");
    assert.equal(await page.evaluate("typeof window.__memipcXss"), "undefined", "nothing in the entry ran");
    await page.locator("#filter").fill("__memipcXss");
    await waitFor(
      async () => (await page.locator("#entries tr.entry:visible").count()) === 1,
      "the filter to leave the one entry",
      SHOWN_WITHIN_MS,
    );
    await page.locator("#filter").fill("");
    await screenshot(page, "log");

    // Stats: the demo's request counter is charted from the counts not collected yet.
    await page.goto(`${dashboard}/stats`);
    const chart = page.locator(".chart", { hasText: "http.requests" });
    await chart.first().waitFor({ timeout: SHOWN_WITHIN_MS });
    await chart.first().locator("canvas").first().waitFor({ timeout: SHOWN_WITHIN_MS });
    await page.locator("#reports").waitFor();
    await screenshot(page, "stats");

    // Jobs: the demo's report job, its bar moving.
    await page.goto(`${dashboard}/jobs`);
    const bar = '#jobs li[data-job="demo-report"] .memipc-count';
    await page.locator(bar).waitFor({ timeout: SHOWN_WITHIN_MS });
    await changes(() => text(page, bar), await text(page, bar), "the job's count on the jobs page to move");
    await screenshot(page, "jobs");

    // The job's own page, through the demo's round-robin proxy (any web server answers).
    await page.goto(jobPage);
    const count = "#job .memipc-count";
    await changes(() => text(page, count), await text(page, count), "the job page's count to move");
    await screenshot(page, "job-page");

    assert.deepEqual(problems, [], "no script errors, dialogs or console errors");
  },
);

test(
  "dashboard: with a token every page and API needs it (401 without); the page opened with ?token= works; a public bind without one is refused",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const refused = await run(t, [
      "serve",
      "--port",
      "0",
      "--http-listen",
      "0.0.0.0",
      "--data-dir",
      join(dir, "x"),
    ]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /without a token/);

    const { dashboard: url } = await startServe(t, [
      "--data-dir",
      join(dir, "token"),
      "--token",
      TOKEN,
      "--no-collect",
    ]);
    for (const path of [
      "/",
      "/log",
      "/stats",
      "/jobs",
      "/api/overview",
      "/api/log/entries?stream=log",
      "/assets/dashboard.js",
      "/metrics",
    ]) {
      const answer = await fetch(`${url}${path}`);
      assert.equal(answer.status, 401, path);
    }
    assert.equal((await fetch(`${url}/healthz`)).status, 200, "load balancers need no token");
    const bearer = await fetch(`${url}/api/overview`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(bearer.status, 200);
    const wrong = await fetch(`${url}/api/overview`, {
      headers: { Authorization: "Bearer wrong-token-0123456789" },
    });
    assert.equal(wrong.status, 401);

    const browser = await launchChromium(t);
    if (browser === undefined) return;
    const page = await browser.newPage();
    await page.goto(`${url}/?token=${TOKEN}`);
    // The page's scripts and API calls carry the token in the cookie the first answer set.
    await page.locator(".card.server.up").first().waitFor({ timeout: SHOWN_WITHIN_MS });
    await page.goto(`${url}/jobs`);
    // isVisible() does not wait: wait for the element to show (a timeout fails the test).
    await page.locator("#no-jobs").waitFor({ state: "visible", timeout: SHOWN_WITHIN_MS });
  },
);
