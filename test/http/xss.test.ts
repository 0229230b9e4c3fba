// Markup written into memipc by anyone who can reach memcached shows as text everywhere it is displayed: a
// legacy counter named like an HTML tag on the stats page and in the daily report (served, and the file on
// disk opened straight from the folder), a job's label and message on the jobs list and on the job's page.
// One headless chromium checks each page: the text is there literally, no element was made from it, and
// nothing in it ran.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, test } from "node:test";
import type { Page } from "playwright-core";
import { Client } from "../../src/client/index.js";
import { dashboardRoutes } from "../../src/http/dashboard/index.js";
import { startHttpServer, type HttpServer } from "../../src/http/index.js";
import { Progress } from "../../src/progress/index.js";
import { startServer, type MemcachedServer } from "../../src/server/index.js";
import { writeReportFiles } from "../../src/sinks/report-files.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { Collector } from "../../src/stats/collector.js";
import { dashboardSource } from "../helpers/dashboard-source.js";
import { launchChromium } from "../helpers/browser.js";
import { waitFor } from "../helpers/wait.js";

const SHOWN_WITHIN_MS = 15_000;
const T0 = Date.UTC(2026, 0, 10, 12, 0, 0); // when the legacy counter is collected
const DAY = "2026-01-10";
const HOUR = 3_600_000;
/** A memcached key (no spaces) that makes two elements with handlers if it reaches a page as markup. */
const KEY_MARKUP = `<img/src/onerror=window.__memipcXss=1><svg/onload=window.__memipcXss=2>${randomBytes(3).toString("hex")}`;
const LABEL_MARKUP = `export <img src=x onerror="window.__memipcXss=3"> & <b>bold</b>`;
const MESSAGE_MARKUP = `step </div><script>window.__memipcXss=4</script><iframe src="javascript:window.__memipcXss=5">`;

let dir: string;
let memcached: MemcachedServer;
let client: Client;
let db: StatsDb;
let http: HttpServer;
let reportsDir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "memipc-xss-"));
  reportsDir = join(dir, "reports");
  memcached = await startServer({ port: 0 });
  client = new Client({ servers: `127.0.0.1:${memcached.port}` });
  const namespace = "xs" + randomBytes(4).toString("hex");
  await client.set(KEY_MARKUP, "7");
  db = StatsDb.open(join(dir, "stats.db"));
  const collector = new Collector(client, db, {
    namespace,
    lease: false,
    legacy: [KEY_MARKUP],
    lookback: 0,
    clock: () => T0,
  });
  await collector.collectOnce();
  await writeReportFiles(db, DAY, reportsDir, { timeZone: "UTC", now: () => T0 + 24 * HOUR });
  const progress = new Progress(client, { namespace, throttle: 0 });
  const job = await progress.start(LABEL_MARKUP, { id: "xss-job", total: 10 });
  job.update({ done: 4, message: MESSAGE_MARKUP });
  await waitFor(
    async () => (await progress.get("xss-job"))?.message === MESSAGE_MARKUP,
    "the message stored",
  );
  http = await startHttpServer({
    client,
    namespace,
    port: 0,
    routes: dashboardRoutes(dashboardSource(client, namespace, dir, { collector, progress, db, reportsDir })),
  });
});

after(async () => {
  await http?.close();
  db?.close();
  client?.close();
  await memcached?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** What the checks read from the page (the project compiles without the DOM's types). */
interface Doc {
  querySelectorAll(selector: string): { length: number };
  body: { textContent: string | null };
}
declare const document: Doc;

/** Fails if markup made an element with a handler, a script, a frame or a bold, or if anything in it ran. */
async function assertInert(page: Page, where: string): Promise<void> {
  const made = await page.evaluate(
    () =>
      document.querySelectorAll(
        "[onerror], [onload], iframe, main script, .memipc-job script, b, td img, h3 svg",
      ).length,
  );
  assert.equal(made, 0, `${where}: no element was made from the markup`);
  assert.equal(await page.evaluate("typeof window.__memipcXss"), "undefined", `${where}: nothing ran`);
}

async function bodyText(page: Page): Promise<string> {
  return page.evaluate(() => document.body.textContent ?? "");
}

test(
  "dashboard xss: markup in counter names, job labels and messages and the daily report shows as text",
  { timeout: 90_000 },
  async (t) => {
    const browser = await launchChromium(t);
    if (browser === undefined) return;
    const page = await browser.newPage();
    const dialogs: string[] = [];
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });

    // The stats page: the legacy counter's chart, titled with its name.
    await page.goto(`${http.url}/stats?from=${T0 - HOUR}&to=${T0 + HOUR}`);
    const chart = page.locator('.chart[data-kind="legacy"] h3');
    await chart.first().waitFor({ timeout: SHOWN_WITHIN_MS });
    assert.equal(await chart.first().textContent(), KEY_MARKUP);
    await assertInert(page, "stats page");

    // The jobs list and the job's own page.
    await page.goto(`${http.url}/jobs`);
    const item = page.locator('#jobs li[data-job="xss-job"]');
    await item.locator(".memipc-message", { hasText: "__memipcXss=4" }).waitFor({ timeout: SHOWN_WITHIN_MS });
    assert.equal(await item.locator(".memipc-label").textContent(), LABEL_MARKUP);
    assert.equal(await item.locator(".memipc-message").textContent(), MESSAGE_MARKUP);
    await assertInert(page, "jobs list");

    await page.goto(`${http.url}/jobs/xss-job`);
    await page.locator("#job .memipc-label").waitFor({ timeout: SHOWN_WITHIN_MS });
    assert.equal(await page.locator("#job .memipc-label").textContent(), LABEL_MARKUP);
    assert.equal(await page.locator("#job .memipc-message").textContent(), MESSAGE_MARKUP);
    await assertInert(page, "job page");

    // The daily report, served by the dashboard and opened straight from the folder (no server's headers).
    const file = join(reportsDir, `${DAY}.html`);
    assert.ok(!readFileSync(file, "utf8").includes(KEY_MARKUP), "the name is escaped in the file");
    for (const [where, url] of [
      ["served report", `${http.url}/reports/${DAY}.html`],
      ["report file", pathToFileURL(file).href],
    ] as const) {
      await page.goto(url);
      assert.ok((await bodyText(page)).includes(KEY_MARKUP), `${where}: the name shows as written`);
      await assertInert(page, where);
    }
    assert.deepEqual(dialogs, []);
  },
);
