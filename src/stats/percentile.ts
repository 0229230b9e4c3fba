// Quantiles of timer histograms: the counts per log-scale bucket (see layout timerBucket) are all a report
// has of a timer's samples, so p50/p90/p99 are read from them, exact to within the bucket that holds them.
import { MAX_TIMER_BUCKET, TIMER_STEPS_PER_DOUBLING, timerBucketFloor } from "./layout.js";

/**
 * The q-quantile (0 < q ≤ 1) in ms of the samples counted in `histogram` (bucket index → samples), or
 * undefined when it counts none. The rank q × count is found in the bucket that holds the sample of that
 * rank, and placed linearly between the bucket's bounds; the result is never above `maxMs`, the largest
 * sample, when it is known. Always in the same bucket as the nearest-rank sample, or on its upper bound.
 */
export function percentile(
  histogram: ReadonlyMap<number, number>,
  q: number,
  maxMs?: number,
): number | undefined {
  if (!(q > 0 && q <= 1)) throw new RangeError(`quantile ${q} must be above 0 and at most 1 (e.g. 0.99)`);
  const buckets = [...histogram].filter(([, n]) => n > 0).sort(([a], [b]) => a - b);
  const total = buckets.reduce((sum, [, n]) => sum + n, 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let below = 0;
  for (const [i, [k, n]] of buckets.entries()) {
    // q ≤ 1 keeps the rank within the count; the last bucket takes it regardless of rounding.
    if (below + n < rank && i < buckets.length - 1) {
      below += n;
      continue;
    }
    const floor = timerBucketFloor(k);
    // The last bucket also holds everything beyond it: only the largest sample, if known, bounds it.
    let ceiling = k >= MAX_TIMER_BUCKET ? Infinity : timerBucketFloor(k + 1);
    if (maxMs !== undefined && maxMs >= floor) ceiling = Math.min(ceiling, maxMs);
    if (!Number.isFinite(ceiling)) ceiling = floor * 2 ** (1 / TIMER_STEPS_PER_DOUBLING);
    const value = floor + (Math.min(rank - below, n) / n) * (ceiling - floor);
    return maxMs === undefined ? value : Math.min(value, maxMs);
  }
  return undefined;
}

/** The sum of histograms: the samples of several buckets of time as one. */
export function mergeHistograms(histograms: Iterable<ReadonlyMap<number, number>>): Map<number, number> {
  const merged = new Map<number, number>();
  for (const histogram of histograms) {
    for (const [k, n] of histogram) merged.set(k, (merged.get(k) ?? 0) + n);
  }
  return merged;
}
