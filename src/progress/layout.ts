// Where jobs live in memcached: one JSON record per job, a cancel flag beside it (so a reader never races the
// job's own writes), and hourly indexes of the jobs started in each hour, so jobs can be listed without
// scanning keys. Any memcached client can read and write the same keys (docs/PROTOCOL.md).
import { ConfigError } from "../errors.js";

export const DEFAULT_NAMESPACE = "memipc";
export const DEFAULT_JOB_TTL = 24 * 3600; // s a finished job's record stays readable
export const DEFAULT_STALL_AFTER = 10_000; // ms without a heartbeat after which a running job shows as stalled
export const INDEX_HOURS = 24; // hourly indexes list() reads back
export const HOUR_MS = 3_600_000;

export const JobState = {
  running: "running",
  done: "done",
  failed: "failed",
  cancelled: "cancelled",
  stalled: "stalled",
} as const;
export type JobState = (typeof JobState)[keyof typeof JobState];

/** The states a job ends in; `stalled` is not one of them: a stalled job may still come back. */
export const FINAL_STATES: ReadonlySet<JobState> = new Set([
  JobState.done,
  JobState.failed,
  JobState.cancelled,
]);

/** A job as stored under its key (JSON); times are ms since 1970. */
export interface JobRecord {
  id: string;
  label: string;
  /** As written by the job: running, done, failed or cancelled (readers derive `stalled`). */
  state: JobState;
  done: number;
  /** Undefined (null in JSON) when the job does not know its size. */
  total: number | null;
  message: string;
  startedAt: number;
  /** When done, total or message last changed. */
  updatedAt: number;
  /** When the job last showed it is alive; a running job whose heartbeat is older than stallAfter is stalled. */
  heartbeatAt: number;
  /** ms without a heartbeat after which readers show the job as stalled. */
  stallAfter: number;
  /** Units per second over the job's life so far, and the ms left at that rate (null when unknown). */
  rate: number | null;
  eta: number | null;
  /** Whatever the job returned (JSON), or why it failed. */
  result: unknown;
  error: string | null;
  /** Where it runs: host name and process id. */
  node: string;
  /** Raised with each write: readers tell versions apart by it (SSE event ids). */
  version: number;
}

const ID = /^[A-Za-z0-9_.-]{1,100}$/;

/** Throws a ConfigError unless `id` can be a job id (1–100 letters, digits, `_`, `.`, `-`). */
export function validateJobId(id: string): void {
  if (typeof id !== "string" || !ID.test(id)) {
    throw new ConfigError(
      `job id ${JSON.stringify(id)} must be 1 to 100 letters, digits, "_", "." or "-" (e.g. "export-2026-11-25")`,
    );
  }
}

export function jobKey(namespace: string, id: string): string {
  return `${namespace}:job:${id}`;
}

/** Set (to any value) by a reader that asks the job to stop. */
export function cancelKey(namespace: string, id: string): string {
  return `${namespace}:job:${id}:cancel`;
}

/** The index of jobs started in the hour holding `ms`: ` <id>` entries appended. */
export function indexKey(namespace: string, ms: number): string {
  return `${namespace}:jobs:${Math.floor(ms / HOUR_MS)}`;
}

/** Ids listed in an index value, in the order they were appended, each once. */
export function parseJobIndex(text: string): string[] {
  return [...new Set(text.split(" ").filter((id) => ID.test(id)))];
}

/** The record as a reader shows it: a running job without a recent heartbeat is `stalled`. */
export function effectiveState(record: JobRecord, now: number): JobState {
  if (record.state === JobState.running && now - record.heartbeatAt > record.stallAfter)
    return JobState.stalled;
  return record.state;
}

/** Parses a stored record; undefined if the value is not one (another program's key, a half-written value). */
export function decodeJob(value: Buffer | string): JobRecord | undefined {
  try {
    const record = JSON.parse(typeof value === "string" ? value : value.toString("utf8")) as JobRecord;
    if (typeof record !== "object" || record === null || typeof record.id !== "string") return undefined;
    if (typeof record.state !== "string" || typeof record.heartbeatAt !== "number") return undefined;
    return record;
  } catch {
    return undefined;
  }
}
