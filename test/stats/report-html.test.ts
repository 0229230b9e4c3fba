// The HTML report in a real browser (Debian's chromium, headless, through playwright-core): every chart is
// there and visible, bar heights and lengths are proportional to the data, names are shown as text and never
// run, the page asks the network for nothing, and it has a dark look. A full-page screenshot is saved to
// test-artifacts/stats-report.png for people to look at.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import type { Browser, Page } from "playwright-core";
import { buildDayReport, type DayReport } from "../../src/sinks/report.js";
import { formatHtml } from "../../src/sinks/report-html.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { ARTIFACTS, launchChromium } from "../helpers/browser.js";

const SCREENSHOT = join(ARTIFACTS, "stats-report.png");
const TEST_TIMEOUT_MS = 120_000;

const ZONE = "Europe/Berlin";
const DAY = "2026-06-10";
const DAY_START = Date.UTC(2026, 5, 9, 22); // 00:00 CEST
const HOUR = 3_600_000;
/** A name that would run as script if it were not escaped (the database does not check names). */
const HOSTILE = `x"><script>window.ran=1</script><img src=x onerror="window.ran=2">`;

/** Counts per local hour: a daily curve, a flat line, a single spike and the hostile name. */
const COUNTERS: Record<string, number[]> = {
  "accounts.created": Array.from({ length: 24 }, (_, h) =>
    Math.round(50 + 45 * Math.sin(((h - 8) / 24) * 2 * Math.PI)),
  ),
  "emails.sent": Array.from({ length: 24 }, () => 7),
  "jobs.failed": Array.from({ length: 24 }, (_, h) => (h === 17 ? 3 : 0)),
  [HOSTILE]: Array.from({ length: 24 }, (_, h) => h),
};

function report(t: TestContext): DayReport {
  const dir = mkdtempSync(join(tmpdir(), "memipc-report-html-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = StatsDb.open(join(dir, "stats.db"));
  t.after(() => db.close());
  for (let h = 0; h < 24; h++) {
    const start = (DAY_START + h * HOUR) / 1000;
    db.storeBucket(
      {
        start,
        seconds: 60,
        counters: Object.entries(COUNTERS)
          .filter(([, hourly]) => hourly[h]! > 0)
          .map(([name, hourly]) => ({ name, value: hourly[h]! })),
        gauges: [{ name: "queue.depth", value: (h * 7) % 11 }],
        timers: [
          {
            name: "render.ms",
            count: 100,
            sumUs: 100 * 9000,
            maxUs: 250_000,
            histogram: new Map([
              [10, 50],
              [14, 40],
              [30, 10],
            ]),
          },
        ],
      },
      DAY_START,
      undefined,
    );
    // Yesterday, for the comparisons.
    db.storeBucket(
      {
        start: start - 86_400,
        seconds: 60,
        counters: [{ name: "accounts.created", value: 40 }],
        gauges: [],
        timers: [],
      },
      DAY_START,
      undefined,
    );
  }
  db.settleLegacy(db.beginLegacy("new_account", DAY_START + 9 * HOUR, 12, 1n), "done");
  return buildDayReport(db, DAY, { timeZone: ZONE, now: () => DAY_START + 24 * HOUR + 5 * 60_000 });
}

/** A page that fails the test on any request it makes, with the report loaded. */
async function open(
  browser: Browser,
  html: string,
  colorScheme: "light" | "dark",
): Promise<{ page: Page; requests: string[] }> {
  const context = await browser.newContext({ colorScheme, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const requests: string[] = [];
  await context.route("**/*", (route) => {
    requests.push(route.request().url());
    return route.abort();
  });
  page.on("request", (request) => requests.push(request.url()));
  page.on("dialog", (dialog) => void dialog.dismiss());
  await page.setContent(html, { waitUntil: "load" });
  return { page, requests };
}

interface Bar {
  value: number;
  width: number;
  height: number;
}

/** What the checks use of a DOM element (the project compiles without the DOM's types). */
interface DomElement {
  getAttribute(name: string): string | null;
  getBoundingClientRect(): { width: number; height: number };
  ownerDocument: {
    querySelector(selector: string): DomElement | null;
    defaultView: {
      getComputedStyle(element: DomElement): { backgroundColor: string; color: string; fill: string };
    };
  };
}

/** A CSS attribute selector for a chart: the key in a quoted string. */
function chart(key: string): string {
  return `svg[data-chart="${key.replace(/["\\]/g, "\\$&")}"]`;
}

/** The bars of a chart, in order, with their rendered sizes in CSS pixels. */
function bars(page: Page, key: string): Promise<Bar[]> {
  return page.locator(`${chart(key)} rect.bar`).evaluateAll((found: DomElement[]) =>
    found.map((rect) => {
      const box = rect.getBoundingClientRect();
      return { value: Number(rect.getAttribute("data-value")), width: box.width, height: box.height };
    }),
  );
}

/** Sizes proportional to the values: one scale for every bar, the largest value at the largest size. */
function assertProportional(found: readonly Bar[], size: "height" | "width", what: string): void {
  const top = found.reduce((a, b) => (b.value > a.value ? b : a));
  assert.ok(top[size] > 10, `${what}: the largest bar is drawn (${top[size]} px)`);
  for (const bar of found) {
    const expected = (bar.value / top.value) * top[size];
    assert.ok(
      Math.abs(bar[size] - expected) <= 0.5,
      `${what}: value ${bar.value} is ${bar[size]} px, expected ${expected}`,
    );
  }
}

test(
  "report html: charts are visible, bars proportional to the data, names escaped, nothing fetched",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const browser = await launchChromium(t);
    if (!browser) return;
    const r = report(t);
    const html = formatHtml(r);
    const { page, requests } = await open(browser, html, "light");

    for (const c of r.counters) {
      const key = `${c.legacy ? "legacy" : "counter"}:${c.name}`;
      const svg = page.locator(chart(key));
      assert.equal(await svg.count(), 1, key);
      assert.ok(await svg.isVisible(), `${key} is visible`);
      const box = (await svg.boundingBox())!;
      assert.ok(box.width > 200 && box.height > 50, `${key}: ${box.width}×${box.height}`);
      const found = await bars(page, key);
      assert.deepEqual(
        found.map((b) => b.value),
        c.hourly,
        `${key}: one bar per hour, in order`,
      );
      assertProportional(found, "height", key);
      for (const bar of found) assert.ok(bar.width > 5, `${key}: bars have a width`);
    }
    assert.deepEqual(
      (await bars(page, "counter:accounts.created")).map((b) => b.value),
      COUNTERS["accounts.created"],
    );

    const timer = r.timers[0]!;
    for (const key of [`timer:${timer.name}`, `timer-count:${timer.name}`]) {
      assert.ok(await page.locator(chart(key)).isVisible(), key);
    }
    const percentiles = await bars(page, `timer:${timer.name}`);
    assert.deepEqual(
      percentiles.map((b) => b.value),
      [timer.p50Ms, timer.p90Ms, timer.p99Ms, timer.maxMs],
    );
    assertProportional(percentiles, "width", "timer percentiles");

    // The hostile name is text on the page and ran nothing.
    assert.equal(await page.evaluate("window.ran"), undefined);
    assert.equal(await page.locator("script, img").count(), 0);
    assert.ok((await page.locator("body").innerText()).includes(HOSTILE));
    assert.ok((await bars(page, `counter:${HOSTILE}`)).length === 24);

    assert.match(await page.title(), /2026-06-10/);
    assert.ok(await page.locator("table").first().isVisible());
    assert.deepEqual(requests, [], "the report fetches nothing");

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(existsSync(SCREENSHOT));
  },
);

test(
  "report html: the page follows the reader's dark colour scheme",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const browser = await launchChromium(t);
    if (!browser) return;
    const html = formatHtml(report(t));
    const colours = async (scheme: "light" | "dark") => {
      const { page, requests } = await open(browser, html, scheme);
      const found = await page.locator("body").evaluate((body: DomElement) => {
        const style = (element: DomElement) => body.ownerDocument.defaultView.getComputedStyle(element);
        return {
          background: style(body).backgroundColor,
          text: style(body).color,
          bar: style(body.ownerDocument.querySelector("rect.bar")!).fill,
        };
      });
      assert.deepEqual(requests, []);
      await page.context().close();
      return found;
    };
    const light = await colours("light");
    const dark = await colours("dark");
    assert.equal(light.background, "rgb(255, 255, 255)");
    assert.notEqual(dark.background, light.background);
    assert.notEqual(dark.text, light.text);
    assert.notEqual(dark.bar, light.bar);
    // Dark means dark: the background's channels are low.
    const channels = dark.background.match(/\d+/g)!.slice(0, 3).map(Number);
    assert.ok(Math.max(...channels) < 60, dark.background);
  },
);
