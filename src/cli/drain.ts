// `memipc drain`: runs a log stream's drainer in the foreground, writing to files, until SIGINT or SIGTERM.
import { access, constants, mkdir } from "node:fs/promises";
import { ConfigError, FencedError } from "../errors.js";
import {
  DEFAULT_HOLE_TIMEOUT,
  DEFAULT_LEASE_TTL,
  publishedMetrics,
  type DrainerMetrics,
  type LogDrainer,
} from "../log/drainer.js";
import { MAX_LIMIT, type StreamAddress } from "../log/layout.js";
import { DEFAULT_REORDER_WINDOW } from "../log/merge.js";
import { createDrainer, type PartitionMetrics } from "../log/partitioned-drainer.js";
import { DEFAULT_MAX_BYTES, openFileSink, type FsyncPolicy, type SinkFormat } from "../sinks/index.js";
import {
  connect,
  formatFrom,
  parseStreamFlags,
  streamOptionTable,
  size,
  sleep,
  stopSignal,
  wholeNumber,
} from "./common.js";

export const STATUS_EVERY = 5000; // ms between status lines
const ERROR_REPEAT_EVERY = 30_000; // ms before the same error is printed again
const MAX_HOLE_TIMEOUT = 24 * 60 * 60 * 1000; // ms
const MAX_LEASE_TTL = 3600; // s

export const DRAIN_HELP = `Usage: memipc drain --out DIR [options]

Runs a drainer for a log stream in the foreground until SIGINT or SIGTERM. Several may run (on one machine or
several): one holds the stream's lease and drains, the others stand by and take over within about
--lease-ttl seconds if it dies. The active one writes each entry once, in order, to files in DIR
(<stream>-YYYY-MM-DD[.n].jsonl, or .log with --format raw), then deletes it from memcached. Killed at any
moment (even kill -9) and started again on the same DIR, it neither repeats nor skips an entry.

${streamOptionTable([
  ["--out DIR", "folder for the output files (created if missing)", "required"],
  ["--format F", "jsonl (JSON Lines) or raw (the text alone)", "jsonl"],
  ["--fsync P", "batch, never, or MS: see below", "batch"],
  ["--max-bytes SIZE", "start a new file before one passes SIZE", `${DEFAULT_MAX_BYTES / 1024 / 1024}m`],
  ["--hole-timeout MS", "ms a missing number may hold up the ones after it", String(DEFAULT_HOLE_TIMEOUT)],
  ["--limit N", "largest number of an epoch (the producers' limit)", String(MAX_LIMIT)],
  ["--lease-ttl SECONDS", "a dead drainer's lease expires after this", String(DEFAULT_LEASE_TTL)],
  ["--reorder-window MS", "partitions: ms an entry waits for older ones", String(DEFAULT_REORDER_WINDOW)],
  ["-v, --verbose", `a status line every ${STATUS_EVERY / 1000} s on stderr`, "on for a terminal"],
])}
--fsync batch makes each batch durable (fsync) before its entries are deleted from memcached; MS shares one
fsync among the batches of MS milliseconds, with the same guarantee; never leaves writing back to the OS, so a
machine crash or power cut can lose the last seconds. A missing number (taken by a producer that never wrote
it) becomes a gap record after --hole-timeout. SIZE is bytes or a number with k, m or g (64m, 512k). Status
lines and errors go to standard error. Read the output with "memipc tail --out DIR [-f]".

With --partitions P (as many as the producers use, or more), each partition is drained in its own order and
the partitions are merged into the same files in time order: each record says its "part", and an entry
waits at most --reorder-window ms for older entries of partitions that have nothing waiting. Drainers that
share DIR take turns through the lease; the folder's <stream>.fence keeps one that was paused past its
lease from writing after its successor, so DIR must be on a file system with working POSIX locks.
`;

interface DrainSettings {
  address: StreamAddress;
  out: string;
  format: SinkFormat;
  fsync: FsyncPolicy;
  maxBytes: number;
  holeTimeout: number;
  limit: number | undefined;
  leaseTtl: number;
  partitions: number;
  reorderWindow: number;
  verbose: boolean;
}

export async function runDrain(args: string[]): Promise<void> {
  const { values, connection, address, partitions } = parseStreamFlags("drain", args, {
    out: { type: "string", short: "o" },
    format: { type: "string" },
    fsync: { type: "string" },
    "max-bytes": { type: "string" },
    "hole-timeout": { type: "string" },
    limit: { type: "string" },
    "lease-ttl": { type: "string" },
    "reorder-window": { type: "string" },
    verbose: { type: "boolean", short: "v" },
  });
  if (values.out === undefined || values.out === "") {
    throw new ConfigError(
      '--out DIR is required: the folder the drained entries are written to (see "memipc drain --help")',
    );
  }
  const format = formatFrom(values.format);
  const settings: DrainSettings = {
    address,
    out: values.out,
    format,
    fsync: fsyncPolicy(values.fsync ?? "batch"),
    maxBytes:
      values["max-bytes"] === undefined ? DEFAULT_MAX_BYTES : size(values["max-bytes"], "--max-bytes"),
    holeTimeout:
      values["hole-timeout"] === undefined
        ? DEFAULT_HOLE_TIMEOUT
        : wholeNumber(values["hole-timeout"], "--hole-timeout", 0, MAX_HOLE_TIMEOUT),
    limit: values.limit === undefined ? undefined : wholeNumber(values.limit, "--limit", 1, MAX_LIMIT),
    leaseTtl:
      values["lease-ttl"] === undefined
        ? DEFAULT_LEASE_TTL
        : wholeNumber(values["lease-ttl"], "--lease-ttl", 2, MAX_LEASE_TTL),
    partitions,
    reorderWindow:
      values["reorder-window"] === undefined
        ? DEFAULT_REORDER_WINDOW
        : wholeNumber(values["reorder-window"], "--reorder-window", 0, MAX_HOLE_TIMEOUT),
    verbose: values.verbose === true || process.stderr.isTTY === true,
  };
  await checkFolder(settings.out);

  const client = connect(connection);
  const stop = stopSignal();
  try {
    await drain(client, settings, stop.signal);
  } finally {
    stop.dispose();
    client.close();
  }
}

function fsyncPolicy(text: string): FsyncPolicy {
  if (text === "batch" || text === "never") return text;
  if (!/^\d+$/.test(text)) {
    throw new ConfigError(`--fsync "${text}" is not a policy: use batch, never, or a number of milliseconds`);
  }
  return { everyMs: wholeNumber(text, "--fsync", 1, 60_000) };
}

/** Creates the output folder if needed and checks it can be written, so a bad --out fails at start-up. */
async function checkFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (error) {
    throw new ConfigError(
      `--out ${dir}: ${(error as Error).message}: give a folder this process can write to`,
      {
        cause: error,
      },
    );
  }
}

async function drain(client: ReturnType<typeof connect>, settings: DrainSettings, signal: AbortSignal) {
  const { address } = settings;
  let lastError = { message: "", at: 0 };
  const drainer = createDrainer(client, {
    ...address,
    partitions: settings.partitions,
    reorderWindow: settings.reorderWindow,
    holeTimeout: settings.holeTimeout,
    ...(settings.limit === undefined ? {} : { limit: settings.limit }),
    lease: { ttlSeconds: settings.leaseTtl },
    openSink: () =>
      openFileSink(settings.out, {
        stream: address.stream,
        partitioned: settings.partitions > 1,
        format: settings.format,
        fsync: settings.fsync,
        maxBytes: settings.maxBytes,
      }),
    // Errors are retried by the drainer; say so on stderr, without repeating the same line every second.
    onError: (error) => {
      const now = Date.now();
      if (error.message === lastError.message && now - lastError.at < ERROR_REPEAT_EVERY) return;
      lastError = { message: error.message, at: now };
      const next = error instanceof FencedError ? "" : " (retrying)"; // a fenced drainer stands by
      process.stderr.write(`memipc drain: ${error.message}${next}\n`);
    },
  });
  const name = `memipc drain ${address.stream}`;
  if (settings.verbose) {
    process.stderr.write(
      `${name}: ${drainer.owner} → ${settings.out} (${settings.format}), while it holds the lease\n`,
    );
  }
  const status = settings.verbose ? reportStatus(client, drainer, name, signal) : Promise.resolve();
  try {
    await drainer.run(signal);
  } finally {
    await status;
  }
  if (settings.verbose) {
    const m = drainer.metrics;
    process.stderr.write(`${name}: stopped; ${m.entries} entries, ${m.gaps} gaps, ${m.late} late written\n`);
  }
}

/** A status line every STATUS_EVERY ms until `signal` aborts. */
async function reportStatus(
  client: ReturnType<typeof connect>,
  drainer: LogDrainer,
  name: string,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    await sleep(STATUS_EVERY, signal);
    if (signal.aborted) return;
    const m = drainer.metrics;
    if (m.active) {
      process.stderr.write(`${name}: ${statusLine(m)}\n`);
      continue;
    }
    const other = await publishedMetrics(client, drainer.address).catch(() => undefined);
    process.stderr.write(
      other === undefined || !other.active
        ? `${name}: standing by, waiting for the lease\n`
        : `${name}: standing by; ${other.owner} drains: ${statusLine(other)}\n`,
    );
  }
}

function statusLine(m: DrainerMetrics & { partitions?: PartitionMetrics[] }): string {
  const at = (c: { epoch: number; seq: number } | undefined) =>
    c === undefined ? "-" : `${c.epoch}:${c.seq}`;
  const error = m.lastError === undefined ? "" : `, last error: ${m.lastError}`;
  const where =
    m.partitions === undefined
      ? `head ${at(m.head)} cursor ${at(m.cursor)}`
      : m.partitions.map((p) => `p${p.partition} ${at(p.cursor)}/${at(p.head)}`).join(" ");
  return (
    `${where} lag ${m.lag}, ${m.entriesPerSecond.toFixed(1)} entries/s, ` +
    `${m.entries} entries, ${m.gaps} gaps, ${m.late} late${error}`
  );
}
