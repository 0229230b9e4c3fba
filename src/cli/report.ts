// `memipc report`: one day's summary of the stats history, as text, Markdown, CSV, JSON or HTML, to stdout
// or to a file.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError } from "../errors.js";
import { checkTimeZone, buildDayReport, localDay, localTimeZone, parseDay } from "../sinks/report.js";
import { parseReportFormat, previousDay, renderReport, writeFileAtomic } from "../sinks/report-files.js";
import { ReportFormat } from "../sinks/report-format.js";
import { DEFAULT_DB_FILE, StatsDb } from "../sinks/stats-db.js";
import { optionTable, parseFlags, pick, writeOut, type HelpRow } from "./common.js";

const REPORT_OPTIONS = {
  db: { type: "string" },
  day: { type: "string", short: "d" },
  format: { type: "string", short: "f" },
  out: { type: "string", short: "o" },
  tz: { type: "string" },
} as const;

const REPORT_ROWS: HelpRow[] = [
  ["--db FILE", "the stats database, opened read-only", `MEMIPC_DB, else ${DEFAULT_DB_FILE}`],
  ["-d, --day DAY", "the day: YYYY-MM-DD, yesterday or today (required)"],
  ["-f, --format F", "text, md, csv, json or html", ReportFormat.text],
  ["-o, --out FILE", "write FILE (replaced whole) instead of stdout"],
  ["--tz ZONE", "IANA time zone the day is local to", "TZ, else the system's zone"],
];

export const REPORT_HELP = `Usage: memipc report [options] --day DAY

Summarises one day of the stats history that "memipc collect" keeps in SQLite: for each counter the
day's total, its change against the day before and the same weekday a week before, its busiest hour and
hourly shape (legacy plain counters too, by collection time); for each timer count, p50, p90, p99 and max;
for each gauge last, min and max. The day runs from local midnight to the next in the time zone, so it
has 23 or 25 hours when the clocks change.

${optionTable(REPORT_ROWS)}
Examples:
  memipc report --day yesterday
  memipc report --day 2026-03-29 --tz Europe/Berlin --format html --out 2026-03-29.html
`;

export async function runReport(args: string[]): Promise<void> {
  const { values } = parseFlags("report", args, REPORT_OPTIONS);
  if (values.day === undefined) {
    throw new ConfigError(
      'give the day to report with --day YYYY-MM-DD, yesterday or today: see "memipc report --help"',
    );
  }
  const format = parseReportFormat(values.format ?? ReportFormat.text, "--format");
  const timeZone = zoneFrom(values.tz);
  const day = dayFrom(values.day, timeZone);
  const [file, fileFrom] = pick("--db", values.db, process.env, "MEMIPC_DB") ?? [
    DEFAULT_DB_FILE,
    "the default",
  ];
  const path = resolve(file);
  if (!existsSync(path)) {
    throw new ConfigError(
      `there is no stats database at ${path} (${fileFrom}): run "memipc collect" to create one, or pass --db FILE`,
    );
  }
  const db = StatsDb.open(path, { readonly: true });
  let text: string;
  try {
    text = renderReport(buildDayReport(db, day, { timeZone }), format);
  } finally {
    db.close();
  }
  if (values.out === undefined) await writeOut(text);
  else await writeFileAtomic(resolve(values.out), text);
}

/** `--tz`, checked; the process's local zone when absent. */
export function zoneFrom(tz: string | undefined): string {
  if (tz === undefined) return localTimeZone();
  try {
    return checkTimeZone(tz);
  } catch (error) {
    throw new ConfigError(
      `--tz ${JSON.stringify(tz)} is not a time zone: use an IANA name such as "Europe/Berlin" or "UTC"`,
      { cause: error },
    );
  }
}

function dayFrom(text: string, timeZone: string): string {
  if (text === "today") return localDay(Date.now(), timeZone);
  if (text === "yesterday") return previousDay(Date.now(), timeZone);
  try {
    parseDay(text);
  } catch (error) {
    throw new ConfigError(
      `--day ${JSON.stringify(text)} is not a day: use YYYY-MM-DD (e.g. 2026-03-29), yesterday or today`,
      { cause: error },
    );
  }
  return text;
}
