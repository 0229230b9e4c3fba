// `memipc tail`: shows a log stream's latest entries, from memcached (what is not drained yet) or from the
// files a drainer wrote, and with -f follows new ones.
import { stat } from "node:fs/promises";
import type { Client } from "../client/index.js";
import { ConfigError, LogError } from "../errors.js";
import { publishedMetrics } from "../log/drainer.js";
import {
  Layout,
  decodeEntry,
  entryKey,
  headKey,
  nextEpoch,
  partitionAddress,
  rolledKey,
  splitHead,
  type StreamAddress,
} from "../log/layout.js";
import {
  LogFollower,
  endPosition,
  extensionOf,
  parseLogRecord,
  readPageBefore,
  type LogFileFormat,
} from "../sinks/log-files.js";
import {
  connect,
  formatFrom,
  parseStreamFlags,
  streamOptionTable,
  formatEntryLine,
  sleep,
  stopSignal,
  wholeNumber,
  writeOut,
} from "./common.js";

export const DEFAULT_LINES = 10; // entries shown without -n
export const MAX_LINES = 1_000_000; // largest -n
export const FOLLOW_EVERY = 200; // ms between polls with -f
export const SKIP_MISSING_AFTER = 3000; // ms tail -f waits for a missing number before moving past it
const WINDOW = 1000; // numbers fetched from memcached per request

export const TAIL_HELP = `Usage: memipc tail [-f] [-n N] [options]
       memipc tail --out DIR [-f] [-n N] [options]

Shows the last N entries of a log stream, one per line: "seq time node data" (a string payload as is,
anything else as JSON; "-" for what a raw entry lacks). With -f, keeps printing new entries until Ctrl-C.

Without --out it reads memcached, which holds only the entries a drainer has not drained yet (a drainer
deletes what it has written): on a drained stream it shows little or nothing, and with a drainer running,
tail -f misses what is drained before it looks. With -f it waits up to ${SKIP_MISSING_AFTER / 1000} s for a missing number (taken
but not written yet), then moves on; numbers the drainer has written are passed over at once.

With --out DIR it reads the JSON Lines files "memipc drain --out DIR" writes (<stream>-YYYY-MM-DD[.n].jsonl)
instead, oldest first, and with -f follows new lines and new files: every entry, once. Gaps show as
"from-to time - gap: reason", late entries as "seq(late) time node data".

${streamOptionTable([
  ["-n, --lines N", "how many entries to show first (0: none)", String(DEFAULT_LINES)],
  ["-f, --follow", "keep printing new entries until interrupted"],
  ["--out DIR", "read the drained files in DIR, not memcached"],
  ["--format F", "with --out: jsonl, or raw (<stream>-….log files)", "jsonl"],
  ["--partition N", "without --out: the partition to read (0 to P-1)", "0"],
])}
A partitioned stream's files show each record's partition before its number ("2:15"). From memcached, tail
reads one partition at a time: with --partitions P, name it with --partition N.
`;

export async function runTail(args: string[]): Promise<void> {
  const { values, connection, address, partitions } = parseStreamFlags("tail", args, {
    lines: { type: "string", short: "n" },
    follow: { type: "boolean", short: "f" },
    out: { type: "string" },
    format: { type: "string" },
    partition: { type: "string" },
  });
  if (values.partition !== undefined && values.out !== undefined) {
    throw new ConfigError("--partition applies without --out: the files hold every partition");
  }
  if (partitions > 1 && values.partition === undefined && values.out === undefined) {
    throw new ConfigError(
      `the stream has ${partitions} partitions and tail reads memcached one partition at a time: add ` +
        "--partition N, or read the drained files with --out DIR",
    );
  }
  const partition =
    values.partition === undefined ? 0 : wholeNumber(values.partition, "--partition", 0, partitions - 1);
  const lines =
    values.lines === undefined ? DEFAULT_LINES : wholeNumber(values.lines, "--lines", 0, MAX_LINES);
  const follow = values.follow === true;
  const format = formatFrom(values.format);
  if (values.format !== undefined && values.out === undefined) {
    throw new ConfigError("--format only applies with --out DIR (the drained files)");
  }
  const stop = follow ? stopSignal() : undefined;
  try {
    if (values.out !== undefined) {
      const dir = values.out;
      const info = await stat(dir).catch(() => undefined);
      if (!info?.isDirectory()) {
        throw new ConfigError(`--out ${dir} is not a folder: give the folder "memipc drain --out" writes to`);
      }
      await tailFiles(dir, address.stream, format, lines, stop?.signal);
      return;
    }
    const client = connect(connection);
    try {
      await tailMemcached(client, partitionAddress(address, partition), lines, stop?.signal);
    } finally {
      client.close();
    }
  } finally {
    stop?.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------
// From memcached

interface Head {
  epoch: number;
  seq: number;
}

/** The stream's counter as epoch and sequence (epoch 0 in the seed layout); undefined when it is missing. */
export async function readHead(client: Client, address: StreamAddress): Promise<Head | undefined> {
  const key = headKey(address);
  const hit = await client.get(key);
  if (hit === undefined) return undefined;
  const text = hit.value.toString("latin1").trim();
  if (!/^\d{1,20}$/.test(text)) {
    throw new LogError(`the counter ${key} holds ${JSON.stringify(text.slice(0, 40))}, not a number`);
  }
  if (address.layout === Layout.seed) return { epoch: 0, seq: Number(text) };
  return splitHead(BigInt(text));
}

/**
 * The last number of `epoch` the stream's drainer has written (0 if unknown): the active drainer's published
 * cursor, or in the seed layout the `Process` key it keeps, as the original idiom's readers expect.
 */
async function drainedUpTo(client: Client, address: StreamAddress, epoch: number): Promise<number> {
  try {
    if (address.layout === Layout.seed) {
      const text = (await client.get(address.seed.process))?.value.toString("latin1").trim() ?? "";
      return /^\d{1,15}$/.test(text) ? Number(text) : 0;
    }
    const metrics = await publishedMetrics(client, address);
    return metrics?.cursor !== undefined && metrics.cursor.epoch === epoch ? metrics.cursor.seq : 0;
  } catch {
    return 0; // informational only: without it, missing numbers are waited for as usual
  }
}

/** Fetches `from`..`to` of `epoch`: the entries found, by sequence number. */
async function fetchRange(
  client: Client,
  address: StreamAddress,
  epoch: number,
  from: number,
  to: number,
): Promise<Map<number, Buffer>> {
  const keys = new Map<string, number>();
  for (let seq = from; seq <= to; seq++) keys.set(entryKey(address, epoch, seq), seq);
  const found = await client.getMulti([...keys.keys()]);
  const entries = new Map<number, Buffer>();
  for (const [key, result] of found) entries.set(keys.get(key)!, result.value);
  return entries;
}

function entryLine(seq: number, value: Buffer): string {
  const entry = decodeEntry(value);
  return formatEntryLine(seq, entry.t, entry.n, entry.d);
}

async function tailMemcached(
  client: Client,
  address: StreamAddress,
  lines: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const head = await readHead(client, address);
  if (head === undefined && signal === undefined) {
    process.stderr.write(
      `memipc tail: ${headKey(address)} does not exist: nothing was logged to this stream yet, ` +
        "or memcached lost it (restarted, evicted, flushed)\n",
    );
    return;
  }
  if (head !== undefined && lines > 0) {
    const first = Math.max(1, head.seq - lines + 1);
    for (let from = first; from <= head.seq; from += WINDOW) {
      const to = Math.min(head.seq, from + WINDOW - 1);
      const found = await fetchRange(client, address, head.epoch, from, to);
      for (let seq = from; seq <= to; seq++) {
        const value = found.get(seq);
        if (value !== undefined) await writeOut(entryLine(seq, value));
      }
    }
  }
  if (signal !== undefined) await followMemcached(client, address, head, signal);
}

/**
 * Prints entries after `start` as they appear, in order, until `signal` aborts. A missing number is waited
 * for until SKIP_MISSING_AFTER ms after the head first showed it handed out, so a tail that is behind (or
 * racing a drainer that deletes what it wrote) moves past old holes at once.
 */
async function followMemcached(
  client: Client,
  address: StreamAddress,
  start: Head | undefined,
  signal: AbortSignal,
): Promise<void> {
  let epoch = start?.epoch;
  let next = start === undefined ? 1 : start.seq + 1;
  /** Head reads of `epoch` (increasing): numbers up to `seq` were handed out by `at`. */
  let seen: Array<{ seq: number; at: number }> = [];
  /** Set when the counter has left `epoch` by rollover: numbers up to `last` are to be shown first. */
  let rolled: { last: number } | undefined;
  let toldDrained = false;
  const handedOutAt = (seq: number) => seen.find((read) => read.seq >= seq)?.at ?? Date.now();

  while (!signal.aborted) {
    const head = await readHead(client, address);
    const now = Date.now();
    if (head !== undefined && rolled === undefined) {
      if (epoch === undefined) epoch = head.epoch;
      if (head.epoch !== epoch || head.seq < next - 1) {
        const marker = head.epoch === epoch ? undefined : await client.get(rolledKey(address, epoch));
        const last = marker === undefined ? NaN : Number(marker.value.toString("latin1"));
        if (Number.isSafeInteger(last)) {
          rolled = { last }; // every number to `last` was handed out: show them, then the next epoch
          seen.push({ seq: last, at: now });
        } else {
          process.stderr.write(`memipc tail: ${headKey(address)} was reset; following the new count\n`);
          epoch = head.epoch;
          next = 1;
          seen = [{ seq: head.seq, at: now }];
        }
      } else if (seen.length === 0 || seen[seen.length - 1]!.seq < head.seq) {
        seen.push({ seq: head.seq, at: now });
      }
    }
    const last = rolled?.last ?? (head !== undefined && head.epoch === epoch ? head.seq : 0);
    let drained: number | undefined; // how far the drainer has written, read once per poll when needed
    waiting: while (epoch !== undefined && next <= last && !signal.aborted) {
      const to = Math.min(last, next + WINDOW - 1);
      const found = await fetchRange(client, address, epoch, next, to);
      for (let seq = next; seq <= to; seq++) {
        const value = found.get(seq);
        if (value === undefined) {
          drained ??= await drainedUpTo(client, address, epoch);
          if (seq <= drained) {
            if (!toldDrained) {
              toldDrained = true;
              process.stderr.write(
                "memipc tail: a drainer wrote some entries to its files before tail saw them; " +
                  '"memipc tail --out DIR -f" shows every entry\n',
              );
            }
          } else if (Date.now() - handedOutAt(seq) < SKIP_MISSING_AFTER) break waiting;
        }
        next = seq + 1;
        if (value !== undefined) await writeOut(entryLine(seq, value));
      }
      while (seen.length > 1 && seen[0]!.seq < next) seen.shift();
    }
    if (rolled !== undefined && next > rolled.last) {
      epoch = nextEpoch(epoch!);
      next = 1;
      rolled = undefined;
      seen = [];
      continue;
    }
    await sleep(FOLLOW_EVERY, signal);
  }
}

// ---------------------------------------------------------------------------------------------------------
// From the drained files

/** A record of a drained file as a line of output; lines that are not records are shown as they are. */
function recordLine(line: string, format: LogFileFormat): string {
  if (format === "raw") return `${line}\n`;
  const record = parseLogRecord(line, format);
  const part = record.kind === "entry" || record.kind === "gap" ? record.part : null;
  const at = part === null ? "" : `${part}:`;
  switch (record.kind) {
    case "checkpoint":
      return "";
    case "line":
      return `${line}\n`;
    case "gap":
      return formatEntryLine(
        `${at}${record.from}-${record.to}`,
        record.time ?? undefined,
        undefined,
        `gap: ${record.reason}`,
      );
    case "entry": {
      const seq = `${at}${record.seq}${record.late ? "(late)" : ""}`;
      return formatEntryLine(seq, record.time ?? undefined, record.node ?? undefined, record.data);
    }
  }
}

async function tailFiles(
  dir: string,
  stream: string,
  format: LogFileFormat,
  wanted: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const ext = extensionOf(format);
  // The last lines, from the newest file back as far as needed. Following starts where the newest ends.
  const end = await endPosition(dir, stream, ext);
  if (end === undefined && signal === undefined) {
    process.stderr.write(`memipc tail: no ${stream}-YYYY-MM-DD.${ext} files in ${dir}\n`);
    return;
  }
  if (end !== undefined && wanted > 0) {
    const page = await readPageBefore(dir, stream, ext, end, wanted, Infinity);
    for (const line of page.lines.reverse()) await writeOut(recordLine(line.text, format));
  }
  if (signal === undefined) return;
  const follower = new LogFollower(dir, stream, ext, end);
  await follower.run(signal, FOLLOW_EVERY, async (lines) => {
    for (const line of lines) await writeOut(recordLine(line.text, format));
  });
}
