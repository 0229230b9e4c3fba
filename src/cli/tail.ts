// `memipc tail`: shows a log stream's latest entries, from memcached (what is not drained yet) or from the
// files a drainer wrote, and with -f follows new ones.
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Client } from "../client/index.js";
import { ConfigError, LogError } from "../errors.js";
import { publishedMetrics } from "../log/drainer.js";
import {
  Layout,
  decodeEntry,
  entryKey,
  headKey,
  nextEpoch,
  rolledKey,
  splitHead,
  type StreamAddress,
} from "../log/layout.js";
import { bySinkFileAge, listSinkFiles, type SinkFileName } from "../sinks/index.js";
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
const CHUNK = 64 * 1024; // bytes read at a time from a file

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
])}`;

export async function runTail(args: string[]): Promise<void> {
  const { values, connection, address } = parseStreamFlags("tail", args, {
    lines: { type: "string", short: "n" },
    follow: { type: "boolean", short: "f" },
    out: { type: "string" },
    format: { type: "string" },
  });
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
      await tailMemcached(client, address, lines, stop?.signal);
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
function recordLine(line: string, format: string): string {
  if (format === "raw") return `${line}\n`;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return `${line}\n`;
  }
  if (typeof value !== "object" || value === null) return `${line}\n`;
  const record = value as {
    seq?: unknown;
    ms?: unknown;
    node?: unknown;
    data?: unknown;
    late?: unknown;
    gap?: { from?: unknown; to?: unknown; reason?: unknown };
  };
  const ms = typeof record.ms === "number" ? record.ms : undefined;
  if (typeof record.gap === "object" && record.gap !== null) {
    const { from, to, reason } = record.gap;
    return formatEntryLine(`${String(from)}-${String(to)}`, ms, undefined, `gap: ${String(reason)}`);
  }
  if (typeof record.seq !== "number") return `${line}\n`;
  const seq = record.late === true ? `${record.seq}(late)` : record.seq;
  return formatEntryLine(seq, ms, typeof record.node === "string" ? record.node : undefined, record.data);
}

/**
 * The last `wanted` complete lines of `path` before byte `end` (which follows a line break), oldest first.
 * Reads backwards a chunk at a time, so a big file costs only its tail.
 */
async function lastLines(path: string, end: number, wanted: number): Promise<string[]> {
  const newestFirst: string[] = [];
  const handle = await open(path, "r");
  try {
    let position = end;
    let carry = Buffer.alloc(0); // the start of a line that began before the chunk read last
    while (position > 0 && newestFirst.length < wanted) {
      const from = Math.max(0, position - CHUNK);
      const chunk = Buffer.alloc(position - from);
      await readFully(handle, chunk, from);
      position = from;
      const data = Buffer.concat([chunk, carry]);
      let rest = data;
      if (from > 0) {
        // The first line may start before this chunk: keep it for the next round.
        const firstBreak = data.indexOf(0x0a);
        carry = data.subarray(0, firstBreak + 1);
        rest = data.subarray(firstBreak + 1);
      }
      const lines = rest.toString("utf8").split("\n");
      lines.pop(); // after the final line break
      for (let i = lines.length - 1; i >= 0 && newestFirst.length < wanted; i--) newestFirst.push(lines[i]!);
    }
  } finally {
    await handle.close();
  }
  return newestFirst.reverse();
}

async function readFully(handle: Awaited<ReturnType<typeof open>>, buffer: Buffer, position: number) {
  let read = 0;
  while (read < buffer.length) {
    const { bytesRead } = await handle.read(buffer, read, buffer.length - read, position + read);
    if (bytesRead === 0) break;
    read += bytesRead;
  }
  return read;
}

/** Where `path`'s last complete line ends (a torn line being written is left for later). */
async function completeEnd(path: string, size: number): Promise<number> {
  if (size === 0) return 0;
  const handle = await open(path, "r");
  try {
    for (let end = size; end > 0; end -= CHUNK) {
      const from = Math.max(0, end - CHUNK);
      const chunk = Buffer.alloc(end - from);
      const read = await readFully(handle, chunk, from);
      const lastBreak = chunk.subarray(0, read).lastIndexOf(0x0a);
      if (lastBreak >= 0) return from + lastBreak + 1;
    }
    return 0;
  } finally {
    await handle.close();
  }
}

async function tailFiles(
  dir: string,
  stream: string,
  format: string,
  wanted: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const ext = format === "raw" ? "log" : "jsonl";
  const files = await listSinkFiles(dir, stream, ext);
  if (files.length === 0 && signal === undefined) {
    process.stderr.write(`memipc tail: no ${stream}-YYYY-MM-DD.${ext} files in ${dir}\n`);
    return;
  }
  // The last lines, from the newest file back as far as needed. Following starts where the newest ends.
  let current: { file: SinkFileName; position: number } | undefined;
  let shown: string[] = [];
  for (let i = files.length - 1; i >= 0; i--) {
    const path = join(dir, files[i]!.name);
    const end = await completeEnd(path, (await stat(path)).size);
    current ??= { file: files[i]!, position: end };
    if (shown.length >= wanted) break;
    shown = [...(await lastLines(path, end, wanted - shown.length)), ...shown];
  }
  for (const line of shown) await writeOut(recordLine(line, format));
  if (signal === undefined) return;

  while (!signal.aborted) {
    // List before reading: once a newer file exists the sink writes no more to the older ones, so what the
    // read below finds is all the current file will ever hold.
    const listed = await listSinkFiles(dir, stream, ext);
    if (current === undefined) {
      if (listed.length === 0) {
        await sleep(FOLLOW_EVERY, signal);
        continue;
      }
      current = { file: listed[0]!, position: 0 };
    }
    const path = join(dir, current.file.name);
    const size = (await stat(path).catch(() => undefined))?.size ?? 0;
    if (size < current.position) current.position = size; // cut back by the sink's recovery
    while (size > current.position && !signal.aborted) {
      const chunk = await readAt(path, current.position, Math.min(16 * CHUNK, size - current.position));
      const lastBreak = chunk.lastIndexOf(0x0a);
      if (lastBreak < 0) break; // a line being written: wait for its end
      current.position += lastBreak + 1;
      for (const line of chunk.subarray(0, lastBreak).toString("utf8").split("\n")) {
        await writeOut(recordLine(line, format));
      }
    }
    const from = current.file;
    const newer = listed.find((file) => bySinkFileAge(file, from) > 0);
    if (newer !== undefined) {
      current = { file: newer, position: 0 };
      continue;
    }
    await sleep(FOLLOW_EVERY, signal);
  }
}

async function readAt(path: string, position: number, length: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(length);
    return buffer.subarray(0, await readFully(handle, buffer, position));
  } finally {
    await handle.close();
  }
}
