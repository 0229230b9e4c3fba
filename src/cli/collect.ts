// `memipc collect`: runs the stats collector in the foreground until SIGINT or SIGTERM, storing closed buckets
// (and legacy counters) in a SQLite file.
import { ConfigError, FencedError, LeaseLostError } from "../errors.js";
import {
  DEFAULT_REPORT_TIME,
  dueReportDay,
  nextReportTime,
  writeReportFiles,
} from "../sinks/report-files.js";
import { DEFAULT_BUSY_TIMEOUT, DEFAULT_DB_FILE, StatsDb } from "../sinks/stats-db.js";
import {
  Collector,
  DEFAULT_GRACE,
  DEFAULT_INTERVAL,
  DEFAULT_LOOKBACK,
  resolveCollectorOptions,
  type CollectResult,
} from "../stats/collector.js";
import { DEFAULT_BUCKET_SECONDS } from "../stats/layout.js";
import {
  COMMON_ROWS,
  connect,
  connectionFrom,
  optionTable,
  parseFlags,
  pick,
  stopSignal,
  wholeNumber,
} from "./common.js";
import { zoneFrom } from "./report.js";

const DEFAULT_LEASE_TTL = 10; // s
const DEFAULT_REPORTS = "memipc-reports"; // folder for the daily reports
const ERROR_REPEAT_EVERY = 30_000; // ms before the same error is printed again

export const COLLECT_HELP = `Usage: memipc collect [options]

Runs the stats collector in the foreground until SIGINT or SIGTERM. Every --interval seconds it stores each
closed time bucket (once --grace seconds have passed after its end) into the SQLite file --db, as absolute
values: killed at any moment and started again, it never counts anything twice. It reads each bucket again
later (after 1 min, 10 min, 1 h, 6 h and 1 day) to pick up late increments. Several collectors may run: one
holds the lease and works, the others stand by.

${optionTable([
  ...COMMON_ROWS,
  ["--db FILE", "the SQLite file (created if missing)", `MEMIPC_DB, else ${DEFAULT_DB_FILE}`],
  ["--busy-timeout MS", "wait for another process's lock on --db", String(DEFAULT_BUSY_TIMEOUT)],
  ["--legacy NAME,…", "plain counter keys to take out (read, then decr)", "none"],
  ["--interval SECONDS", "seconds between passes", String(DEFAULT_INTERVAL)],
  ["--grace SECONDS", "wait after a bucket ends (clock skew)", String(DEFAULT_GRACE)],
  ["--bucket SECONDS", "bucket size: must match the writers", String(DEFAULT_BUCKET_SECONDS)],
  ["--lookback SECONDS", "how far back a new --db looks for buckets", `${DEFAULT_LOOKBACK} (7 days)`],
  ["--lease-ttl SECONDS", "a dead collector's lease expires after this", String(DEFAULT_LEASE_TTL)],
  ["--reports DIR", "folder for the daily reports (created if missing)", DEFAULT_REPORTS],
  ["--report-at HH:MM", "local time the day before's report is written", DEFAULT_REPORT_TIME],
  ["--tz ZONE", "IANA time zone of days and --report-at", "TZ, else the system's zone"],
  ["--no-reports", "write no daily reports", "off"],
  ["--once", "one pass (and the daily report if due), then exit", "off"],
  ["-v, --verbose", "a line per pass on stderr", "on for a terminal"],
])}
While another process holds --db locked for longer than --busy-timeout (or the disk is full), the collector
says so, keeps reading closed buckets into memory and tries the database again, pausing longer each time (up to
30 s); once it takes writes, everything read meanwhile is stored. Legacy counters wait meanwhile.

Legacy counters are keys that existing code increments itself ("incr new_account"), named exactly, outside
any namespace. Each pass reads one, stores the value with the time, then decrements it by exactly that value,
so increments made in between stay for the next pass.

Every day after --report-at, the collector holding the lease writes the day before's report into --reports
as <day>.html, <day>.md and <day>.json (once: the database records it). Any day's report, any time:
"memipc report --db FILE --day YYYY-MM-DD".
`;

export async function runCollect(args: string[]): Promise<void> {
  const { values } = parseFlags("collect", args, {
    db: { type: "string" },
    "busy-timeout": { type: "string" },
    legacy: { type: "string" },
    interval: { type: "string" },
    grace: { type: "string" },
    bucket: { type: "string" },
    lookback: { type: "string" },
    "lease-ttl": { type: "string" },
    reports: { type: "string" },
    "report-at": { type: "string" },
    tz: { type: "string" },
    "no-reports": { type: "boolean" },
    once: { type: "boolean" },
    verbose: { type: "boolean", short: "v" },
  });
  const connection = connectionFrom(values, process.env);
  const number = (flag: keyof typeof values, fallback: number, min: number, max: number): number => {
    const text = values[flag];
    return typeof text === "string" ? wholeNumber(text, `--${flag}`, min, max) : fallback;
  };
  const legacy = values.legacy === undefined ? [] : values.legacy.split(",").filter((n) => n !== "");
  if (values.legacy !== undefined && legacy.length === 0) {
    throw new ConfigError(
      '--legacy needs one or more key names separated by commas, e.g. "new_account,new_post"',
    );
  }
  const verbose = values.verbose === true || process.stderr.isTTY === true;
  if (values["no-reports"] && (values.reports !== undefined || values["report-at"] !== undefined)) {
    throw new ConfigError("--no-reports contradicts --reports and --report-at: give one or the other");
  }
  const timeZone = zoneFrom(values.tz);
  const reportAt = values["report-at"] ?? DEFAULT_REPORT_TIME;
  nextReportTime(Date.now(), reportAt, timeZone); // refuses a malformed --report-at before anything starts
  const reports = values["no-reports"] ? undefined : (values.reports ?? DEFAULT_REPORTS);
  let lastError = { message: "", at: 0 };
  const options = resolveCollectorOptions({
    namespace: connection.namespace,
    bucketSeconds: number("bucket", DEFAULT_BUCKET_SECONDS, 1, 86_400),
    interval: values.interval === undefined ? DEFAULT_INTERVAL : seconds(values.interval, "--interval"),
    grace: number("grace", DEFAULT_GRACE, 0, 86_400),
    lookback: number("lookback", DEFAULT_LOOKBACK, 0, 366 * 86_400),
    legacy,
    lease: { ttlSeconds: number("lease-ttl", DEFAULT_LEASE_TTL, 2, 3600) },
    onPass: (result) => {
      if (verbose) process.stderr.write(`memipc collect: ${passLine(result)}\n`);
    },
    onActive: (token) => {
      if (verbose) process.stderr.write(`memipc collect: holding the lease; fencing token ${token}\n`);
    },
    // Passes are retried (a fenced collector stands by for the lease instead); say so on stderr, without
    // repeating the same line every second.
    onError: (error) => {
      const now = Date.now();
      if (error.message === lastError.message && now - lastError.at < ERROR_REPEAT_EVERY) return;
      lastError = { message: error.message, at: now };
      const next = error instanceof FencedError ? "" : " (retrying)"; // a fenced one says it stands by
      process.stderr.write(`memipc collect: ${error.message}${next}\n`);
    },
  });
  // Everything is checked: only now is the database created.
  const [dbFile] = pick("--db", values.db, process.env, "MEMIPC_DB") ?? [DEFAULT_DB_FILE];
  const db = StatsDb.open(dbFile, { busyTimeout: number("busy-timeout", DEFAULT_BUSY_TIMEOUT, 0, 600_000) });
  // Yesterday's report, once today's report time has passed; a failure is retried after the next pass.
  const writeDueReport = async (): Promise<void> => {
    if (reports === undefined) return;
    const day = dueReportDay(db, Date.now(), reportAt, timeZone);
    if (day === undefined) return;
    const files = await writeReportFiles(db, day, reports, { timeZone });
    process.stderr.write(`memipc collect: wrote the report of ${day}: ${files.join(", ")}\n`);
  };
  const client = connect(connection);
  const stop = stopSignal();
  try {
    const collector = new Collector(client, db, { ...options, afterPass: writeDueReport });
    if (values.once) {
      // One pass under the lease too: two collectors taking out the same legacy counter would count it twice.
      const lease = collector.lease!;
      if (!(await lease.tryAcquire())) {
        const { owner } = await lease.status();
        throw new LeaseLostError(
          `another collector (${owner ?? "unknown"}) holds ${lease.key}: it is already collecting; stop it first or leave out --once`,
        );
      }
      try {
        collector.takeFence();
        const result = await collector.collectOnce();
        process.stderr.write(`memipc collect: ${passLine(result)}\n`);
        // What the database refused is still in memcached (until its keys expire): a later run stores it.
        if (result.held !== undefined) throw result.held.error;
        await writeDueReport();
      } finally {
        await lease.release();
      }
      return;
    }
    if (verbose) process.stderr.write(`memipc collect: into ${db.file}; waiting for the lease\n`);
    await collector.run(stop.signal);
  } finally {
    stop.dispose();
    client.close();
    db.close();
  }
}

/** A number of seconds above 0 (fractions allowed: 0.5), at most a day. */
function seconds(text: string, flag: string): number {
  const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!(value > 0 && value <= 86_400)) {
    throw new ConfigError(
      `${flag} "${text}" must be a number of seconds above 0 and at most 86400 (e.g. 10 or 0.5)`,
    );
  }
  return value;
}

function passLine(r: CollectResult): string {
  const newest = r.newest === undefined ? "none yet" : new Date(r.newest * 1000).toISOString();
  const legacy = r.legacy === 0 ? "" : `, ${r.legacy} legacy collections (${r.legacyTotal} in all)`;
  const late =
    r.storedLate === 0 ? "" : `; stored ${r.storedLate} bucket reads held while the database refused`;
  const held =
    r.held === undefined
      ? ""
      : `; holding ${r.held.buckets} bucket reads (${r.held.values} values) for the database, which refuses writes`;
  return (
    `${r.buckets} new buckets, ${r.rechecked} read again, ${r.values} values${legacy} in ${r.took} ms; ` +
    `newest bucket ${newest}${late}${held}`
  );
}
