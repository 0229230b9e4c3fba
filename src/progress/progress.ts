// Progress of long jobs, shared through memcached: a job on any node writes its record (throttled, the last
// write always lands, with heartbeats); any node reads, lists, watches and cancels it. Nothing is kept in one
// process's memory, so every node behind a load balancer shows the same job the same way. On a pool, jobs
// stored on a server that is down are left out of the list (and said so) rather than failing it.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "../client/index.js";
import { ConfigError, InputError } from "../errors.js";
import {
  DEFAULT_JOB_TTL,
  DEFAULT_NAMESPACE,
  DEFAULT_STALL_AFTER,
  FINAL_STATES,
  HOUR_MS,
  INDEX_HOURS,
  JobState,
  cancelKey,
  decodeJob,
  effectiveState,
  indexKey,
  jobKey,
  parseJobIndex,
  validateJobId,
  type JobRecord,
} from "./layout.js";

export const DEFAULT_THROTTLE = 250; // ms: at most one write per job in this time (the last always lands)
export const DEFAULT_HEARTBEAT = 2000; // ms between writes that only say the job is alive (and look for a cancel)
export const DEFAULT_WATCH_INTERVAL = 500; // ms between reads while watching a job
const INDEX_TRIES = 3; // append, add, append: enough for two jobs creating an hour's index at once
export const MAX_LABEL = 200; // characters of a job's label
export const MAX_MESSAGE = 2000; // characters of a job's message (a failure's reason is cut to it)
/** A UTF-16 surrogate without its pair: no UTF-8 text can hold it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export interface ProgressOptions {
  namespace: string;
  /** Seconds a job's record lives after its last write. */
  ttl: number;
  /** ms: a job writes at most once in this time; updates in between are merged, the last always lands. */
  throttle: number;
  /** ms between heartbeats while nothing else is written. */
  heartbeat: number;
  /** ms without a heartbeat after which readers show a running job as stalled. */
  stallAfter: number;
  /** Milliseconds since 1970, injectable for tests. */
  clock: () => number;
}

/** A job as readers see it: its record, with `state` stalled when its heartbeats stopped. */
export type JobView = JobRecord;

/** The jobs list() returns, and what could not be read: see Progress.listJobs. */
export interface JobList {
  /** The jobs read, newest first. */
  jobs: JobView[];
  /**
   * On a pool, what could not be read because servers were down or not answering; absent when every
   * server answered. Those jobs are missing from `jobs` until their server is back.
   */
  unreachable?: {
    /** The servers (host:port) that could not be read. */
    servers: string[];
    /** Hourly indexes not read: jobs started in those hours are not known at all. */
    hours: number;
    /** Ids of the jobs listed whose records could not be read. */
    jobs: string[];
    /** The first error met. */
    error: Error;
  };
}

export interface StartOptions {
  /** Units of work in all, if known. */
  total?: number;
  /** The job's id; a new one is made when absent. An id in use by a running job is refused. */
  id?: string;
  /** Aborted when the job is asked to cancel, as well as `job.signal`. */
  signal?: AbortSignal;
}

export interface JobUpdate {
  done?: number;
  total?: number | null;
  message?: string;
}

export class Progress {
  readonly options: ProgressOptions;
  readonly #client: Client;

  constructor(client: Client, options: Partial<ProgressOptions> = {}) {
    this.#client = client;
    this.options = {
      namespace: options.namespace ?? DEFAULT_NAMESPACE,
      ttl: options.ttl ?? DEFAULT_JOB_TTL,
      throttle: options.throttle ?? DEFAULT_THROTTLE,
      heartbeat: options.heartbeat ?? DEFAULT_HEARTBEAT,
      stallAfter: options.stallAfter ?? DEFAULT_STALL_AFTER,
      clock: options.clock ?? Date.now,
    };
    const o = this.options;
    if (!Number.isInteger(o.ttl) || o.ttl < 1 || o.ttl > 30 * 86_400) {
      throw new ConfigError(`job ttl ${o.ttl} must be a whole number of seconds from 1 to 2592000 (30 days)`);
    }
    if (!(o.throttle >= 0)) throw new ConfigError(`throttle ${o.throttle} ms must be 0 or more`);
    if (!(o.heartbeat > 0)) throw new ConfigError(`heartbeat ${o.heartbeat} ms must be above 0`);
    if (!(o.stallAfter > o.heartbeat)) {
      throw new ConfigError(
        `stallAfter ${o.stallAfter} ms must be longer than the heartbeat (${o.heartbeat} ms), or live jobs show as stalled`,
      );
    }
  }

  /** Starts a job: writes its first record and lists it in the current hour's index. */
  async start(label: string, options: StartOptions = {}): Promise<Job> {
    if (typeof label !== "string" || label === "")
      throw new InputError('a job needs a label, e.g. "nightly export"');
    checkText("label", label, MAX_LABEL);
    const id = options.id ?? newJobId(this.options.clock());
    try {
      validateJobId(id);
    } catch (error) {
      throw new InputError(`${(error as Error).message}; nothing was written`, { cause: error });
    }
    if (options.total !== undefined) checkCount("total", options.total);
    const now = this.options.clock();
    const record: JobRecord = {
      id,
      label,
      state: JobState.running,
      done: 0,
      total: options.total ?? null,
      message: "",
      startedAt: now,
      updatedAt: now,
      heartbeatAt: now,
      stallAfter: this.options.stallAfter,
      rate: null,
      eta: null,
      result: null,
      error: null,
      node: `${hostname()}:${process.pid}`,
      version: 1,
    };
    const key = jobKey(this.options.namespace, id);
    const value = JSON.stringify(record);
    if (!(await this.#client.add(key, value, { ttl: this.options.ttl }))) {
      const existing = await this.get(id);
      if (existing?.state === JobState.running) {
        throw new ConfigError(`job ${id} is running already (on ${existing.node}): choose another id`);
      }
      // The id is used again: its versions go on rising, so a watcher's last event id never repeats.
      if (existing !== undefined) record.version = existing.version + 1;
      await this.#client.set(key, JSON.stringify(record), { ttl: this.options.ttl });
    }
    await this.#client.delete(cancelKey(this.options.namespace, id));
    await this.#list(id, now);
    return new Job(this.#client, this.options, record, options.signal);
  }

  /** The job as it stands now, or undefined if there is none with that id (or it expired). */
  async get(id: string): Promise<JobView | undefined> {
    validateJobId(id);
    const found = await this.#client.get(jobKey(this.options.namespace, id));
    const record = found && decodeJob(found.value);
    return record && view(record, this.options.clock());
  }

  /**
   * The jobs started in the last 24 hours that still exist, newest first. On a pool, those stored on a
   * server that cannot be reached are left out (listJobs says which); on a single server that fails.
   */
  async list(): Promise<JobView[]> {
    return (await this.listJobs()).jobs;
  }

  /**
   * list(), with what could not be read: on a pool, a server that is down or not answering leaves out the
   * jobs whose records it holds, and those started in the hours whose index it holds, instead of failing the
   * list (`unreachable` says which). On a single server a failed read rejects, as there is nothing to list.
   */
  async listJobs(): Promise<JobList> {
    const now = this.options.clock();
    const skip = this.#client.servers.length > 1 ? unreachable() : undefined;
    const hours = Array.from({ length: INDEX_HOURS }, (_, i) =>
      indexKey(this.options.namespace, now - i * HOUR_MS),
    );
    const indexes = await this.#read(hours, skip);
    const hoursLost = skip?.lost.size ?? 0;
    const ids = [
      ...new Set(indexes.flatMap((v) => (v === undefined ? [] : parseJobIndex(v.toString("latin1"))))),
    ];
    skip?.lost.clear();
    const keys = ids.map((id) => jobKey(this.options.namespace, id));
    const values = await this.#read(keys, skip);
    const jobs: JobView[] = [];
    for (const value of values) {
      const record = value && decodeJob(value);
      if (record) jobs.push(view(record, now));
    }
    jobs.sort((a, b) => b.startedAt - a.startedAt);
    if (skip?.error === undefined) return { jobs };
    return {
      jobs,
      unreachable: {
        servers: skip.servers,
        hours: hoursLost,
        jobs: ids.filter((_, i) => skip.lost.has(keys[i]!)),
        error: skip.error,
      },
    };
  }

  /**
   * The values of `keys`; with `skip`, keys on servers that cannot be reached read as missing, and are
   * noted in it, instead of failing the read.
   */
  async #read(keys: readonly string[], skip: Unreachable | undefined): Promise<Array<Buffer | undefined>> {
    if (skip === undefined) return this.#client.getMany(keys);
    const { buffers, starts, ends, unreachable } = await this.#client.getManyRanges(keys, {
      skipUnreachable: true,
    });
    const values = keys.map((_, i) => buffers[i]?.subarray(starts[i], ends[i]));
    if (unreachable === undefined) return values;
    skip.error ??= unreachable.error;
    for (const server of unreachable.servers) if (!skip.servers.includes(server)) skip.servers.push(server);
    for (const [i, key] of keys.entries()) {
      const address = this.#client.servers[this.#client.serverIndex(key)]!;
      if (values[i] === undefined && unreachable.servers.includes(`${address.host}:${address.port}`)) {
        skip.lost.add(key);
      }
    }
    return values;
  }

  /**
   * The job's states as they change, read every `interval` ms: the current one first, then each new
   * version or state; ends after a final state (done, failed, cancelled), when the job disappears, or
   * when `signal` aborts.
   */
  async *watch(
    id: string,
    options: { interval?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<JobView, void, undefined> {
    const interval = options.interval ?? DEFAULT_WATCH_INTERVAL;
    let last: JobView | undefined;
    while (!options.signal?.aborted) {
      const job = await this.get(id);
      if (job === undefined) return;
      if (last === undefined || job.version !== last.version || job.state !== last.state) {
        last = job;
        yield job;
        if (FINAL_STATES.has(job.state)) return;
      }
      try {
        await sleep(interval, undefined, { signal: options.signal });
      } catch {
        return; // aborted
      }
    }
  }

  /**
   * Asks the job to stop: sets its cancel flag, which the job sees at its next write or heartbeat. False
   * when there is no such job or it has ended already.
   */
  async cancel(id: string): Promise<boolean> {
    const job = await this.get(id);
    if (job === undefined || FINAL_STATES.has(job.state)) return false;
    await this.#client.set(cancelKey(this.options.namespace, id), "1", { ttl: this.options.ttl });
    return true;
  }

  async #list(id: string, now: number): Promise<void> {
    const key = indexKey(this.options.namespace, now);
    // The index lives as long as the jobs it lists can (a running job's record is renewed; an hour's index
    // only needs to outlive the hour by list()'s reach).
    const ttl = Math.max(this.options.ttl, (INDEX_HOURS + 1) * 3600);
    for (let attempt = 0; attempt < INDEX_TRIES; attempt++) {
      if (await this.#client.append(key, ` ${id}`)) return;
      if (await this.#client.add(key, ` ${id}`, { ttl })) return;
    }
  }
}

/** One job's writer: updates are throttled and merged; done, fail and cancel always land. */
export class Job {
  readonly id: string;
  readonly signal: AbortSignal;
  readonly #client: Client;
  readonly #options: ProgressOptions;
  readonly #record: JobRecord;
  readonly #controller = new AbortController();
  /** ms of the last write sent. */
  #lastWrite = 0;
  #writing: Promise<void> | undefined;
  #dirty = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #ended = false;
  #writes = 0;
  #lastError: Error | undefined;

  constructor(client: Client, options: ProgressOptions, record: JobRecord, signal: AbortSignal | undefined) {
    this.#client = client;
    this.#options = options;
    this.#record = record;
    this.id = record.id;
    this.#lastWrite = options.clock();
    this.signal =
      signal === undefined ? this.#controller.signal : AbortSignal.any([signal, this.#controller.signal]);
    this.#heartbeat = setInterval(() => this.#beat(), options.heartbeat);
    this.#heartbeat.unref?.();
  }

  /** True once a reader has asked the job to stop (seen at a write or heartbeat). */
  get cancelled(): boolean {
    return this.#controller.signal.aborted;
  }

  /** Writes sent so far (for tests and metrics). */
  get writes(): number {
    return this.#writes;
  }

  /** The last error a background write met, if any (the next write tries again). */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  /** A snapshot of what the job will write next. */
  get record(): Readonly<JobRecord> {
    return { ...this.#record };
  }

  /** Sets done, total and message; written at most once per throttle period (the last always lands). */
  update(update: JobUpdate): void {
    this.#checkOpen();
    if (update.done !== undefined) checkCount("done", update.done);
    if (update.total !== undefined && update.total !== null) checkCount("total", update.total);
    if (update.message !== undefined) checkText("message", String(update.message), MAX_MESSAGE);
    if (update.done !== undefined) this.#record.done = update.done;
    if (update.total !== undefined) this.#record.total = update.total;
    if (update.message !== undefined) this.#record.message = String(update.message);
    this.#changed();
  }

  /** Adds `n` (default 1) to done. */
  tick(n = 1): void {
    this.#checkOpen();
    checkCount("tick", n);
    this.#record.done += n;
    this.#changed();
  }

  /** Ends the job as done, with an optional result (anything JSON can hold). */
  done(result?: unknown): Promise<void> {
    if (this.#record.total !== null && this.#record.done < this.#record.total && result === undefined) {
      this.#record.done = this.#record.total;
    }
    return this.#end(JobState.done, { result: result ?? null });
  }

  /** Ends the job as failed, with the reason. */
  fail(error: unknown): Promise<void> {
    const message = error instanceof Error ? error.message : String(error);
    // A failure is recorded whatever its reason looks like: cut to size and made UTF-8 text, never refused.
    return this.#end(JobState.failed, {
      error: message.slice(0, MAX_MESSAGE).replace(LONE_SURROGATE, "\uFFFD"),
    });
  }

  /** Ends the job as cancelled: call it when stopping because `cancelled` turned true (or for any reason). */
  cancel(message = "cancelled"): Promise<void> {
    try {
      checkText("message", message, MAX_MESSAGE);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#record.message = message;
    return this.#end(JobState.cancelled, {});
  }

  #checkOpen(): void {
    if (this.#ended) throw new ConfigError(`job ${this.id} has ended: no more updates`);
  }

  #changed(): void {
    const now = this.#options.clock();
    this.#record.updatedAt = now;
    this.#dirty = true;
    if (this.#writing !== undefined || this.#timer !== undefined) return;
    const wait = this.#lastWrite + this.#options.throttle - now;
    if (wait <= 0) void this.#flush();
    else this.#timer = setTimeout(() => void this.#flush(), wait);
  }

  #beat(): void {
    if (this.#writing !== undefined || this.#ended) return;
    if (this.#options.clock() - this.#lastWrite < this.#options.heartbeat / 2) return;
    this.#dirty = true;
    void this.#flush();
  }

  /** Writes the record (one write in flight; changes meanwhile are written after it). */
  async #flush(): Promise<void> {
    this.#timer = undefined;
    if (this.#writing !== undefined) return this.#writing;
    if (!this.#dirty) return;
    this.#writing = this.#write().finally(() => {
      this.#writing = undefined;
    });
    await this.#writing;
    // After a failed write the next change or heartbeat tries again: retrying at once would spin as fast as
    // the failures come (with no throttle, forever, once the client is closed).
    if (this.#dirty && !this.#ended && this.#lastError === undefined) this.#changed();
  }

  async #write(): Promise<void> {
    const now = this.#options.clock();
    const r = this.#record;
    this.#dirty = false;
    r.heartbeatAt = now;
    r.version++;
    const seconds = (now - r.startedAt) / 1000;
    r.rate = seconds > 0 && r.done > 0 ? r.done / seconds : null;
    r.eta =
      r.rate !== null && r.total !== null && r.state === JobState.running
        ? ((r.total - r.done) / r.rate) * 1000
        : null;
    this.#lastWrite = now;
    this.#writes++;
    const key = jobKey(this.#options.namespace, this.id);
    try {
      const [, cancel] = await Promise.all([
        this.#client.set(key, JSON.stringify(r), { ttl: this.#options.ttl }),
        r.state === JobState.running
          ? this.#client.get(cancelKey(this.#options.namespace, this.id))
          : undefined,
      ]);
      this.#lastError = undefined;
      if (cancel !== undefined && !this.#controller.signal.aborted)
        this.#controller.abort(new Error("cancel requested"));
    } catch (error) {
      this.#lastError = error as Error;
      this.#dirty = true; // written again at the next change or heartbeat
    }
  }

  async #end(state: JobState, fields: Partial<JobRecord>): Promise<void> {
    if (this.#ended) return;
    // Checked before the job ends, so a caller told its result is too large can end it with a smaller one.
    const size = Buffer.byteLength(JSON.stringify({ ...this.#record, ...fields, state }));
    if (size > this.#client.options.maxValueSize) {
      throw new InputError(
        `job ${this.id}: its record would be ${size} bytes, over the client's ${this.#client.options.maxValueSize}` +
          "-byte value limit (memcached's item size): end it with a smaller result (a summary, or a " +
          "reference to where the data is); the job is still running",
      );
    }
    this.#ended = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#writing?.catch(() => undefined);
    Object.assign(this.#record, fields, { state, updatedAt: this.#options.clock() });
    this.#dirty = true;
    await this.#write();
    if (this.#lastError !== undefined) throw this.#lastError;
  }
}

/** What reads on a pool could not reach: the servers, the first error, and the keys left unread. */
interface Unreachable {
  servers: string[];
  error: Error | undefined;
  lost: Set<string>;
}

function unreachable(): Unreachable {
  return { servers: [], error: undefined, lost: new Set() };
}

function view(record: JobRecord, now: number): JobView {
  return { ...record, state: effectiveState(record, now) };
}

function checkCount(what: string, n: number): void {
  if (!Number.isFinite(n) || n < 0)
    throw new InputError(`${what} ${n} is not a count (a finite number, 0 or more)`);
}

/** A label or message: at most `max` characters, and UTF-8 text (JSON would carry a lone surrogate, browsers not). */
function checkText(what: string, text: string, max: number): void {
  if (text.length > max) {
    throw new InputError(
      `job ${what} is ${text.length} characters, over the ${max} allowed: shorten it (details belong in the ` +
        "job's result); nothing was written",
    );
  }
  LONE_SURROGATE.lastIndex = 0;
  if (LONE_SURROGATE.test(text)) {
    throw new InputError(
      `job ${what} is not UTF-8 text (it has a lone surrogate): fix the string; nothing was written`,
    );
  }
}

function newJobId(now: number): string {
  return `${now.toString(36)}-${randomBytes(4).toString("hex")}`;
}
