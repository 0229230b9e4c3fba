// Reading buckets back from memcached: each bucket's index names what was written to it; the values come
// with multi-gets, counters, gauges and each timer's count, sum and max first, then the histogram buckets up
// to each timer's max. Used by the collector and by `memipc stats-list`.
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

/** The keys reading a bucket's values takes (histogram buckets aside). */
export function valueKeys(index: BucketIndex): number {
  return index.counters.length + index.gauges.length + 3 * index.timers.length;
}

/**
 * The indexes of the buckets starting at `starts` (unix s), in one multi-get: undefined for a bucket without
 * one (nothing was written to it, or its keys are gone).
 */
export async function readIndexes(
  client: Client,
  o: StatsAddress,
  starts: readonly number[],
): Promise<Array<BucketIndex | undefined>> {
  const found = await client.getMany(starts.map((s) => indexKey(o, s)));
  return found.map((index, i) => {
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
 * written to it, or its keys are gone).
 */
export async function readBuckets(
  client: Client,
  o: StatsAddress,
  starts: readonly number[],
): Promise<Array<BucketValues | undefined>> {
  const indexes = await readIndexes(client, o, starts);
  const values = await readValues(
    client,
    o,
    indexes.filter((i) => i !== undefined),
  );
  let next = 0;
  return indexes.map((index) => (index === undefined ? undefined : values[next++]));
}

/** The values of the buckets whose indexes are given, in their order. */
export async function readValues(
  client: Client,
  o: StatsAddress,
  plans: readonly BucketIndex[],
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
  const values = await readKeys(client, keys);
  let at = 0;
  const histogramKeys: string[] = [];
  const pendingTimers: Array<{ row: Omit<TimerRow, "start" | "seconds">; start: number; top: number }> = [];
  for (const p of plans) {
    const bucket: BucketValues = {
      start: p.start,
      seconds: o.bucketSeconds,
      counters: [],
      gauges: [],
      timers: [],
    };
    out.push(bucket);
    for (const name of p.counters) {
      const value = wholeNumber(values[at++]);
      if (value !== undefined)
        (bucket.counters as Array<{ name: string; value: number }>).push({ name, value });
    }
    for (const name of p.gauges) {
      const value = decimal(values[at++]);
      if (value !== undefined)
        (bucket.gauges as Array<{ name: string; value: number }>).push({ name, value });
    }
    for (const name of p.timers) {
      const count = wholeNumber(values[at++]);
      const sumUs = wholeNumber(values[at++]) ?? 0;
      const maxUs = wholeNumber(values[at++]);
      if (count === undefined) continue;
      const row = { name, count, sumUs, maxUs, histogram: new Map<number, number>() };
      (bucket.timers as Array<typeof row>).push(row);
      const top = maxUs === undefined ? MAX_TIMER_BUCKET : timerBucket(maxUs / 1000);
      for (let k = 0; k <= top; k++) histogramKeys.push(timerKey(o, p.start, name, `h${k}`));
      pendingTimers.push({ row, start: p.start, top });
    }
  }
  if (histogramKeys.length > 0) {
    const counts = await readKeys(client, histogramKeys);
    let h = 0;
    for (const { row, top } of pendingTimers) {
      for (let k = 0; k <= top; k++) {
        const n = wholeNumber(counts[h++]);
        if (n !== undefined && n > 0) row.histogram.set(k, n);
      }
    }
  }
  return out;
}

/**
 * The values of `keys` in order, KEYS_PER_READ at a time: one round in flight, so a large read neither
 * queues past the client's request timeout nor crowds out other requests on the connection.
 */
async function readKeys(client: Client, keys: readonly string[]): Promise<Array<Buffer | undefined>> {
  if (keys.length <= KEYS_PER_READ) return client.getMany(keys);
  const values: Array<Buffer | undefined> = [];
  for (let i = 0; i < keys.length; i += KEYS_PER_READ) {
    values.push(...(await client.getMany(keys.slice(i, i + KEYS_PER_READ))));
  }
  return values;
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
