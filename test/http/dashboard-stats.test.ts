// The dashboard's stats and reports parts against real components: counts made by a StatsWriter on the embedded
// server, stored by the Collector into a real SQLite file, read back through the HTTP API (names, series at
// full resolution and summed into coarser steps, timer percentiles), the daily reports written by
// writeReportFiles listed and downloaded, and every way out of the reports folder refused.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { dashboardRoutes, type DashboardSource } from "../../src/http/dashboard/index.js";
import { startHttpServer, type HttpServer } from "../../src/http/index.js";
import { Progress } from "../../src/progress/index.js";
import { startServer, type MemcachedServer } from "../../src/server/index.js";
import { writeReportFiles } from "../../src/sinks/report-files.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { MAX_POINTS } from "../../src/sinks/stats-queries.js";
import { Collector } from "../../src/stats/collector.js";
import { StatsWriter } from "../../src/stats/writer.js";
import { fetchJson, fetchText } from "./http-client.js";

const TEST_TIMEOUT_MS = 60_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const T0 = Date.UTC(2026, 0, 10, 0, 0, 0); // a bucket boundary; the counts run for 3 hours from it
const DAY = "2026-01-10";
const SPAN_MINUTES = 180;
/** The collector runs once every bucket of the 3 hours is closed (grace 0). */
const COLLECTED_AT = T0 + SPAN_MINUTES * MINUTE + MINUTE;
/** A legacy plain counter key with characters that mean something in HTML and JSON. */
const LEGACY_KEY = `legacy<b>&"x'${randomBytes(3).toString("hex")}`;
const LEGACY_VALUE = 5;
const TIMER_SAMPLES: Record<number, number[]> = { 10: [2, 3, 3, 40, 41, 900], 11: [5, 5, 5, 5] };

/** accounts.created: counted in every third minute, 1 to 7 at a time. */
const ACCOUNTS = new Map<number, number>();
for (let minute = 0; minute < SPAN_MINUTES; minute += 3) ACCOUNTS.set(minute, (minute % 7) + 1);
const ACCOUNTS_TOTAL = [...ACCOUNTS.values()].reduce((a, b) => a + b, 0);

interface Series {
  name: string;
  kind: string;
  step: number;
  bucketSeconds: number;
  times: number[];
  values: Array<number | null>;
  total?: number;
  min?: Array<number | null>;
  max?: Array<number | null>;
  p50?: Array<number | null>;
}

interface TimerSummary {
  name: string;
  count: number;
  meanMs: number | null;
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

interface ReportList {
  reports: Array<{
    day: string;
    files: Array<{ file: string; format: string; bytes: number; modified: number }>;
  }>;
}

function expectedCount(minute: number): number {
  return ACCOUNTS.get(minute) ?? 0;
}

describe("dashboard stats and reports", { timeout: TEST_TIMEOUT_MS }, () => {
  let dir: string;
  let reportsDir: string;
  let server: MemcachedServer;
  let client: Client;
  let db: StatsDb;
  let http: HttpServer;
  let base: string;
  let off: HttpServer;
  let reportFiles: string[];

  function source(stats: StatsDb | undefined, ns: string): DashboardSource {
    return {
      client,
      namespace: ns,
      streams: [],
      drainers: [],
      collector: undefined,
      progress: new Progress(client, { namespace: ns }),
      db: stats,
      logsDir: join(dir, "logs"),
      reportsDir,
    };
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "memipc-dashboard-stats-"));
    reportsDir = join(dir, "reports");
    server = await startServer({ port: 0 });
    client = new Client({ servers: `127.0.0.1:${server.port}` });
    const ns = "ds" + randomBytes(4).toString("hex");
    let now = T0;
    const clock = () => now;
    const writer = new StatsWriter(client, { namespace: ns, clock });
    for (let minute = 0; minute < SPAN_MINUTES; minute++) {
      now = T0 + minute * MINUTE + 1_000;
      const work: Array<Promise<unknown>> = [];
      if (ACCOUNTS.has(minute)) work.push(writer.incr("accounts.created", ACCOUNTS.get(minute)!));
      if (minute % 60 === 30) work.push(writer.incr("posts", 2));
      for (const ms of TIMER_SAMPLES[minute] ?? []) work.push(writer.timing("report.ms", ms));
      await Promise.all(work);
      if (minute === 0) await writer.gauge("queue.length", 4);
      if (minute <= 2) await writer.gauge("queue.length", [5, 9, 3][minute]!);
    }
    await client.set(LEGACY_KEY, String(LEGACY_VALUE));

    db = StatsDb.open(join(dir, "stats.db"));
    now = COLLECTED_AT;
    const collector = new Collector(client, db, {
      namespace: ns,
      clock,
      grace: 0,
      lookback: 4 * 3600,
      lease: false,
      legacy: [LEGACY_KEY],
    });
    for (let pass = 0; pass < 5 && (await collector.collectOnce()).buckets > 0; pass++);
    reportFiles = await writeReportFiles(db, DAY, reportsDir, {
      timeZone: "UTC",
      now: () => T0 + 24 * HOUR + 5 * MINUTE,
    });

    http = await startHttpServer({ client, namespace: ns, port: 0, routes: dashboardRoutes(source(db, ns)) });
    base = http.url;
    off = await startHttpServer({
      client,
      namespace: ns,
      port: 0,
      routes: dashboardRoutes(source(undefined, ns)),
    });
  });

  after(async () => {
    await http?.close();
    await off?.close();
    db?.close();
    client?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function series(query: string): Promise<Series> {
    const { status, json } = await fetchJson<Series & { error?: string }>(
      `${base}/api/stats/series?${query}`,
    );
    assert.equal(status, 200, json.error);
    return json;
  }

  it("stats api: names lists every counter, gauge, timer and legacy counter with its newest time", async () => {
    const { status, json } = await fetchJson<Record<string, Array<{ name: string; last: number }>>>(
      `${base}/api/stats/names`,
    );
    assert.equal(status, 200);
    const lastAccounts = Math.max(...ACCOUNTS.keys());
    assert.deepEqual(json.counters, [
      { name: "accounts.created", last: T0 + lastAccounts * MINUTE },
      { name: "posts", last: T0 + 150 * MINUTE },
    ]);
    assert.deepEqual(json.gauges, [{ name: "queue.length", last: T0 + 2 * MINUTE }]);
    assert.deepEqual(json.timers, [{ name: "report.ms", last: T0 + 11 * MINUTE }]);
    assert.deepEqual(json.legacy, [{ name: LEGACY_KEY, last: COLLECTED_AT }]);
  });

  it("stats api: a counter's series over 3 hours has one point per bucket, each what was counted", async () => {
    const s = await series(`name=accounts.created&kind=counter&from=${T0}&to=${T0 + SPAN_MINUTES * MINUTE}`);
    assert.equal(s.step, 60);
    assert.equal(s.bucketSeconds, 60);
    assert.equal(s.times.length, SPAN_MINUTES);
    assert.deepEqual(
      s.times,
      Array.from({ length: SPAN_MINUTES }, (_, i) => T0 / 1000 + i * 60),
    );
    assert.deepEqual(
      s.values,
      Array.from({ length: SPAN_MINUTES }, (_, minute) => expectedCount(minute)),
    );
    assert.equal(s.total, ACCOUNTS_TOTAL);
  });

  it("stats api: steps outside the collected history are null, not 0", async () => {
    const s = await series(`name=posts&from=${T0 - HOUR}&to=${T0 + 5 * HOUR}`);
    assert.equal(s.values[0], null, "before the first bucket collected");
    assert.equal(s.values.at(-1), null, "after the newest bucket collected");
    assert.equal(s.values[60], 0, "a collected minute without counts");
    assert.equal(s.total, 6);
  });

  it("stats api: a 7-day range is summed into coarser steps that keep the total", async () => {
    const to = T0 + SPAN_MINUTES * MINUTE;
    const s = await series(`name=accounts.created&range=7d&to=${to}`);
    assert.ok(s.times.length <= MAX_POINTS, `${s.times.length} points`);
    assert.ok(s.step > 60 && s.step % 60 === 0, `step ${s.step}`);
    assert.equal(s.total, ACCOUNTS_TOTAL);
    assert.equal(
      s.values.reduce<number>((a, v) => a + (v ?? 0), 0),
      ACCOUNTS_TOTAL,
    );
    for (const [i, t] of s.times.entries()) {
      let expected = 0;
      for (const [minute, n] of ACCOUNTS) {
        const at = T0 / 1000 + minute * 60;
        if (at >= t && at < t + s.step) expected += n;
      }
      if (expected > 0) assert.equal(s.values[i], expected, `step at ${t}`);
    }

    const hourly = await series(`name=accounts.created&from=${T0}&to=${to}&step=3600`);
    assert.equal(hourly.times.length, 3);
    assert.deepEqual(
      hourly.values,
      [0, 1, 2].map((h) =>
        [...ACCOUNTS].filter(([m]) => Math.floor(m / 60) === h).reduce((a, [, n]) => a + n, 0),
      ),
    );
  });

  it("stats api: a gauge keeps the last value of each step, with the step's min and max", async () => {
    const fine = await series(`name=queue.length&kind=gauge&from=${T0}&to=${T0 + 5 * MINUTE}`);
    assert.deepEqual(fine.values, [5, 9, 3, null, null]);
    const hourly = await series(`name=queue.length&kind=gauge&from=${T0}&to=${T0 + HOUR}&step=3600`);
    assert.deepEqual([hourly.values, hourly.min, hourly.max], [[3], [3], [9]]);
  });

  it("stats api: timers give count, mean and sane percentiles over the range", async () => {
    const samples = Object.values(TIMER_SAMPLES).flat();
    const range = `from=${T0}&to=${T0 + SPAN_MINUTES * MINUTE}`;
    const { status, json } = await fetchJson<{ timers: TimerSummary[] }>(`${base}/api/stats/timers?${range}`);
    assert.equal(status, 200);
    assert.equal(json.timers.length, 1);
    const t = json.timers[0]!;
    assert.equal(t.name, "report.ms");
    assert.equal(t.count, samples.length);
    assert.ok(Math.abs(t.meanMs! - samples.reduce((a, b) => a + b, 0) / samples.length) < 1e-9);
    assert.equal(t.maxMs, 900);
    assert.ok(t.p50Ms! <= t.p90Ms! && t.p90Ms! <= t.p99Ms! && t.p99Ms! <= t.maxMs!, JSON.stringify(t));
    // Sorted: 2 3 3 5 5 5 5 40 41 900; histogram buckets are about 19 % wide.
    assert.ok(t.p50Ms! >= 4 && t.p50Ms! <= 6, `p50 ${t.p50Ms}`);
    assert.ok(t.p90Ms! >= 34 && t.p90Ms! <= 49, `p90 ${t.p90Ms}`);
    assert.ok(t.p99Ms! > 700 && t.p99Ms! <= 900, `p99 ${t.p99Ms}`);

    const one = await fetchJson<{ timers: TimerSummary[] }>(
      `${base}/api/stats/timers?${range}&name=report.ms`,
    );
    assert.deepEqual(one.json.timers, json.timers);
    const none = await fetchJson<{ timers: TimerSummary[] }>(
      `${base}/api/stats/timers?${range}&name=nothing`,
    );
    assert.deepEqual(none.json.timers, []);

    const s = await series(`name=report.ms&kind=timer&${range}`);
    assert.equal(s.total, samples.length);
    assert.equal(s.values[10], 6);
    assert.equal(s.values[11], 4);
    assert.equal(s.values[12], 0);
    assert.equal(s.p50![12], null);
    assert.ok(s.p50![11]! >= 4 && s.p50![11]! <= 6);
  });

  it("stats api: a legacy counter with any characters in its name round-trips", async () => {
    const s = await series(
      `name=${encodeURIComponent(LEGACY_KEY)}&kind=legacy&from=${T0}&to=${COLLECTED_AT + MINUTE}`,
    );
    assert.equal(s.name, LEGACY_KEY);
    assert.equal(s.total, LEGACY_VALUE);
  });

  it("stats api: bad parameters get 400 with what is allowed", async () => {
    const cases: Array<[string, RegExp]> = [
      [
        `series?name=posts&kind=histogram`,
        /kind "histogram" is not known: use counter, gauge, timer, legacy/,
      ],
      [`series?kind=counter`, /name is required/],
      [`series?name=`, /name must be 1 to 250 characters/],
      [`series?name=posts&from=yesterday`, /from "yesterday" must be a whole number of milliseconds/],
      [`series?name=posts&from=${T0 + HOUR}&to=${T0}`, /must be before to/],
      [`series?name=posts&range=2h`, /range "2h" is not known: use 1h, 6h, 24h, 7d/],
      [`series?name=posts&range=1h&from=${T0}`, /either range or from/],
      [`series?name=posts&from=0&to=${T0}`, /longer than 366 days/],
      [`series?name=posts&from=${T0}&to=${T0 + HOUR}&step=90`, /multiple of the stats bucket size \(60 s\)/],
      [`series?name=posts&range=7d&step=60`, /more than 2000 points.*at least 600 s/],
      [`timers?from=-5`, /from "-5" must be a whole number/],
    ];
    for (const [path, pattern] of cases) {
      const { status, json } = await fetchJson<{ error: string }>(`${base}/api/stats/${path}`);
      assert.equal(status, 400, path);
      assert.match(json.error, pattern, path);
    }
  });

  it("stats page: served with its scripts from this server, uPlot included, under a CSP without inline scripts", async () => {
    const page = await fetchText(`${base}/stats`);
    assert.equal(page.status, 200);
    assert.match(String(page.headers["content-security-policy"]), /script-src 'self'/);
    assert.doesNotMatch(page.body, /<script(?![^>]*\bsrc=)/);
    for (const asset of ["dashboard.js", "uPlot.iife.min.js", "stats.js", "reports.js", "uPlot.min.css"]) {
      assert.ok(page.body.includes(`/assets/${asset}`), asset);
    }
    assert.match(page.body, /id="stats"/);
    assert.match(page.body, /Daily reports/);
    const require = createRequire(import.meta.url);
    const uplot = await fetchText(`${base}/assets/uPlot.iife.min.js`);
    assert.equal(uplot.status, 200);
    assert.match(String(uplot.headers["content-type"]), /^text\/javascript/);
    assert.equal(uplot.body, readFileSync(require.resolve("uplot/dist/uPlot.iife.min.js"), "utf8"));
    for (const asset of ["stats.js", "reports.js", "uPlot.min.css"]) {
      assert.equal((await fetchText(`${base}/assets/${asset}`)).status, 200, asset);
    }
  });

  it("reports: the list gives each day's files with format and size, and each downloads as written", async () => {
    const { status, json } = await fetchJson<ReportList>(`${base}/api/reports`);
    assert.equal(status, 200);
    assert.equal(json.reports.length, 1);
    const [day] = json.reports;
    assert.equal(day!.day, DAY);
    assert.deepEqual(
      day!.files.map((f) => [f.file, f.format, f.bytes]),
      reportFiles.map((file) => [
        file.slice(reportsDir.length + 1),
        file.split(".").at(-1),
        statSync(file).size,
      ]),
    );

    const jsonFile = reportFiles.find((f) => f.endsWith(".json"))!;
    const view = await fetchText(`${base}/reports/${DAY}.json`);
    assert.equal(view.status, 200);
    assert.equal(view.headers["content-type"], "application/json; charset=utf-8");
    assert.equal(view.headers["content-disposition"], `inline; filename="${DAY}.json"`);
    assert.equal(view.body, readFileSync(jsonFile, "utf8"));
    assert.equal((JSON.parse(view.body) as { day: string }).day, DAY);

    const download = await fetchText(`${base}/reports/${DAY}.html?download=1`);
    assert.equal(download.status, 200);
    assert.equal(download.headers["content-type"], "text/html; charset=utf-8");
    assert.equal(download.headers["content-disposition"], `attachment; filename="${DAY}.html"`);
    assert.match(String(download.headers["content-security-policy"]), /sandbox/);
    assert.equal(download.body, readFileSync(join(reportsDir, `${DAY}.html`), "utf8"));

    const head = await fetchText(`${base}/reports/${DAY}.md`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers["content-length"]), statSync(join(reportsDir, `${DAY}.md`)).size);
    assert.equal(head.body, "");
  });

  it("reports: paths out of the folder, hidden files, links, folders and unknown names are refused", async () => {
    writeFileSync(join(reportsDir, ".hidden"), "hidden-bytes");
    writeFileSync(join(reportsDir, "x.db"), "x-db-bytes");
    symlinkSync(join(dir, "stats.db"), join(reportsDir, "2026-01-09.html"));
    mkdirSync(join(reportsDir, "2026-01-08.md"));
    const cases: Array<[string, number]> = [
      ["..%2fstats.db", 400],
      ["%2e%2e%2fstats.db", 400],
      ["..%5cstats.db", 400],
      ["..%2f..%2fetc%2fpasswd", 400],
      [".hidden", 400],
      ["x.db", 400],
      ["2026-01-10.exe", 400],
      ["2026-01-10.html%00.txt", 400],
      ["2026-01-09.html", 404], // a symbolic link to the database
      ["2026-01-08.md", 404], // a folder
      ["2026-01-11.html", 404], // not written
    ];
    for (const [name, expected] of cases) {
      const reply = await fetchText(`${base}/reports/${name}`);
      assert.equal(reply.status, expected, name);
      assert.doesNotMatch(reply.body, /SQLite format|hidden-bytes|x-db-bytes/, name);
      assert.ok((JSON.parse(reply.body) as { error: string }).error.length > 0, name);
    }
    const { json } = await fetchJson<ReportList>(`${base}/api/reports`);
    assert.deepEqual(
      json.reports.map((r) => r.day),
      [DAY],
    );
  });

  it("stats api: counts not collected yet are read live from memcached, so charts move within seconds", async () => {
    const ns = "dl" + randomBytes(4).toString("hex");
    const liveDb = StatsDb.open(join(dir, "live.db"));
    const collector = new Collector(client, liveDb, { namespace: ns, lease: false });
    const live = await startHttpServer({
      client,
      namespace: ns,
      port: 0,
      routes: dashboardRoutes({ ...source(liveDb, ns), collector }),
    });
    try {
      const writer = new StatsWriter(client, { namespace: ns });
      await writer.incr("live.signups", 3);
      await writer.incr("live.signups", 4);
      const names = await fetchJson<{ counters: Array<{ name: string }> }>(`${live.url}/api/stats/names`);
      assert.deepEqual(
        names.json.counters.map((n) => n.name),
        ["live.signups"],
      );
      const { json } = await fetchJson<Series & { live?: boolean }>(
        `${live.url}/api/stats/series?name=live.signups&range=1h`,
      );
      assert.equal(json.total, 7);
      assert.equal(json.live, true);
      assert.equal(
        json.values.filter((v) => v !== null).reduce((a, b) => a! + b!, 0),
        7,
      );
    } finally {
      await live.close();
      liveDb.close();
    }
  });

  it("collector off: the page says so, the stats APIs answer 404, reports are still listed", async () => {
    for (const path of ["names", `series?name=posts`, "timers"]) {
      const { status, json } = await fetchJson<{ error: string }>(`${off.url}/api/stats/${path}`);
      assert.equal(status, 404, path);
      assert.match(json.error, /--no-collect/, path);
    }
    const page = await fetchText(`${off.url}/stats`);
    assert.equal(page.status, 200);
    assert.match(page.body, /--no-collect/);
    assert.doesNotMatch(page.body, /id="stats"/);
    const reports = await fetchJson<ReportList>(`${off.url}/api/reports`);
    assert.equal(reports.status, 200);
    assert.equal(reports.json.reports[0]!.day, DAY);
  });
});
