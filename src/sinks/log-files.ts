// Reading a file sink's output back: records parsed into typed views, pages of lines read backwards from a
// position (a file and a byte offset, stable because the sink only ever appends), and a follower that sees
// new lines and new files as the sink writes them. Used by `memipc tail --out` and the dashboard's log page.
import { open, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { bySinkFileAge, listSinkFiles, type SinkFileName } from "./file-sink.js";

export const LOG_FILE_CHUNK = 64 * 1024; // bytes read at a time from a file
const FOLLOW_READ = 16 * LOG_FILE_CHUNK; // bytes read at once while following (more for a longer line)
export const DEFAULT_PAGE_BYTES = 4 * 1024 * 1024; // bytes a page reads at most (it stops at a line's end)

/** The files' formats, as `openFileSink` names them: JSON Lines (`.jsonl`) or raw lines (`.log`). */
export type LogFileFormat = "jsonl" | "raw";

export function extensionOf(format: LogFileFormat): string {
  return format === "raw" ? "log" : "jsonl";
}

// ---------------------------------------------------------------------------------------------------------
// Positions

/** Where a line starts: a data file of the stream (its day and index) and a byte offset in it. */
export interface LogPosition {
  day: string;
  index: number;
  offset: number;
}

/** A line of a stream's files, its `\n` left out. */
export interface LogLine {
  position: LogPosition;
  text: string;
}

/** Orders positions as the records they point at were written. */
export function comparePositions(a: LogPosition, b: LogPosition): number {
  return bySinkFileAge(fileOf(a), fileOf(b)) || a.offset - b.offset;
}

/** A position as text: `<day>.<index>:<offset>`, e.g. `2026-11-24.0:1234`. */
export function formatPosition(position: LogPosition): string {
  return `${position.day}.${position.index}:${position.offset}`;
}

export const POSITION_FORMAT = "<YYYY-MM-DD>.<file index>:<byte offset>, e.g. 2026-11-24.0:1234";

/** Parses `formatPosition`'s text; undefined for anything else. */
export function parsePosition(text: string): LogPosition | undefined {
  const match = /^(\d{4}-\d{2}-\d{2})\.(\d{1,9}):(\d{1,15})$/.exec(text);
  if (match === null) return undefined;
  const offset = Number(match[3]);
  if (!Number.isSafeInteger(offset)) return undefined;
  return { day: match[1]!, index: Number(match[2]), offset };
}

function fileOf(position: LogPosition): SinkFileName {
  return { name: "", day: position.day, index: position.index };
}

// ---------------------------------------------------------------------------------------------------------
// Records

/**
 * A line of the files as a record: an entry, a gap, a checkpoint (a partitioned stream's note of where each
 * partition stands, nothing to show), or (raw lines, or a line that is not a record) the text as it is. Times
 * are ms since the Unix epoch; null where the line has none. `part`: the partition, null when not partitioned.
 */
export type LogRecord =
  | {
      kind: "entry";
      part: number | null;
      epoch: number | null;
      seq: number;
      time: number | null;
      node: string | null;
      data: unknown;
      late: boolean;
    }
  | {
      kind: "gap";
      part: number | null;
      epoch: number | null;
      from: number;
      to: number;
      reason: string;
      time: number | null;
    }
  | { kind: "checkpoint" }
  | { kind: "line"; text: string };

const RAW_GAP = /^#memipc gap (?:part=(\d+) )?epoch=(\d+) from=(\d+) to=(\d+) reason=(\S+) time=(\S+)$/;

/** Reads one line written by the sink in `format` (see formatJsonLine and formatRawLine). */
export function parseLogRecord(text: string, format: LogFileFormat): LogRecord {
  if (format === "raw") {
    const gap = RAW_GAP.exec(text);
    if (gap === null) return { kind: "line", text };
    const time = Date.parse(gap[6]!);
    return {
      kind: "gap",
      part: gap[1] === undefined ? null : Number(gap[1]),
      epoch: Number(gap[2]),
      from: Number(gap[3]),
      to: Number(gap[4]),
      reason: gap[5]!,
      time: Number.isFinite(time) ? time : null,
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: "line", text };
  }
  if (typeof value !== "object" || value === null) return { kind: "line", text };
  const v = value as {
    part?: unknown;
    checkpoint?: unknown;
    seq?: unknown;
    epoch?: unknown;
    ms?: unknown;
    node?: unknown;
    data?: unknown;
    late?: unknown;
    gap?: { from?: unknown; to?: unknown; reason?: unknown };
  };
  if (typeof v.checkpoint === "object" && v.checkpoint !== null) return { kind: "checkpoint" };
  const epoch = typeof v.epoch === "number" ? v.epoch : null;
  const time = typeof v.ms === "number" ? v.ms : null;
  const part = typeof v.part === "number" ? v.part : null;
  if (typeof v.gap === "object" && v.gap !== null) {
    const { from, to, reason } = v.gap;
    if (typeof from !== "number" || typeof to !== "number") return { kind: "line", text };
    return { kind: "gap", part, epoch, from, to, reason: String(reason), time };
  }
  if (typeof v.seq !== "number") return { kind: "line", text };
  return {
    kind: "entry",
    part,
    epoch,
    seq: v.seq,
    time,
    node: typeof v.node === "string" ? v.node : null,
    data: v.data === undefined ? null : v.data,
    late: v.late === true,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Files

/** The stream's files in `dir`, oldest first; none when the folder does not exist (yet). */
export async function streamFiles(dir: string, stream: string, ext: string): Promise<SinkFileName[]> {
  try {
    return await listSinkFiles(dir, stream, ext);
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return [];
    throw error;
  }
}

/** The format of the stream's files in `dir`: raw lines when there are `.log` files and no `.jsonl` ones. */
export async function detectFormat(dir: string, stream: string): Promise<LogFileFormat> {
  if ((await streamFiles(dir, stream, "jsonl")).length > 0) return "jsonl";
  return (await streamFiles(dir, stream, "log")).length > 0 ? "raw" : "jsonl";
}

export async function readFully(handle: FileHandle, buffer: Buffer, position: number): Promise<number> {
  let read = 0;
  while (read < buffer.length) {
    const { bytesRead } = await handle.read(buffer, read, buffer.length - read, position + read);
    if (bytesRead === 0) break;
    read += bytesRead;
  }
  return read;
}

/** Up to `length` bytes of `path` from `position` (fewer at the end of the file). */
export async function readAt(path: string, position: number, length: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(length);
    return buffer.subarray(0, await readFully(handle, buffer, position));
  } finally {
    await handle.close();
  }
}

/** Where `path`'s last complete line ends, at most `size` (a torn line being written is left for later). */
export async function completeEnd(path: string, size: number): Promise<number> {
  if (size === 0) return 0;
  const handle = await open(path, "r");
  try {
    for (let end = size; end > 0; end -= LOG_FILE_CHUNK) {
      const from = Math.max(0, end - LOG_FILE_CHUNK);
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

/**
 * The last complete lines of `path` that end at or before byte `end`, newest first, with the offset where
 * each starts: at most `wanted` lines, and no more once `maxBytes` were read (at least one line is given).
 * Reads backwards a chunk at a time, so a big file costs only its tail.
 */
export async function readLinesBackward(
  path: string,
  end: number,
  wanted: number,
  maxBytes = Infinity,
): Promise<Array<{ offset: number; text: string }>> {
  const newestFirst: Array<{ offset: number; text: string }> = [];
  if (wanted <= 0 || end <= 0) return newestFirst;
  const handle = await open(path, "r");
  try {
    let position = end;
    let read = 0;
    /** Bytes from `position` on not yet split into lines: the start of a line that began before them. */
    let carry = Buffer.alloc(0);
    let endFound = false; // whether the \n ending the newest complete line before `end` was seen
    while (position > 0 && newestFirst.length < wanted && (read < maxBytes || newestFirst.length === 0)) {
      const from = Math.max(0, position - LOG_FILE_CHUNK);
      const chunk = Buffer.alloc(position - from);
      await readFully(handle, chunk, from);
      read += chunk.length;
      position = from;
      const data = carry.length === 0 ? chunk : Buffer.concat([chunk, carry]);
      // Line breaks in `data`, newest first; text after the last break before `end` is a partial line.
      let stop = data.length - 1; // the \n ending the line being looked for
      if (!endFound) {
        stop = data.lastIndexOf(0x0a);
        if (stop < 0) continue; // all of it after the last complete line
        endFound = true;
      }
      while (newestFirst.length < wanted) {
        const previous = stop === 0 ? -1 : data.lastIndexOf(0x0a, stop - 1);
        if (previous < 0 && position > 0) break; // the line starts in an earlier chunk
        const start = previous + 1;
        newestFirst.push({ offset: position + start, text: data.toString("utf8", start, stop) });
        stop = previous;
        if (previous < 0) break;
      }
      carry = data.subarray(0, stop + 1);
    }
  } finally {
    await handle.close();
  }
  return newestFirst;
}

/** The position after the last complete line of the stream's newest file; undefined when it has no files. */
export async function endPosition(
  dir: string,
  stream: string,
  ext: string,
): Promise<LogPosition | undefined> {
  const files = await streamFiles(dir, stream, ext);
  const newest = files[files.length - 1];
  if (newest === undefined) return undefined;
  const path = join(dir, newest.name);
  const size = (await stat(path).catch(() => undefined))?.size ?? 0;
  return { day: newest.day, index: newest.index, offset: await completeEnd(path, size) };
}

/** A page of lines read backwards: newest first, and whether older lines exist. */
export interface LogPage {
  lines: LogLine[];
  more: boolean;
}

/**
 * Up to `limit` complete lines of the stream that start before `before` (or before the end of the newest
 * file), newest first, going back into older files as needed; at most about `maxBytes` read.
 */
export async function readPageBefore(
  dir: string,
  stream: string,
  ext: string,
  before: LogPosition | undefined,
  limit: number,
  maxBytes = DEFAULT_PAGE_BYTES,
): Promise<LogPage> {
  const files = await streamFiles(dir, stream, ext);
  const lines: LogLine[] = [];
  let budget = maxBytes;
  for (let i = files.length - 1; i >= 0; i--) {
    const file = files[i]!;
    if (before !== undefined && bySinkFileAge(file, fileOf(before)) > 0) continue;
    const path = join(dir, file.name);
    const size = (await stat(path).catch(() => undefined))?.size ?? 0;
    const sameFile = before !== undefined && bySinkFileAge(file, fileOf(before)) === 0;
    const end = sameFile ? Math.min(before.offset, size) : await completeEnd(path, size);
    if (lines.length >= limit || (budget <= 0 && lines.length > 0)) {
      return { lines, more: end > 0 || i > 0 };
    }
    const found = await readLinesBackward(path, end, limit - lines.length, Math.max(budget, 1));
    for (const line of found) {
      budget -= Buffer.byteLength(line.text) + 1;
      lines.push({ position: { day: file.day, index: file.index, offset: line.offset }, text: line.text });
    }
    // Lines left before the oldest one read: the limit or the byte budget stopped the read.
    const oldest = found[found.length - 1];
    if (oldest !== undefined && oldest.offset > 0) return { lines, more: true };
  }
  return { lines, more: false };
}

// ---------------------------------------------------------------------------------------------------------
// Following

/**
 * Follows a stream's files from a position: reads new complete lines as the sink appends them, and moves on
 * to the next file once the sink has started it. One follower can serve any number of readers.
 */
export class LogFollower {
  readonly dir: string;
  readonly stream: string;
  readonly ext: string;
  #current: { file: SinkFileName; offset: number } | undefined;

  /** From `start` (the end of the newest file, say); from the first file's start when undefined. */
  constructor(dir: string, stream: string, ext: string, start: LogPosition | undefined) {
    this.dir = dir;
    this.stream = stream;
    this.ext = ext;
    this.#current =
      start === undefined
        ? undefined
        : {
            file: { name: sinkFileName(stream, ext, start), day: start.day, index: start.index },
            offset: start.offset,
          };
  }

  /** Where the next line read will start; undefined until the stream has a file. */
  get position(): LogPosition | undefined {
    const c = this.#current;
    return c === undefined ? undefined : { day: c.file.day, index: c.file.index, offset: c.offset };
  }

  /**
   * Reads new lines every `every` ms and hands them to `emit` (awaited: a slow reader holds the follower
   * back) until `signal` aborts. Without `onError` a failure ends the run with it; with it the failure is
   * reported and the next poll tries again.
   */
  async run(
    signal: AbortSignal,
    every: number,
    emit: (lines: LogLine[]) => void | Promise<void>,
    onError?: (error: Error) => void,
  ): Promise<void> {
    while (!signal.aborted) {
      let moved = false;
      try {
        moved = await this.#poll(signal, emit);
      } catch (error) {
        if (onError === undefined) throw error;
        onError(error as Error);
      }
      if (!moved) await pause(every, signal);
    }
  }

  /** Reads what is new; true when it moved to a newer file (and should look again at once). */
  async #poll(signal: AbortSignal, emit: (lines: LogLine[]) => void | Promise<void>): Promise<boolean> {
    // List before reading: once a newer file exists the sink writes no more to the older ones, so what the
    // read below finds is all the current file will ever hold.
    const listed = await streamFiles(this.dir, this.stream, this.ext);
    if (this.#current === undefined) {
      if (listed.length === 0) return false;
      this.#current = { file: listed[0]!, offset: 0 };
    }
    const current = this.#current;
    const path = join(this.dir, current.file.name);
    const size = (await stat(path).catch(() => undefined))?.size ?? 0;
    if (size < current.offset) current.offset = size; // cut back by the sink's recovery
    let length = FOLLOW_READ;
    while (size > current.offset && !signal.aborted) {
      const chunk = await readAt(path, current.offset, Math.min(length, size - current.offset));
      const lastBreak = chunk.lastIndexOf(0x0a);
      if (lastBreak < 0) {
        if (current.offset + chunk.length >= size) break; // a line being written: wait for its end
        length *= 2; // a line longer than one read
        continue;
      }
      length = FOLLOW_READ;
      const lines: LogLine[] = [];
      let start = 0;
      while (start <= lastBreak) {
        const stop = chunk.indexOf(0x0a, start);
        lines.push({
          position: { day: current.file.day, index: current.file.index, offset: current.offset + start },
          text: chunk.toString("utf8", start, stop),
        });
        start = stop + 1;
      }
      current.offset += lastBreak + 1;
      await emit(lines);
    }
    const newer = listed.find((file) => bySinkFileAge(file, current.file) > 0);
    if (newer === undefined) return false;
    this.#current = { file: newer, offset: 0 };
    return true;
  }
}

function sinkFileName(stream: string, ext: string, at: LogPosition): string {
  return `${stream}-${at.day}${at.index === 0 ? "" : `.${at.index}`}.${ext}`;
}

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
