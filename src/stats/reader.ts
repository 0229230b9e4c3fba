// Reading buckets back from memcached: each bucket's index names what was written to it; the values come
// with multi-gets, counters, gauges and each timer's count, sum and max first, then the histogram buckets up
// to each timer's max. Used by the collector and by `memipc stats-list`. On a pool, a read given an Unreached
// reads what the live servers hold instead of failing when one is down, and notes what it left out.
import type { Client } from "../client/index.js";
import type { BucketValues, TimerRow } from "../sinks/stats-db.js";
import {
  MAX_TIMER_BUCKET,
  counterKey,
  gaugeKey,
  indexKey,
  parseIndex,
  timerBucket,
  timerKey,
  type StatsAddress,
} from "./layout.js";

const KEYS_PER_READ = 20_000; // value keys per multi-get round

/** What a bucket's index lists, by kind, each list sorted. */
export interface BucketIndex {
  start: number;
  counters: string[];
  gauges: string[];
  timers: string[];
}

/**
 * What reads on a pool left out because servers could not be reached (down, or not answering in time).
 * Given to the read functions, it makes them read what the other servers hold instead of failing, and
 * gathers, across reads, what they could not read.
 */
export interface Unreached {
  /** The servers (host:port) that could not be read, in the order met. */
  servers: string[];
  /** Keys left unread: their server could not be reached and nothing of them came back. */
  keys: number;
  /** The first error met. */
  error: Error | undefined;
  /** Starts of the buckets whose index could not be read: nothing is known of them. */
  indexes: Set<number>;
  /**
   * Starts of the buckets read without some of their values: those are absent from what was read (a timer
   * missing any of its keys is left out whole, so that a partial histogram never replaces a whole one).
   */
  partial: Set<number>;
}

export function unreached(): Unreached {
  return { servers: [], keys: 0, error: undefined, indexes: new Set(), partial: new Set() };
}

/** The keys reading a bucket's values takes (histogram buckets aside). */
export function valueKeys(index: BucketIndex): number {
  return index.counters.length + index.gauges.length + 3 * index.timers.length;
}

/**
 * The indexes of the buckets starting at `starts` (unix s), in one multi-get: undefined for a bucket without
 * one (nothing was written to it, or its keys are gone), or, with `skip`, whose index is on a server that
 * could not be reached (noted in `skip.indexes`).
 */
export async function readIndexes(
  client: Client,
  o: StatsAddress,
  starts: readonly number[],
  skip?: Unreached,
): Promise<Array<BucketIndex | undefined>> {
  const { values: found, lost } = await readSome(
    client,
    starts.map((s) => indexKey(o, s)),
    skip,
  );
  return found.map((index, i) => {
    if (lost?.[i] === 1) skip!.indexes.add(starts[i]!);
    if (index === undefined) return undefined;
    const names = parseIndex(index.toString("latin1"));
    return {
      start: starts[i]!,
      counters: [...(names.get("c") ?? [])].sort(),
      gauges: [...(names.get("g") ?? [])].sort(),
      timers: [...(names.get("t") ?? [])].sort(),
    };
  });
}

/**
 * Reads the buckets starting at `starts` (unix s): undefined for a bucket without an index (nothing was
 * written to it, or its keys are gone). With `skip` (on a pool), what servers that cannot be reached hold
 * is left out and noted there, instead of failing the read.
 */
export async function readBuckets(
  client: Client,
  o: StatsAddress,
  starts: readonly number[],
  skip?: Unreached,
): Promise<Array<BucketValues | undefined>> {
  const indexes = await readIndexes(client, o, starts, skip);
  const values = await readValues(
    client,
    o,
    indexes.filter((i) => i !== undefined),
    skip,
  );
  let next = 0;
  return indexes.map((index) => (index === undefined ? undefined : values[next++]));
}

/**
 * The values of the buckets whose indexes are given, in their order. With `skip`, values on servers that
 * cannot be reached are absent, and their buckets are noted in `skip.partial`.
 */
export async function readValues(
  client: Client,
  o: StatsAddress,
  plans: readonly BucketIndex[],
  skip?: Unreached,
): Promise<BucketValues[]> {
  const out: BucketValues[] = [];
  // Counters, gauges and each timer's n, s and m first; then the histogram buckets up to each timer's max.
  const keys: string[] = [];
  for (const p of plans) {
    for (const name of p.counters) keys.push(counterKey(o, p.start, name));
    for (const name of p.gauges) keys.push(gaugeKey(o, p.start, name));
    for (const name of p.timers) {
      keys.push(
        timerKey(o, p.start, name, "n"),
        timerKey(o, p.start, name, "s"),
        timerKey(o, p.start, name, "m"),
      );
    }
  }
  const { values, lost } = await readKeys(client, keys, skip);
  let at = 0;
  const histogramKeys: string[] = [];
  type Row = Omit<TimerRow, "start" | "seconds">;
  const pendingTimers: Array<{ row: Row; timers: Row[]; start: number; top: number }> = [];
  for (const p of plans) {
    const counters: Array<{ name: string; value: number }> = [];
    const gauges: Array<{ name: string; value: number }> = [];
    const timers: Row[] = [];
    out.push({ start: p.start, seconds: o.bucketSeconds, counters, gauges, timers });
    const first = at;
    for (const name of p.counters) {
      const value = wholeNumber(values[at++]);
      if (value !== undefined) counters.push({ name, value });
    }
    for (const name of p.gauges) {
      const value = decimal(values[at++]);
      if (value !== undefined) gauges.push({ name, value });
    }
    for (const name of p.timers) {
      const partLost = lost !== undefined && (lost[at] === 1 || lost[at + 1] === 1 || lost[at + 2] === 1);
      const count = wholeNumber(values[at++]);
      const sumUs = wholeNumber(values[at++]) ?? 0;
      const maxUs = wholeNumber(values[at++]);
      if (count === undefined || partLost) continue;
      const row = { name, count, sumUs, maxUs, histogram: new Map<number, number>() };
      timers.push(row);
      const top = maxUs === undefined ? MAX_TIMER_BUCKET : timerBucket(maxUs / 1000);
      for (let k = 0; k <= top; k++) histogramKeys.push(timerKey(o, p.start, name, `h${k}`));
      pendingTimers.push({ row, timers, start: p.start, top });
    }
    if (lost !== undefined && lost.subarray(first, at).includes(1)) skip!.partial.add(p.start);
  }
  if (histogramKeys.length > 0) {
    const { values: counts, lost: countsLost } = await readKeys(client, histogramKeys, skip);
    let h = 0;
    for (const { row, timers, start, top } of pendingTimers) {
      if (countsLost !== undefined && countsLost.subarray(h, h + top + 1).includes(1)) {
        // A histogram short of some buckets would skew the percentiles: the timer waits for a whole read.
        timers.splice(timers.indexOf(row), 1);
        skip!.partial.add(start);
        h += top + 1;
        continue;
      }
      for (let k = 0; k <= top; k++) {
        const n = wholeNumber(counts[h++]);
        if (n !== undefined && n > 0) row.histogram.set(k, n);
      }
    }
  }
  return out;
}

/** Values read, and, when some could not be read, which: `lost[i]` is 1 for those. */
interface Read {
  values: Array<Buffer | undefined>;
  lost: Uint8Array | undefined;
}

/**
 * The values of `keys` in order, KEYS_PER_READ at a time: one round in flight, so a large read neither
 * queues past the client's request timeout nor crowds out other requests on the connection.
 */
async function readKeys(client: Client, keys: readonly string[], skip: Unreached | undefined): Promise<Read> {
  if (keys.length <= KEYS_PER_READ) return readSome(client, keys, skip);
  const values: Array<Buffer | undefined> = [];
  let lost: Uint8Array | undefined;
  for (let i = 0; i < keys.length; i += KEYS_PER_READ) {
    const part = await readSome(client, keys.slice(i, i + KEYS_PER_READ), skip);
    if (part.lost !== undefined) (lost ??= new Uint8Array(keys.length)).set(part.lost, i);
    values.push(...part.values);
  }
  return { values, lost };
}

/**
 * One multi-get. Without `skip` it fails as the client does; with it, keys on servers that cannot be reached
 * read as missing and are marked lost (a value that came back before its server failed is whole, and kept).
 */
async function readSome(client: Client, keys: readonly string[], skip: Unreached | undefined): Promise<Read> {
  if (skip === undefined) return { values: await client.getMany(keys), lost: undefined };
  const { buffers, starts, ends, unreachable } = await client.getManyRanges(keys, { skipUnreachable: true });
  const values = new Array<Buffer | undefined>(keys.length);
  for (let i = 0; i < keys.length; i++) values[i] = buffers[i]?.subarray(starts[i], ends[i]);
  if (unreachable === undefined) return { values, lost: undefined };
  skip.error ??= unreachable.error;
  for (const server of unreachable.servers) if (!skip.servers.includes(server)) skip.servers.push(server);
  const down = new Set(unreachable.servers);
  const lost = new Uint8Array(keys.length);
  for (let i = 0; i < keys.length; i++) {
    if (values[i] !== undefined) continue;
    const server = client.servers[client.serverIndex(keys[i]!)]!;
    if (down.has(`${server.host}:${server.port}`)) {
      lost[i] = 1;
      skip.keys++;
    }
  }
  return { values, lost };
}

/** A stored counter: decimal digits, maybe padded with spaces by an in-place decrement. */
export function wholeNumber(value: Buffer | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = value.toString("latin1").trim();
  if (!/^\d{1,20}$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : Number.MAX_SAFE_INTEGER;
}

function decimal(value: Buffer | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value.toString("latin1").trim());
  return Number.isFinite(n) ? n : undefined;
}
