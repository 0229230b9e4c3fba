// Stats: counters, gauges and timers in time buckets; the collector that stores closed buckets.
export { StatsWriter, Protocol, type StatsWriterOptions } from "./writer.js";
export {
  Kind,
  bucketStart,
  counterKey,
  gaugeKey,
  timerKey,
  indexKey,
  timerBucket,
  timerBucketFloor,
  parseIndex,
  validateName,
  DEFAULT_BUCKET_SECONDS,
  DEFAULT_BUCKET_TTL,
  type StatsAddress,
} from "./layout.js";
export {
  Collector,
  resolveCollectorOptions,
  DEFAULT_GRACE,
  DEFAULT_INTERVAL,
  DEFAULT_RECHECK,
  DEFAULT_LOOKBACK,
  type CollectorOptions,
  type CollectResult,
  type CollectorMetrics,
  type PassUnreachable,
} from "./collector.js";
export { readBuckets, unreached, type Unreached } from "./reader.js";
export { percentile, mergeHistograms } from "./percentile.js";
