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

/**
 * Reads the buckets starting at `starts` (unix s): undefined for a bucket without an index (nothing was
 * written to it, or its keys are gone).
 */
export async function readBuckets(
  client: Client,
  o: StatsAddress,
  starts: readonly number[],
): Promise<Array<BucketValues | undefined>> {
  const indexes = await client.getMany(starts.map((s) => indexKey(o, s)));
  const plans: BucketPlan[] = [];
  const out = new Array<BucketValues | undefined>(starts.length).fill(undefined);
  for (const [i, index] of indexes.entries()) {
    if (index === undefined) continue;
    const names = parseIndex(index.toString("latin1"));
    plans.push({
      position: i,
      start: starts[i]!,
      counters: [...(names.get("c") ?? [])].sort(),
      gauges: [...(names.get("g") ?? [])].sort(),
      timers: [...(names.get("t") ?? [])].sort(),
    });
  }
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
    out[p.position] = bucket;
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

async function readKeys(client: Client, keys: readonly string[]): Promise<Array<Buffer | undefined>> {
  if (keys.length <= KEYS_PER_READ) return client.getMany(keys);
  const rounds: Array<Promise<Array<Buffer | undefined>>> = [];
  for (let i = 0; i < keys.length; i += KEYS_PER_READ) {
    rounds.push(client.getMany(keys.slice(i, i + KEYS_PER_READ)));
  }
  return (await Promise.all(rounds)).flat();
}

interface BucketPlan {
  position: number;
  start: number;
  counters: string[];
  gauges: string[];
  timers: string[];
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
