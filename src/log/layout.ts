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
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function streamAddress(options: Partial<StreamAddress> = {}): StreamAddress {
  const address: StreamAddress = {
    layout: options.layout ?? Layout.default,
    namespace: options.namespace ?? DEFAULT_NAMESPACE,
    stream: options.stream ?? DEFAULT_STREAM,
    seed: { ...DEFAULT_SEED_NAMES, ...options.seed },
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
  return address;
}

/** The counter producers increment. */
export function headKey(address: StreamAddress): string {
  return address.layout === Layout.seed
    ? address.seed.counter
    : `${address.namespace}:log:${address.stream}:head`;
}

/** The key an entry is stored under. The seed layout has no epochs (pass 0). */
export function entryKey(address: StreamAddress, epoch: number, seq: number): string {
  return address.layout === Layout.seed
    ? `${address.seed.entryPrefix}${seq}`
    : `${address.namespace}:log:${address.stream}:${epoch}:${seq}`;
}

/**
 * Set (with `add`, value: the limit) by a producer that sees the counter reach the limit, before it rolls the
 * counter: tells the drainer that the epoch ended by rollover, so every number up to the limit was handed out.
 */
export function rolledKey(address: StreamAddress, epoch: number): string {
  return `${address.namespace}:log:${address.stream}:rolled:${epoch}`;
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
 * Reads a stored entry. A value that is not memipc's JSON object (a plain line written by another client,
 * as in the original idiom) is taken as is: its text is the payload, with no time or node.
 */
export function decodeEntry(value: Buffer): StoredEntry | { t: undefined; n: undefined; d: string } {
  const text = value.toString("utf8");
  const fast = decodeSimple(text);
  if (fast !== undefined) return fast;
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

const PLAIN_STRING = /^"[^"\\\x00-\x1f]*"$/;

/**
 * The drainer's fast path for what encodeEntry writes with a string payload and node name that need no
 * escapes (the usual log line): read by position, no JSON.parse. Anything else returns undefined.
 */
function decodeSimple(text: string): StoredEntry | undefined {
  if (!text.startsWith('{"t":') || text.charCodeAt(text.length - 1) !== 0x7d) return undefined;
  const comma = text.indexOf(',"n":"', 5);
  if (comma < 6 || comma > 21) return undefined;
  const digits = text.slice(5, comma);
  if (!/^\d+$/.test(digits)) return undefined;
  const nodeEnd = text.indexOf('","d":', comma + 6);
  if (nodeEnd < 0) return undefined;
  const node = text.slice(comma + 5, nodeEnd + 1);
  const data = text.slice(nodeEnd + 6, -1);
  if (!PLAIN_STRING.test(node) || !PLAIN_STRING.test(data)) return undefined;
  return { t: Number(digits), n: node.slice(1, -1), d: data.slice(1, -1) };
}
