// The file sink: writes a log stream's records to rotating files, exactly once across crashes, and keeps the
// drainer's cursor durable with the output itself (not only in memcached).
//
// ## Commit and recovery
//
// A commit appends the batch's bytes to the current file (one `write` per file touched), then makes them
// durable per the fsync policy; only then does `cursor()` move. The drainer deletes entries from memcached
// only up to `cursor()`, so bytes appended but never acknowledged are always written again.
//
// - JSON Lines carries (epoch, seq) in every record, so the file *is* the cursor: on open, a trailing partial
//   line (and any unparsable tail, e.g. zeros left by a power cut) is truncated away and the cursor is the
//   position of the last complete non-late record of the newest file (scanning back into older files when the
//   newest holds none). Records appended but never acknowledged survive a crash only if complete, and then
//   the recovered cursor includes them, so the drainer resumes after them: nothing twice, nothing lost. This
//   costs one fsync per commit, which is why JSON Lines does not also keep a sidecar.
// - Raw lines carry no positions, so the cursor lives in a sidecar `<dir>/<stream>.cursor` holding
//   `{"epoch","seq","file","bytes"}`, written atomically (temp file, fsync, rename, fsync folder) after each
//   durable commit. One sidecar per stream (not per data file) keeps a commit that crosses a rotation a single
//   rename. On open, the named file is truncated to `bytes` and newer files to zero: their bytes were never
//   acknowledged. The sidecar is created before the first data file, so raw files without one are refused.
//
// A refused write (ENOSPC, EACCES, EROFS…) truncates every file the batch touched back to where it started
// and raises SinkError; a failed fsync truncates back to the last durable point (after a failed fsync Linux
// may drop the dirty pages, so retrying the fsync would lie). The cursor does not move; once the cause is
// fixed the same batch can be written again.
import { closeSync, constants, fsyncSync, openSync, writeSync } from "node:fs";
import { mkdir, open, readdir, readFile, rename, stat, truncate, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError, FencedError, SinkError } from "../errors.js";
import { FileFence } from "./fence.js";

/** One log entry, as the drainer hands it over. `late`: it arrived after its gap was written. */
export interface EntryRecord {
  kind: "entry";
  /** The stream's partition (a partitioned sink only; 0 when absent). */
  part?: number;
  epoch: number;
  seq: number;
  /** When the producer appended it, in ms since the Unix epoch. */
  time: number;
  node: string;
  data: unknown;
  /**
   * `data` as JSON text, when the drainer already has it (read straight from the stored entry): JSON Lines
   * writes it as it is instead of JSON.stringify(data). It must be exactly JSON.stringify(data).
   */
  dataJson?: string | undefined;
  late?: boolean;
}

/** Sequence numbers `from`..`to` (inclusive) of `epoch` that will never be written. */
export interface GapRecord {
  kind: "gap";
  /** The stream's partition (a partitioned sink only; 0 when absent). */
  part?: number;
  epoch: number;
  from: number;
  to: number;
  reason: GapReason;
}

export const GapReason = {
  holeTimeout: "hole-timeout",
  reset: "reset",
  rollover: "rollover",
  /** The server refused the entry (over its item size limit); its producer left a marker in its place. */
  refused: "refused",
} as const;
export type GapReason = (typeof GapReason)[keyof typeof GapReason];

export type SinkRecord = EntryRecord | GapRecord;

/** A position in the stream: (epoch, seq) of an entry, (epoch, to) of a gap. */
export interface Cursor {
  epoch: number;
  seq: number;
}

/** A position in one partition of the stream (recent() reports them with their partition). */
export interface PartCursor extends Cursor {
  part: number;
}

export const SinkFormat = { jsonl: "jsonl", raw: "raw" } as const;
export type SinkFormat = (typeof SinkFormat)[keyof typeof SinkFormat];

/**
 * - `"batch"`: every `write` resolves after an fsync covering it (concurrent writes may share one).
 * - `{ everyMs }`: group commit, at most one fsync per `everyMs`; `write` still resolves only once durable.
 * - `"never"`: `write` resolves once the bytes are in the OS page cache. A killed process loses nothing, but a
 *   machine crash or power cut loses what the kernel had not written back yet (on Linux up to about 30 s,
 *   `vm.dirty_expire_centisecs`) and can leave the cursor ahead of the data: entries can be lost, not doubled.
 */
export type FsyncPolicy = "batch" | "never" | { everyMs: number };

export interface FileSinkOptions {
  /** File name prefix: `<stream>-<YYYY-MM-DD>[.<n>].<jsonl|log>`. Letters, digits, `_`, `-`, `.`. */
  stream?: string;
  /**
   * The stream has partitions: every record names its `part`, and the sink keeps a cursor per partition
   * (records of different partitions interleave; within a partition the order rule holds).
   */
  partitioned?: boolean;
  /**
   * Keep `<stream>.fence` in the folder (default true): each open takes a new token, and a sink whose token
   * is no longer the newest may not change the files (FencedError), so of several drainers sharing the
   * folder only the one that opened last writes. See fence.ts.
   */
  fence?: boolean;
  format?: SinkFormat;
  fsync?: FsyncPolicy;
  /** A file is closed before a record would take it over this size, in bytes; a larger record gets a file alone. */
  maxBytes?: number;
  /** The clock that picks the file's UTC day, in ms since the Unix epoch (tests inject one). */
  now?: () => number;
}

/** What a resolved `write` reports. `cursor` is the durable cursor after this batch. */
export interface Commit {
  /** Partition 0's (the only one of an unpartitioned sink). */
  cursor: Cursor | undefined;
  /** Every partition's durable cursor (a partitioned sink). */
  cursors: ReadonlyMap<number, Cursor>;
  records: number;
  bytes: number;
  /** The file the batch ended in (absolute path); undefined for an empty batch before any file. */
  file: string | undefined;
  durable: boolean;
}

/** What `recent()` reads back from the end of the output. */
export interface RecentRecords {
  gaps: GapRecord[];
  late: PartCursor[];
  /** The last entries written, oldest first; undefined for raw lines. */
  entries: PartCursor[] | undefined;
}

/** Counters since `open` (committed records only). */
export interface FileSinkMetrics {
  bytes: number;
  records: number;
  entries: number;
  gaps: number;
  late: number;
  fsyncs: number;
  /** ms since the Unix epoch of the last resolved commit (the sink's clock). */
  lastCommitAt: number | undefined;
  file: string | undefined;
}

export const DEFAULT_STREAM = "log";
export const DEFAULT_MAX_BYTES = 256 * 1024 * 1024; // bytes
export const DEFAULT_FSYNC: FsyncPolicy = "batch";
const RECENT_BYTES = 8 * 1024 * 1024; // bytes read back by recent()
const RECENT_ENTRIES = 50_000; // positions of the last entries recent() returns
const RECOVERY_WINDOW = 64 * 1024; // bytes read at a time from the end of a file while recovering
const MAX_FILES_PER_DAY = 100_000; // bounds the search for a free file name
/** Records of a partitioned sink between checkpoints: recovery reads back at most about this many. */
export const CHECKPOINT_EVERY = 100_000;

export function defaultOptions(): Required<FileSinkOptions> {
  return {
    stream: DEFAULT_STREAM,
    partitioned: false,
    fence: true,
    format: SinkFormat.jsonl,
    fsync: DEFAULT_FSYNC,
    maxBytes: DEFAULT_MAX_BYTES,
    now: Date.now,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Formats

/**
 * JSON Lines: one JSON object per line, UTF-8, `\n` after each, keys in this order.
 *
 * Entry: `{"seq":12,"epoch":3,"time":"2026-11-24T10:00:00.000Z","ms":1795514400000,"node":"web-1","data":…}`
 * - `seq`, `epoch`: integers, the entry's position; `time` (ISO 8601, UTC, ms) and `ms` (ms since the Unix
 *   epoch): when the producer appended it; `node`: who appended it; `data`: the payload as JSON (`null` when
 *   absent); a late entry (written after the gap that covered it) ends with `"late":true`.
 *
 * Gap: `{"epoch":3,"time":"…","ms":…,"gap":{"from":13,"to":15,"reason":"hole-timeout"}}`
 * - seq `from`..`to` (inclusive) of `epoch` will not appear, except as late entries; `reason` is
 *   `hole-timeout` (taken, never written in time), `reset` (the counter vanished), `rollover` (it reached its
 *   limit) or `refused` (the server refused the entry: too large); `time`/`ms`: when the sink wrote the gap. A gap has no `seq`, `node` or `data`.
 *
 * Within an epoch, records appear in position order (seq of entries, `to` of gaps), except late entries.
 * Epochs follow one another in the order the drainer met them: they are random numbers (a counter recreated
 * after a reset must never reuse an earlier epoch's keys), so their values say nothing about order.
 *
 * A partitioned stream's records start with `"part":N`, and the rules above hold per partition. Its files
 * also hold checkpoints, `{"checkpoint":{"0":{"epoch":3,"seq":12},…},"time":"…","ms":…}`: where each
 * partition stood before the next line, so that recovery need not read back to an idle partition's last
 * record.
 */
export function formatJsonLine(record: SinkRecord, now: number): string {
  const part = record.part === undefined ? "" : `"part":${record.part},`;
  if (record.kind === "gap") {
    const { epoch, from, to, reason } = record;
    return `{${part}${JSON.stringify({ epoch, time: iso(now), ms: now, gap: { from, to, reason } }).slice(1)}\n`;
  }
  // Built by hand, in the order above: this runs once per entry on the drainer's hot path.
  const data = record.dataJson ?? JSON.stringify(record.data === undefined ? null : record.data);
  if (data === undefined) throw new TypeError("the entry's data has no JSON form");
  const node = NODE_CACHE.node === record.node ? NODE_CACHE.json : cacheNode(record.node);
  const late = record.late === true ? ',"late":true' : "";
  const time = record.time === TIME_CACHE.ms ? TIME_CACHE.text : cacheTime(record.time);
  return `{${part}"seq":${record.seq},"epoch":${record.epoch}${time},"node":${node},"data":${data}${late}}\n`;
}

/** A checkpoint line of a partitioned stream (see formatJsonLine). */
export function formatCheckpoint(positions: ReadonlyMap<number, Cursor>, now: number): string {
  const checkpoint: Record<string, Cursor> = {};
  for (const [part, { epoch, seq }] of [...positions].sort((a, b) => a[0] - b[0])) {
    checkpoint[part] = { epoch, seq };
  }
  return `${JSON.stringify({ checkpoint, time: iso(now), ms: now })}\n`;
}

/** The last node name written, as JSON: consecutive entries usually come from few nodes. */
const NODE_CACHE = { node: "", json: '""' };
function cacheNode(node: string): string {
  NODE_CACHE.node = node;
  NODE_CACHE.json = JSON.stringify(node);
  return NODE_CACHE.json;
}

/** The time fields of the last entry written: a batch's entries often share their millisecond. */
const TIME_CACHE = { ms: NaN, text: "" };
function cacheTime(ms: number): string {
  TIME_CACHE.text = `,"time":"${iso(ms)}","ms":${ms}`;
  TIME_CACHE.ms = ms;
  return TIME_CACHE.text;
}

const KEEP_BYTES = 16 * 1024 * 1024; // a batch buffer larger than this is dropped after its batch

/** A batch's lines encoded straight into one growing buffer, as UTF-8 (no byte count or list of lines). */
class LineEncoder {
  buffer = Buffer.allocUnsafe(64 * 1024);
  length = 0;

  /** Appends a line (any text). */
  text(line: string): void {
    this.#reserve(line.length * 3);
    this.length += this.buffer.write(line, this.length, "utf8");
  }

  /** Lets a large buffer go once its batch is written. */
  release(): void {
    if (this.buffer.length > KEEP_BYTES) this.buffer = Buffer.allocUnsafe(64 * 1024);
    this.length = 0;
  }

  #reserve(bytes: number): void {
    const need = this.length + bytes;
    if (need <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(need, this.buffer.length * 2));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}

/**
 * Raw lines: an entry is its data as text (a string as is, anything else as JSON), `\r` and `\n` inside it
 * written as the two characters `\r`, `\n`; late entries look like any other. A gap is the line
 * `#memipc gap epoch=3 from=13 to=15 reason=hole-timeout time=2026-11-24T10:00:00.000Z`, with `part=N `
 * before `epoch=` in a partitioned stream (data starting with `#memipc gap ` reads the same: raw lines trade
 * exactness for compatibility with line-based tools).
 */
export function formatRawLine(record: SinkRecord, now: number): string {
  if (record.kind === "gap") {
    const { epoch, from, to, reason } = record;
    const part = record.part === undefined ? "" : `part=${record.part} `;
    return `#memipc gap ${part}epoch=${epoch} from=${from} to=${to} reason=${reason} time=${iso(now)}\n`;
  }
  const text = typeof record.data === "string" ? record.data : JSON.stringify(record.data ?? null);
  return `${text.replace(/\r/g, "\\r").replace(/\n/g, "\\n")}\n`;
}

/** ISO 8601 of a time in ms (entries' times are cached per millisecond by formatJsonLine). */
function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** What a JSON line of the sink says about positions. */
type ParsedLine =
  | { kind: "record"; part: number; cursor: Cursor; late: boolean }
  | { kind: "checkpoint"; positions: Map<number, Cursor> };

/** The position a JSON line records, or undefined if it is not one of ours (torn, garbage). */
function parseJsonLine(line: string): ParsedLine | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as {
    part?: unknown;
    epoch?: unknown;
    seq?: unknown;
    late?: unknown;
    gap?: { to?: unknown };
    checkpoint?: unknown;
  };
  if (typeof v.checkpoint === "object" && v.checkpoint !== null) {
    const positions = new Map<number, Cursor>();
    for (const [part, at] of Object.entries(v.checkpoint as Record<string, Partial<Cursor> | null>)) {
      if (!/^\d+$/.test(part) || !isCount(at?.epoch) || !isCount(at.seq)) return undefined;
      positions.set(Number(part), { epoch: at.epoch, seq: at.seq });
    }
    return { kind: "checkpoint", positions };
  }
  const part = v.part === undefined ? 0 : v.part;
  if (!isCount(v.epoch) || !isCount(part)) return undefined;
  if (isCount(v.seq))
    return { kind: "record", part, cursor: { epoch: v.epoch, seq: v.seq }, late: v.late === true };
  if (typeof v.gap === "object" && v.gap !== null && isCount(v.gap.to)) {
    return { kind: "record", part, cursor: { epoch: v.epoch, seq: v.gap.to }, late: false };
  }
  return undefined;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

// ---------------------------------------------------------------------------------------------------------
// File names

/** A data file of the sink: `<stream>-<day>[.<index>].<ext>`. */
export interface SinkFileName {
  name: string;
  day: string;
  index: number;
}

function utcDay(ms: number): string {
  return iso(ms).slice(0, 10);
}

function fileName(stream: string, ext: string, day: string, index: number): SinkFileName {
  return { name: `${stream}-${day}${index === 0 ? "" : `.${index}`}.${ext}`, day, index };
}

/** Orders the sink's files oldest first: by day, then by index within a day. */
export function bySinkFileAge(a: SinkFileName, b: SinkFileName): number {
  return a.day < b.day ? -1 : a.day > b.day ? 1 : a.index - b.index;
}

/** The stream's data files with extension `ext` in `dir`, oldest first. */
export async function listSinkFiles(dir: string, stream: string, ext: string): Promise<SinkFileName[]> {
  const escaped = stream.replace(/[.\\^$*+?()[\]{}|-]/g, "\\$&");
  const pattern = new RegExp(`^${escaped}-(\\d{4}-\\d{2}-\\d{2})(?:\\.(\\d+))?\\.${ext}$`);
  const found: SinkFileName[] = [];
  for (const name of await readdir(dir)) {
    const match = pattern.exec(name);
    if (match) found.push({ name, day: match[1]!, index: match[2] === undefined ? 0 : Number(match[2]) });
  }
  return found.sort(bySinkFileAge);
}

// ---------------------------------------------------------------------------------------------------------
// Errors

function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

const ADVICE: Record<string, string> = {
  ENOSPC: "free disk space (or move the output folder), then retry the same batch",
  EFBIG:
    "the file passed this process's file size limit (ulimit -f) or the file system's largest file: raise the " +
    "limit, or lower --max-bytes so files rotate sooner, then retry the same batch",
  EDQUOT: "raise the disk quota or free space, then retry the same batch",
  EACCES: "give this process write permission on the file and its folder, then retry the same batch",
  EPERM: "give this process write permission on the file and its folder, then retry the same batch",
  EROFS: "the file system is read-only: remount it read-write or choose another output folder",
  EISDIR: "a folder stands where the sink's file should be: move it away, then retry the same batch",
  ENOTDIR: "part of the output path is a file, not a folder: choose another output folder",
  EIO: "the disk reported an I/O error: check the device, then retry the same batch",
};

function ioError(what: string, file: string, error: unknown): SinkError {
  const errno = errnoOf(error);
  const advice = (errno && ADVICE[errno]) ?? "fix the cause, then retry the same batch";
  const reason = error instanceof Error ? error.message : String(error);
  return new SinkError(
    `file sink: could not ${what} ${file} (${reason}): ${advice}; the cursor did not move`,
    {
      cause: error,
      file,
      ...(errno === undefined ? {} : { errno }),
    },
  );
}

// ---------------------------------------------------------------------------------------------------------
// The sink

interface OpenFile {
  name: SinkFileName;
  path: string;
  handle: FileHandle;
  /** Bytes in the file, including bytes not yet durable. */
  size: number;
}

/** The last durable point: `file` at `size`. */
interface Mark {
  file: SinkFileName | undefined;
  size: number;
}

interface Waiter {
  /** Every partition's position after the batch. */
  positions: Map<number, Cursor>;
  file: SinkFileName;
  size: number;
  /** The batch's records by kind (counted at append: the records themselves are not kept until the fsync). */
  counts: { records: number; entries: number; gaps: number; late: number };
  bytes: number;
  resolve: (commit: Commit) => void;
  reject: (error: unknown) => void;
}

interface CursorFile {
  epoch: number | null;
  seq: number | null;
  file: string | null;
  bytes: number;
  /** A partitioned stream's positions by partition (epoch and seq above are partition 0's). */
  partitions?: Record<string, Cursor>;
}

/** Opens (creating the folder) and recovers a file sink; see the top of this file for the guarantees. */
export async function openFileSink(dir: string, options: FileSinkOptions = {}): Promise<FileSink> {
  const sink = new FileSink(dir, options);
  await sink.recover();
  return sink;
}

export class FileSink {
  readonly dir: string;
  readonly stream: string;
  readonly partitioned: boolean;
  readonly fenced: boolean;
  readonly format: SinkFormat;
  readonly fsync: FsyncPolicy;
  readonly maxBytes: number;
  readonly #now: () => number;
  readonly #ext: string;
  readonly #cursorPath: string;

  #current: OpenFile | undefined;
  /** Files closed by rotation whose bytes are not yet fsynced. */
  #retired: OpenFile[] = [];
  /** Every file opened by rotation, with its size then (for rolling back). */
  #opened: Array<{ path: string; size: number }> = [];
  #durableMark: Mark = { file: undefined, size: 0 };
  #broken = false;
  #newFolderEntry = false;
  #fence: FileFence | undefined;
  /** Set once another sink took over the files: nothing is written or cut any more. */
  #fencedOut: FencedError | undefined;

  /** Position of the last record appended (maybe not yet durable) and the last durable one, by partition. */
  #appended = new Map<number, Cursor>();
  #durable = new Map<number, Cursor>();
  /** Records appended since the last checkpoint line (a partitioned sink writes one after open). */
  #sinceCheckpoint = Infinity;
  /** Bumped by every roll-back: a write made for an earlier generation is refused (see write). */
  #generation = 0;
  #waiters: Waiter[] = [];
  /** The batch being appended, as bytes (one batch at a time: appends run one after another). */
  readonly #encoder = new LineEncoder();
  #chain: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastSyncAt = 0; // Date.now() of the last fsync: group commit spaces them by real time, not the injected clock
  #closed = false;
  #metrics: FileSinkMetrics = {
    bytes: 0,
    records: 0,
    entries: 0,
    gaps: 0,
    late: 0,
    fsyncs: 0,
    lastCommitAt: undefined,
    file: undefined,
  };

  /** Use `openFileSink`: a sink must recover before it writes. */
  constructor(dir: string, options: FileSinkOptions = {}) {
    const o = { ...defaultOptions(), ...dropUndefined(options) };
    if (!/^[A-Za-z0-9_.-]+$/.test(o.stream) || o.stream.startsWith(".")) {
      throw new ConfigError(
        `file sink: stream name ${JSON.stringify(o.stream)} must be letters, digits, _ - .`,
      );
    }
    if (o.format !== "jsonl" && o.format !== "raw") {
      throw new ConfigError(`file sink: format must be "jsonl" or "raw", not ${JSON.stringify(o.format)}`);
    }
    if (!Number.isSafeInteger(o.maxBytes) || o.maxBytes <= 0) {
      throw new ConfigError(
        `file sink: maxBytes must be a positive whole number of bytes, not ${o.maxBytes}`,
      );
    }
    const f = o.fsync;
    if (
      f !== "batch" &&
      f !== "never" &&
      !(typeof f === "object" && Number.isFinite(f.everyMs) && f.everyMs > 0)
    ) {
      throw new ConfigError(`file sink: fsync must be "batch", "never" or { everyMs: N > 0 }`);
    }
    this.dir = dir;
    this.stream = o.stream;
    this.partitioned = o.partitioned === true;
    this.fenced = o.fence !== false;
    this.format = o.format;
    this.fsync = f;
    this.maxBytes = o.maxBytes;
    this.#now = o.now;
    this.#ext = o.format === "jsonl" ? "jsonl" : "log";
    this.#cursorPath = join(dir, `${o.stream}.cursor`);
  }

  /** The last durable position (of `part`): the drainer may delete memcached entries up to it, not beyond. */
  cursor(part = 0): Cursor | undefined {
    const at = this.#durable.get(part);
    return at === undefined ? undefined : { ...at };
  }

  /** Every partition's last durable position. */
  cursors(): Map<number, Cursor> {
    return new Map(this.#durable);
  }

  /**
   * Counts the roll-backs so far. A writer that pipelines batches of several partitions passes the
   * generation it saw as `write`'s `generation`: after a failure, batches queued behind the failed one are
   * refused instead of being written after a hole.
   */
  get generation(): number {
    return this.#generation;
  }

  get metrics(): FileSinkMetrics {
    return { ...this.#metrics };
  }

  /**
   * Appends the records in order and resolves once they are durable (per the fsync policy). Within an epoch,
   * positions must grow past the cursor, except late entries, which are written as they come and do not move
   * it; a record of another epoch starts that epoch (the drainer decides when an epoch ends).
   * Rejects with SinkError when the disk refuses; the cursor then stays put and the batch can be retried.
   *
   * `after`: the position the caller expects the batch to follow (the last non-late position it handed over
   * before, `null` for none). A writer that pipelines batches passes it, so that when one batch fails, the
   * batches already queued behind it are refused instead of being written after a hole.
   */
  write(
    records: readonly SinkRecord[],
    options: { after?: Cursor | null; generation?: number } = {},
  ): Promise<Commit> {
    if (this.#closed) return Promise.reject(new SinkError(`file sink: ${this.dir} is closed; open it again`));
    return new Promise<Commit>((resolve, reject) => {
      this.#enqueue(async () => {
        try {
          if (options.after !== undefined || options.generation !== undefined) {
            if (this.#broken) await this.#rollBack();
            if (options.after !== undefined) this.#checkFollows(options.after);
            if (options.generation !== undefined && options.generation !== this.#generation) {
              throw new SinkError(
                `file sink: batch of generation ${options.generation} refused, the output was rolled back to ` +
                  `its cursor since (generation ${this.#generation}): resend from the cursor`,
              );
            }
          }
          await this.#append([...records], resolve, reject);
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  /**
   * Reads back the end of the newest files (at most RECENT_BYTES), for a drainer starting again:
   * - `gaps` written at or after `sinceMs` (by the sink's clock), to go on watching them for late entries;
   * - `late`: the late entries written, so none is written twice;
   * - `entries`: the positions of the last entries written (JSON Lines only; raw lines carry none), whose
   *   keys a drainer killed between a commit and its deletes left in memcached.
   * Raw lines give their gaps only: late entries look like any other line there.
   */
  async recent(sinceMs: number): Promise<RecentRecords> {
    const gaps: GapRecord[] = [];
    const late: PartCursor[] = [];
    const entries: PartCursor[] = [];
    const files = await this.#io("list", this.dir, () => listSinkFiles(this.dir, this.stream, this.#ext));
    let budget = RECENT_BYTES;
    const texts: string[] = [];
    for (let i = files.length - 1; i >= 0 && budget > 0; i--) {
      const path = join(this.dir, files[i]!.name);
      const text = await this.#io("read", path, () => readTail(path, budget));
      budget -= Buffer.byteLength(text);
      texts.unshift(text);
    }
    for (const text of texts) {
      for (const line of text.split("\n")) {
        if (line === "") continue;
        if (this.format === "raw") {
          const gap = parseRawGap(line);
          if (gap !== undefined && gap.ms >= sinceMs && this.#mine(gap.record.part ?? 0)) {
            // As from JSON Lines: only a partitioned sink's gaps name their partition.
            if (!this.partitioned) delete gap.record.part;
            gaps.push(gap.record);
          }
          continue;
        }
        let value: {
          part?: unknown;
          epoch?: unknown;
          seq?: unknown;
          ms?: unknown;
          late?: unknown;
          gap?: Record<string, unknown>;
        };
        try {
          value = JSON.parse(line) as typeof value;
        } catch {
          continue; // the cut first line of a window
        }
        const part = value.part ?? 0;
        if (!isCount(value.epoch) || !isCount(part) || !this.#mine(part)) continue;
        const gap = value.gap;
        if (gap !== undefined) {
          if (isCount(gap.from) && isCount(gap.to) && isCount(value.ms) && value.ms >= sinceMs) {
            const reason = gap.reason as GapReason;
            const record: GapRecord = { kind: "gap", epoch: value.epoch, from: gap.from, to: gap.to, reason };
            if (this.partitioned) record.part = part;
            gaps.push(record);
          }
        } else if (isCount(value.seq)) {
          (value.late === true ? late : entries).push({ part, epoch: value.epoch, seq: value.seq });
        }
      }
    }
    return {
      gaps,
      late,
      entries: this.format === "jsonl" ? entries.slice(-RECENT_ENTRIES) : undefined,
    };
  }

  /** Whether records of `part` are this sink's: an unpartitioned sink reads partition 0's only. */
  #mine(part: number): boolean {
    return this.partitioned || part === 0;
  }

  /** Writes what is pending durably and closes the files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#serially(() => this.#sync());
    await this.#serially(async () => {
      for (const file of [...this.#retired, ...(this.#current ? [this.#current] : [])]) {
        await file.handle.close().catch(() => undefined);
      }
      this.#retired = [];
      this.#current = undefined;
      this.#fence?.close();
    });
  }

  /** The fence's token this sink writes under (undefined without a fence). */
  get token(): number | undefined {
    return this.#fence?.token;
  }

  /** Runs a change to the files under the fence (see fence.ts); once fenced out, refuses for good. */
  async #guard<T>(work: () => Promise<T>): Promise<T> {
    if (this.#fencedOut !== undefined) throw this.#fencedOut;
    if (this.#fence === undefined) return work();
    try {
      return await this.#fence.guard(work);
    } catch (error) {
      if (error instanceof FencedError) this.#fencedOut = error;
      throw error;
    }
  }

  // -- recovery ---------------------------------------------------------------------------------------------

  /** @internal Called once by `openFileSink`. */
  async recover(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (error) {
      throw ioError("create the output folder", this.dir, error);
    }
    if (!this.fenced) {
      await this.#recoverFiles();
      return;
    }
    const fence = new FileFence(join(this.dir, `${this.stream}.fence`));
    try {
      await fence.take(() => this.#recoverFiles());
    } catch (error) {
      fence.close();
      throw error;
    }
    this.#fence = fence;
  }

  async #recoverFiles(): Promise<void> {
    const files = await this.#io("list", this.dir, () => listSinkFiles(this.dir, this.stream, this.#ext));
    const positions =
      this.format === "jsonl" ? await this.#recoverJsonl(files) : await this.#recoverRaw(files);
    this.#appended = positions;
    this.#durable = new Map(positions);
    const newest = files[files.length - 1];
    if (newest !== undefined) {
      const path = join(this.dir, newest.name);
      const size = (await this.#io("read", path, () => stat(path))).size;
      this.#durableMark = { file: newest, size };
      this.#metrics.file = path;
    }
  }

  /**
   * Reads back from the end of the newest file (older ones after it) to each partition's last non-late
   * record: an unpartitioned sink stops at partition 0's; a partitioned one at a checkpoint, which gives the
   * partitions not met after it.
   */
  async #recoverJsonl(files: SinkFileName[]): Promise<Map<number, Cursor>> {
    const found = new Map<number, Cursor>();
    const visit = (line: ParsedLine): boolean => {
      if (line.kind === "checkpoint") {
        for (const [part, at] of line.positions)
          if (this.#mine(part) && !found.has(part)) found.set(part, at);
        return this.partitioned || found.has(0);
      }
      if (line.late || !this.#mine(line.part) || found.has(line.part)) return false;
      found.set(line.part, line.cursor);
      return !this.partitioned;
    };
    for (let i = files.length - 1; i >= 0; i--) {
      const path = join(this.dir, files[i]!.name);
      if (await this.#io("recover", path, () => recoverJsonlFile(path, visit))) break;
    }
    return found;
  }

  async #recoverRaw(files: SinkFileName[]): Promise<Map<number, Cursor>> {
    let saved: CursorFile;
    try {
      saved = parseCursorFile(await readFile(this.#cursorPath, "utf8"), this.#cursorPath);
    } catch (error) {
      if (errnoOf(error) !== "ENOENT") {
        throw error instanceof SinkError ? error : ioError("read", this.#cursorPath, error);
      }
      if (files.length > 0) {
        throw new SinkError(
          `file sink: ${this.dir} holds raw files of stream ${this.stream} but no cursor file ${this.#cursorPath}; ` +
            `restore it, or move the files away to start a new stream (the drainer would otherwise write ` +
            `entries twice or skip them)`,
          { file: this.#cursorPath },
        );
      }
      saved = { epoch: null, seq: null, file: null, bytes: 0 };
      await this.#io("write", this.#cursorPath, () => this.#saveCursor(saved, true));
    }
    // Bytes past the committed length were never acknowledged: the drainer writes them again.
    const committed = saved.file === null ? undefined : files.find((f) => f.name === saved.file);
    if (saved.file !== null && committed === undefined) {
      throw new SinkError(
        `file sink: the cursor file ${this.#cursorPath} names ${saved.file}, which is missing; restore it or ` +
          `move the stream's files and cursor away to start again`,
        { file: join(this.dir, saved.file) },
      );
    }
    for (const file of files) {
      const path = join(this.dir, file.name);
      const keep =
        committed === undefined
          ? 0
          : file === committed
            ? saved.bytes
            : bySinkFileAge(file, committed) < 0
              ? -1
              : 0;
      if (keep < 0) continue;
      const size = (await this.#io("read", path, () => stat(path))).size;
      if (size < keep) {
        throw new SinkError(
          `file sink: ${path} is ${size} bytes but its cursor file says ${keep} were committed; the file was ` +
            `cut short outside the sink: restore it, or move the stream's files and cursor away`,
          { file: path },
        );
      }
      if (size > keep) await this.#io("truncate", path, () => truncateDurably(path, keep));
    }
    const positions = new Map<number, Cursor>();
    if (saved.partitions !== undefined) {
      for (const [part, at] of Object.entries(saved.partitions)) {
        if (this.#mine(Number(part))) positions.set(Number(part), { epoch: at.epoch, seq: at.seq });
      }
    } else if (saved.epoch !== null && saved.seq !== null) {
      positions.set(0, { epoch: saved.epoch, seq: saved.seq });
    }
    return positions;
  }

  async #saveCursor(saved: CursorFile, durably: boolean): Promise<void> {
    const temp = `${this.#cursorPath}.tmp`;
    const handle = await open(temp, "w");
    try {
      await handle.writeFile(`${JSON.stringify(saved)}\n`);
      if (durably) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, this.#cursorPath);
    if (durably) {
      fsyncFolder(this.dir);
      this.#metrics.fsyncs += 2;
    }
  }

  // -- writing ----------------------------------------------------------------------------------------------

  #enqueue(step: () => Promise<void>): void {
    this.#chain = this.#chain.then(step, step);
  }

  #serially<T>(step: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => this.#enqueue(() => step().then(resolve, reject)));
  }

  #checkFollows(after: Cursor | null): void {
    const at = this.#appended.get(0);
    const same =
      at === undefined ? after === null : after !== null && after.epoch === at.epoch && after.seq === at.seq;
    if (!same) {
      throw new SinkError(
        `file sink: batch out of sequence (it follows ${JSON.stringify(after)}, the output ends at ` +
          `${JSON.stringify(at ?? null)}): an earlier batch failed; resend from the cursor`,
      );
    }
  }

  async #append(
    records: SinkRecord[],
    resolve: (commit: Commit) => void,
    reject: (error: unknown) => void,
  ): Promise<void> {
    if (this.#broken) await this.#rollBack();
    const now = this.#now();
    // Check and encode the whole batch before touching a file: a bad record writes nothing.
    const positions = new Map(this.#appended);
    const out = this.#encoder;
    out.length = 0;
    const jsonl = this.format === "jsonl";
    let gaps = 0;
    let lates = 0;
    /** Where each line ends in `out`. */
    const ends: number[] = [];
    const checkpoint = this.partitioned && jsonl && this.#sinceCheckpoint >= CHECKPOINT_EVERY;
    if (checkpoint && positions.size > 0) {
      out.text(formatCheckpoint(positions, now));
      ends.push(out.length);
    }
    for (const record of records) {
      const atEpoch = record.epoch;
      const atSeq = record.kind === "gap" ? record.to : record.seq;
      const part = record.part ?? (this.partitioned ? undefined : 0);
      if (!isCount(atEpoch) || !isCount(atSeq) || (record.kind === "gap" && !isCount(record.from))) {
        throw new SinkError(
          `file sink: record ${JSON.stringify({ epoch: atEpoch, seq: atSeq })} has a position that is not a whole number`,
        );
      }
      if (!isCount(part) || !this.#mine(part)) {
        throw new SinkError(
          this.partitioned
            ? `file sink: record at epoch ${atEpoch} seq ${atSeq} names no partition (part) in a partitioned sink`
            : `file sink: record of partition ${String(part)} in a sink that is not partitioned: open it with partitioned: true`,
        );
      }
      const late = record.kind === "entry" && record.late === true;
      if (record.kind === "gap") gaps++;
      else if (late) lates++;
      const at = positions.get(part);
      const sameEpoch = at !== undefined && atEpoch === at.epoch;
      if (late ? sameEpoch && atSeq > at.seq : sameEpoch && atSeq <= at.seq) {
        const where = this.partitioned ? ` of partition ${part}` : "";
        throw new SinkError(
          `file sink: record${where} at epoch ${atEpoch} seq ${atSeq} is out of order (last written: epoch ` +
            `${at?.epoch} seq ${at?.seq}); only late entries may go back, and they may not go forward`,
        );
      }
      if (!late) positions.set(part, { epoch: atEpoch, seq: atSeq });
      if (record.kind === "entry" && !Number.isFinite(record.time)) {
        throw new SinkError(`file sink: entry at epoch ${atEpoch} seq ${atSeq} has no valid time`);
      }
      try {
        out.text(jsonl ? formatJsonLine(record, now) : formatRawLine(record, now));
      } catch (error) {
        throw new SinkError(`file sink: entry at epoch ${atEpoch} seq ${atSeq} cannot be written as JSON`, {
          cause: error,
        });
      }
      ends.push(out.length);
    }
    if (records.length === 0) {
      resolve(this.#commitOf(0, 0, this.#durableMark.file));
      return;
    }

    const bytes = out.length;
    try {
      await this.#guard(async () => {
        try {
          await this.#ensureDay(now);
          // One write per file touched, straight from the batch's buffer.
          let start = 0;
          for (let i = 0; i < ends.length; i++) {
            const lineStart = i === 0 ? 0 : ends[i - 1]!;
            const current = this.#current!;
            const chunkBytes = lineStart - start;
            if (current.size + chunkBytes > 0 && current.size + ends[i]! - start > this.maxBytes) {
              this.#writeAll(current, out.buffer.subarray(start, lineStart));
              start = lineStart;
              await this.#rotate(current.name.day);
            }
          }
          this.#writeAll(this.#current!, out.buffer.subarray(start, bytes));
        } catch (error) {
          await this.#cutBack().catch(() => undefined);
          throw error;
        }
      });
    } catch (error) {
      if (error instanceof FencedError || error instanceof SinkError) throw error;
      throw ioError("append to", this.#current?.path ?? this.dir, error);
    } finally {
      out.release();
    }
    this.#appended = positions;
    this.#sinceCheckpoint = (checkpoint ? 0 : this.#sinceCheckpoint) + records.length;
    const current = this.#current!;
    this.#waiters.push({
      positions,
      file: current.name,
      size: current.size,
      counts: { records: records.length, entries: records.length - gaps, gaps, late: lates },
      bytes,
      resolve,
      reject,
    });
    this.#scheduleSync();
  }

  /**
   * Appends a buffer with synchronous writes (to the page cache; the fsync comes later, outside the fence's
   * lock): the lock is held as briefly as possible, so a paused drainer seldom pauses holding it.
   */
  #writeAll(file: OpenFile, buffer: Buffer): void {
    let done = 0;
    while (done < buffer.length) {
      const bytesWritten = writeSync(file.handle.fd, buffer, done, buffer.length - done);
      done += bytesWritten;
      file.size += bytesWritten;
    }
  }

  /** Opens the file for today (or keeps the newest file, so names never go back when the clock does). */
  async #ensureDay(now: number): Promise<void> {
    const day = utcDay(now);
    if (this.#current === undefined) {
      const last = this.#durableMark.file;
      if (last !== undefined && last.day >= day && this.#durableMark.size < this.maxBytes) {
        await this.#openFile(last, false);
        return;
      }
      await this.#rotate(last !== undefined && last.day > day ? last.day : day);
      return;
    }
    if (day > this.#current.name.day) await this.#rotate(day);
  }

  /** Retires the current file and opens the next free name for `day`. */
  async #rotate(day: string): Promise<void> {
    const previous = this.#current ?? (this.#durableMark.file ? { name: this.#durableMark.file } : undefined);
    let index = previous !== undefined && previous.name.day === day ? previous.name.index + 1 : 0;
    for (; index < MAX_FILES_PER_DAY; index++) {
      const candidate = fileName(this.stream, this.#ext, day, index);
      const info = await stat(join(this.dir, candidate.name)).catch(() => undefined);
      // A non-empty regular file belongs to an earlier run (the clock went back): never append into it.
      if (info === undefined || !info.isFile() || info.size === 0) {
        if (this.#current !== undefined) {
          this.#retired.push(this.#current);
          this.#current = undefined;
        }
        await this.#openFile(candidate, true);
        return;
      }
    }
    throw new SinkError(
      `file sink: more than ${MAX_FILES_PER_DAY} files for ${day} in ${this.dir}; raise maxBytes`,
    );
  }

  async #openFile(name: SinkFileName, rotated: boolean): Promise<void> {
    const path = join(this.dir, name.name);
    const handle = await open(path, "a").catch((error: unknown) => {
      throw ioError("open", path, error);
    });
    try {
      const size = (await handle.stat()).size;
      this.#current = { name, path, handle, size };
      if (rotated) {
        this.#opened.push({ path, size });
        this.#newFolderEntry = true;
      }
      this.#metrics.file = path;
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw ioError("open", path, error);
    }
  }

  #scheduleSync(): void {
    const policy = this.fsync;
    if (policy === "never" || policy === "batch") {
      this.#enqueue(() => this.#sync());
      return;
    }
    if (this.#timer !== undefined) return;
    const delay = Math.max(0, this.#lastSyncAt + policy.everyMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#enqueue(() => this.#sync());
    }, delay);
  }

  /** Makes every appended batch durable (per policy), then moves the cursor and resolves their writes. */
  async #sync(): Promise<void> {
    const waiters = this.#waiters;
    if (waiters.length === 0) return;
    this.#waiters = [];
    const durably = this.fsync !== "never";
    const last = waiters[waiters.length - 1]!;
    let step = "fsync";
    let path = this.dir;
    try {
      for (const file of [...this.#retired, this.#current!]) {
        path = file.path;
        if (durably) {
          await file.handle.datasync();
          this.#metrics.fsyncs++;
        }
      }
      for (const file of this.#retired) await file.handle.close();
      this.#retired = [];
      if (durably && this.#newFolderEntry) {
        path = this.dir;
        fsyncFolder(this.dir);
        this.#metrics.fsyncs++;
      }
      this.#newFolderEntry = false;
      if (this.format === "raw") {
        step = "write the cursor file";
        path = this.#cursorPath;
        const first = last.positions.get(0);
        const saved: CursorFile = {
          epoch: first?.epoch ?? null,
          seq: first?.seq ?? null,
          file: last.file.name,
          bytes: last.size,
        };
        if (this.partitioned) saved.partitions = Object.fromEntries(last.positions);
        await this.#guard(() => this.#saveCursor(saved, durably));
      }
      if (durably) this.#lastSyncAt = Date.now();
    } catch (error) {
      // Nothing since the last durable point can be trusted: cut back to it and let the drainer retry.
      const failure =
        error instanceof FencedError ? error : ioError(step === "fsync" ? "fsync" : step, path, error);
      for (const waiter of waiters) waiter.reject(failure);
      await this.#rollBack().catch(() => undefined);
      return;
    }
    this.#durable = last.positions;
    this.#durableMark = { file: last.file, size: last.size };
    this.#opened = [];
    const at = this.#now();
    for (const waiter of waiters) {
      const counts = waiter.counts;
      this.#metrics.records += counts.records;
      this.#metrics.entries += counts.entries;
      this.#metrics.gaps += counts.gaps;
      this.#metrics.late += counts.late;
      this.#metrics.bytes += waiter.bytes;
      this.#metrics.lastCommitAt = at;
    }
    for (const waiter of waiters) {
      waiter.resolve(this.#commitOf(waiter.counts.records, waiter.bytes, waiter.file, durably));
    }
  }

  #commitOf(
    records: number,
    bytes: number,
    file: SinkFileName | undefined,
    durable = this.fsync !== "never",
  ): Commit {
    return {
      cursor: this.cursor(),
      cursors: this.cursors(),
      records,
      bytes,
      file: file === undefined ? undefined : join(this.dir, file.name),
      durable,
    };
  }

  /**
   * Cuts every file back to the last durable point (files opened since then to their size when opened) and
   * rejects every write not yet resolved: after a failure nothing past the cursor is kept, so the drainer
   * resends everything after `cursor()`. If cutting fails too, it is retried before the next write.
   */
  async #rollBack(): Promise<void> {
    this.#broken = true;
    await this.#guard(() => this.#cutBack());
  }

  /** #rollBack's work, for a caller that already holds the fence. */
  async #cutBack(): Promise<void> {
    this.#broken = true;
    for (const file of [...this.#retired, ...(this.#current ? [this.#current] : [])]) {
      await file.handle.close().catch(() => undefined);
    }
    this.#retired = [];
    this.#current = undefined;
    for (const waiter of this.#waiters.splice(0)) {
      waiter.reject(
        new SinkError(`file sink: a failed write in ${this.dir} undid this batch; resend from the cursor`),
      );
    }
    const mark = this.#durableMark;
    const cuts = [...this.#opened].reverse();
    if (mark.file !== undefined) cuts.push({ path: join(this.dir, mark.file.name), size: mark.size });
    for (const cut of cuts) {
      const info = await stat(cut.path).catch(() => undefined);
      // Only regular files are ours to cut (not /dev/full or whatever else stood in the way).
      if (info?.isFile() === true && info.size > cut.size) {
        await truncateDurably(cut.path, cut.size).catch((error: unknown) => {
          throw ioError("undo the failed write in", cut.path, error);
        });
      }
    }
    this.#opened = [];
    this.#newFolderEntry = false;
    this.#appended = new Map(this.#durable);
    this.#sinceCheckpoint = Infinity;
    this.#generation++;
    this.#broken = false;
  }

  async #io<T>(what: string, path: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw error instanceof SinkError ? error : ioError(what, path, error);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

function dropUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

function parseCursorFile(text: string, path: string): CursorFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SinkError(`file sink: the cursor file ${path} is not JSON; restore it from a backup`, {
      cause: error,
      file: path,
    });
  }
  const v = value as Partial<CursorFile> | null;
  const nullableCount = (x: unknown) => x === null || isCount(x);
  if (
    typeof v !== "object" ||
    v === null ||
    !nullableCount(v.epoch) ||
    !nullableCount(v.seq) ||
    !(v.file === null || typeof v.file === "string") ||
    !isCount(v.bytes) ||
    !(
      v.partitions === undefined ||
      (typeof v.partitions === "object" &&
        v.partitions !== null &&
        Object.entries(v.partitions).every(
          ([part, at]) => /^\d+$/.test(part) && isCount(at?.epoch) && isCount(at.seq),
        ))
    )
  ) {
    throw new SinkError(`file sink: the cursor file ${path} is not a sink cursor; restore it from a backup`, {
      file: path,
    });
  }
  return v as CursorFile;
}

async function truncateDurably(path: string, size: number): Promise<void> {
  await truncate(path, size);
  const handle = await open(path, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A raw gap line (see formatRawLine) with the time it was written, or undefined. */
function parseRawGap(line: string): { record: GapRecord; ms: number } | undefined {
  const match =
    /^#memipc gap (?:part=(\d+) )?epoch=(\d+) from=(\d+) to=(\d+) reason=([a-z-]+) time=(\S+)$/.exec(line);
  if (match === null) return undefined;
  const ms = Date.parse(match[6]!);
  if (!Number.isFinite(ms)) return undefined;
  const [epoch, from, to] = [match[2], match[3], match[4]].map(Number) as [number, number, number];
  const record: GapRecord = { kind: "gap", epoch, from, to, reason: match[5] as GapReason };
  if (match[1] !== undefined) record.part = Number(match[1]);
  return { record, ms };
}

/** The last `max` bytes of a file as text (the first line may be cut). */
async function readTail(path: string, max: number): Promise<string> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, max);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString("utf8");
  } finally {
    await handle.close();
  }
}

/** fsync on a folder makes a new or renamed entry in it durable (Linux; a no-op error elsewhere is ignored). */
function fsyncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY);
    fsyncSync(fd);
  } catch (error) {
    const errno = errnoOf(error);
    if (errno !== "EISDIR" && errno !== "EPERM" && errno !== "EINVAL") throw error;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Cuts a torn or garbage tail off a JSON Lines file and hands its lines to `visit`, last first, until `visit`
 * returns true (then so does this) or the file's first line is passed (false). Reads backwards in growing
 * windows, so a big file costs only its tail.
 */
async function recoverJsonlFile(path: string, visit: (line: ParsedLine) => boolean): Promise<boolean> {
  const handle = await open(path, "r");
  let end: number;
  let found = false;
  try {
    const size = (await handle.stat()).size;
    end = size; // bytes kept: everything after `end` is torn or garbage
    let sawValid = false;
    for (let window = RECOVERY_WINDOW; ; window *= 2) {
      const from = Math.max(0, size - window);
      const buffer = Buffer.alloc(size - from);
      let read = 0;
      while (read < buffer.length) {
        const { bytesRead } = await handle.read(buffer, read, buffer.length - read, from + read);
        if (bytesRead === 0) break;
        read += bytesRead;
      }
      // Lines are complete only between newlines; the window's first line may start before it.
      let lineEnd = buffer.lastIndexOf(0x0a);
      if (!sawValid) end = lineEnd < 0 ? (from === 0 ? 0 : end) : from + lineEnd + 1;
      while (lineEnd >= 0) {
        const previous = lineEnd === 0 ? -1 : buffer.lastIndexOf(0x0a, lineEnd - 1);
        if (previous < 0 && from > 0) break; // the line may start before this window
        const parsed = parseJsonLine(buffer.subarray(previous + 1, lineEnd).toString("utf8"));
        if (parsed === undefined) {
          if (!sawValid) end = from + previous + 1; // garbage at the tail: cut it too
        } else {
          sawValid = true;
          if (visit(parsed)) {
            found = true;
            break;
          }
        }
        lineEnd = previous;
      }
      if (found || from === 0) break;
    }
    if (end < size) {
      await handle.close();
      await truncateDurably(path, end);
      return found;
    }
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw error;
  }
  await handle.close();
  return found;
}
