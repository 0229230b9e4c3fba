// Read queries over the stats database for charts and summaries: one name's values over a time range, summed
// into coarser steps so an answer stays small, and timers' percentiles over a range. They go through a
// connection of their own, opened read-only (WAL lets it read while the collector writes).
import Database from "better-sqlite3";
import { ConfigError, SinkError } from "../errors.js";
import { DEFAULT_BUCKET_SECONDS } from "../stats/layout.js";
import { mergeHistograms, percentile } from "../stats/percentile.js";
import { DEFAULT_BUSY_TIMEOUT, SCHEMA_VERSION, type Histogram, type StatName } from "./stats-db.js";

/** Most points a series holds: a longer range is summed into coarser steps. */
export const MAX_POINTS = 2000;
/** Steps (s) a series is summed into, finest first; a step must also be a multiple of the bucket size. */
const NICE_STEPS: readonly number[] = [
  60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800,
];
const SECOND_MS = 1000;
/** ms back from the newest legacy collection seen that later name lookups read again: a collection left
 *  pending by a crash becomes countable when the next collector settles it. */
const LEGACY_SETTLE_MS = 86_400_000;

export const SeriesKind = { counter: "counter", gauge: "gauge", timer: "timer", legacy: "legacy" } as const;
export type SeriesKind = (typeof SeriesKind)[keyof typeof SeriesKind];

/** A time range, ms since 1970: from is included, to is not. */
export interface TimeRange {
  from: number;
  to: number;
}

interface SeriesBase extends TimeRange {
  name: string;
  /** The stored buckets' size (s); the largest when the collector ran with several. */
  bucketSeconds: number;
  /** Seconds each point covers: the bucket size, or a multiple of it for a long range. */
  step: number;
  /** Start of each point's step, unix seconds (multiples of `step`). */
  times: number[];
}

/**
 * A counter's (or a legacy counter's) count per step. Steps before the first bucket the collector stored,
 * or after its newest (not collected yet), are null rather than 0, so a chart does not drop to zero at its
 * end. `total` is the sum of every step.
 */
export interface CountSeries extends SeriesBase {
  kind: typeof SeriesKind.counter | typeof SeriesKind.legacy;
  values: Array<number | null>;
  total: number;
}

/** A gauge's last value in each step, with the smallest and largest; null where it was not set. */
export interface GaugeSeries extends SeriesBase {
  kind: typeof SeriesKind.gauge;
  values: Array<number | null>;
  min: Array<number | null>;
  max: Array<number | null>;
}

/** A timer's samples per step (`values`) and their percentiles in ms (null where it has none). */
export interface TimerSeries extends SeriesBase {
  kind: typeof SeriesKind.timer;
  values: Array<number | null>;
  p50: Array<number | null>;
  p90: Array<number | null>;
  p99: Array<number | null>;
  /** Null as well when a bucket of the step has no recorded maximum. */
  max: Array<number | null>;
  total: number;
}

export type Series = CountSeries | GaugeSeries | TimerSeries;

/** A timer over a range: its samples, mean and percentiles in ms (null without samples). */
export interface TimerSummary {
  name: string;
  count: number;
  meanMs: number | null;
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  /** The largest sample; null unless every bucket with samples recorded its maximum. */
  maxMs: number | null;
}

export interface StatsQueriesOptions {
  /** ms to wait for a lock held by another connection. */
  busyTimeout: number;
}

/** What a range of buckets holds for one name, one row per collected bucket (values null when absent). */
interface BucketRow {
  start: number;
  seconds: number;
}

export class StatsQueries {
  readonly file: string;
  readonly #db: Database.Database;
  readonly #statements: ReturnType<typeof prepare>;
  /** Every name seen, by `kind\nname`, kept up to date by names(). */
  readonly #names = new Map<string, StatName>();
  /** The latest `last_collected` (ms) of the buckets whose names are in #names; undefined before the first. */
  #namesCollected: number | undefined;
  /** The newest legacy collection (`at`, ms) in #names. */
  #legacyAt = 0;

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.#db = db;
    this.#statements = prepare(db);
  }

  /** Opens the stats database at `file` (written by a collector, so it exists and is up to date) read-only. */
  static open(file: string, options: Partial<StatsQueriesOptions> = {}): StatsQueries {
    if (file === ":memory:") {
      throw new SinkError(
        "an in-memory stats database cannot be read through a second connection: open the collector's database from a file",
        { file },
      );
    }
    let db: Database.Database;
    try {
      db = new Database(file, { readonly: true, fileMustExist: true });
    } catch (error) {
      throw new SinkError(
        `cannot open the stats database ${file} for reading: ${(error as Error).message} ` +
          "(does it exist? the collector creates it on start)",
        { cause: error, file, errno: (error as NodeJS.ErrnoException).code },
      );
    }
    try {
      db.pragma(`busy_timeout = ${options.busyTimeout ?? DEFAULT_BUSY_TIMEOUT}`);
      const version = db.pragma("user_version", { simple: true }) as number;
      if (version !== SCHEMA_VERSION) {
        throw new SinkError(
          `the stats database ${file} has schema version ${version}, and these queries read version ` +
            `${SCHEMA_VERSION}: run \`memipc collect\` of this memipc once to upgrade it`,
          { file },
        );
      }
      return new StatsQueries(file, db);
    } catch (error) {
      db.close();
      if (error instanceof SinkError) throw error;
      throw new SinkError(`the stats database ${file} cannot be read: ${(error as Error).message}`, {
        cause: error,
        file,
      });
    }
  }

  /**
   * The series of `name` of `kind` over `range`, in steps of `step` seconds (chosen by chooseStep when not
   * given; a given one must be a multiple of the bucket size that keeps the series within MAX_POINTS).
   */
  series(kind: SeriesKind, name: string, range: TimeRange, step?: number): Series {
    checkRange(range);
    const sizes = this.#bucketSizes();
    const bucketSeconds = sizes.length === 0 ? DEFAULT_BUCKET_SECONDS : Math.max(...sizes);
    const chosen = chooseStep(range, bucketSeconds, step);
    const slots = new Slots(range, chosen);
    const base = { name, from: range.from, to: range.to, bucketSeconds, step: chosen, times: slots.times() };
    const [fromS, toS] = bucketRange(range);
    switch (kind) {
      case SeriesKind.counter: {
        const values = this.#zeroes(slots, sizes);
        for (const row of this.#rows<{ value: number | null }>(
          this.#statements.counterRows,
          name,
          sizes,
          fromS,
          toS,
        )) {
          const i = slots.index(row.start);
          values[i] = (values[i] ?? 0) + (row.value ?? 0);
        }
        return { ...base, kind, values, total: sum(values) };
      }
      case SeriesKind.legacy: {
        const values = this.#zeroes(slots, sizes);
        for (const row of this.#statements.legacyRows.all(name, range.from, range.to) as LegacySql[]) {
          const i = slots.index(Math.floor(row.at / SECOND_MS));
          values[i] = (values[i] ?? 0) + row.value;
        }
        return { ...base, kind, values, total: sum(values) };
      }
      case SeriesKind.gauge: {
        const values = slots.fill<number | null>(null);
        const min = slots.fill<number | null>(null);
        const max = slots.fill<number | null>(null);
        for (const row of this.#rows<{ value: number | null }>(
          this.#statements.gaugeRows,
          name,
          sizes,
          fromS,
          toS,
        )) {
          if (row.value === null) continue;
          const i = slots.index(row.start);
          values[i] = row.value; // rows come by start: the last one is the step's latest value
          min[i] = Math.min(min[i] ?? row.value, row.value);
          max[i] = Math.max(max[i] ?? row.value, row.value);
        }
        return { ...base, kind, values, min, max };
      }
      case SeriesKind.timer: {
        const perSlot = this.#zeroes(slots, sizes).map((v): TimerSql[] | null => (v === null ? null : []));
        for (const row of this.#rows<TimerSqlNullable>(this.#statements.timerRows, name, sizes, fromS, toS)) {
          const i = slots.index(row.start);
          const rows = (perSlot[i] ??= []);
          if (row.count !== null) rows.push(row as TimerSql);
        }
        const summaries = perSlot.map((rows) => rows && summarize(name, rows));
        return {
          ...base,
          kind,
          values: summaries.map((s) => s?.count ?? null),
          p50: summaries.map((s) => s?.p50Ms ?? null),
          p90: summaries.map((s) => s?.p90Ms ?? null),
          p99: summaries.map((s) => s?.p99Ms ?? null),
          max: summaries.map((s) => s?.maxMs ?? null),
          total: summaries.reduce((n, s) => n + (s?.count ?? 0), 0),
        };
      }
    }
  }

  /**
   * Every name stored, with its kind and newest time (as StatsDb.names(): bucket start in s, legacy `at` in
   * ms), ordered by name then kind. The first call reads every table whole; later ones read only the buckets
   * collected since (new or read again) and recent legacy collections, so a page polling it stays cheap on
   * a large history.
   */
  names(): StatName[] {
    const s = this.#statements;
    const note = (kind: StatName["kind"], name: string, last: number): void => {
      const key = `${kind}\n${name}`;
      const known = this.#names.get(key);
      if (known === undefined) this.#names.set(key, { kind, name, last });
      else if (last > known.last) known.last = last;
    };
    if (this.#namesCollected === undefined) {
      // The mark first: anything collected after it is read again next time.
      this.#namesCollected = (s.lastCollected.get() as { at: number | null }).at ?? -1;
      for (const row of s.allNames.all() as StatName[]) note(row.kind, row.name, row.last);
    } else {
      const changed = s.collectedSince.all(this.#namesCollected) as Array<{ start: number; at: number }>;
      for (const { start, at } of changed) {
        for (const [kind, statement] of [
          ["counter", s.counterNamesAt],
          ["gauge", s.gaugeNamesAt],
          ["timer", s.timerNamesAt],
        ] as const) {
          for (const { name } of statement.all(start) as Array<{ name: string }>) note(kind, name, start);
        }
        this.#namesCollected = Math.max(this.#namesCollected, at);
      }
      const since = this.#legacyAt - LEGACY_SETTLE_MS;
      for (const row of s.legacyNamesSince.all(since) as Array<{ name: string; last: number }>) {
        note("legacy", row.name, row.last);
      }
    }
    for (const name of this.#names.values()) {
      if (name.kind === "legacy") this.#legacyAt = Math.max(this.#legacyAt, name.last);
    }
    return [...this.#names.values()].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0,
    );
  }

  /** Every timer with samples in `range` (or only `name`), by name: count, mean and percentiles. */
  timers(range: TimeRange, name?: string): TimerSummary[] {
    checkRange(range);
    const [fromS, toS] = bucketRange(range);
    const byName = new Map<string, TimerSql[]>();
    const rows = this.#statements.timersInRange.all(fromS, toS, name ?? null, name ?? null) as TimerSql[];
    for (const row of rows) {
      const list = byName.get(row.name);
      if (list === undefined) byName.set(row.name, [row]);
      else list.push(row);
    }
    return [...byName].map(([timer, list]) => summarize(timer, list));
  }

  close(): void {
    this.#db.close();
  }

  /** 0 for each step within the history the collector has stored, null for the others. */
  #zeroes(slots: Slots, sizes: readonly number[]): Array<number | null> {
    let first = Infinity;
    let end = -Infinity;
    for (const seconds of sizes) {
      const row = this.#statements.storedRange.get(seconds, seconds) as {
        first: number | null;
        last: number | null;
      };
      if (row.first === null || row.last === null) continue;
      first = Math.min(first, row.first);
      end = Math.max(end, row.last + seconds);
    }
    return slots.times().map((t) => (t + slots.step > first && t < end ? 0 : null));
  }

  /** The bucket sizes (s) the collector has stored, found with one index seek each. */
  #bucketSizes(): number[] {
    const sizes: number[] = [];
    for (let after = 0; ;) {
      const row = this.#statements.nextSize.get(after) as { seconds: number | null };
      if (row.seconds === null) return sizes;
      sizes.push(row.seconds);
      after = row.seconds;
    }
  }

  /**
   * One name's rows of the collected buckets with a start in [fromS, toS), oldest first, driven by the
   * buckets table: each bucket is one lookup by (start, name), so the cost follows the range's length, not
   * how many names each bucket holds.
   */
  #rows<T>(
    statement: Database.Statement,
    name: string,
    sizes: readonly number[],
    fromS: number,
    toS: number,
  ) {
    const byStart = new Map<number, BucketRow & T>();
    for (const seconds of sizes) {
      for (const row of statement.all(name, seconds, fromS, toS) as Array<BucketRow & T>) {
        // Buckets of two sizes may share a start; their rows are the same row of the table.
        if (!byStart.has(row.start)) byStart.set(row.start, row);
      }
    }
    return [...byStart.values()].sort((a, b) => a.start - b.start);
  }
}

/**
 * The step (s) for a series over `range`: `requested` when given and allowed, else the finest of the bucket
 * size and its multiples among NICE_STEPS that keeps the series within MAX_POINTS. A ConfigError says what
 * is allowed when `requested` is not.
 */
export function chooseStep(range: TimeRange, bucketSeconds: number, requested?: number): number {
  const fits = (step: number): boolean => new Slots(range, step).length <= MAX_POINTS;
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < bucketSeconds || requested % bucketSeconds !== 0) {
      throw new ConfigError(
        `step ${requested} s must be a whole multiple of the stats bucket size (${bucketSeconds} s)`,
      );
    }
    if (!fits(requested)) {
      throw new ConfigError(
        `step ${requested} s would give more than ${MAX_POINTS} points over this range: use a step of at least ` +
          `${chooseStep(range, bucketSeconds)} s, or a shorter range`,
      );
    }
    return requested;
  }
  const candidates = [
    bucketSeconds,
    ...NICE_STEPS.filter((s) => s > bucketSeconds && s % bucketSeconds === 0),
  ];
  for (const step of candidates) if (fits(step)) return step;
  // Longer than the largest nice step allows: the smallest multiple of the bucket size that fits.
  const span = Math.ceil(range.to / SECOND_MS) - Math.floor(range.from / SECOND_MS);
  let step = Math.ceil(span / (MAX_POINTS - 1) / bucketSeconds) * bucketSeconds;
  while (!fits(step)) step += bucketSeconds;
  return step;
}

/** The steps of a series: aligned to multiples of `step` seconds since 1970, covering the whole range. */
class Slots {
  readonly first: number;
  readonly step: number;
  readonly length: number;

  constructor(range: TimeRange, step: number) {
    this.step = step;
    this.first = Math.floor(Math.floor(range.from / SECOND_MS) / step) * step;
    this.length = Math.max(0, Math.ceil((Math.ceil(range.to / SECOND_MS) - this.first) / step));
  }

  /** The step holding `second` (unix s), which lies within the range. */
  index(second: number): number {
    return Math.min(this.length - 1, Math.max(0, Math.floor((second - this.first) / this.step)));
  }

  times(): number[] {
    return Array.from({ length: this.length }, (_, i) => this.first + i * this.step);
  }

  fill<T>(value: T): T[] {
    return Array.from({ length: this.length }, () => value);
  }
}

/** A ConfigError unless `range` runs forward between whole ms since 1970. */
function checkRange(range: TimeRange): void {
  if (!Number.isSafeInteger(range.from) || !Number.isSafeInteger(range.to) || range.from < 0) {
    throw new ConfigError(
      `the range ${range.from}..${range.to} must be whole milliseconds since 1970 (e.g. ${Date.UTC(2026, 0, 1)})`,
    );
  }
  if (range.to <= range.from) {
    throw new ConfigError(`the range ends (${range.to}) before it starts (${range.from}): swap from and to`);
  }
}

/** The bucket starts (unix s, [fromS, toS)) of buckets that start within the range, as reports count them. */
function bucketRange(range: TimeRange): [number, number] {
  return [Math.ceil(range.from / SECOND_MS), Math.ceil(range.to / SECOND_MS)];
}

function sum(values: ReadonlyArray<number | null>): number {
  return values.reduce<number>((total, v) => total + (v ?? 0), 0);
}

interface LegacySql {
  at: number;
  value: number;
}

interface TimerSql {
  name: string;
  start: number;
  count: number;
  sum_us: number;
  max_us: number | null;
  histogram: string;
}

type TimerSqlNullable = { [K in keyof TimerSql]: K extends "start" ? number : TimerSql[K] | null };

/** Count, mean and percentiles of a timer's rows, as the daily report computes them. */
function summarize(name: string, rows: readonly TimerSql[]): TimerSummary {
  const count = rows.reduce((n, row) => n + row.count, 0);
  const sumUs = rows.reduce((n, row) => n + row.sum_us, 0);
  const counted = rows.filter((row) => row.count > 0);
  const maxMs =
    counted.length > 0 && counted.every((row) => row.max_us !== null)
      ? Math.max(...counted.map((row) => row.max_us!)) / 1000
      : undefined;
  const histogram = mergeHistograms(rows.map((row) => parseHistogram(row.histogram)));
  return {
    name,
    count,
    meanMs: count === 0 ? null : sumUs / count / 1000,
    p50Ms: percentile(histogram, 0.5, maxMs) ?? null,
    p90Ms: percentile(histogram, 0.9, maxMs) ?? null,
    p99Ms: percentile(histogram, 0.99, maxMs) ?? null,
    maxMs: maxMs ?? null,
  };
}

function parseHistogram(text: string): Histogram {
  const out: Histogram = new Map();
  for (const [k, n] of Object.entries(JSON.parse(text) as Record<string, number>)) out.set(Number(k), n);
  return out;
}

function prepare(db: Database.Database) {
  // LEFT JOIN keeps `buckets` as the outer loop: one lookup of (start, name) per collected bucket.
  const perBucket = (table: string, columns: string) =>
    db.prepare(
      `SELECT b.start AS start, b.seconds AS seconds, ${columns}
       FROM buckets AS b LEFT JOIN ${table} AS x ON x.start = b.start AND x.name = ?
       WHERE b.seconds = ? AND b.start >= ? AND b.start < ? ORDER BY b.start`,
    );
  return {
    storedRange: db.prepare(
      `SELECT (SELECT min(start) FROM buckets WHERE seconds = ?) AS first,
              (SELECT max(start) FROM buckets WHERE seconds = ?) AS last`,
    ),
    nextSize: db.prepare(`SELECT min(seconds) AS seconds FROM buckets WHERE seconds > ?`),
    counterRows: perBucket("counters", "x.value AS value"),
    gaugeRows: perBucket("gauges", "x.value AS value"),
    timerRows: perBucket(
      "timers",
      "x.name AS name, x.count AS count, x.sum_us AS sum_us, x.max_us AS max_us, x.histogram AS histogram",
    ),
    legacyRows: db.prepare(
      `SELECT at, value FROM legacy WHERE name = ? AND at >= ? AND at < ? AND state != 'pending' ORDER BY at`,
    ),
    lastCollected: db.prepare(`SELECT max(last_collected) AS at FROM buckets`),
    collectedSince: db.prepare(
      `SELECT start, max(last_collected) AS at FROM buckets WHERE last_collected > ? GROUP BY start`,
    ),
    counterNamesAt: db.prepare(`SELECT name FROM counters WHERE start = ?`),
    gaugeNamesAt: db.prepare(`SELECT name FROM gauges WHERE start = ?`),
    timerNamesAt: db.prepare(`SELECT name FROM timers WHERE start = ?`),
    allNames: db.prepare(
      `SELECT 'counter' AS kind, name, max(start) AS last FROM counters GROUP BY name
       UNION ALL SELECT 'gauge', name, max(start) FROM gauges GROUP BY name
       UNION ALL SELECT 'timer', name, max(start) FROM timers GROUP BY name
       UNION ALL SELECT 'legacy', name, max(at) FROM legacy WHERE state != 'pending' GROUP BY name`,
    ),
    legacyNamesSince: db.prepare(
      `SELECT name, max(at) AS last FROM legacy WHERE at >= ? AND state != 'pending' GROUP BY name`,
    ),
    timersInRange: db.prepare(
      `SELECT name, start, count, sum_us, max_us, histogram FROM timers
       WHERE start >= ? AND start < ? AND (? IS NULL OR name = ?) ORDER BY name, start`,
    ),
  };
}
