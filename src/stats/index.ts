// Stats: counters, gauges and timers in time buckets.
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
