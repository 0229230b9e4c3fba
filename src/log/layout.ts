// Where a log stream lives in memcached: key names and value formats, shared by producers and the drainer.
// Any memcached client in any language can follow this layout (docs/PROTOCOL.md, "Site log").
import { ConfigError } from "../errors.js";

export const DEFAULT_NAMESPACE = "memipc";
export const DEFAULT_STREAM = "log";
/** The counter holds epoch × EPOCH_FACTOR + sequence, so one incr hands out both. */
export const EPOCH_FACTOR = 1_000_000_000n;
/** Largest sequence number in an epoch; after it the counter rolls over to a new epoch. */
export const MAX_LIMIT = 999_999_999;
/** Epochs are random in [1, 2^31 - 1]: a counter recreated after a reset never reuses an earlier epoch's keys. */
export const MAX_EPOCH = 2 ** 31 - 1;

export const Layout = {
  /** memipc's own: `<ns>:log:<stream>:head` holding epoch·10^9 + seq, entries under `…:<epoch>:<seq>`. */
  default: "default",
  /** The original idiom: `Counter` (plain sequence), entries under `logentry-<n>`, `Process` for old readers. */
  seed: "seed",
} as const;
export type Layout = (typeof Layout)[keyof typeof Layout];

export interface SeedNames {
  counter: string;
  process: string;
  entryPrefix: string;
}

export const DEFAULT_SEED_NAMES: SeedNames = {
  counter: "Counter",
  process: "Process",
  entryPrefix: "logentry-",
};

export interface StreamAddress {
  layout: Layout;
  namespace: string;
  stream: string;
  seed: SeedNames;
  /**
   * Which partition of the stream (default layout): 0 uses the stream's own keys, so a stream that grows from
   * one partition to several keeps its first; partition p ≥ 1 puts `p<p>` after the stream name.
   */
  partition: number;
}

/** Partitions a stream may have: each has its own counter, so appends spread over a pool's servers. */
export const MAX_PARTITIONS = 256;

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function streamAddress(options: Partial<StreamAddress> = {}): StreamAddress {
  const address: StreamAddress = {
    layout: options.layout ?? Layout.default,
    namespace: options.namespace ?? DEFAULT_NAMESPACE,
    stream: options.stream ?? DEFAULT_STREAM,
    seed: { ...DEFAULT_SEED_NAMES, ...options.seed },
    partition: options.partition ?? 0,
  };
  if (address.layout !== Layout.default && address.layout !== Layout.seed) {
    throw new ConfigError(`layout "${String(address.layout)}" is not known: use "default" or "seed"`);
  }
  for (const [what, value] of [
    ["namespace", address.namespace],
    ["stream", address.stream],
  ] as const) {
    if (!NAME.test(value)) {
      throw new ConfigError(`${what} "${value}" must be 1 to 64 letters, digits, "_", "." or "-"`);
    }
  }
  const { partition } = address;
  if (!Number.isInteger(partition) || partition < 0 || partition >= MAX_PARTITIONS) {
    throw new ConfigError(`partition ${partition} must be a whole number from 0 to ${MAX_PARTITIONS - 1}`);
  }
  if (partition > 0 && address.layout === Layout.seed) {
    throw new ConfigError(
      "the seed layout has one counter (Counter) and cannot be partitioned: use the default layout for partitions",
    );
  }
  return address;
}

/** The same stream's address for partition `partition`. */
export function partitionAddress(address: StreamAddress, partition: number): StreamAddress {
  return streamAddress({ ...address, partition });
}

/** Checks a partition count (producers' and drainer's `partitions`). */
export function checkPartitions(partitions: number, layout: Layout = Layout.default): void {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
    throw new ConfigError(`partitions ${partitions} must be a whole number from 1 to ${MAX_PARTITIONS}`);
  }
  if (partitions > 1 && layout === Layout.seed) {
    throw new ConfigError(
      "the seed layout has one counter (Counter) and cannot be partitioned: use --partitions 1 or the default layout",
    );
  }
}

/** What every default-layout key of the stream's partition starts with. */
function base(address: StreamAddress): string {
  const { namespace, stream, partition } = address;
  return partition === 0 ? `${namespace}:log:${stream}` : `${namespace}:log:${stream}:p${partition}`;
}

/** The counter producers increment. */
export function headKey(address: StreamAddress): string {
  return address.layout === Layout.seed ? address.seed.counter : `${base(address)}:head`;
}

/** The key an entry is stored under. The seed layout has no epochs (pass 0). */
export function entryKey(address: StreamAddress, epoch: number, seq: number): string {
  return address.layout === Layout.seed
    ? `${address.seed.entryPrefix}${seq}`
    : `${base(address)}:${epoch}:${seq}`;
}

/**
 * Set (with `add`, value: the limit) by a producer that sees the counter reach the limit, before it rolls the
 * counter: tells the drainer that the epoch ended by rollover, so every number up to the limit was handed out.
 */
export function rolledKey(address: StreamAddress, epoch: number): string {
  return `${base(address)}:rolled:${epoch}`;
}

/** Where the active drainer publishes its metrics (JSON), for dashboards on any node. */
export function drainerKey(address: StreamAddress): string {
  return `${address.namespace}:log:${address.stream}:drainer`;
}

/** Splits a default-layout counter value into its epoch and sequence. */
export function splitHead(value: bigint): { epoch: number; seq: number } {
  return { epoch: Number(value / EPOCH_FACTOR), seq: Number(value % EPOCH_FACTOR) };
}

export function headValue(epoch: number, seq: number): bigint {
  return BigInt(epoch) * EPOCH_FACTOR + BigInt(seq);
}

/**
 * The epoch after a rollover: the next number (1 after the largest). Rollovers chain epochs so the drainer
 * can follow them even when the counter rolls several times between two of its reads; resets pick random
 * epochs, so a chain never runs into an earlier one's keys except by a one-in-two-billion draw.
 */
export function nextEpoch(epoch: number): number {
  return epoch >= MAX_EPOCH ? 1 : epoch + 1;
}

/** A fresh random epoch. */
export function newEpoch(random: () => number = Math.random): number {
  return 1 + Math.floor(random() * (MAX_EPOCH - 1));
}

/** What memipc's producers store: {"t": ms since 1970, "n": node name, "d": the payload}. */
export interface StoredEntry {
  t: number;
  n: string;
  d: unknown;
}

export function encodeEntry(time: number, node: string, data: unknown): string {
  return JSON.stringify({ t: time, n: node, d: data ?? null });
}

/**
 * Stored by a producer under a number whose entry the server refused (over its item size limit):
 * {"t": ms, "n": node, "refused": the server's reply, "bytes": the entry's size}. It has no "d", so it is
 * never taken for an entry; the drainer writes a `refused` gap for it at once instead of waiting out the
 * hole timeout.
 */
export function encodeRefused(time: number, node: string, reason: string, bytes: number): string {
  return JSON.stringify({ t: time, n: node, refused: reason, bytes });
}

/**
 * Reads a stored entry. A value that is not memipc's JSON object (a plain line written by another client,
 * as in the original idiom) is taken as is: its text is the payload, with no time or node.
 */
export function decodeEntry(value: Buffer): StoredEntry | { t: undefined; n: undefined; d: string } {
  const text = value.toString("utf8");
  if (text.startsWith('{"t":')) {
    try {
      const parsed = JSON.parse(text) as Partial<StoredEntry>;
      if (typeof parsed.t === "number" && typeof parsed.n === "string" && "d" in parsed) {
        return { t: parsed.t, n: parsed.n, d: parsed.d };
      }
    } catch {
      // not ours after all: fall through to the raw reading
    }
  }
  return { t: undefined, n: undefined, d: text };
}

/** A stored entry as decodeEntryAt reads it. */
export interface EntryFields {
  t: number | undefined;
  n: string | undefined;
  d: unknown;
  /** The payload as JSON text, when the stored text can be written out as it is (else undefined). */
  dataJson: string | undefined;
  /** Set when the value is a refused-entry marker (encodeRefused): the server's reply; no entry then. */
  refused?: string | undefined;
}

const OPEN = '{"t":';
const NODE_KEY = ',"n":"';
const DATA_KEY = '","d":';
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** Bytes inside a JSON string by kind: plain ASCII, UTF-8 (non-ASCII), or special (" \ and controls). */
const PLAIN = 0;
const NON_ASCII = 1;
const SPECIAL = 2;
const BYTE_KIND = Uint8Array.from({ length: 256 }, (_, c) =>
  c === QUOTE || c === BACKSLASH || c < 0x20 ? SPECIAL : c > 0x7f ? NON_ASCII : PLAIN,
);
const MAX_CACHED_NODE = 256; // bytes of a node name worth keeping to compare with the next entry's

/** The last node name read, as bytes and text: a window's entries usually come from few nodes. */
const lastNode = { bytes: Buffer.alloc(MAX_CACHED_NODE), length: -1, text: "" };

/**
 * decodeEntry for `buf[start..end)`, into `out` (the caller's, reused: nothing is made per entry but strings).
 * What encodeEntry writes with a string payload (the usual log line) is read straight from the bytes, with no
 * JSON.parse, and its payload's JSON text is kept in `dataJson`, so it can be written out again as it is;
 * escapes other than the ones JSON.stringify writes, and anything else, take decodeEntry's path.
 */
export function decodeEntryAt(buf: Buffer, start: number, end: number, out: EntryFields): void {
  out.refused = undefined;
  if (!readSimple(buf, start, end, out)) {
    out.refused = readRefused(buf, start, end);
    const entry = decodeEntry(buf.subarray(start, end));
    out.t = entry.t;
    out.n = entry.n;
    out.d = entry.d;
    out.dataJson = undefined;
  }
}

function readSimple(buf: Buffer, start: number, end: number, out: EntryFields): boolean {
  if (end - start < 19 || buf[end - 1] !== 0x7d || !startsWith(buf, start, end, OPEN)) return false;
  // "t": 1 to 15 digits (exact as a number; ms since 1970 take 13).
  let i = start + OPEN.length;
  let time = 0;
  const digitsEnd = Math.min(end, i + 16);
  for (; i < digitsEnd; i++) {
    const digit = buf[i]! - 0x30;
    if (digit < 0 || digit > 9) break;
    time = time * 10 + digit;
  }
  const digits = i - start - OPEN.length;
  if (digits === 0 || digits > 15 || !startsWith(buf, i, end, NODE_KEY)) return false;
  if (digits > 1 && buf[start + OPEN.length] === 0x30) return false; // a leading zero is not JSON
  // "n": a string with no escapes.
  const nodeStart = i + NODE_KEY.length;
  let ascii = true;
  for (i = nodeStart; i < end; i++) {
    const kind = BYTE_KIND[buf[i]!]!;
    if (kind === PLAIN) continue;
    if (kind === NON_ASCII) ascii = false;
    else if (buf[i] === QUOTE) break;
    else return false;
  }
  const nodeEnd = i;
  if (!startsWith(buf, nodeEnd, end, DATA_KEY)) return false;
  // "d": a string, its last byte the one before the closing brace; escapes only as JSON.stringify writes them.
  const dataStart = nodeEnd + DATA_KEY.length;
  const dataEnd = end - 1;
  if (dataEnd - dataStart < 2 || buf[dataStart] !== QUOTE || buf[dataEnd - 1] !== QUOTE) return false;
  let escapes = false;
  let dataAscii = true;
  for (i = dataStart + 1; i < dataEnd - 1; i++) {
    const kind = BYTE_KIND[buf[i]!]!;
    if (kind === PLAIN) continue;
    if (kind === NON_ASCII) dataAscii = false;
    else if (buf[i] === BACKSLASH) {
      i++;
      // The last character is the closing quote: a backslash may not take it.
      if (i >= dataEnd - 1 || !STRINGIFY_ESCAPES.has(buf[i]!)) return false;
      escapes = true;
    } else return false;
  }
  out.t = time;
  out.n = nodeText(buf, nodeStart, nodeEnd, ascii);
  const json = buf.toString(dataAscii ? "latin1" : "utf8", dataStart, dataEnd);
  out.dataJson = json;
  out.d = escapes ? (JSON.parse(json) as string) : json.slice(1, -1);
  return true;
}

const REFUSED_KEY = Buffer.from(',"refused":');

/** The server's reply recorded in a refused-entry marker, or undefined when the value is not one. */
function readRefused(buf: Buffer, start: number, end: number): string | undefined {
  if (!startsWith(buf, start, end, OPEN) || buf.subarray(start, end).indexOf(REFUSED_KEY) < 0)
    return undefined;
  try {
    const parsed = JSON.parse(buf.toString("utf8", start, end)) as {
      t?: unknown;
      n?: unknown;
      d?: unknown;
      refused?: unknown;
    };
    if (typeof parsed.t === "number" && typeof parsed.n === "string" && !("d" in parsed)) {
      return typeof parsed.refused === "string" ? parsed.refused : undefined;
    }
  } catch {
    // not a marker: an ordinary value
  }
  return undefined;
}

/** The escapes JSON.stringify writes (besides \u00xx, which is left to the slow path): \" \\ \b \f \n \r \t. */
const STRINGIFY_ESCAPES = new Set([0x22, 0x5c, 0x62, 0x66, 0x6e, 0x72, 0x74]);

function startsWith(buf: Buffer, at: number, end: number, text: string): boolean {
  if (at + text.length > end) return false;
  for (let i = 0; i < text.length; i++) if (buf[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

function nodeText(buf: Buffer, start: number, end: number, ascii: boolean): string {
  const length = end - start;
  const cached = lastNode.bytes;
  if (length === lastNode.length) {
    let same = true;
    for (let i = 0; i < length; i++) {
      if (buf[start + i] !== cached[i]) {
        same = false;
        break;
      }
    }
    if (same) return lastNode.text;
  }
  const text = buf.toString(ascii ? "latin1" : "utf8", start, end);
  if (length <= MAX_CACHED_NODE) {
    buf.copy(cached, 0, start, end);
    lastNode.length = length;
    lastNode.text = text;
  }
  return text;
}
