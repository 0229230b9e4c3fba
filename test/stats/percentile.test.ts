// Percentiles from timer histograms: against the exact quantiles of seeded random samples from several
// distributions (zeros, sub-millisecond, heavy tails, values past the last bucket), the estimate is always
// within one histogram bucket.
import assert from "node:assert/strict";
import { test } from "node:test";
import { mergeHistograms, percentile } from "../../src/stats/percentile.js";
import { MAX_TIMER_BUCKET, timerBucket, timerBucketFloor } from "../../src/stats/layout.js";

const QUANTILES = [0.5, 0.9, 0.99] as const;
const SAMPLES = 5000;

/** A small seeded generator (mulberry32): the same samples on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(next: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
}

const DISTRIBUTIONS: Record<string, (next: () => number) => number> = {
  "zeros and sub-millisecond": (next) => (next() < 0.3 ? 0 : next() * 2),
  "exponential, mean 40 ms": (next) => -40 * Math.log(1 - next()),
  "log-normal, wide": (next) => Math.exp(3 + 2 * normal(next)),
  "bimodal: fast hits, slow misses": (next) => (next() < 0.85 ? 1 + next() : 3000 + 2000 * next()),
  "pareto, huge values": (next) => 5 / (1 - next()) ** 1.5,
  "beyond the last bucket": (next) => (next() < 0.5 ? 10 * next() : 2 ** 41 * (1 + next())),
  "one value": () => 37.5,
};

function histogramOf(samples: readonly number[]): Map<number, number> {
  const histogram = new Map<number, number>();
  for (const ms of samples) histogram.set(timerBucket(ms), (histogram.get(timerBucket(ms)) ?? 0) + 1);
  return histogram;
}

/** The nearest-rank q-quantile: the smallest sample with at least q of all samples at or below it. */
function exact(sorted: readonly number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

for (const [name, draw] of Object.entries(DISTRIBUTIONS)) {
  test(`percentile: p50, p90, p99 of ${name} are within one bucket of the exact quantiles`, () => {
    for (const seed of [1, 2, 3]) {
      const next = random(seed * 7919);
      for (const size of [1, 7, SAMPLES]) {
        const samples = Array.from({ length: size }, () => draw(next));
        const sorted = [...samples].sort((a, b) => a - b);
        const histogram = histogramOf(samples);
        const maxMs = sorted[sorted.length - 1]!;
        for (const known of [maxMs, undefined]) {
          let previous = 0;
          for (const q of QUANTILES) {
            const estimate = percentile(histogram, q, known);
            const truth = exact(sorted, q);
            const what = `seed ${seed}, ${size} samples, q ${q}, max ${known ?? "unknown"}: ${estimate} vs ${truth}`;
            assert.ok(estimate !== undefined && Number.isFinite(estimate), what);
            assert.ok(Math.abs(timerBucket(estimate) - timerBucket(truth)) <= 1, what);
            assert.ok(estimate >= previous, `quantiles never decrease: ${what}`);
            if (known !== undefined) assert.ok(estimate <= known, `never above the largest sample: ${what}`);
            previous = estimate;
          }
        }
      }
    }
  });
}

test("percentile: interpolates linearly inside the bucket that holds the rank", () => {
  // 50 samples in [1, 2^0.25), 40 in [2, 2^1.25), 10 in [4, 2^2.25).
  const histogram = new Map([
    [1, 50],
    [5, 40],
    [9, 10],
  ]);
  assert.equal(percentile(histogram, 0.5), timerBucketFloor(2));
  assert.equal(percentile(histogram, 0.7), 2 + 0.5 * (timerBucketFloor(6) - 2));
  assert.equal(percentile(histogram, 0.99), 4 + 0.9 * (timerBucketFloor(10) - 4));
  // A known largest sample bounds the last bucket: the rank is placed between 4 and 4.5.
  assert.equal(percentile(histogram, 0.99, 4.5), 4 + 0.9 * 0.5);
  assert.equal(percentile(histogram, 1, 4.5), 4.5);
  // Bucket 0 is [0, 1).
  assert.equal(percentile(new Map([[0, 4]]), 0.5), 0.5);
  // The last bucket is open-ended: without a maximum it is given one step's width.
  const top = percentile(new Map([[MAX_TIMER_BUCKET, 2]]), 0.5)!;
  assert.ok(top >= timerBucketFloor(MAX_TIMER_BUCKET) && Number.isFinite(top));
});

test("percentile: an empty histogram has no quantiles, and q outside (0, 1] is refused", () => {
  assert.equal(percentile(new Map(), 0.5), undefined);
  assert.equal(percentile(new Map([[3, 0]]), 0.99, 2), undefined);
  for (const q of [0, -0.5, 1.01, Number.NaN]) {
    assert.throws(() => percentile(new Map([[1, 1]]), q), RangeError);
  }
});

test("mergeHistograms: the merge of buckets' histograms is the histogram of all their samples", () => {
  const next = random(42);
  const parts = Array.from({ length: 5 }, () =>
    Array.from({ length: 300 }, () => -30 * Math.log(1 - next())),
  );
  const merged = mergeHistograms(parts.map(histogramOf));
  const whole = histogramOf(parts.flat());
  assert.deepEqual(
    new Map([...merged].sort(([a], [b]) => a - b)),
    new Map([...whole].sort(([a], [b]) => a - b)),
  );
  assert.deepEqual(mergeHistograms([]), new Map());
});
