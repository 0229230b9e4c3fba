// Where stats live in memcached: time buckets of counters, gauges and timer histograms, and a per-bucket index
// of the names used, so the collector never scans keys. Any memcached client can write the same keys.
import { ConfigError } from "../errors.js";

export const DEFAULT_NAMESPACE = "memipc";
export const DEFAULT_BUCKET_SECONDS = 60; // s per bucket
export const DEFAULT_BUCKET_TTL = 7 * 24 * 3600; // s a bucket's keys live: long enough for any collector outage
/** Timer histogram resolution: bucket k ≥ 1 holds values in [2^((k-1)/4), 2^(k/4)) ms, about 19 % wide. */
export const TIMER_STEPS_PER_DOUBLING = 4;
/** Values below 1 ms go to bucket 0; bucket indexes stop at this one (about 2^40 ms). */
export const MAX_TIMER_BUCKET = 160;

export const Kind = { counter: "c", gauge: "g", timer: "t" } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

/** Throws a ConfigError unless `name` can be a stat name (1–100 letters, digits, `_`, `.`, `-`). */
export function validateName(name: string, what = "stat name"): void {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new ConfigError(
      `${what} ${JSON.stringify(name)} must be 1 to 100 letters, digits, "_", "." or "-" (e.g. "accounts.created")`,
    );
  }
}

export interface StatsAddress {
  namespace: string;
  bucketSeconds: number;
}

/** The start (unix seconds) of the bucket holding time `ms`. */
export function bucketStart(address: StatsAddress, ms: number): number {
  const size = address.bucketSeconds;
  return Math.floor(ms / 1000 / size) * size;
}

/** `<ns>:st:<size>:<start>:` — every key of one bucket starts so. */
function prefix(address: StatsAddress, start: number): string {
  return `${address.namespace}:st:${address.bucketSeconds}:${start}:`;
}

/** A counter's key: its value is the count in the bucket, a decimal number. */
export function counterKey(address: StatsAddress, start: number, name: string): string {
  return `${prefix(address, start)}c:${name}`;
}

/** A gauge's key: its value is the last value set in the bucket. */
export function gaugeKey(address: StatsAddress, start: number, name: string): string {
  return `${prefix(address, start)}g:${name}`;
}

/**
 * A timer's keys: the counters `n` (samples), `s` (sum, whole microseconds) and `h<k>` per histogram bucket k
 * (see timerBucket), and `m`, the largest sample in whole microseconds (raised with compare-and-swap).
 */
export function timerKey(address: StatsAddress, start: number, name: string, part: string): string {
  return `${prefix(address, start)}t:${name}:${part}`;
}

/** The bucket's index: ` <kind>:<name>` entries, each name appended about once (see listedKey). */
export function indexKey(address: StatsAddress, start: number): string {
  return `${prefix(address, start)}names`;
}

/**
 * A name's marker in a bucket (`l:<kind>:<name>`): set after the name was appended to the index, so other
 * writers skip the append. Optional for writers: without it the index only grows longer.
 */
export function listedKey(address: StatsAddress, start: number, entry: string): string {
  return `${prefix(address, start)}l:${entry}`;
}

/** The histogram bucket of a duration in ms. */
export function timerBucket(ms: number): number {
  if (!(ms >= 1)) return 0;
  return Math.min(MAX_TIMER_BUCKET, 1 + Math.floor(Math.log2(ms) * TIMER_STEPS_PER_DOUBLING));
}

/** The lower bound (ms) of histogram bucket k; bucket 0 is [0, 1). */
export function timerBucketFloor(k: number): number {
  return k === 0 ? 0 : 2 ** ((k - 1) / TIMER_STEPS_PER_DOUBLING);
}

/** Parses an index value into the names it lists by kind (duplicates removed). */
export function parseIndex(text: string): Map<Kind, Set<string>> {
  const byKind = new Map<Kind, Set<string>>();
  for (const entry of text.split(" ")) {
    const colon = entry.indexOf(":");
    if (colon !== 1) continue;
    const kind = entry[0] as Kind;
    const name = entry.slice(2);
    if ((kind !== "c" && kind !== "g" && kind !== "t") || !NAME.test(name)) continue;
    let names = byKind.get(kind);
    if (names === undefined) byKind.set(kind, (names = new Set()));
    names.add(name);
  }
  return byKind;
}
