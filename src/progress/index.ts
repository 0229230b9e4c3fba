// Progress: long jobs publish their state; any node reads, lists, watches and cancels them.
export {
  Progress,
  Job,
  DEFAULT_THROTTLE,
  DEFAULT_HEARTBEAT,
  DEFAULT_WATCH_INTERVAL,
  type ProgressOptions,
  type JobView,
  type StartOptions,
  type JobUpdate,
  type JobList,
} from "./progress.js";
export {
  JobState,
  FINAL_STATES,
  DEFAULT_NAMESPACE,
  DEFAULT_JOB_TTL,
  DEFAULT_STALL_AFTER,
  jobKey,
  cancelKey,
  indexKey,
  parseJobIndex,
  decodeJob,
  effectiveState,
  validateJobId,
  type JobRecord,
} from "./layout.js";
