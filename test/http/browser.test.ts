// The job page and the embed script in a real browser (Debian's chromium, headless, through playwright-core),
// served by two HTTP server processes behind a round-robin proxy, with the job in a third process: the bar
// reaches 100 % and shows the final message; a click on Cancel stops the job process and the page says
// "cancelled". Screenshots go to test-artifacts/progress-*.png for people to look at.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer, request, type Server } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test, type TestContext } from "node:test";
import type { Page } from "playwright-core";
import { Client } from "../../src/client/index.js";
import { Progress } from "../../src/progress/index.js";
import { startServer } from "../../src/server/index.js";
import { WorkerProcess } from "../log/workers/control.js";
import { HTTP_SERVER_ENV, type HttpServerLine, type HttpServerSettings } from "./workers/http-server.js";
import { JOB_ENV, type JobLine, type JobSettings } from "./workers/job.js";
import { ARTIFACTS, launchChromium } from "../helpers/browser.js";
import type { Browser } from "playwright-core";

const WORKERS = fileURLToPath(new URL("./workers/", import.meta.url));
const TEST_TIMEOUT_MS = 120_000;
const POLL_MS = 200;

/** What the checks read from the page's DOM (the project compiles without the DOM's types). */
interface DomElement {
  getBoundingClientRect(): { width: number };
  querySelector(selector: string): DomElement | null;
  textContent: string | null;
}

/** A proxy that sends each request to the next upstream in turn, streaming answers (event streams too). */
async function startProxy(upstreams: number[]): Promise<{ port: number; served: number[]; server: Server }> {
  const served = upstreams.map(() => 0);
  let next = 0;
  const server = createServer((req, res) => {
    const index = next++ % upstreams.length;
    served[index]!++;
    const upstream = request(
      { host: "127.0.0.1", port: upstreams[index], method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.once("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    res.once("close", () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return { port: typeof address === "object" && address !== null ? address.port : 0, served, server };
}

/** A page on another origin (a web app) that shows the job's bar through /embed.js. */
async function startApp(apiBase: string, id: string): Promise<{ port: number; server: Server }> {
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>An app</title>
<style>body{font-family:serif;padding:2em;background:#fffbeb}</style></head>
<body><h1>Your export</h1><div id="bar" data-memipc-job="${id}"></div>
<script src="${apiBase}/embed.js"></script></body></html>`;
  const server = createServer((_req, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return { port: typeof address === "object" && address !== null ? address.port : 0, server };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

interface Farm {
  memcachedPort: number;
  namespace: string;
  proxy: string;
  served: number[];
}

/** Embedded memcached, two HTTP server processes and the proxy in front of them; all stopped after the test. */
async function startFarm(t: TestContext): Promise<Farm> {
  const memcached = await startServer({ port: 0 });
  t.after(() => memcached.close());
  const namespace = "b" + randomBytes(4).toString("hex");
  const settings: HttpServerSettings = { port: memcached.port, namespace, pollInterval: POLL_MS };
  const nodes = [1, 2].map(
    (n) =>
      new WorkerProcess<HttpServerLine>(`http ${n}`, join(WORKERS, "http-server.js"), {
        [HTTP_SERVER_ENV]: JSON.stringify(settings),
      }),
  );
  t.after(() => Promise.all(nodes.map((node) => node.stop())));
  const lines = await Promise.all(
    nodes.map((node) => node.waitFor((l) => l.event === "listening", 10_000, "listening")),
  );
  const proxy = await startProxy(lines.map((l) => l.port));
  t.after(() => closeServer(proxy.server));
  return {
    memcachedPort: memcached.port,
    namespace,
    proxy: `http://127.0.0.1:${proxy.port}`,
    served: proxy.served,
  };
}

function startJob(
  t: TestContext,
  farm: Farm,
  settings: Omit<JobSettings, "port" | "namespace">,
): WorkerProcess<JobLine> {
  const job = new WorkerProcess<JobLine>(`job ${settings.id}`, join(WORKERS, "job.js"), {
    [JOB_ENV]: JSON.stringify({ ...settings, port: farm.memcachedPort, namespace: farm.namespace }),
  });
  t.after(() => job.stop());
  return job;
}

/** Opens `url` and records what goes wrong on the page: script errors, console errors, requests elsewhere. */
async function open(
  browser: Browser,
  url: string,
  allowed: string[],
): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width: 760, height: 300 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("request", (r) => {
    if (!allowed.some((origin) => r.url().startsWith(origin))) problems.push(`request to ${r.url()}`);
  });
  await page.goto(url);
  return { page, problems };
}

/** The percent text, message and state the widget shows. */
function shown(page: Page, root: string): Promise<{ percent: string; message: string; state: string }> {
  return page.locator(root).evaluate((element: DomElement) => {
    const text = (name: string): string => element.querySelector(`.memipc-${name}`)?.textContent ?? "";
    return { percent: text("percent"), message: text("message"), state: text("state") };
  });
}

/** Waits until the fill covers the track (its width eases in over 0.3 s); fails after 5 s. */
async function barFull(page: Page, root: string): Promise<void> {
  await page.waitForFunction(
    (selector: string) => {
      const doc = (globalThis as unknown as { document: DomElement }).document;
      const element = doc.querySelector(selector)!;
      const fill = element.querySelector(".memipc-fill")!.getBoundingClientRect().width;
      return fill / element.querySelector(".memipc-track")!.getBoundingClientRect().width > 0.99;
    },
    root,
    { timeout: 5000 },
  );
}

test(
  "http in a browser: through a round-robin proxy the bar reaches 100 % with the final message",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const browser = await launchChromium(t);
    if (!browser) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    const farm = await startFarm(t);
    const id = "export-" + randomBytes(3).toString("hex");
    // The job waits at this gate until both pages are open, so a slow browser start cannot miss its run.
    const gate = join(mkdtempSync(join(tmpdir(), "memipc-http-gate-")), "open");
    t.after(() => rmSync(dirname(gate), { recursive: true, force: true }));
    const job = startJob(t, farm, {
      id,
      label: "Nightly export <orders>",
      steps: 40,
      stepMs: 100,
      finalMessage: "Exported 40 files to /srv/exports",
      gate,
    });
    await job.waitFor((l) => l.event === "started", 10_000, "the job start");
    const app = await startApp(farm.proxy, id);
    t.after(() => closeServer(app.server));
    const appUrl = `http://127.0.0.1:${app.port}`;

    const { page, problems } = await open(browser, `${farm.proxy}/jobs/${id}`, [farm.proxy]);
    const embedded = await open(browser, appUrl, [farm.proxy, appUrl]);
    await page.waitForSelector('#job[data-state="running"]', { timeout: 10_000 });
    await embedded.page.waitForSelector('#bar[data-state="running"]', { timeout: 10_000 });
    assert.equal((await shown(page, "#job")).percent, "0%");
    writeFileSync(gate, "");
    await page.waitForFunction(
      () => {
        const doc = (globalThis as unknown as { document: DomElement }).document;
        const pct = parseInt(doc.querySelector(".memipc-percent")?.textContent ?? "", 10);
        return pct >= 10 && pct <= 90;
      },
      undefined,
      { timeout: 20_000 },
    );
    await page.screenshot({ path: join(ARTIFACTS, "progress-running.png") });
    const midway = await shown(page, "#job");
    assert.match(midway.message, /^step \d+ of 40$/);
    assert.equal(midway.state, "running");

    await page.waitForSelector('#job[data-state="done"]', { timeout: 20_000 });
    await job.exited;
    const done = await shown(page, "#job");
    assert.equal(done.percent, "100%");
    assert.equal(done.message, "Exported 40 files to /srv/exports");
    assert.equal(done.state, "done");
    await barFull(page, "#job");
    assert.equal(
      await page.locator(".memipc-label").textContent(),
      "Nightly export <orders>",
      "shown as text",
    );
    assert.ok(!(await page.locator(".memipc-cancel").isVisible()), "no Cancel on a finished job");
    await page.screenshot({ path: join(ARTIFACTS, "progress-done.png") });

    await embedded.page.waitForSelector('#bar[data-state="done"]', { timeout: 20_000 });
    assert.deepEqual(await shown(embedded.page, "#bar"), {
      percent: "100%",
      message: "Exported 40 files to /srv/exports",
      state: "done",
    });
    await barFull(embedded.page, "#bar");
    await embedded.page.screenshot({ path: join(ARTIFACTS, "progress-embed.png") });

    assert.deepEqual(problems, []);
    assert.deepEqual(embedded.problems, []);
    assert.ok(
      farm.served.every((n) => n > 0),
      `both HTTP processes served requests: ${farm.served.join(", ")}`,
    );
  },
);

test(
  "http in a browser: Cancel stops the job process and the page shows cancelled",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const browser = await launchChromium(t);
    if (!browser) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    const farm = await startFarm(t);
    const id = "import-" + randomBytes(3).toString("hex");
    const job = startJob(t, farm, {
      id,
      label: "Import customers",
      steps: 600,
      stepMs: 100,
      finalMessage: "not reached",
    });
    await job.waitFor((l) => l.event === "step" && l.step >= 3, 10_000, "three steps");
    const { page, problems } = await open(browser, `${farm.proxy}/jobs/${id}`, [farm.proxy]);
    await page.waitForFunction(
      () => {
        const doc = (globalThis as unknown as { document: DomElement }).document;
        return /^step \d+ of 600$/.test(doc.querySelector(".memipc-message")?.textContent ?? "");
      },
      undefined,
      { timeout: 10_000 },
    );
    await page.locator(".memipc-cancel").click();
    await page.waitForSelector('#job[data-state="cancelled"]', { timeout: 15_000 });
    const end = await job.waitFor((l) => l.event === "cancelled", 10_000, "the job's cancelled line");
    await job.exited;
    assert.equal(job.status, "exit 0");
    const after = await shown(page, "#job");
    assert.equal(after.state, "cancelled");
    assert.equal(after.message, `cancelled at step ${end.step} of 600`);
    assert.ok(!(await page.locator(".memipc-cancel").isVisible()), "no Cancel once cancelled");
    await page.screenshot({ path: join(ARTIFACTS, "progress-cancelled.png") });
    assert.deepEqual(problems, []);
  },
);

test(
  "http in a browser: a job of unknown size shows a moving bar, then its failure; a silent job shows stalled",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const browser = await launchChromium(t);
    if (!browser) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    const farm = await startFarm(t);
    const client = new Client({ servers: `127.0.0.1:${farm.memcachedPort}` });
    t.after(() => client.close());
    const progress = new Progress(client, { namespace: farm.namespace, throttle: 0 });
    const failing = await progress.start("Rebuild search index", {
      id: "rebuild-" + randomBytes(3).toString("hex"),
    });
    failing.update({ done: 1200, message: "indexing <products>" });

    const { page, problems } = await open(browser, `${farm.proxy}/jobs/${failing.id}`, [farm.proxy]);
    await page.waitForFunction(
      () => {
        const doc = (globalThis as unknown as { document: DomElement }).document;
        return doc.querySelector(".memipc-message")?.textContent === "indexing <products>";
      },
      undefined,
      { timeout: 10_000 },
    );
    assert.equal(
      await page.locator(".memipc-track.memipc-indeterminate").count(),
      1,
      "no total: a moving bar",
    );
    assert.equal(await page.locator(".memipc-percent").textContent(), "", "no percent without a total");
    assert.equal(await page.locator(".memipc-count").textContent(), "1,200");
    await failing.fail(new Error("disk full <sda1>"));
    await page.waitForSelector('#job[data-state="failed"]', { timeout: 10_000 });
    assert.equal(await page.locator(".memipc-state").textContent(), "failed: disk full <sda1>");
    assert.equal(await page.locator(".memipc-track.memipc-indeterminate").count(), 0, "the bar stops moving");
    await barFull(page, "#job");
    await page.screenshot({ path: join(ARTIFACTS, "progress-failed.png") });

    // A writer whose clock is 10 s behind: its heartbeats look 10 s old at once, as a dead job's would.
    const silent = new Progress(client, {
      namespace: farm.namespace,
      heartbeat: 500,
      stallAfter: 2000,
      clock: () => Date.now() - 10_000,
    });
    const stalled = await silent.start("Send newsletters", {
      id: "mail-" + randomBytes(3).toString("hex"),
      total: 50,
    });
    stalled.update({ done: 20, message: "batch 2 of 5" });
    const other = await open(browser, `${farm.proxy}/jobs/${stalled.id}`, [farm.proxy]);
    await other.page.waitForSelector('#job[data-state="stalled"]', { timeout: 10_000 });
    assert.equal(await other.page.locator(".memipc-state").textContent(), "stalled");
    assert.ok(
      await other.page.locator(".memipc-cancel").isVisible(),
      "a stalled job may still be asked to stop",
    );
    await other.page.screenshot({ path: join(ARTIFACTS, "progress-stalled.png") });
    await stalled.cancel();
    assert.deepEqual(problems, []);
    assert.deepEqual(other.problems, []);
  },
);
