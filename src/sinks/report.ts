// A day's summary of the stats history: per counter the day's total, its change against the day before and
// the same weekday a week before, its busiest hour and hourly shape; per timer count and percentiles; per
// gauge last, min and max. A day runs from local midnight to the next in one IANA time zone, so it has 23 or
// 25 hours when the clocks change; offsets come from Intl, which knows the zone's rules.
import { ConfigError } from "../errors.js";
import { mergeHistograms, percentile } from "../stats/percentile.js";
import type { StatsDb, TimerRow } from "./stats-db.js";

const SECOND_MS = 1000;
const HOUR_MS = 3_600_000;
/** Every zone's offset lies within −12 h and +14 h: an instant is within this of its wall-clock time. */
const MAX_OFFSET_MS = 15 * HOUR_MS;

export interface DayReportOptions {
  /** IANA time zone name ("Europe/Berlin"); the process's local zone by default. */
  timeZone: string;
  /** Milliseconds since 1970, for the report's generation time; injectable for tests. */
  now: () => number;
}

/** One local hour of the day: the wall clock shows the same hour from `start` to `end`. */
export interface HourSlot {
  /** First instant, ms since 1970. */
  start: number;
  /** The next hour's start (the day's end for the last hour), ms since 1970. */
  end: number;
  /** The local time at `start`, HH:MM; on a day the clocks go back, one label appears twice. */
  label: string;
  /** The zone's offset from UTC during the hour, ±HH:MM. */
  offset: string;
}

/** A counter's day total against another day's. */
export interface Change {
  /** The other day's total, or undefined when the other day has no data for the counter. */
  base: number | undefined;
  /** total − base. */
  delta: number | undefined;
  /** delta / base × 100; undefined as well when base is 0 and total is not. */
  percent: number | undefined;
}

export interface CounterReport {
  name: string;
  /** A legacy plain counter (collected by read-then-decr), counted in the hour it was collected. */
  legacy: boolean;
  total: number;
  dayBefore: Change;
  weekBefore: Change;
  /** Index into the report's `hours` of the hour with the largest count (the first of a tie); undefined
   *  when the day's total is 0. */
  busiestHour: number | undefined;
  /** The count of each hour of the report's `hours`. */
  hourly: number[];
  /** Legacy collections whose decrement memcached did not confirm: counted, but possibly counted again. */
  unconfirmed: number;
}

export interface TimerReport {
  name: string;
  count: number;
  meanMs: number | undefined;
  p50Ms: number | undefined;
  p90Ms: number | undefined;
  p99Ms: number | undefined;
  /** The largest sample; undefined unless every bucket of the day recorded its maximum. */
  maxMs: number | undefined;
  hourly: number[];
}

export interface GaugeReport {
  name: string;
  /** The value of the day's latest bucket. */
  last: number;
  min: number;
  max: number;
}

export interface DayReport {
  /** YYYY-MM-DD. */
  day: string;
  timeZone: string;
  /** The day's first instant and the next day's, ms since 1970. */
  start: number;
  end: number;
  /** The days the counters are compared with. */
  dayBefore: string;
  weekBefore: string;
  generatedAt: number;
  hours: HourSlot[];
  /** How many names of each kind the report lists (legacy counters apart from the others). */
  totals: { counters: number; legacy: number; timers: number; gauges: number };
  /** By name, a legacy counter after a bucketed one of the same name. */
  counters: CounterReport[];
  timers: TimerReport[];
  gauges: GaugeReport[];
}

/**
 * The summary of `day` (YYYY-MM-DD) in the stats history. A bucket counts in the hour its start falls in, a
 * legacy collection in the hour it was made. Throws a ConfigError for a malformed day or an unknown zone.
 */
export function buildDayReport(db: StatsDb, day: string, options: Partial<DayReportOptions> = {}): DayReport {
  const timeZone = checkTimeZone(options.timeZone ?? localTimeZone());
  const now = options.now ?? Date.now;
  const { start, end } = dayRange(day, timeZone);
  const hours = hourSlots(start, end, timeZone);
  const dayBefore = addDays(day, -1);
  const weekBefore = addDays(day, -7);

  const counts = counterHours(db, start, end, hours);
  const before = counterTotals(db, dayRange(dayBefore, timeZone));
  const weekAgo = counterTotals(db, dayRange(weekBefore, timeZone));
  const keys = [...new Set([...counts.keys(), ...before.keys(), ...weekAgo.keys()])].sort(byCounterKey);
  const counters = keys.map((key): CounterReport => {
    const found = counts.get(key);
    const hourly = found?.hourly ?? hours.map(() => 0);
    const total = hourly.reduce((sum, n) => sum + n, 0);
    return {
      name: key.slice(key.indexOf(":") + 1),
      legacy: key.startsWith("legacy:"),
      total,
      dayBefore: change(total, before.get(key)),
      weekBefore: change(total, weekAgo.get(key)),
      busiestHour: total === 0 ? undefined : hourly.indexOf(Math.max(...hourly)),
      hourly,
      unconfirmed: found?.unconfirmed ?? 0,
    };
  });
  const timers = timerReports(db, start, end, hours);
  const gauges = gaugeReports(db, start, end);
  return {
    day,
    timeZone,
    start,
    end,
    dayBefore,
    weekBefore,
    generatedAt: now(),
    hours,
    totals: {
      counters: counters.filter((c) => !c.legacy).length,
      legacy: counters.filter((c) => c.legacy).length,
      timers: timers.length,
      gauges: gauges.length,
    },
    counters,
    timers,
    gauges,
  };
}

/** Counters are keyed `counter:NAME` or `legacy:NAME`: the two kinds may share a name. */
function byCounterKey(a: string, b: string): number {
  const nameA = a.slice(a.indexOf(":") + 1);
  const nameB = b.slice(b.indexOf(":") + 1);
  return nameA < nameB ? -1 : nameA > nameB ? 1 : a < b ? -1 : a > b ? 1 : 0;
}

function change(total: number, base: number | undefined): Change {
  if (base === undefined) return { base, delta: undefined, percent: undefined };
  const delta = total - base;
  return { base, delta, percent: base === 0 ? (delta === 0 ? 0 : undefined) : (delta / base) * 100 };
}

function counterHours(
  db: StatsDb,
  start: number,
  end: number,
  hours: readonly HourSlot[],
): Map<string, { hourly: number[]; unconfirmed: number }> {
  const out = new Map<string, { hourly: number[]; unconfirmed: number }>();
  const add = (key: string, at: number, value: number, unconfirmed: boolean) => {
    let entry = out.get(key);
    if (entry === undefined) out.set(key, (entry = { hourly: hours.map(() => 0), unconfirmed: 0 }));
    entry.hourly[hourIndex(hours, at)]! += value;
    if (unconfirmed) entry.unconfirmed++;
  };
  const [from, to] = bucketRange(start, end);
  for (const row of db.counters(from, to)) {
    add(`counter:${row.name}`, row.start * SECOND_MS, row.value, false);
  }
  for (const row of db.legacy(start, end)) {
    add(`legacy:${row.name}`, row.at, row.value, row.state === "unconfirmed");
  }
  return out;
}

function counterTotals(db: StatsDb, range: { start: number; end: number }): Map<string, number> {
  const out = new Map<string, number>();
  const [from, to] = bucketRange(range.start, range.end);
  for (const row of db.counters(from, to)) {
    out.set(`counter:${row.name}`, (out.get(`counter:${row.name}`) ?? 0) + row.value);
  }
  for (const row of db.legacy(range.start, range.end)) {
    out.set(`legacy:${row.name}`, (out.get(`legacy:${row.name}`) ?? 0) + row.value);
  }
  return out;
}

function timerReports(db: StatsDb, start: number, end: number, hours: readonly HourSlot[]): TimerReport[] {
  const byName = new Map<string, TimerRow[]>();
  const [from, to] = bucketRange(start, end);
  for (const row of db.timers(from, to)) {
    const rows = byName.get(row.name);
    if (rows === undefined) byName.set(row.name, [row]);
    else rows.push(row);
  }
  return [...byName].map(([name, rows]): TimerReport => {
    const hourly = hours.map(() => 0);
    for (const row of rows) hourly[hourIndex(hours, row.start * SECOND_MS)]! += row.count;
    const count = rows.reduce((sum, row) => sum + row.count, 0);
    const sumUs = rows.reduce((sum, row) => sum + row.sumUs, 0);
    const counted = rows.filter((row) => row.count > 0);
    const maxMs =
      counted.length > 0 && counted.every((row) => row.maxUs !== undefined)
        ? Math.max(...counted.map((row) => row.maxUs!)) / 1000
        : undefined;
    const histogram = mergeHistograms(rows.map((row) => row.histogram));
    return {
      name,
      count,
      meanMs: count === 0 ? undefined : sumUs / count / 1000,
      p50Ms: percentile(histogram, 0.5, maxMs),
      p90Ms: percentile(histogram, 0.9, maxMs),
      p99Ms: percentile(histogram, 0.99, maxMs),
      maxMs,
      hourly,
    };
  });
}

function gaugeReports(db: StatsDb, start: number, end: number): GaugeReport[] {
  const out = new Map<string, GaugeReport>();
  const [from, to] = bucketRange(start, end);
  for (const row of db.gauges(from, to)) {
    const gauge = out.get(row.name);
    // Rows come ordered by name then start: the last one seen is the latest.
    if (gauge === undefined) {
      out.set(row.name, { name: row.name, last: row.value, min: row.value, max: row.value });
    } else {
      gauge.last = row.value;
      gauge.min = Math.min(gauge.min, row.value);
      gauge.max = Math.max(gauge.max, row.value);
    }
  }
  return [...out.values()];
}

/** The bucket starts (unix seconds, [from, to)) of buckets that start within [start, end) ms. */
function bucketRange(start: number, end: number): [number, number] {
  return [Math.ceil(start / SECOND_MS), Math.ceil(end / SECOND_MS)];
}

/** The index of the hour holding instant `ms` (which lies within the day). */
function hourIndex(hours: readonly HourSlot[], ms: number): number {
  let lo = 0;
  let hi = hours.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (hours[mid]!.start <= ms) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// ---- Local time, from Intl alone ----

/** The process's local IANA time zone (from TZ, else the system's). */
export function localTimeZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** `zone` if Intl knows it as a time zone; else a ConfigError. */
export function checkTimeZone(zone: string): string {
  try {
    formatter(zone);
  } catch (error) {
    throw new ConfigError(
      `time zone ${JSON.stringify(zone)} is not known: use an IANA name such as "Europe/Berlin" or "UTC"`,
      { cause: error },
    );
  }
  return zone;
}

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

/** The calendar date of a YYYY-MM-DD text, or a ConfigError saying what is wrong with it. */
export function parseDay(day: string): { year: number; month: number; date: number } {
  const match = DAY.exec(day);
  const [year, month, date] = match === null ? [NaN, NaN, NaN] : match.slice(1).map(Number);
  const utc = new Date(Date.UTC(year!, month! - 1, date!));
  if (match === null || utc.getUTCMonth() !== month! - 1 || utc.getUTCDate() !== date || year! < 1970) {
    throw new ConfigError(
      `day ${JSON.stringify(day)} is not a date: give it as YYYY-MM-DD (e.g. 2026-03-29), from 1970 on`,
    );
  }
  return { year: year!, month: month!, date: date! };
}

/** The calendar date `days` after (or before, if negative) `day`, as YYYY-MM-DD. */
export function addDays(day: string, days: number): string {
  const { year, month, date } = parseDay(day);
  return new Date(Date.UTC(year, month - 1, date + days)).toISOString().slice(0, 10);
}

/** The local date (YYYY-MM-DD) in `zone` at instant `ms`. */
export function localDay(ms: number, zone: string): string {
  return new Date(wallClock(ms, zone)).toISOString().slice(0, 10);
}

/** From the first instant of `day` in `zone` to the first of the next day, ms since 1970. */
export function dayRange(day: string, zone: string): { start: number; end: number } {
  const { year, month, date } = parseDay(day);
  return {
    start: firstInstantAt(Date.UTC(year, month - 1, date), zone),
    end: firstInstantAt(Date.UTC(year, month - 1, date + 1), zone),
  };
}

/** The day's local hours from `start` to `end`: 24, or 23 or 25 when the clocks change. */
export function hourSlots(start: number, end: number, zone: string): HourSlot[] {
  const slots: HourSlot[] = [];
  for (let at = start; at < end;) {
    const wall = wallClock(at, zone);
    const next = Math.min(end, at + (Math.floor(wall / HOUR_MS) + 1) * HOUR_MS - wall);
    slots.push({
      start: at,
      end: next,
      label: new Date(wall).toISOString().slice(11, 16),
      offset: formatOffset(wall - at),
    });
    at = next;
  }
  return slots;
}

/**
 * The first instant at which the wall clock of `zone` shows `wall` (a local time written as if it were UTC,
 * ms): of a time shown twice when the clocks go back, the first; of a time skipped when they go forward,
 * the instant the clocks jump, when the wall clock first shows a later time.
 */
export function firstInstantAt(wall: number, zone: string): number {
  // The instant lies `offset` before the wall time, for the offset in force then: one in force somewhere
  // within the widest offset of it.
  const found = [wall - MAX_OFFSET_MS, wall, wall + MAX_OFFSET_MS]
    .map((at) => wall - (wallClock(at, zone) - at))
    .filter((at) => wallClock(at, zone) === wall);
  if (found.length > 0) return Math.min(...found);
  // Skipped: find the jump, to the second.
  let lo = wall - MAX_OFFSET_MS;
  let hi = wall + MAX_OFFSET_MS;
  while (hi - lo > SECOND_MS) {
    const mid = lo + Math.floor((hi - lo) / 2 / SECOND_MS) * SECOND_MS;
    if (wallClock(mid, zone) >= wall) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** What the wall clock of `zone` shows at instant `ms`, written as if it were UTC (ms since 1970). */
export function wallClock(ms: number, zone: string): number {
  const parts: Record<string, number> = {};
  for (const part of formatter(zone).formatToParts(ms)) {
    if (part.type !== "literal") parts[part.type] = Number(part.value);
  }
  const whole = Date.UTC(
    parts.year!,
    parts.month! - 1,
    parts.day!,
    parts.hour!,
    parts.minute!,
    parts.second!,
  );
  return whole + (((ms % SECOND_MS) + SECOND_MS) % SECOND_MS);
}

/** Instant `ms` as the local time of `zone` with its offset: 2026-03-29T03:00:00+02:00. */
export function localIso(ms: number, zone: string): string {
  const wall = wallClock(ms, zone);
  return `${new Date(wall).toISOString().slice(0, 19)}${formatOffset(wall - ms)}`;
}

/** ±HH:MM for an offset from UTC in ms. */
export function formatOffset(offsetMs: number): string {
  const minutes = Math.round(Math.abs(offsetMs) / 60_000);
  const hh = String(Math.floor(minutes / 60)).padStart(2, "0");
  const mm = String(minutes % 60).padStart(2, "0");
  return `${offsetMs < 0 ? "-" : "+"}${hh}:${mm}`;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let found = formatters.get(zone);
  if (found === undefined) {
    found = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, found);
  }
  return found;
}
