// The collector: one per farm (a lease), it reads every closed bucket once its grace period for clock skew
// has passed, through the bucket's index and multi-gets, and stores the values in SQLite as absolute
// numbers. Each bucket is read again on a schedule while its keys live, so late increments are picked up;
// storing the same bucket twice never counts twice. Legacy plain counters are taken out with
// read-then-decrement, so increments that land in between stay in memcached for the next round. Each time a
// collector becomes the active one it takes a fencing token from the database, which then refuses the writes
// of any collector that was active before it (paused past its lease, then resumed).
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "../client/index.js";
import { ConfigError, FencedError, LeaseLostError } from "../errors.js";
import { Lease, type LeaseOptions } from "../lease/index.js";
import type { BucketValues, StatsDb } from "../sinks/stats-db.js";
import {
  DEFAULT_BUCKET_SECONDS,
  DEFAULT_BUCKET_TTL,
  DEFAULT_NAMESPACE,
  bucketStart,
  validateName,
  type StatsAddress,
} from "./layout.js";
import { readIndexes, readValues, valueKeys, wholeNumber, type BucketIndex } from "./reader.js";

export const DEFAULT_GRACE = 30; // s after a bucket ends before it is read: clock skew between nodes
export const DEFAULT_INTERVAL = 10; // s between collection passes
/** s after a bucket was first collected at which it is read again for late increments. */
export const DEFAULT_RECHECK: readonly number[] = [60, 600, 3600, 6 * 3600, 86_400];
export const DEFAULT_LOOKBACK = DEFAULT_BUCKET_TTL; // s back a collector with an empty database looks
const BUCKETS_PER_READ = 500; // buckets per read (their index keys go in one multi-get)
const KEYS_PER_ROUND = 100_000; // value keys read before the buckets they hold are stored
const RETRY_AFTER = 1000; // ms before a pass is tried again after an error

export interface CollectorOptions extends StatsAddress {
  /** Seconds after a bucket ends before it is collected. */
  grace: number;
  /** Seconds between passes (run()). */
  interval: number;
  /** Seconds back from now that a collector with nothing collected yet looks for buckets. */
  lookback: number;
  /** Seconds after the first collection of a bucket at which it is read again (ascending). */
  recheck: readonly number[];
  /** The writers' key TTL (s): a bucket is not read again after its keys are gone. */
  ttl: number;
  /** Plain counter keys of existing code (`incr new_account`), collected by read-then-decrement. */
  legacy: readonly string[];
  /** Lease settings; `false` runs without one (a single collector). */
  lease: Partial<LeaseOptions> | false;
  /** Milliseconds since 1970, injectable for tests. */
  clock: () => number;
  /** Called after each pass of run(), and with each error it recovers from. */
  onPass?: (result: CollectResult) => void;
  onError?: (error: Error) => void;
  /** Called by run() each time this collector becomes the active one, with the fencing token it took. */
  onActive?: (token: number) => void;
  /** Called by run() after each pass, while holding the lease: the daily report hooks in here. */
  afterPass?: () => Promise<void>;
}

export interface CollectResult {
  /** Buckets stored for the first time. */
  buckets: number;
  /** Buckets read again (late increments). */
  rechecked: number;
  /** Values stored (counters, gauges and timers). */
  values: number;
  /** Legacy collections stored, and the total taken out. */
  legacy: number;
  legacyTotal: number;
  /** Start (unix s) of the newest bucket collected so far. */
  newest: number | undefined;
  /** ms the pass took. */
  took: number;
}

export interface CollectorMetrics {
  passes: number;
  buckets: number;
  values: number;
  legacy: number;
  lastPass: number | undefined;
  lastError: string | undefined;
  newest: number | undefined;
}

/** The options with their defaults, checked: a ConfigError says what is wrong with the first bad one. */
export function resolveCollectorOptions(options: Partial<CollectorOptions> = {}): CollectorOptions {
  const o: CollectorOptions = {
    namespace: options.namespace ?? DEFAULT_NAMESPACE,
    bucketSeconds: options.bucketSeconds ?? DEFAULT_BUCKET_SECONDS,
    grace: options.grace ?? DEFAULT_GRACE,
    interval: options.interval ?? DEFAULT_INTERVAL,
    lookback: options.lookback ?? DEFAULT_LOOKBACK,
    recheck: options.recheck ?? DEFAULT_RECHECK,
    ttl: options.ttl ?? DEFAULT_BUCKET_TTL,
    legacy: options.legacy ?? [],
    lease: options.lease ?? {},
    clock: options.clock ?? Date.now,
    onPass: options.onPass,
    onError: options.onError,
    onActive: options.onActive,
    afterPass: options.afterPass,
  };
  validateName(o.namespace, "namespace");
  wholeSeconds("bucketSeconds", o.bucketSeconds, 1, 86_400);
  wholeSeconds("grace", o.grace, 0, 86_400);
  if (!(o.interval > 0 && o.interval <= 86_400)) {
    throw new ConfigError(`interval ${o.interval} s must be above 0 and at most 86400`);
  }
  wholeSeconds("lookback", o.lookback, 0, 366 * 86_400);
  wholeSeconds("ttl", o.ttl, 1, 30 * 86_400);
  for (const [i, s] of o.recheck.entries()) {
    if (!Number.isInteger(s) || s < 1 || (i > 0 && s <= o.recheck[i - 1]!)) {
      throw new ConfigError(`recheck ${o.recheck.join(",")} must be whole seconds, 1 or more, ascending`);
    }
  }
  for (const name of o.legacy) {
    if (typeof name !== "string" || name === "" || /[\s\x00-\x1f\x7f]/.test(name) || name.length > 250) {
      throw new ConfigError(
        `legacy counter ${JSON.stringify(name)} is not a memcached key (1-250 characters, no spaces or control characters)`,
      );
    }
  }
  return o;
}

export class Collector {
  readonly options: CollectorOptions;
  readonly metrics: CollectorMetrics = {
    passes: 0,
    buckets: 0,
    values: 0,
    legacy: 0,
    lastPass: undefined,
    lastError: undefined,
    newest: undefined,
  };
  readonly #client: Client;
  readonly #db: StatsDb;
  readonly #lease: Lease | undefined;
  /** True while run() works under the lease: legacy decrements then check it is still held. */
  #leased = false;

  constructor(client: Client, db: StatsDb, options: Partial<CollectorOptions> = {}) {
    this.#client = client;
    this.#db = db;
    this.options = resolveCollectorOptions(options);
    const o = this.options;
    this.#lease =
      o.lease === false
        ? undefined
        : new Lease(client, { name: "collect", namespace: o.namespace, clock: o.clock, ...o.lease });
  }

  /**
   * One pass: settles legacy collections a crash left pending, stores every closed bucket not collected yet,
   * reads again the buckets whose recheck is due, and takes out the legacy counters. With `openBuckets` it
   * stores the buckets still open too, as they stand: for a last pass before the memcached that holds them
   * goes away (the embedded server of a daemon that stops); later reads only ever raise what was stored.
   */
  async collectOnce(options: { openBuckets?: boolean } = {}): Promise<CollectResult> {
    const began = this.options.clock();
    const result: CollectResult = {
      buckets: 0,
      rechecked: 0,
      values: 0,
      legacy: 0,
      legacyTotal: 0,
      newest: undefined,
      took: 0,
    };
    await this.#settleLegacy();
    await this.#collectNew(result, options.openBuckets === true);
    await this.#recheck(result);
    await this.#collectLegacy(result);
    result.newest = this.#db.lastBucket(this.options.bucketSeconds)?.start;
    result.took = this.options.clock() - began;
    const m = this.metrics;
    m.passes++;
    m.buckets += result.buckets;
    m.values += result.values;
    m.legacy += result.legacy;
    m.lastPass = this.options.clock();
    m.newest = result.newest;
    return result;
  }

  /**
   * Collects every `interval` seconds while holding the lease (standing by while another collector holds
   * it), until `signal` aborts. Errors are reported through onError and the pass is tried again; a
   * FencedError (a newer collector took over the database) ends this holding, and it stands by again.
   */
  async run(signal?: AbortSignal): Promise<void> {
    if (this.#lease === undefined) {
      while (!signal?.aborted) await this.#loop(signal, false);
      return;
    }
    await this.#lease.serve(
      async (held) => {
        this.#leased = true;
        try {
          await this.#loop(held, true);
        } finally {
          this.#leased = false;
        }
      },
      { signal, onError: (error) => this.#noteError(error), retryAfter: RETRY_AFTER },
    );
  }

  /** The lease's holder, when one is configured. */
  get lease(): Lease | undefined {
    return this.#lease;
  }

  /** The fence guarding the database against a stale collector: one collector per namespace. */
  get fenceName(): string {
    return `collect:${this.options.namespace}`;
  }

  /**
   * Takes the next fencing token from the database and checks every later write of this collector against
   * it, so that none lands once a newer collector has taken one. Call right after acquiring the lease and
   * before the first write (run() does it each time it becomes active).
   */
  takeFence(): number {
    // A token taken after the lease ran out (the process was paused since acquiring it) would fence out the
    // collector that holds the lease now.
    if (this.#lease !== undefined && !this.#lease.held) {
      throw new LeaseLostError(
        `collector does not hold its lease ${this.#lease.key} (lost, or never acquired): it takes no fencing token and stands by`,
      );
    }
    const name = this.fenceName;
    const token = this.#db.takeFence(name);
    this.#db.fence = { name, token };
    return token;
  }

  /** Passes every `interval` seconds until `signal` aborts; `fenced`: under the lease, so take a fence first. */
  async #loop(signal: AbortSignal | undefined, fenced: boolean): Promise<void> {
    let needFence = fenced;
    while (!signal?.aborted) {
      try {
        if (needFence) {
          const token = this.takeFence();
          needFence = false;
          this.options.onActive?.(token);
        }
        const result = await this.collectOnce();
        this.options.onPass?.(result);
        if (!signal?.aborted) await this.options.afterPass?.();
      } catch (error) {
        // Fenced means a newer collector has the database: this holding is over (its lease has expired,
        // whether or not this process has noticed yet), so it stands by again, and always says why.
        if (error instanceof FencedError) {
          this.#noteError(error);
          if (fenced) return;
        } else if (signal?.aborted) break;
        else this.#noteError(error as Error);
        await pause(RETRY_AFTER, signal);
        continue;
      }
      await pause(this.options.interval * 1000, signal);
    }
  }

  #noteError(error: Error): void {
    this.metrics.lastError = error.message;
    this.options.onError?.(error);
  }

  /** The start of the newest bucket that is closed, grace included, at `now` (ms). */
  newestClosed(now: number): number {
    const { bucketSeconds: size, grace } = this.options;
    return bucketStart(this.options, now - (size + grace) * 1000);
  }

  async #collectNew(result: CollectResult, openBuckets: boolean): Promise<void> {
    const o = this.options;
    const size = o.bucketSeconds;
    const now = o.clock();
    const newest = openBuckets ? bucketStart(o, now) : this.newestClosed(now);
    const oldest = bucketStart(o, now - o.lookback * 1000);
    const last = this.#db.lastBucket(size);
    let from = last === undefined ? oldest : Math.max(last.start + size, oldest);
    while (from <= newest) {
      const starts: number[] = [];
      for (let s = from; s <= newest && starts.length < BUCKETS_PER_READ; s += size) starts.push(s);
      const indexes = await readIndexes(this.#client, o, starts);
      let stored = false;
      await this.#readInRounds(indexes, (buckets, collectedAt) => {
        this.#db.storeBuckets(
          buckets.map((values) => ({ values, nextCheck: this.#nextCheck(values.start, collectedAt, 0) })),
          collectedAt,
        );
        for (const bucket of buckets) {
          result.buckets++;
          result.values += countValues(bucket);
        }
        stored ||= buckets.length > 0;
      });
      const lastStart = starts[starts.length - 1]!;
      if (indexes[indexes.length - 1] === undefined && (lastStart === newest || !stored)) {
        // An empty bucket is stored only where it marks how far this pass looked, so the next one goes on
        // from there; it is read again like the others in case a late writer fills it.
        const collectedAt = o.clock();
        this.#db.storeBucket(
          emptyBucket(lastStart, size),
          collectedAt,
          this.#nextCheck(lastStart, collectedAt, 0),
        );
      }
      from = lastStart + size;
    }
  }

  async #recheck(result: CollectResult): Promise<void> {
    const size = this.options.bucketSeconds;
    for (;;) {
      const due = this.#db.bucketsDue(size, this.options.clock(), BUCKETS_PER_READ);
      if (due.length === 0) return;
      const indexes = await readIndexes(
        this.#client,
        this.options,
        due.map((b) => b.start),
      );
      const read = new Map<number, BucketValues>();
      await this.#readInRounds(indexes, (buckets) => {
        for (const bucket of buckets) read.set(bucket.start, bucket);
      });
      const collectedAt = this.options.clock();
      this.#db.storeBuckets(
        due.map((bucket) => ({
          values: read.get(bucket.start) ?? emptyBucket(bucket.start, size),
          nextCheck: this.#nextCheck(bucket.start, bucket.firstCollected, bucket.checks),
        })),
        collectedAt,
      );
      for (const bucket of due) {
        result.rechecked++;
        result.values += countValues(read.get(bucket.start) ?? emptyBucket(bucket.start, size));
      }
      if (due.length < BUCKETS_PER_READ) return;
    }
  }

  /**
   * Reads the values of the buckets with an index, a round of about KEYS_PER_ROUND keys at a time (so
   * memory stays bounded however many names a bucket has), and hands each round's buckets over as soon as it
   * is in, with the time it was read.
   */
  async #readInRounds(
    indexes: ReadonlyArray<BucketIndex | undefined>,
    each: (buckets: BucketValues[], collectedAt: number) => void,
  ): Promise<void> {
    let round: BucketIndex[] = [];
    let keys = 0;
    const flush = async (): Promise<void> => {
      const values = await readValues(this.#client, this.options, round);
      each(values, this.options.clock());
      round = [];
      keys = 0;
    };
    for (const index of indexes) {
      if (index === undefined) continue;
      round.push(index);
      keys += valueKeys(index);
      if (keys >= KEYS_PER_ROUND) await flush();
    }
    if (round.length > 0) await flush();
  }

  /** When to read a bucket again after its `checks`-th read; undefined once the schedule or its keys end. */
  #nextCheck(start: number, firstCollected: number, checks: number): number | undefined {
    const after = this.options.recheck[checks];
    if (after === undefined) return undefined;
    const at = firstCollected + after * 1000;
    // Keys written at the bucket's end live `ttl` seconds from then; reading after that finds nothing.
    const keysGone = (start + this.options.bucketSeconds + this.options.ttl) * 1000;
    return at < keysGone ? at : undefined;
  }

  /**
   * A legacy collection cut short (the process died after recording it and before memcached confirmed the
   * decrement): if the counter's CAS unique is unchanged nothing touched it, so the decrement did not happen
   * and the row is dropped; otherwise the row is kept, marked unconfirmed.
   */
  async #settleLegacy(): Promise<void> {
    for (const row of this.#db.pendingLegacy()) {
      const now = await this.#client.gets(row.name);
      if (now !== undefined && now.cas !== undefined && now.cas.toString() === row.cas) {
        this.#db.dropLegacy(row.id);
      } else {
        this.#db.settleLegacy(row.id, "unconfirmed");
      }
    }
  }

  /** Takes each legacy counter's value out: read it, record it, then decrement by exactly that much. */
  async #collectLegacy(result: CollectResult): Promise<void> {
    for (const name of this.options.legacy) {
      // Two collectors decrementing the same counter would both store what they read: never without the lease.
      if (this.#leased && !this.#lease!.held) {
        throw new LeaseLostError(`collector lost its lease ${this.#lease!.key} before collecting ${name}`);
      }
      const read = await this.#client.gets(name);
      if (read === undefined) continue;
      const value = wholeNumber(read.value);
      if (value === undefined || value === 0) continue;
      const id = this.#db.beginLegacy(name, this.options.clock(), value, read.cas ?? 0n);
      // Only increments can have happened since the read, so the counter holds at least `value` and the
      // decrement leaves exactly those increments behind. A vanished key loses nothing already read.
      await this.#client.decr(name, value);
      this.#db.settleLegacy(id, "done");
      result.legacy++;
      result.legacyTotal += value;
    }
  }
}

function emptyBucket(start: number, seconds: number): BucketValues {
  return { start, seconds, counters: [], gauges: [], timers: [] };
}

function countValues(bucket: BucketValues): number {
  return bucket.counters.length + bucket.gauges.length + bucket.timers.length;
}

function wholeSeconds(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} ${value} s must be a whole number of seconds from ${min} to ${max}`);
  }
}

/** Waits `ms`, or less if `signal` aborts (never throws for the abort). */
async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    // aborted: the caller checks the signal
  }
}
