// The collector: one per farm (a lease), it reads every closed bucket once its grace period for clock skew
// has passed, through the bucket's index and multi-gets, and stores the values in SQLite as absolute
// numbers. Each bucket is read again on a schedule while its keys live, so late increments are picked up;
// storing the same bucket twice never counts twice. Legacy plain counters are taken out with
// read-then-decrement, so increments that land in between stay in memcached for the next round. Each time a
// collector becomes the active one it takes a fencing token from the database, which then refuses the writes
// of any collector that was active before it (paused past its lease, then resumed). On a pool, a server that
// cannot be reached does not stop collection: what the others hold is stored, and what was left out is read
// again until whole (values are absolute and only raised, so a partial read never lowers or doubles one).
// When the database refuses writes (another process holds its lock, the disk is full), what was read stays
// in memory and reading goes on, so buckets whose keys expire or are evicted meanwhile are not lost; the
// database is tried again with a growing pause, and everything held is stored, in order, once it takes it.
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "../client/index.js";
import {
  ConfigError,
  DatabaseBusyError,
  ErrorCode,
  FencedError,
  LeaseLostError,
  MemipcError,
  SinkError,
  isUnreachable,
} from "../errors.js";
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
import {
  readIndexes,
  readValues,
  unreached,
  valueKeys,
  wholeNumber,
  type BucketIndex,
  type Unreached,
} from "./reader.js";

export const DEFAULT_GRACE = 30; // s after a bucket ends before it is read: clock skew between nodes
export const DEFAULT_INTERVAL = 10; // s between collection passes
/** s after a bucket was first collected at which it is read again for late increments. */
export const DEFAULT_RECHECK: readonly number[] = [60, 600, 3600, 6 * 3600, 86_400];
export const DEFAULT_LOOKBACK = DEFAULT_BUCKET_TTL; // s back a collector with an empty database looks
const BUCKETS_PER_READ = 500; // buckets per read (their index keys go in one multi-get)
const KEYS_PER_ROUND = 100_000; // value keys read before the buckets they hold are stored
const RETRY_AFTER = 1000; // ms before a pass (or a refused database write) is tried again after an error
const RETRY_MAX = 30_000; // ms: the longest pause between tries, doubling from RETRY_AFTER while errors last
/** Values read but not yet stored (the database refuses writes) above which no more buckets are read. */
const MAX_HELD_VALUES = 200_000;
/** s: the longest wait between re-reads of a bucket read without what a server that was down holds. */
const PARTIAL_RETRY_MAX = 3600;

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
  /** On a pool, what this pass left out because servers could not be reached; absent when all answered. */
  unreachable?: PassUnreachable;
  /** Buckets read in earlier passes, held while the database refused them, and stored by this one. */
  storedLate: number;
  /** What waits in memory for the database, which refuses writes; absent when everything is stored. */
  held?: HeldForDatabase;
}

/**
 * What a collector holds in memory because the database refuses writes (locked by another process, disk
 * full): stored, in the order read, when it takes writes again. Lost only if the process ends first, and
 * even then only what memcached no longer has (the keys live `ttl` seconds).
 */
export interface HeldForDatabase {
  /** Bucket reads (first reads and re-reads) waiting. */
  buckets: number;
  /** Values in them. */
  values: number;
  /** Legacy collections taken out of memcached whose row waits to be marked done. */
  legacy: number;
  /** Why the database refused the last write (a DatabaseBusyError when another process holds its lock). */
  error: Error;
}

/**
 * What a pass on a pool could not read because servers were down or not answering; it stored the rest.
 * The buckets are read again until whole, so their counts are picked up once the servers are back, as long
 * as their keys survive (a server that restarts comes back empty); legacy counters wait for a later pass.
 */
export interface PassUnreachable {
  /** The servers (host:port) that could not be read. */
  servers: string[];
  /** Value and index keys left unread. */
  keys: number;
  /** Buckets stored without part of what they hold (or, index unread, as empty), to be read again. */
  buckets: number;
  /** Legacy counters not collected (or a collection cut short not settled) this pass. */
  legacy: string[];
  /** The first error met. */
  error: Error;
}

export interface CollectorMetrics {
  passes: number;
  buckets: number;
  values: number;
  legacy: number;
  lastPass: number | undefined;
  lastError: string | undefined;
  newest: number | undefined;
  /** Servers of the pool that the last pass could not reach (empty when all answered). */
  unreachable: string[];
  /** Bucket reads held in memory while the database refuses writes (0 when everything is stored). */
  held: number;
}

/** Reads waiting for the database, with the time they were made. */
interface HeldBatch {
  buckets: Array<{ values: BucketValues; nextCheck: number | undefined }>;
  collectedAt: number;
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
    unreachable: [],
    held: 0,
  };
  readonly #client: Client;
  readonly #db: StatsDb;
  readonly #lease: Lease | undefined;
  /** True while run() works under the lease: legacy decrements then check it is still held. */
  #leased = false;
  /** The lastError that reports servers unreachable: cleared by a pass that reaches them all. */
  #unreachableNote: string | undefined;
  /** Reads the database refused, oldest first; each later write waits until these are in. */
  #held: HeldBatch[] = [];
  /** Start of the newest bucket in #held read for the first time: the next pass reads on from there. */
  #heldUpTo: number | undefined;
  /** Legacy rows whose decrement memcached confirmed, to mark done when the database takes writes. */
  readonly #confirmed = new Set<number>();
  /** Why the database refused the last write; undefined while it takes them. */
  #refusal: Error | undefined;
  /** Refused tries in a row, when (performance.now() ms) the next may be made, and refused in this pass. */
  #refusals = 0;
  #retryAt = 0;
  #refusedThisPass = false;
  /** The lastError saying the database refuses writes: cleared once everything held is stored. */
  #heldNote: string | undefined;
  /** The lastError of a pass that failed as a whole: cleared by the next pass that succeeds. */
  #passNote: string | undefined;

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
   * On a pool, servers that cannot be reached do not fail the pass: see CollectResult.unreachable. Nor does
   * a database that refuses writes: what was read is held for a later pass (CollectResult.held), except on
   * a pass with `openBuckets`, which then throws the database's error.
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
      storedLate: 0,
    };
    this.#refusedThisPass = false;
    result.storedLate = this.#flush();
    // On a single server a read that fails fails the pass (it is tried again): nothing could be read anyway.
    const gaps = this.#client.servers.length > 1 ? passGaps() : undefined;
    const unsettled = await this.#settleLegacy(gaps);
    await this.#collectNew(result, options.openBuckets === true, gaps);
    await this.#recheck(result, gaps);
    await this.#collectLegacy(result, unsettled, gaps);
    result.newest = this.#db.lastBucket(this.options.bucketSeconds)?.start;
    result.took = this.options.clock() - began;
    const m = this.metrics;
    m.passes++;
    m.buckets += result.buckets;
    m.values += result.values;
    m.legacy += result.legacy;
    m.lastPass = this.options.clock();
    m.newest = result.newest;
    this.#reportUnreachable(result, gaps);
    this.#reportHeld(result);
    // A last pass (openBuckets) is followed by no other: what the database refused would be dropped quietly.
    if (options.openBuckets === true && result.held !== undefined) throw result.held.error;
    return result;
  }

  /**
   * Stores what the database refused before, in order, and marks confirmed legacy collections done: at once
   * after a success, else not before the pause after the last refusal, which doubles from RETRY_AFTER to
   * RETRY_MAX (each try may block the process up to the database's busy timeout). Returns the buckets stored.
   * A FencedError drops what is held (a newer collector owns the database and reads it all again) and is thrown.
   */
  #flush(): number {
    if (this.#held.length === 0 && this.#confirmed.size === 0) return 0;
    if (this.#refusal !== undefined && performance.now() < this.#retryAt) return 0;
    let stored = 0;
    try {
      while (this.#held.length > 0) {
        const batch = this.#held[0]!;
        this.#db.storeBuckets(batch.buckets, batch.collectedAt);
        this.#held.shift();
        stored += batch.buckets.length;
      }
      this.#heldUpTo = undefined;
      for (const id of this.#confirmed) {
        this.#db.settleLegacy(id, "done");
        this.#confirmed.delete(id);
      }
    } catch (error) {
      this.#refused(error);
      return stored;
    }
    this.#refusal = undefined;
    this.#refusals = 0;
    return stored;
  }

  /** Queues a write of bucket reads behind those held and tries them: false when the database refused. */
  #store(buckets: HeldBatch["buckets"], collectedAt: number, firstRead: boolean): boolean {
    if (buckets.length === 0) return this.#refusal === undefined;
    this.#held.push({ buckets, collectedAt });
    if (firstRead) {
      const newest = Math.max(...buckets.map((b) => b.values.start));
      this.#heldUpTo = Math.max(this.#heldUpTo ?? newest, newest);
    }
    this.#flush();
    return this.#refusal === undefined;
  }

  #refused(error: unknown): void {
    if (error instanceof FencedError) {
      this.#held = [];
      this.#heldUpTo = undefined;
      this.#confirmed.clear();
      this.#refusal = undefined;
      this.#refusals = 0;
      throw error;
    }
    this.#refusal = error as Error;
    this.#refusals++;
    this.#refusedThisPass = true;
    this.#retryAt = performance.now() + Math.min(RETRY_AFTER * 2 ** (this.#refusals - 1), RETRY_MAX);
  }

  /** Values held for the database. */
  #heldValues(): number {
    let n = 0;
    for (const batch of this.#held) for (const b of batch.buckets) n += countValues(b.values);
    return n;
  }

  /** Says what waits for the database and why, or clears that once everything is stored. */
  #reportHeld(result: CollectResult): void {
    const error = this.#refusal;
    const buckets = this.#held.reduce((n, batch) => n + batch.buckets.length, 0);
    this.metrics.held = buckets;
    if (error === undefined) {
      if (this.#heldNote !== undefined && this.metrics.lastError === this.#heldNote) {
        this.metrics.lastError = undefined;
      }
      this.#heldNote = undefined;
      return;
    }
    result.held = { buckets, values: this.#heldValues(), legacy: this.#confirmed.size, error };
    // No counts in the message: it stays the same from pass to pass, so callers can print it once a while.
    const message =
      `${error.message}. Meanwhile the collector keeps what it reads in memory (up to ${MAX_HELD_VALUES} ` +
      `values; past that, buckets wait in memcached) and tries the database again, every ` +
      `${RETRY_MAX / 1000} s at most; nothing read is dropped unless this process ends first`;
    this.#heldNote = message;
    this.metrics.lastError = message;
    // Said once per refused try, not on every pass that only waits for the next one.
    if (!this.#refusedThisPass) return;
    const options = { cause: error, file: this.#db.file };
    this.options.onError?.(
      error instanceof DatabaseBusyError
        ? new DatabaseBusyError(message, { ...options, errno: error.errno ?? "SQLITE_BUSY" })
        : new SinkError(message, { ...options, errno: (error as SinkError).errno }),
    );
  }

  /** Says which servers this pass could not reach, and why that loses nothing that survives them. */
  #reportUnreachable(result: CollectResult, gaps: PassGaps | undefined): void {
    if (gaps === undefined || gaps.error === undefined) {
      this.metrics.unreachable = [];
      if (this.#unreachableNote !== undefined && this.metrics.lastError === this.#unreachableNote) {
        this.metrics.lastError = undefined;
      }
      this.#unreachableNote = undefined;
      return;
    }
    const { servers, error } = gaps;
    result.unreachable = {
      servers: [...servers],
      keys: gaps.keys,
      buckets: gaps.buckets.size,
      legacy: [...gaps.legacy],
      error,
    };
    this.metrics.unreachable = [...servers];
    const them = servers.length === 1 ? "it" : "they";
    const legacy =
      gaps.legacy.length === 0 ? "" : `; legacy counters ${gaps.legacy.join(", ")} wait for a later pass`;
    // No counts in the message: it stays the same from pass to pass, so callers can print it once a while.
    const message =
      `memcached ${servers.join(", ")} could not be reached (${error.message}): the pass stored what the ` +
      `other servers hold and reads again what it left out, so the counts held there are picked up when ` +
      `${them} ${servers.length === 1 ? "is" : "are"} back, if their keys survive${legacy}`;
    this.#unreachableNote = message;
    const code = error instanceof MemipcError ? error.code : ErrorCode.connectionClosed;
    this.#noteError(new MemipcError(code, message, { cause: error }));
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
    let failures = 0;
    while (!signal?.aborted) {
      try {
        if (needFence) {
          const token = this.takeFence();
          needFence = false;
          this.options.onActive?.(token);
        }
        const result = await this.collectOnce();
        if (this.#passNote !== undefined && this.metrics.lastError === this.#passNote) {
          this.metrics.lastError = undefined;
        }
        this.#passNote = undefined;
        this.options.onPass?.(result);
        if (!signal?.aborted) await this.options.afterPass?.();
        failures = 0;
      } catch (error) {
        // Fenced means a newer collector has the database: this holding is over (its lease has expired,
        // whether or not this process has noticed yet), so it stands by again, and always says why.
        if (error instanceof FencedError) {
          this.#noteError(error);
          if (fenced) return;
        } else if (signal?.aborted) break;
        else this.#noteError(error as Error);
        // A database that refuses writes (taking the fencing token, writing the report) is not hammered:
        // each try may block the process for the busy timeout.
        failures = error instanceof SinkError ? failures + 1 : 1;
        await pause(Math.min(RETRY_AFTER * 2 ** (failures - 1), RETRY_MAX), signal);
        continue;
      }
      await pause(this.options.interval * 1000, signal);
    }
  }

  #noteError(error: Error): void {
    this.metrics.lastError = error.message;
    this.#passNote = error.message;
    this.options.onError?.(error);
  }

  /** The start of the newest bucket that is closed, grace included, at `now` (ms). */
  newestClosed(now: number): number {
    const { bucketSeconds: size, grace } = this.options;
    return bucketStart(this.options, now - (size + grace) * 1000);
  }

  async #collectNew(result: CollectResult, openBuckets: boolean, gaps: PassGaps | undefined): Promise<void> {
    const o = this.options;
    const size = o.bucketSeconds;
    const now = o.clock();
    const newest = openBuckets ? bucketStart(o, now) : this.newestClosed(now);
    const oldest = bucketStart(o, now - o.lookback * 1000);
    const last = this.#db.lastBucket(size);
    let from = last === undefined ? oldest : Math.max(last.start + size, oldest);
    if (this.#heldUpTo !== undefined) from = Math.max(from, this.#heldUpTo + size);
    while (from <= newest) {
      // While the database refuses writes, reading goes on into memory, up to a bound.
      if (this.#refusal !== undefined && this.#heldValues() >= MAX_HELD_VALUES) return;
      const starts: number[] = [];
      for (let s = from; s <= newest && starts.length < BUCKETS_PER_READ; s += size) starts.push(s);
      const skip = gaps && unreached();
      const indexes = await readIndexes(this.#client, o, starts, skip);
      let stored = false;
      await this.#readInRounds(indexes, skip, (buckets, collectedAt) => {
        this.#store(
          buckets.map((values) => ({
            values,
            nextCheck: this.#nextCheck(
              values.start,
              collectedAt,
              collectedAt,
              skip?.partial.has(values.start),
            ),
          })),
          collectedAt,
          true,
        );
        for (const bucket of buckets) {
          result.buckets++;
          result.values += countValues(bucket);
        }
        stored ||= buckets.length > 0;
      });
      if (skip !== undefined && skip.indexes.size > 0) {
        // Index on a server that cannot be reached: stored empty, so later passes go on past it, and read
        // again like a bucket read in part, until its index is read (or its keys are gone).
        const collectedAt = o.clock();
        this.#store(
          [...skip.indexes].map((start) => ({
            values: emptyBucket(start, size),
            nextCheck: this.#nextCheck(start, collectedAt, collectedAt, true),
          })),
          collectedAt,
          true,
        );
        stored = true;
      }
      if (skip !== undefined) noteGaps(gaps!, skip);
      const lastStart = starts[starts.length - 1]!;
      if (
        indexes[indexes.length - 1] === undefined &&
        skip?.indexes.has(lastStart) !== true &&
        (lastStart === newest || !stored)
      ) {
        // An empty bucket is stored only where it marks how far this pass looked, so the next one goes on
        // from there; it is read again like the others in case a late writer fills it.
        const collectedAt = o.clock();
        this.#store(
          [
            {
              values: emptyBucket(lastStart, size),
              nextCheck: this.#nextCheck(lastStart, collectedAt, collectedAt),
            },
          ],
          collectedAt,
          true,
        );
      }
      from = lastStart + size;
    }
  }

  async #recheck(result: CollectResult, gaps: PassGaps | undefined): Promise<void> {
    const size = this.options.bucketSeconds;
    // Re-reads wait while the database refuses writes: their keys live on, and they only add late increments.
    if (this.#refusal !== undefined) return;
    for (;;) {
      const due = this.#db.bucketsDue(size, this.options.clock(), BUCKETS_PER_READ);
      if (due.length === 0) return;
      const skip = gaps && unreached();
      const indexes = await readIndexes(
        this.#client,
        this.options,
        due.map((b) => b.start),
        skip,
      );
      const read = new Map<number, BucketValues>();
      await this.#readInRounds(indexes, skip, (buckets) => {
        for (const bucket of buckets) read.set(bucket.start, bucket);
      });
      const collectedAt = this.options.clock();
      // An index not read stores an empty bucket: it lowers nothing (counters keep the larger value).
      const stored = this.#store(
        due.map((bucket) => ({
          values: read.get(bucket.start) ?? emptyBucket(bucket.start, size),
          nextCheck: this.#nextCheck(
            bucket.start,
            bucket.firstCollected,
            collectedAt,
            skip !== undefined && (skip.indexes.has(bucket.start) || skip.partial.has(bucket.start)),
          ),
        })),
        collectedAt,
        false,
      );
      if (skip !== undefined) noteGaps(gaps!, skip);
      for (const bucket of due) {
        result.rechecked++;
        result.values += countValues(read.get(bucket.start) ?? emptyBucket(bucket.start, size));
      }
      // Refused: held, and the same buckets would come due again.
      if (!stored || due.length < BUCKETS_PER_READ) return;
    }
  }

  /**
   * Reads the values of the buckets with an index, a round of about KEYS_PER_ROUND keys at a time (so
   * memory stays bounded however many names a bucket has), and hands each round's buckets over as soon as it
   * is in, with the time it was read.
   */
  async #readInRounds(
    indexes: ReadonlyArray<BucketIndex | undefined>,
    skip: Unreached | undefined,
    each: (buckets: BucketValues[], collectedAt: number) => void,
  ): Promise<void> {
    let round: BucketIndex[] = [];
    let keys = 0;
    const flush = async (): Promise<void> => {
      const values = await readValues(this.#client, this.options, round, skip);
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

  /**
   * When to read a bucket again after a read at `now` (ms): the first step of the recheck schedule after
   * now (steps a pass came too late for are not made up). A `partial` read (servers of the pool down) is
   * read again sooner: after as long again as it has been since first collected, from the first step up to
   * PARTIAL_RETRY_MAX, until a read is whole. Undefined once the schedule or the bucket's keys end.
   */
  #nextCheck(start: number, firstCollected: number, now: number, partial = false): number | undefined {
    const { recheck } = this.options;
    let at: number | undefined;
    for (const after of recheck) {
      if (firstCollected + after * 1000 > now) {
        at = firstCollected + after * 1000;
        break;
      }
    }
    if (partial) {
      const first = (recheck[0] ?? DEFAULT_RECHECK[0]!) * 1000;
      const retry = now + Math.min(Math.max(now - firstCollected, first), PARTIAL_RETRY_MAX * 1000);
      at = at === undefined ? retry : Math.min(at, retry);
    }
    // Keys written at the bucket's end live `ttl` seconds from then; reading after that finds nothing.
    const keysGone = (start + this.options.bucketSeconds + this.options.ttl) * 1000;
    return at !== undefined && at < keysGone ? at : undefined;
  }

  /**
   * A legacy collection cut short (the process died after recording it and before memcached confirmed the
   * decrement): if the counter's CAS unique is unchanged nothing touched it, so the decrement did not happen
   * and the row is dropped; otherwise the row is kept, marked unconfirmed.
   */
  async #settleLegacy(gaps: PassGaps | undefined): Promise<Set<string>> {
    const unsettled = new Set<string>();
    // While the database refuses writes nothing is settled (and #collectLegacy takes nothing out).
    if (this.#refusal !== undefined) return unsettled;
    for (const row of this.#db.pendingLegacy()) {
      let now;
      try {
        now = await this.#client.gets(row.name);
      } catch (error) {
        if (gaps === undefined || !isUnreachable(error)) throw error;
        // Settled once its server answers; until then the counter is not collected again, or the value the
        // collection cut short read (maybe never decremented) would be read twice.
        unsettled.add(row.name);
        this.#noteLegacyGap(gaps, row.name, error);
        continue;
      }
      try {
        if (now !== undefined && now.cas !== undefined && now.cas.toString() === row.cas) {
          this.#db.dropLegacy(row.id);
        } else {
          this.#db.settleLegacy(row.id, "unconfirmed");
        }
      } catch (error) {
        this.#refused(error); // still pending: settled by a later pass, and nothing is taken out meanwhile
        return unsettled;
      }
    }
    return unsettled;
  }

  #noteLegacyGap(gaps: PassGaps, name: string, error: Error): void {
    const address = this.#client.servers[this.#client.serverIndex(name)]!;
    const server = `${address.host}:${address.port}`;
    if (!gaps.servers.includes(server)) gaps.servers.push(server);
    gaps.error ??= error;
    if (!gaps.legacy.includes(name)) gaps.legacy.push(name);
  }

  /**
   * Takes each legacy counter's value out: read it, record it, then decrement by exactly that much. On a
   * pool, a counter whose server cannot be reached is left for a later pass (`unsettled` ones too).
   */
  async #collectLegacy(
    result: CollectResult,
    unsettled: ReadonlySet<string>,
    gaps: PassGaps | undefined,
  ): Promise<void> {
    for (const name of this.options.legacy) {
      // Two collectors decrementing the same counter would both store what they read: never without the lease.
      if (this.#leased && !this.#lease!.held) {
        throw new LeaseLostError(`collector lost its lease ${this.#lease!.key} before collecting ${name}`);
      }
      if (this.#refusal !== undefined) return; // a row must be written before a counter is touched
      if (unsettled.has(name)) continue;
      let read;
      try {
        read = await this.#client.gets(name);
      } catch (error) {
        if (gaps === undefined || !isUnreachable(error)) throw error;
        this.#noteLegacyGap(gaps, name, error);
        continue;
      }
      if (read === undefined) continue;
      const value = wholeNumber(read.value);
      if (value === undefined || value === 0) continue;
      let id: number;
      try {
        id = this.#db.beginLegacy(name, this.options.clock(), value, read.cas ?? 0n);
      } catch (error) {
        this.#refused(error); // nothing recorded, nothing taken out: collected once the database takes writes
        return;
      }
      // Only increments can have happened since the read, so the counter holds at least `value` and the
      // decrement leaves exactly those increments behind. A vanished key loses nothing already read.
      try {
        await this.#client.decr(name, value);
      } catch (error) {
        if (gaps === undefined || !isUnreachable(error)) throw error;
        // Whether the decrement happened is not known: the row stays pending, and a later pass settles it
        // by the counter's CAS unique once the server answers (as after a crash).
        this.#noteLegacyGap(gaps, name, error);
        continue;
      }
      result.legacy++;
      result.legacyTotal += value;
      try {
        this.#db.settleLegacy(id, "done");
      } catch (error) {
        // memcached confirmed the decrement: the row is marked done once the database takes writes, not
        // settled later by the counter's CAS unique (which would mark it unconfirmed).
        this.#confirmed.add(id);
        this.#refused(error);
        return;
      }
    }
  }
}

/** What the reads of one pass could not reach (see PassUnreachable), gathered as it goes. */
interface PassGaps {
  servers: string[];
  keys: number;
  error: Error | undefined;
  buckets: Set<number>;
  legacy: string[];
}

function passGaps(): PassGaps {
  return { servers: [], keys: 0, error: undefined, buckets: new Set(), legacy: [] };
}

/** Adds what one read left out to the pass's account. */
function noteGaps(gaps: PassGaps, skip: Unreached): void {
  for (const server of skip.servers) if (!gaps.servers.includes(server)) gaps.servers.push(server);
  gaps.keys += skip.keys;
  gaps.error ??= skip.error;
  for (const start of skip.indexes) gaps.buckets.add(start);
  for (const start of skip.partial) gaps.buckets.add(start);
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
