// `memipc incr NAME [BY]` and `memipc timing NAME MS`: count from scripts and cron jobs.
import { ConfigError } from "../errors.js";
import { DEFAULT_BUCKET_SECONDS } from "../stats/layout.js";
import { StatsWriter } from "../stats/writer.js";
import {
  COMMON_ROWS,
  connect,
  connectionFrom,
  optionTable,
  parseFlags,
  wholeNumber,
  type HelpRow,
} from "./common.js";

const BUCKET_ROWS: HelpRow[] = [
  [
    "--bucket SECONDS",
    "bucket size: must match the other writers and the collector",
    `${DEFAULT_BUCKET_SECONDS}`,
  ],
];

export const INCR_HELP = `Usage: memipc incr [options] NAME [BY]

Adds BY (a whole number, 1 or more; default 1) to the counter NAME in the current time bucket.
NAME is 1 to 100 letters, digits, "_", "." or "-".

${optionTable([...COMMON_ROWS, ...BUCKET_ROWS])}
Example:
  memipc incr accounts.created
`;

export const TIMING_HELP = `Usage: memipc timing [options] NAME MS

Records that NAME took MS milliseconds (a number, 0 or more) in the current time bucket: its count, sum
and histogram, from which reports give p50, p90, p99 and max.

${optionTable([...COMMON_ROWS, ...BUCKET_ROWS])}
Example:
  memipc timing report.generate 1234.5
`;

function writerFrom(
  command: string,
  args: string[],
): { writer: StatsWriter; positionals: string[]; close(): void } {
  const { values, positionals } = parseFlags(command, args, { bucket: { type: "string" } }, true);
  const connection = connectionFrom(values, process.env);
  const bucketSeconds =
    values.bucket === undefined ? DEFAULT_BUCKET_SECONDS : wholeNumber(values.bucket, "--bucket", 1, 86_400);
  const client = connect(connection);
  const writer = new StatsWriter(client, { namespace: connection.namespace, bucketSeconds });
  return { writer, positionals, close: () => client.close() };
}

export async function runIncr(args: string[]): Promise<void> {
  const { positionals } = parseFlags("incr", args, { bucket: { type: "string" } }, true);
  if (positionals.length < 1 || positionals.length > 2) {
    throw new ConfigError('give a counter name and, optionally, an amount: see "memipc incr --help"');
  }
  const by = positionals[1] === undefined ? 1 : wholeNumber(positionals[1], "BY", 1);
  const { writer, close } = writerFrom("incr", args);
  try {
    await writer.incr(positionals[0]!, by);
  } finally {
    close();
  }
}

export async function runTiming(args: string[]): Promise<void> {
  const { positionals } = parseFlags("timing", args, { bucket: { type: "string" } }, true);
  if (positionals.length !== 2) {
    throw new ConfigError('give a timer name and a duration in ms: see "memipc timing --help"');
  }
  const text = positionals[1]!;
  const ms = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(ms))
    throw new ConfigError(`MS "${text}" is not a duration in milliseconds (e.g. 12.5)`);
  const { writer, close } = writerFrom("timing", args);
  try {
    await writer.timing(positionals[0]!, ms);
  } finally {
    close();
  }
}
