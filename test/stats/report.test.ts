// Day reports from a real SQLite stats history: totals, changes against the day before and a week before,
// busiest hour and hourly shape per local hour (23 and 25 on the days Berlin changes its clocks), legacy
// counters by collection time, timer percentiles, gauges; the text, CSV and JSON renderings; the report files
// and the times the collector writes them at; and `memipc report` run as a user would.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { ConfigError } from "../../src/errors.js";
import { timerBucketFloor } from "../../src/stats/layout.js";
import { buildDayReport, type DayReport } from "../../src/sinks/report.js";
import { CSV_COLUMNS, formatReport } from "../../src/sinks/report-format.js";
import { nextReportTime, previousDay, renderReport, writeReportFiles } from "../../src/sinks/report-files.js";
import { StatsDb, type BucketValues } from "../../src/sinks/stats-db.js";
import { run } from "../cli/run-cli.js";

const ZONE = "Europe/Berlin";
const HOUR = 3_600_000;
const MINUTE = 60_000;

// Local midnights worked out by hand: Berlin is UTC+1 in winter (CET), UTC+2 in summer (CEST); the clocks go
// forward at 02:00 on 2026-03-29 and back at 03:00 on 2026-10-25.
const SPRING = "2026-03-29"; // 23 hours
const SPRING_START = Date.UTC(2026, 2, 28, 23); // 00:00 CET
const SPRING_END = Date.UTC(2026, 2, 29, 22); // 00:00 CEST on the 30th
const SPRING_BEFORE_START = Date.UTC(2026, 2, 27, 23); // 2026-03-28 00:00 CET
const SPRING_WEEK_START = Date.UTC(2026, 2, 21, 23); // 2026-03-22 00:00 CET
const AUTUMN = "2026-10-25"; // 25 hours
const AUTUMN_START = Date.UTC(2026, 9, 24, 22); // 00:00 CEST
const AUTUMN_BEFORE_START = Date.UTC(2026, 9, 23, 22); // 2026-10-24 00:00 CEST
/** The report is generated at 00:05 CEST the morning after SPRING. */
const NOW = SPRING_END + 5 * MINUTE;

// Every hour of these days is one hour of UTC long, so local hour i starts i hours after midnight.
const SPRING_LABELS = [0, 1, ...Array.from({ length: 21 }, (_, i) => i + 3)].map(hh);
const AUTUMN_LABELS = [0, 1, 2, 2, ...Array.from({ length: 21 }, (_, i) => i + 3)].map(hh);

function hh(hour: number): string {
  return `${String(hour).padStart(2, "0")}:00`;
}

/** A counter bucket: `value` counted in the minute `minute` of local hour `hour` of the day from `start`. */
interface Count {
  name: string;
  start: number;
  hour: number;
  minute: number;
  value: number;
}

const COUNTS: Count[] = [
  // accounts.created: 70 on SPRING, busiest at 11:00 (hour 10), against 60 the day before and 100 a week before.
  { name: "accounts.created", start: SPRING_START, hour: 0, minute: 0, value: 3 },
  { name: "accounts.created", start: SPRING_START, hour: 0, minute: 59, value: 4 },
  { name: "accounts.created", start: SPRING_START, hour: 1, minute: 30, value: 5 },
  { name: "accounts.created", start: SPRING_START, hour: 2, minute: 0, value: 7 },
  { name: "accounts.created", start: SPRING_START, hour: 10, minute: 10, value: 20 },
  { name: "accounts.created", start: SPRING_START, hour: 10, minute: 11, value: 30 },
  { name: "accounts.created", start: SPRING_START, hour: 22, minute: 59, value: 1 }, // the day's last minute
  { name: "accounts.created", start: SPRING_BEFORE_START, hour: 23, minute: 59, value: 25 }, // just before
  { name: "accounts.created", start: SPRING_BEFORE_START, hour: 9, minute: 0, value: 35 },
  { name: "accounts.created", start: SPRING_WEEK_START, hour: 12, minute: 0, value: 100 },
  { name: "accounts.created", start: SPRING_END, hour: 0, minute: 0, value: 1000 }, // the next day
  // posts: only on SPRING.
  { name: "posts", start: SPRING_START, hour: 5, minute: 0, value: 12 },
  // signups.failed: the day before only, so 0 on SPRING.
  { name: "signups.failed", start: SPRING_BEFORE_START, hour: 3, minute: 0, value: 5 },
  // zero.base: counted 0 the day before.
  { name: "zero.base", start: SPRING_BEFORE_START, hour: 3, minute: 0, value: 0 },
  { name: "zero.base", start: SPRING_START, hour: 7, minute: 0, value: 4 },
  // The autumn day: the hour 02:00 twice, the second one busier.
  { name: "accounts.created", start: AUTUMN_START, hour: 2, minute: 0, value: 8 },
  { name: "accounts.created", start: AUTUMN_START, hour: 3, minute: 0, value: 9 },
  { name: "accounts.created", start: AUTUMN_START, hour: 24, minute: 59, value: 2 },
  { name: "accounts.created", start: AUTUMN_BEFORE_START, hour: 10, minute: 0, value: 19 },
];

/** Legacy collections: `value` taken out of a plain counter at minute 0 of local hour `hour`. */
interface Collection {
  name: string;
  start: number;
  hour: number;
  value: number;
  state: "done" | "unconfirmed" | "pending";
}

const COLLECTIONS: Collection[] = [
  { name: "new_account", start: SPRING_START, hour: 5, value: 10, state: "done" },
  { name: "new_account", start: SPRING_START, hour: 5, value: 2, state: "done" },
  { name: "new_account", start: SPRING_START, hour: 20, value: 7, state: "unconfirmed" },
  { name: "new_account", start: SPRING_START, hour: 21, value: 500, state: "pending" }, // not settled: left out
  { name: "new_account", start: SPRING_BEFORE_START, hour: 8, value: 15, state: "done" },
  // A legacy counter may share a bucketed counter's name: they stay apart.
  { name: "posts", start: SPRING_START, hour: 3, value: 1, state: "done" },
];

/** Timer buckets on SPRING. Histogram bucket k ≥ 1 holds [2^((k-1)/4), 2^(k/4)) ms. */
const TIMERS: Array<{
  name: string;
  hour: number;
  histogram: Map<number, number>;
  sumUs: number;
  maxUs?: number;
}> = [
  {
    name: "render.ms",
    hour: 2,
    histogram: new Map([
      [1, 50],
      [5, 10],
    ]),
    sumUs: 72_000,
    maxUs: 2300,
  },
  {
    name: "render.ms",
    hour: 15,
    histogram: new Map([
      [5, 30],
      [9, 10],
    ]),
    sumUs: 78_000,
    maxUs: 4500,
  },
  { name: "unbounded.ms", hour: 4, histogram: new Map([[0, 4]]), sumUs: 2000 },
];

const GAUGES: Array<{ name: string; start: number; hour: number; value: number }> = [
  { name: "queue.depth", start: SPRING_START, hour: 1, value: 5 },
  { name: "queue.depth", start: SPRING_START, hour: 3, value: 17 },
  { name: "queue.depth", start: SPRING_START, hour: 20, value: 2 },
  { name: "queue.depth", start: SPRING_START, hour: 22, value: 9 },
  { name: "queue.depth", start: SPRING_BEFORE_START, hour: 22, value: 99 },
];

function at(start: number, hour: number, minute = 0): number {
  return start + hour * HOUR + minute * MINUTE;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "memipc-report-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A stats database holding the fixtures above, one stored bucket per row. */
function fixtureDb(t: TestContext, dir = tempDir(t)): StatsDb {
  const db = StatsDb.open(join(dir, "stats.db"));
  t.after(() => db.close());
  const store = (ms: number, values: Partial<BucketValues>) =>
    db.storeBucket(
      { start: ms / 1000, seconds: 60, counters: [], gauges: [], timers: [], ...values },
      NOW,
      undefined,
    );
  for (const c of COUNTS)
    store(at(c.start, c.hour, c.minute), { counters: [{ name: c.name, value: c.value }] });
  for (const g of GAUGES) store(at(g.start, g.hour), { gauges: [{ name: g.name, value: g.value }] });
  for (const timer of TIMERS) {
    const count = [...timer.histogram.values()].reduce((a, b) => a + b, 0);
    store(at(SPRING_START, timer.hour), {
      timers: [
        { name: timer.name, count, sumUs: timer.sumUs, maxUs: timer.maxUs, histogram: timer.histogram },
      ],
    });
  }
  for (const c of COLLECTIONS) {
    const id = db.beginLegacy(c.name, at(c.start, c.hour), c.value, 1n);
    if (c.state !== "pending") db.settleLegacy(id, c.state);
  }
  return db;
}

// ---- Expectations, worked out from the fixtures ----

interface Expected {
  name: string;
  legacy: boolean;
  total: number;
  hourly: number[];
  dayBefore: number | undefined;
  weekBefore: number | undefined;
}

function sumWithin(
  rows: ReadonlyArray<{ name: string; start: number; hour: number; value: number }>,
  name: string,
  start: number,
): number | undefined {
  const found = rows.filter((r) => r.name === name && r.start === start);
  return found.length === 0 ? undefined : found.reduce((sum, r) => sum + r.value, 0);
}

function expected(
  name: string,
  legacy: boolean,
  start: number,
  hours: number,
  before: number,
  week: number,
): Expected {
  const rows = legacy ? COLLECTIONS.filter((c) => c.state !== "pending") : COUNTS;
  const hourly = Array.from({ length: hours }, () => 0);
  for (const r of rows) if (r.name === name && r.start === start) hourly[r.hour]! += r.value;
  return {
    name,
    legacy,
    total: hourly.reduce((a, b) => a + b, 0),
    hourly,
    dayBefore: sumWithin(rows, name, before),
    weekBefore: sumWithin(rows, name, week),
  };
}

const SPRING_COUNTERS: Expected[] = [
  expected("accounts.created", false, SPRING_START, 23, SPRING_BEFORE_START, SPRING_WEEK_START),
  expected("new_account", true, SPRING_START, 23, SPRING_BEFORE_START, SPRING_WEEK_START),
  expected("posts", false, SPRING_START, 23, SPRING_BEFORE_START, SPRING_WEEK_START),
  expected("posts", true, SPRING_START, 23, SPRING_BEFORE_START, SPRING_WEEK_START),
  expected("signups.failed", false, SPRING_START, 23, SPRING_BEFORE_START, SPRING_WEEK_START),
  expected("zero.base", false, SPRING_START, 23, SPRING_BEFORE_START, SPRING_WEEK_START),
];

function busiest(hourly: readonly number[]): number | undefined {
  let best: number | undefined;
  hourly.forEach((n, i) => {
    if (n > 0 && (best === undefined || n > hourly[best]!)) best = i;
  });
  return best;
}

function percent(total: number, base: number | undefined): number | undefined {
  if (base === undefined || base === 0) return base === 0 && total === 0 ? 0 : undefined;
  return ((total - base) / base) * 100;
}

/** The rendering of a change the report documents: "+10 (+16.7%)", "+4 (new)", "n/a". */
function changeText(total: number, base: number | undefined): string {
  if (base === undefined) return "n/a";
  const delta = total - base;
  const p = percent(total, base);
  const pct = p === undefined ? "new" : `${p > 0 ? "+" : ""}${p.toFixed(1)}%`;
  return `${delta > 0 ? "+" : ""}${delta} (${pct})`;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

// render.ms merged: 50 samples in bucket 1, 40 in bucket 5, 10 in bucket 9; largest sample 4.5 ms.
const RENDER = {
  count: 100,
  p50: timerBucketFloor(2), // rank 50 is the last of bucket 1: its upper bound
  p90: timerBucketFloor(6), // rank 90 is the last of bucket 5
  p99: 4 + (9 / 10) * (4.5 - 4), // rank 99 is the 9th of 10 in bucket 9, capped at the largest sample
  max: 4.5,
  mean: 150_000 / 100 / 1000,
  hourly: SPRING_LABELS.map((_, i) => (i === 2 ? 60 : i === 15 ? 40 : 0)),
};
// unbounded.ms: 4 samples in [0, 1) ms and no recorded maximum.
const UNBOUNDED = { count: 4, p50: 0.5, p90: 0.9, p99: 0.99, mean: 0.5 };

function report(db: StatsDb, day = SPRING): DayReport {
  return buildDayReport(db, day, { timeZone: ZONE, now: () => NOW });
}

// ---- The report ----

test("report: counters have the day's total, changes, busiest hour and one count per local hour (23 on a spring-forward day)", (t) => {
  const r = report(fixtureDb(t));
  assert.equal(r.day, SPRING);
  assert.equal(r.timeZone, ZONE);
  assert.equal(r.start, SPRING_START);
  assert.equal(r.end, SPRING_END);
  assert.equal(r.generatedAt, NOW);
  assert.equal(r.dayBefore, "2026-03-28");
  assert.equal(r.weekBefore, "2026-03-22");
  assert.deepEqual(
    r.hours.map((h) => h.label),
    SPRING_LABELS,
  );
  assert.deepEqual(
    r.hours.map((h) => h.start),
    SPRING_LABELS.map((_, i) => at(SPRING_START, i)),
  );
  assert.deepEqual(
    r.hours.map((h) => h.offset),
    SPRING_LABELS.map((_, i) => (i < 2 ? "+01:00" : "+02:00")),
  );
  assert.deepEqual(r.totals, { counters: 4, legacy: 2, timers: 2, gauges: 1 });
  assert.deepEqual(
    r.counters.map((c) => ({
      name: c.name,
      legacy: c.legacy,
      total: c.total,
      hourly: c.hourly,
      dayBefore: c.dayBefore.base,
      weekBefore: c.weekBefore.base,
    })),
    SPRING_COUNTERS,
  );
  for (const [i, e] of SPRING_COUNTERS.entries()) {
    const c = r.counters[i]!;
    assert.equal(c.busiestHour, busiest(e.hourly), e.name);
    for (const [change, base] of [
      [c.dayBefore, e.dayBefore],
      [c.weekBefore, e.weekBefore],
    ] as const) {
      assert.equal(change.delta, base === undefined ? undefined : e.total - base, e.name);
      assert.equal(change.percent, percent(e.total, base), e.name);
    }
  }
  // Spelled out for the main counter: 70 against 60 and 100, busiest 11:00 with 50.
  const accounts = r.counters[0]!;
  assert.equal(accounts.total, 70);
  assert.equal(accounts.dayBefore.delta, 10);
  assert.equal(accounts.weekBefore.percent, -30);
  assert.equal(r.hours[accounts.busiestHour!]!.label, "11:00");
  assert.equal(r.counters[1]!.unconfirmed, 1);
  assert.equal(r.counters[5]!.dayBefore.percent, undefined, "no percentage against 0");
});

test("report: timers give count, p50, p90, p99 and max over the day; gauges last, min and max", (t) => {
  const r = report(fixtureDb(t));
  assert.deepEqual(r.timers, [
    {
      name: "render.ms",
      count: RENDER.count,
      meanMs: RENDER.mean,
      p50Ms: RENDER.p50,
      p90Ms: RENDER.p90,
      p99Ms: RENDER.p99,
      maxMs: RENDER.max,
      hourly: RENDER.hourly,
    },
    {
      name: "unbounded.ms",
      count: UNBOUNDED.count,
      meanMs: UNBOUNDED.mean,
      p50Ms: UNBOUNDED.p50,
      p90Ms: UNBOUNDED.p90,
      p99Ms: UNBOUNDED.p99,
      maxMs: undefined,
      hourly: SPRING_LABELS.map((_, i) => (i === 4 ? 4 : 0)),
    },
  ]);
  assert.deepEqual(r.gauges, [{ name: "queue.depth", last: 9, min: 2, max: 17 }]);
});

test("report: a day the clocks go back has 25 hours, 02:00 twice, each with its own counts", (t) => {
  const r = report(fixtureDb(t), AUTUMN);
  assert.deepEqual(
    r.hours.map((h) => h.label),
    AUTUMN_LABELS,
  );
  assert.equal(r.hours[2]!.offset, "+02:00");
  assert.equal(r.hours[3]!.offset, "+01:00");
  const accounts = r.counters.find((c) => c.name === "accounts.created")!;
  const e = expected("accounts.created", false, AUTUMN_START, 25, AUTUMN_BEFORE_START, 0);
  assert.deepEqual(accounts.hourly, e.hourly);
  assert.equal(accounts.total, 19);
  assert.equal(accounts.busiestHour, 3);
  assert.equal(accounts.dayBefore.delta, 0);
  assert.equal(accounts.dayBefore.percent, 0);
  assert.equal(accounts.weekBefore.base, undefined);
  const text = formatReport(r, "text");
  assert.match(text, /\(25 hours\)/);
  assert.match(text, /02:00\+01:00 \(9\)/, "the repeated hour is told apart by its offset");
});

test("report: a malformed day or an unknown time zone is refused with a ConfigError that says what to do", (t) => {
  const db = fixtureDb(t);
  for (const day of ["2026-02-30", "2026-3-29", "29.03.2026", "yesterday", "", "2026-13-01"]) {
    assert.throws(
      () => buildDayReport(db, day, { timeZone: ZONE }),
      (error: unknown) => error instanceof ConfigError && /YYYY-MM-DD/.test(error.message),
      day,
    );
  }
  assert.throws(
    () => buildDayReport(db, SPRING, { timeZone: "Mars/Olympus_Mons" }),
    (error: unknown) => error instanceof ConfigError && /IANA/.test(error.message),
  );
});

test("report: a day without data says so", (t) => {
  const r = report(fixtureDb(t), "2025-01-01");
  assert.deepEqual(r.totals, { counters: 0, legacy: 0, timers: 0, gauges: 0 });
  assert.match(formatReport(r, "text"), /No stats were collected that day\./);
});

// ---- Renderings ----

/** The cells of a text table row: columns are separated by two or more spaces. */
function cells(line: string): string[] {
  return line.trim().split(/ {2,}/);
}

function textSection(text: string, title: string): string[] {
  const lines = text.split("\n");
  const from = lines.indexOf(title);
  assert.ok(from >= 0, `section ${title} in\n${text}`);
  const end = lines.indexOf("", from);
  return lines.slice(from + 1, end < 0 ? undefined : end);
}

test("report text: a heading with the day, zone and generation time, then aligned columns with sparklines", (t) => {
  const r = report(fixtureDb(t));
  const text = formatReport(r, "text");
  const lines = text.split("\n");
  assert.equal(lines[0], `memipc stats for ${SPRING}, ${ZONE} (23 hours)`);
  assert.match(lines[1]!, /Generated 2026-03-30 00:05:00 \+02:00; compared with 2026-03-28 .* 2026-03-22/);
  assert.equal(lines[2], "4 counters, 2 legacy counters, 2 timers, 1 gauge.");

  const counters = textSection(text, "Counters");
  assert.deepEqual(cells(counters[0]!), [
    "counter",
    "total",
    "vs day before",
    "vs week before",
    "busiest hour",
    "hourly",
  ]);
  const rows = counters.slice(1, 1 + SPRING_COUNTERS.length);
  for (const [i, e] of SPRING_COUNTERS.entries()) {
    const row = cells(rows[i]!);
    const top = busiest(e.hourly);
    assert.deepEqual(row.slice(0, 5), [
      e.legacy ? `${e.name} (legacy)` : e.name,
      String(e.total),
      changeText(e.total, e.dayBefore),
      changeText(e.total, e.weekBefore),
      top === undefined ? "n/a" : `${SPRING_LABELS[top]} (${e.hourly[top]})`,
    ]);
    const spark = [...row[5]!];
    assert.equal(spark.length, 23, e.name);
    e.hourly.forEach((n, h) => {
      if (n === 0) assert.equal(spark[h], "▁", `${e.name} hour ${h}`);
      if (h === top) assert.equal(spark[h], "█", `${e.name} hour ${h}`);
    });
  }
  // Columns line up: every row of the table is as long as the header where the sparklines start.
  const sparkAt = counters[0]!.indexOf("hourly");
  for (const row of rows) assert.match(row.slice(sparkAt), /^[▁▂▃▄▅▆▇█]{23}$/u);
  assert.match(text, /not confirmed by memcached .*: new_account\./);

  const timers = textSection(text, "Timers");
  assert.deepEqual(cells(timers[1]!).slice(0, 7), [
    "render.ms",
    "100",
    RENDER.p50.toFixed(2),
    RENDER.p90.toFixed(2),
    RENDER.p99.toFixed(2),
    "4.50",
    "1.50",
  ]);
  assert.deepEqual(cells(timers[2]!).slice(0, 7), [
    "unbounded.ms",
    "4",
    "0.500",
    "0.900",
    "0.990",
    "n/a",
    "0.500",
  ]);
  assert.deepEqual(cells(textSection(text, "Gauges")[1]!), ["queue.depth", "9", "2", "17"]);
  assert.ok(!/ +\n/.test(text), "no trailing spaces");
});

/** RFC 4180 records: fields split on commas outside quotes, doubled quotes inside them. */
function parseCsv(text: string): string[][] {
  assert.ok(text.endsWith("\r\n"), "the last record ends with CRLF");
  const records: string[][] = [];
  let record: string[] = [];
  // A field: quoted (with "" for a quote inside) or bare; then a comma, or CRLF at the end of a record.
  const field = /"((?:[^"]|"")*)"|([^",\r\n]*)/y;
  for (let at = 0; at < text.length;) {
    field.lastIndex = at;
    const match = field.exec(text)!;
    record.push(match[1] === undefined ? match[2]! : match[1].replace(/""/g, '"'));
    at = field.lastIndex;
    if (text[at] === ",") {
      at += 1;
    } else {
      assert.equal(text.slice(at, at + 2), "\r\n", `a field ends with a comma or CRLF at ${at}`);
      records.push(record);
      record = [];
      at += 2;
    }
  }
  return records;
}

test("report csv: one header and one row per metric, every line ended by CRLF", (t) => {
  const r = report(fixtureDb(t));
  const text = formatReport(r, "csv");
  assert.ok(!/[^\r]\n/.test(text), "line ends are CRLF");
  const [header, ...rows] = parseCsv(text);
  assert.deepEqual(header, [...CSV_COLUMNS]);
  assert.equal(rows.length, SPRING_COUNTERS.length + 2 + 1, "counters, 2 timers, 1 gauge");
  const byKey = new Map(
    rows.map((row) => [`${row[2]}:${row[3]}`, Object.fromEntries(header!.map((h, i) => [h, row[i]]))]),
  );
  const opt = (n: number | undefined) => (n === undefined ? "" : String(round3(n)));
  for (const e of SPRING_COUNTERS) {
    const row = byKey.get(`${e.legacy ? "legacy" : "counter"}:${e.name}`);
    assert.ok(row, e.name);
    const top = busiest(e.hourly);
    assert.deepEqual(
      {
        day: row.day,
        zone: row.time_zone,
        total: row.total,
        before: [row.day_before, row.day_before_change, row.day_before_percent],
        week: [row.week_before, row.week_before_change, row.week_before_percent],
        busiest: [row.busiest_hour, row.busiest_hour_count],
        hourly: row.hourly,
        count: row.count,
      },
      {
        day: SPRING,
        zone: ZONE,
        total: String(e.total),
        before: [
          opt(e.dayBefore),
          opt(e.dayBefore === undefined ? undefined : e.total - e.dayBefore),
          opt(percent(e.total, e.dayBefore)),
        ],
        week: [
          opt(e.weekBefore),
          opt(e.weekBefore === undefined ? undefined : e.total - e.weekBefore),
          opt(percent(e.total, e.weekBefore)),
        ],
        busiest:
          top === undefined
            ? ["", ""]
            : [`2026-03-29T${SPRING_LABELS[top]}:00${top < 2 ? "+01:00" : "+02:00"}`, String(e.hourly[top])],
        hourly: e.hourly.join(" "),
        count: "",
      },
      e.name,
    );
  }
  const render = byKey.get("timer:render.ms")!;
  assert.deepEqual(
    [render.count, render.p50_ms, render.p90_ms, render.p99_ms, render.max_ms, render.mean_ms, render.total],
    ["100", opt(RENDER.p50), opt(RENDER.p90), opt(RENDER.p99), "4.5", "1.5", ""],
  );
  assert.equal(byKey.get("timer:unbounded.ms")!.max_ms, "");
  const gauge = byKey.get("gauge:queue.depth")!;
  assert.deepEqual([gauge.last, gauge.min, gauge.max, gauge.hourly], ["9", "2", "17", ""]);
});

test("report csv: a field with a comma, quote or line break is quoted, quotes doubled", (t) => {
  // Writers only make names of letters, digits, _ . -; the database takes any, so the CSV must cope.
  const db = StatsDb.open(join(tempDir(t), "odd.db"));
  t.after(() => db.close());
  const odd = 'odd,"name"\r\nnext';
  db.storeBucket(
    { start: SPRING_START / 1000, seconds: 60, counters: [{ name: odd, value: 2 }], gauges: [], timers: [] },
    NOW,
    undefined,
  );
  const text = formatReport(report(db), "csv");
  assert.ok(text.includes('"odd,""name""\r\nnext"'), text);
  const [header, row] = parseCsv(text);
  assert.equal(row![header!.indexOf("name")], odd);
  assert.equal(row![header!.indexOf("total")], "2");
});

test("report json: the documented fields, nulls for missing values, local times with offsets", (t) => {
  const r = report(fixtureDb(t));
  const text = formatReport(r, "json");
  assert.match(text, /^\{\n {2}"format": "memipc-day-report",\n/, "pretty-printed, format first");
  const json = JSON.parse(text);
  assert.equal(json.version, 1);
  assert.equal(json.day, SPRING);
  assert.equal(json.timeZone, ZONE);
  assert.equal(json.start, "2026-03-29T00:00:00+01:00");
  assert.equal(json.end, "2026-03-30T00:00:00+02:00");
  assert.equal(json.generatedAt, "2026-03-30T00:05:00+02:00");
  assert.equal(json.dayBefore, "2026-03-28");
  assert.equal(json.weekBefore, "2026-03-22");
  assert.equal(json.hours.length, 23);
  assert.deepEqual(json.hours[2], { start: "2026-03-29T03:00:00+02:00", label: "03:00", offset: "+02:00" });
  assert.deepEqual(json.totals, { counters: 4, legacy: 2, timers: 2, gauges: 1 });
  const change = (total: number, base: number | undefined) => ({
    total: base ?? null,
    change: base === undefined ? null : total - base,
    percent: percent(total, base) === undefined ? null : round3(percent(total, base)!),
  });
  assert.deepEqual(
    json.counters,
    SPRING_COUNTERS.map((e) => {
      const top = busiest(e.hourly);
      return {
        name: e.name,
        legacy: e.legacy,
        total: e.total,
        dayBefore: change(e.total, e.dayBefore),
        weekBefore: change(e.total, e.weekBefore),
        busiestHour:
          top === undefined
            ? null
            : {
                index: top,
                label: SPRING_LABELS[top],
                start: `2026-03-29T${SPRING_LABELS[top]}:00${top < 2 ? "+01:00" : "+02:00"}`,
                count: e.hourly[top],
              },
        hourly: e.hourly,
        unconfirmed: e.legacy && e.name === "new_account" ? 1 : 0,
      };
    }),
  );
  assert.deepEqual(json.timers[0], {
    name: "render.ms",
    count: 100,
    p50Ms: round3(RENDER.p50),
    p90Ms: round3(RENDER.p90),
    p99Ms: round3(RENDER.p99),
    maxMs: 4.5,
    meanMs: 1.5,
    hourly: RENDER.hourly,
  });
  assert.equal(json.timers[1].maxMs, null);
  assert.deepEqual(json.gauges, [{ name: "queue.depth", last: 9, min: 2, max: 17 }]);
});

test("report markdown: a table per kind, with escaped names", (t) => {
  const md = formatReport(report(fixtureDb(t)), "md");
  assert.match(md, /^# Stats for 2026-03-29\n/);
  assert.match(md, /^\| counter \| total \| vs 2026-03-28 \| vs 2026-03-22 \| busiest hour \| hourly \|$/m);
  assert.match(
    md,
    /^\| accounts\.created \| 70 \| \+10 \(\+16\.7%\) \| -30 \(-30\.0%\) \| 11:00 \(50\) \| /m,
  );
  assert.match(md, /^\| new\\_account _\(legacy\)_ \| 19 \| \+4 \(\+26\.7%\) \| n\/a \| 06:00 \(12\) \| /m);
  assert.match(md, /^## Timers$/m);
  assert.match(md, /^\| queue\.depth \| 9 \| 2 \| 17 \|$/m);
});

// ---- Files and schedule ----

test("report files: html, md and json by default, written whole into a new folder, and recorded in the database", async (t) => {
  const dir = tempDir(t);
  const db = fixtureDb(t, dir);
  const out = join(dir, "reports", "daily");
  const files = await writeReportFiles(db, SPRING, out, { timeZone: ZONE, now: () => NOW });
  assert.deepEqual(
    files,
    ["html", "md", "json"].map((ext) => join(out, `${SPRING}.${ext}`)),
  );
  const r = report(db);
  assert.equal(readFileSync(files[1]!, "utf8"), formatReport(r, "md"));
  assert.equal(readFileSync(files[2]!, "utf8"), formatReport(r, "json"));
  assert.equal(readFileSync(files[0]!, "utf8"), renderReport(r, "html"));
  assert.deepEqual(db.reportWritten(SPRING), { writtenAt: NOW, files });
  assert.deepEqual(
    readdirSync(out).sort(),
    [`${SPRING}.html`, `${SPRING}.json`, `${SPRING}.md`],
    "no temp files left",
  );

  const again = await writeReportFiles(db, SPRING, out, {
    formats: ["csv", "text"],
    timeZone: ZONE,
    now: () => NOW + 1,
  });
  assert.deepEqual(again, [join(out, `${SPRING}.csv`), join(out, `${SPRING}.txt`)]);
  assert.equal(readFileSync(again[1]!, "utf8"), formatReport({ ...r, generatedAt: NOW + 1 }, "text"));
  assert.deepEqual(db.reportWritten(SPRING), { writtenAt: NOW + 1, files: again });
});

test("report schedule: yesterday and the next 00:05 are local to the zone, across both clock changes", () => {
  assert.equal(previousDay(SPRING_END - 30 * MINUTE, ZONE), "2026-03-28"); // 23:30 on SPRING
  assert.equal(previousDay(SPRING_END + 30 * MINUTE, ZONE), SPRING); // 00:30 the day after
  assert.equal(previousDay(Date.UTC(2026, 2, 29, 12), "America/Los_Angeles"), "2026-03-28");
  assert.equal(nextReportTime(SPRING_END - 30 * MINUTE, undefined, ZONE), SPRING_END + 5 * MINUTE);
  assert.equal(nextReportTime(SPRING_END + 5 * MINUTE, "00:05", ZONE), SPRING_END + 24 * HOUR + 5 * MINUTE);
  // 02:30 does not exist on SPRING: the clocks jump from 02:00 to 03:00 (01:00 UTC).
  assert.equal(nextReportTime(SPRING_START + 30 * MINUTE, "02:30", ZONE), Date.UTC(2026, 2, 29, 1));
  // 02:30 happens twice on AUTUMN: the first one (CEST), and not again that day.
  const first = Date.UTC(2026, 9, 25, 0, 30);
  assert.equal(nextReportTime(AUTUMN_START, "02:30", ZONE), first);
  assert.equal(nextReportTime(first, "02:30", ZONE), Date.UTC(2026, 9, 26, 1, 30));
  assert.equal(nextReportTime(AUTUMN_START, "23:59", ZONE), AUTUMN_START + 25 * HOUR - MINUTE);
  for (const bad of ["24:00", "0:05", "00:60", "noon"]) {
    assert.throws(() => nextReportTime(NOW, bad, ZONE), ConfigError, bad);
  }
});

// ---- The command ----

test("memipc report: writes the day's report to stdout or to a file", { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  fixtureDb(t, dir).close();
  const db = join(dir, "stats.db");
  const base = ["report", "--db", db, "--tz", ZONE];

  const csv = await run(t, [...base, "--day", SPRING, "--format", "csv"]);
  assert.equal(csv.code, 0, csv.stderr);
  const rows = parseCsv(csv.stdout);
  const accounts = rows.find((row) => row[2] === "counter" && row[3] === "accounts.created")!;
  assert.equal(accounts[CSV_COLUMNS.indexOf("total")], "70");

  const text = await run(t, [...base, "--day", SPRING]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^memipc stats for 2026-03-29, Europe\/Berlin \(23 hours\)\n/, "text by default");

  const out = join(dir, "out.html");
  const html = await run(t, [...base, "--day", SPRING, "--format", "html", "--out", out]);
  assert.equal(html.code, 0, html.stderr);
  assert.equal(html.stdout, "");
  assert.match(readFileSync(out, "utf8"), /^<!doctype html>[\s\S]*data-chart="counter:accounts\.created"/);

  const before = previousDay(Date.now(), ZONE);
  const yesterday = await run(t, [...base, "--day", "yesterday", "--format", "json"], {
    MEMIPC_DB: "ignored",
  });
  assert.equal(yesterday.code, 0, yesterday.stderr);
  assert.ok([before, previousDay(Date.now(), ZONE)].includes(JSON.parse(yesterday.stdout).day));

  const fromEnv = await run(t, ["report", "--tz", ZONE, "--day", SPRING, "--format", "json"], {
    MEMIPC_DB: db,
  });
  assert.equal(fromEnv.code, 0, fromEnv.stderr);
  assert.equal(JSON.parse(fromEnv.stdout).totals.counters, 4);

  const help = await run(t, ["report", "--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: memipc report /);
  assert.match(help.stdout, /--tz ZONE/);
});

test(
  "memipc report: bad input exits with status 2 and a message that says what to do",
  { timeout: 60_000 },
  async (t) => {
    const dir = tempDir(t);
    fixtureDb(t, dir).close();
    const db = join(dir, "stats.db");
    const cases: Array<[string[], RegExp]> = [
      [["--db", db], /--day YYYY-MM-DD/],
      [["--db", db, "--day", "2026-02-30"], /--day "2026-02-30" is not a day: use YYYY-MM-DD/],
      [["--db", db, "--day", "last week"], /is not a day/],
      [
        ["--db", db, "--day", SPRING, "--format", "pdf"],
        /--format "pdf" is not known: use text, md, csv, json, html/,
      ],
      [
        ["--db", db, "--day", SPRING, "--tz", "Mars/Olympus_Mons"],
        /--tz "Mars\/Olympus_Mons" is not a time zone/,
      ],
      [
        ["--db", join(dir, "missing.db"), "--day", SPRING],
        /no stats database at .*missing\.db.*memipc collect/,
      ],
      [["--db", db, "--day", SPRING, "--colour"], /Unknown option '--colour'.*memipc report --help/],
      [["--db", db, "--day", SPRING, "extra"], /unexpected argument "extra"/],
    ];
    for (const [args, message] of cases) {
      const done = await run(t, ["report", ...args]);
      assert.equal(done.code, 2, `${args.join(" ")}: ${done.stderr}`);
      assert.match(done.stderr, message, args.join(" "));
      assert.equal(done.stdout, "", args.join(" "));
    }
    assert.ok(!existsSync(join(dir, "missing.db")), "a missing database is not created");
  },
);
