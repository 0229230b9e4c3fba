// Writing a day's report to files (`<dir>/<day>.<ext>`, each replaced whole by a rename, so a reader never
// sees half a report), and the times the collector needs to write yesterday's report after midnight.
import { randomBytes } from "node:crypto";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { ConfigError, SinkError } from "../errors.js";
import {
  addDays,
  buildDayReport,
  checkTimeZone,
  dayRange,
  firstInstantAt,
  localDay,
  localTimeZone,
} from "./report.js";
import type { DayReport } from "./report.js";
import { formatHtml } from "./report-html.js";
import { formatReport, REPORT_EXTENSIONS, ReportFormat } from "./report-format.js";
import type { StatsDb } from "./stats-db.js";

export const DEFAULT_REPORT_FORMATS: readonly ReportFormat[] = [
  ReportFormat.html,
  ReportFormat.md,
  ReportFormat.json,
];
/** Local time of day (HH:MM) the daily report of the day before is written at. */
export const DEFAULT_REPORT_TIME = "00:05";

export interface ReportFilesOptions {
  formats: readonly ReportFormat[];
  /** IANA time zone name; the process's local zone by default. */
  timeZone: string;
  /** Milliseconds since 1970, for the generation time and the bookkeeping; injectable for tests. */
  now: () => number;
}

/** The report in any format. */
export function renderReport(report: DayReport, format: ReportFormat): string {
  return format === ReportFormat.html ? formatHtml(report) : formatReport(report, format);
}

/** `text` if it names a report format; else a ConfigError listing them. */
export function parseReportFormat(text: string, what = "format"): ReportFormat {
  const known = Object.values(ReportFormat) as string[];
  if (!known.includes(text)) {
    throw new ConfigError(`${what} ${JSON.stringify(text)} is not known: use ${known.join(", ")}`);
  }
  return text as ReportFormat;
}

/**
 * Builds the report of `day` and writes it as `<dir>/<day>.<ext>` in each format (html, md and json by
 * default), creating `dir`; then records in `db` that the day's report was written. Resolves with the
 * files' absolute paths.
 */
export async function writeReportFiles(
  db: StatsDb,
  day: string,
  dir: string,
  options: Partial<ReportFilesOptions> = {},
): Promise<string[]> {
  const formats = [...new Set(options.formats ?? DEFAULT_REPORT_FORMATS)].map((f) => parseReportFormat(f));
  const now = options.now ?? Date.now;
  const report = buildDayReport(db, day, {
    now,
    ...(options.timeZone === undefined ? {} : { timeZone: options.timeZone }),
  });
  const folder = resolve(dir);
  try {
    await mkdir(folder, { recursive: true });
  } catch (error) {
    throw sinkError(`cannot create the report folder ${folder}`, folder, error);
  }
  const files: string[] = [];
  for (const format of formats) {
    const file = join(folder, `${day}.${REPORT_EXTENSIONS[format]}`);
    await writeFileAtomic(file, renderReport(report, format));
    files.push(file);
  }
  db.markReport(day, now(), files);
  return files;
}

/**
 * Writes `text` to `file` through a temporary file in the same folder, flushed to disk and then renamed
 * over `file`: readers see the old content or the new, never part of it.
 */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    const handle = await open(temp, "wx");
    try {
      await handle.writeFile(text, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw sinkError(`cannot write the report ${file}`, file, error);
  }
}

function sinkError(what: string, file: string, error: unknown): SinkError {
  return new SinkError(`${what}: ${(error as Error).message} (check the folder exists and is writable)`, {
    cause: error,
    file,
    errno: (error as NodeJS.ErrnoException).code,
  });
}

/** The local date (YYYY-MM-DD) in `timeZone` of the day before the one instant `nowMs` falls in. */
export function previousDay(nowMs: number, timeZone: string = localTimeZone()): string {
  return addDays(localDay(nowMs, checkTimeZone(timeZone)), -1);
}

const TIME_OF_DAY = /^([01]\d|2[0-3]):([0-5]\d)$/;

/**
 * The first instant after `nowMs` at which the local time in `timeZone` is `at` (HH:MM, 24-hour clock). On
 * a day the clocks skip `at`, the instant they jump; on a day `at` occurs twice, the first time.
 */
export function nextReportTime(
  nowMs: number,
  at: string = DEFAULT_REPORT_TIME,
  timeZone: string = localTimeZone(),
): number {
  const match = TIME_OF_DAY.exec(at);
  if (match === null) {
    throw new ConfigError(`report time ${JSON.stringify(at)} is not a time of day: use HH:MM, e.g. 00:05`);
  }
  checkTimeZone(timeZone);
  const today = localDay(nowMs, timeZone);
  // Today's may have passed already; tomorrow's has not.
  let next = nowMs;
  for (let days = 0; next <= nowMs; days++) {
    const [year, month, date] = addDays(today, days).split("-").map(Number);
    next = firstInstantAt(Date.UTC(year!, month! - 1, date!, Number(match[1]), Number(match[2])), timeZone);
  }
  return next;
}

/**
 * The day whose report is due at `nowMs`: yesterday, once today's report time `at` has passed, unless the
 * database records it as written already; undefined otherwise.
 */
export function dueReportDay(
  db: StatsDb,
  nowMs: number,
  at: string = DEFAULT_REPORT_TIME,
  timeZone: string = localTimeZone(),
): string | undefined {
  const today = localDay(nowMs, checkTimeZone(timeZone));
  const dueAt = nextReportTime(dayRange(today, timeZone).start - 1, at, timeZone);
  if (nowMs < dueAt) return undefined;
  const day = addDays(today, -1);
  return db.reportWritten(day) === undefined ? day : undefined;
}
