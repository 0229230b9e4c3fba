// The drainer: moves a log stream's entries from memcached into a sink, in order, exactly once.
//
// ## How it works
//
// One drainer per stream is active: it holds a lease (`<ns>:lease:drain:<stream>`); others stand by.
// While active it repeats one step: read the head, multi-get the next window of numbers, hand the
// present entries (and any gap) to the sink, and, once the sink reports them durable, delete their keys.
//
// - **Cursor.** The position after which to read is the sink's durable cursor, recovered from the output
//   itself each time the drainer becomes active. Keys are deleted only up to a durable cursor, so a drainer
//   killed at any moment finds every entry it had not made durable still in memcached, and never writes
//   one twice: exactly once in the output.
// - **Holes.** A number counts as handed out from the first head read at or past it. If its entry is still
//   missing `holeTimeout` ms after that, a gap record covers it (and the missing numbers after it whose time
//   is also up) and draining goes on. Gaps are watched for `lateWindow` ms: an entry that shows up is
//   written once, marked late, and deleted.
// - **Epochs.** (Default layout.) The head holds epoch·10^9 + seq. When it disappears or shows another
//   epoch, the current epoch is closing: if the producers left the rollover marker (`…:rolled:<epoch>`)
//   every number up to the limit was handed out and is drained (holes time out as usual); otherwise it was
//   a reset, the epoch ends at the highest number seen (probing one window past it for entries written
//   after the last head read), and what is missing is recorded as a `reset` gap. Then the drainer moves to
//   the head's epoch, from 1. Epochs are random, so entries from before a reset never pass for later ones.
// - **Seed layout.** `Counter` holds a plain number and has no epochs: a reset shows as the counter gone or
//   below what was already seen. The drainer numbers its own epochs (1, 2, … in the output) and keeps
//   `Process` equal to the last number written, as the original idiom's readers expect.
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "../client/index.js";
import { LeaseLostError, LogError, SinkError, isUnreachable } from "../errors.js";
import { Lease, type LeaseOptions } from "../lease/index.js";
import type { Commit, Cursor, EntryRecord, GapRecord, RecentRecords, SinkRecord } from "../sinks/index.js";
import {
  Layout,
  MAX_EPOCH,
  MAX_LIMIT,
  decodeEntryAt,
  drainerKey,
  entryKey,
  headKey,
  nextEpoch,
  rolledKey,
  splitHead,
  streamAddress,
  type EntryFields,
  type StreamAddress,
} from "./layout.js";

export const DEFAULT_HOLE_TIMEOUT = 5000; // ms a missing number may hold up the entries after it
export const DEFAULT_BATCH = 500; // numbers read per window (one multi-get per server per 100 keys)
export const DEFAULT_POLL_EVERY = 50; // ms between head reads while there is nothing to drain
export const DEFAULT_LATE_WINDOW = 10 * 60 * 1000; // ms a gap is watched for entries that arrive late
export const DEFAULT_LEASE_TTL = 10; // s
export const DEFAULT_MAX_IN_FLIGHT = 2; // steps handed to the sink and not yet durable
const LATE_CHECK_EVERY = 1000; // ms between looks for late entries
const MAX_WATCHED = 10_000; // numbers of one gap watched for late entries (a reset's gap can be huge)
const PUBLISH_EVERY = 1000; // ms between metrics published to memcached
const PUBLISH_TTL = 60; // s the published metrics outlive their drainer
const RATE_WINDOW = 10_000; // ms over which entries per second are averaged
const RETRY_AFTER = 1000; // ms before an active drainer tries again after an error
const LEFTOVER_DELETES = 10_000; // keys per deleteMulti when clearing what a killed drainer left
const READ_AHEAD = 4; // windows read at once while behind
const HOLE_POLL_EVERY = 10; // ms between looks while the next number's entry is on its way
const HEAD_READ_EVERY = 100; // ms between head reads while far behind
const FRESH_SEARCH_ABOVE = 10_000; // head sequence above which a fresh output looks for the oldest entry
const FRESH_MARGIN = 1000; // numbers before the oldest entry found that a fresh output still reads
const MAX_CHAIN = 10_000; // rolled-over epochs walked back when looking for the first one not yet drained
const UNREACHABLE_SHOWN = 10_000; // ms an unreachable server stays in the metrics after the last failed read

/** What the drainer needs of a sink; FileSink is one. */
export interface LogSink {
  cursor(): Cursor | undefined;
  /** `after`: the position the batch follows; a sink refuses a batch that does not (see FileSink.write). */
  write(records: readonly SinkRecord[], options?: { after?: Cursor | null }): Promise<Commit>;
  close(): Promise<void>;
  /** What was written last: recent gaps, late entries and entry positions (see FileSink.recent). */
  recent?(sinceMs: number): Promise<RecentRecords>;
}

export interface DrainerOptions extends Partial<StreamAddress> {
  /** Opens (and recovers) the sink; called each time this drainer becomes the active one. */
  openSink: () => Promise<LogSink>;
  /** Largest sequence number of an epoch: must match the producers' `limit`. */
  limit: number;
  /** ms a number may stay missing before it becomes a gap record (DEFAULT_HOLE_TIMEOUT). */
  holeTimeout: number;
  /** Numbers read per window (DEFAULT_BATCH). */
  batch: number;
  /** ms between head reads while there is nothing to drain (DEFAULT_POLL_EVERY). */
  pollEvery: number;
  /** ms a gap is watched for entries that arrive late (DEFAULT_LATE_WINDOW). */
  lateWindow: number;
  /** Lease settings (ttlSeconds, owner, pollEvery…); `false` runs without a lease (one drainer only). */
  lease: Partial<LeaseOptions> | false;
  /** Steps handed to the sink and not yet durable, at most (DEFAULT_MAX_IN_FLIGHT). */
  maxInFlight: number;
  /**
   * ms a reset epoch is still watched for entries past its last number before the drainer moves on. With a
   * pool and failover, writers whose clients still see a server as dead keep using the counter they moved
   * to for up to the client's deadTime after the drainer's client sees it back. Default: the client's
   * deadTime plus the hole timeout with failover on, else 0 (one look).
   */
  resetSettle: number;
  /** Called after each durable commit (progress displays, benchmarks). */
  onCommit: ((commit: Commit) => void) | undefined;
  /** Called when a step fails and will be retried (the error is also kept in metrics). */
  onError: ((error: Error) => void) | undefined;
  /** Publish metrics in memcached for other nodes (default true; a partition's drainer leaves it to the whole). */
  publish: boolean;
  clock: () => number;
}

/** What runs a stream's draining, partitioned or not: the CLI, the daemon and the dashboard use this. */
export interface LogDrainer {
  readonly address: StreamAddress;
  readonly owner: string;
  readonly metrics: DrainerMetrics;
  /** See Drainer.caughtUp. */
  caughtUp(): boolean;
  /** Stands by for the lease, drains while holding it; resolves once `signal` aborts and work has settled. */
  run(signal?: AbortSignal): Promise<void>;
}

export interface DrainerMetrics {
  stream: string;
  layout: Layout;
  /** Holds the lease and drains (or runs without one). */
  active: boolean;
  owner: string;
  /** The counter as last read: epoch and sequence. */
  head: Cursor | undefined;
  /** The last position durably written. */
  cursor: Cursor | undefined;
  /** Numbers between cursor and head in the head's epoch. */
  lag: number;
  /** Entries written per second over the last 10 s. */
  entriesPerSecond: number;
  entries: number;
  gaps: number;
  late: number;
  /** ms since 1970 of the last commit. */
  lastDrainAt: number | undefined;
  /** The last error met while active, if any. */
  lastError: string | undefined;
  /** Servers of the pool whose entries could not be read lately (their missing numbers become gaps). */
  unreachable: string[];
}

/** The active drainer's metrics as published in memcached (informational: up to a second old). */
export async function publishedMetrics(
  client: Client,
  address: Partial<StreamAddress> = {},
): Promise<DrainerMetrics | undefined> {
  const found = await client.get(drainerKey(streamAddress(address)));
  if (found === undefined) return undefined;
  try {
    return JSON.parse(found.value.toString("utf8")) as DrainerMetrics;
  } catch {
    return undefined;
  }
}

/** What one step hands to the sink: records in order, the keys to delete after, the gaps among them. */
interface Batch {
  records: SinkRecord[];
  keys: string[];
  gaps: GapRecord[];
}

/** A window read from memcached: its keys and the entries found, by position from `from`. */
interface Fetched {
  from: number;
  keys: string[];
  entries: Array<EntryRecord | undefined>;
  found: number;
  /** Positions (from `from`) holding a refused-entry marker instead of an entry (see encodeRefused). */
  refused: Set<number> | undefined;
}

/** How the epoch being drained ends, once the head has left it. */
interface EpochEnd {
  /** The last number of the epoch. */
  last: number;
  /** True when the producers marked a rollover: all numbers up to the limit were handed out. */
  rolled: boolean;
  /** Probed past `last` for entries written after the last head read (resets only). */
  probedAt: number;
  /** When the end was found, or entries were last found past it (resets: see `settle`). */
  since: number;
  /** Known lost (seed layout, memcached restarted): missing numbers are gaps at once. */
  lost: boolean;
}

/** A head read: numbers up to `seq` were handed out by `at`. */
interface Seen {
  seq: number;
  at: number;
}

interface Watched {
  epoch: number;
  from: number;
  to: number;
  until: number;
}

export class Drainer implements LogDrainer {
  readonly address: StreamAddress;
  readonly options: DrainerOptions;
  readonly owner: string;
  readonly #client: Client;
  readonly #lease: Lease | undefined;

  #sink: LogSink | undefined;
  /** The sink's cursor when a failure closed it: still where the output stands while the drainer retries. */
  #failedAt: Cursor | undefined;
  /** The epoch being drained; undefined before the first head read of a fresh output. */
  #epoch: number | undefined;
  /** The next number to write in #epoch. */
  #next = 1;
  /** Set once the head has left #epoch. */
  #end: EpochEnd | undefined;
  /** #epoch is fully written and the head has not shown a new epoch yet. */
  #finished = false;
  /** The output is empty: the first head read decides where it starts. */
  #fresh = false;
  /** Head reads of #epoch, increasing: when each number was first known to be handed out. */
  #seen: Seen[] = [];
  #watched: Watched[] = [];
  /** Late entries already in the output (epoch:seq), from before a restart. */
  #written = new Set<string>();
  #lastLateCheck = 0;
  #inFlight: Promise<void>[] = [];
  /** The last position handed to the sink (durable or not): the next batch follows it. */
  #handed: Cursor | undefined;
  #failure: Error | undefined;
  #head: Cursor | undefined;
  #active = false;
  #entries = 0;
  #gaps = 0;
  #late = 0;
  #lastDrainAt: number | undefined;
  #lastError: string | undefined;
  /** Keys of entries read from their fallback server (failover), to be deleted from there. */
  #onFallback = new Set<string>();
  /** Servers found unreachable by the last reads, and when. */
  #unreachable: { servers: string[]; at: number } | undefined;
  #rate: Array<{ at: number; entries: number }> = [];
  #lastPublish = 0;
  #processSent = -1;
  /** Process has been written (and acknowledged) since this run began or the last reset. */
  #processStored = false;
  /** Head reads begun, and the one (by count) at which the drainer last found itself caught up. */
  #headReads = 0;
  #caughtUpAtRead = 0;
  #idleAt: number | undefined;
  #askedAtRead: number | undefined;
  #lastHeadRead = 0;
  /** The last step stopped at a missing number still within its hole timeout. */
  #waitingAtHole = false;
  /** Scratch for decoding one stored entry at a time. */
  readonly #decoded: EntryFields = {
    t: undefined,
    n: undefined,
    d: undefined,
    dataJson: undefined,
    refused: undefined,
  };

  constructor(client: Client, options: Partial<DrainerOptions> & { openSink: () => Promise<LogSink> }) {
    this.#client = client;
    this.address = streamAddress(options);
    this.options = {
      ...options,
      ...this.address,
      openSink: options.openSink,
      limit: options.limit ?? MAX_LIMIT,
      holeTimeout: options.holeTimeout ?? DEFAULT_HOLE_TIMEOUT,
      batch: options.batch ?? DEFAULT_BATCH,
      pollEvery: options.pollEvery ?? DEFAULT_POLL_EVERY,
      lateWindow: options.lateWindow ?? DEFAULT_LATE_WINDOW,
      lease: options.lease ?? {},
      maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      resetSettle:
        options.resetSettle ??
        (client.options.failover
          ? client.options.deadTime + (options.holeTimeout ?? DEFAULT_HOLE_TIMEOUT)
          : 0),
      onCommit: options.onCommit,
      onError: options.onError,
      publish: options.publish ?? true,
      clock: options.clock ?? Date.now,
    };
    const o = this.options;
    if (typeof o.openSink !== "function") {
      throw new LogError(
        "drainer: openSink is missing: pass a function that opens the sink, e.g. openFileSink",
      );
    }
    const whole = (name: string, value: number, min: number, max: number) => {
      if (!Number.isInteger(value) || value < min || value > max) {
        throw new LogError(`drainer: ${name} ${value} must be a whole number from ${min} to ${max}`);
      }
    };
    whole("limit", o.limit, 1, MAX_LIMIT);
    whole("batch", o.batch, 1, 100_000);
    whole("maxInFlight", o.maxInFlight, 1, 64);
    for (const name of ["holeTimeout", "pollEvery", "lateWindow", "resetSettle"] as const) {
      if (!Number.isFinite(o[name]) || o[name] < 0) {
        throw new LogError(`drainer: ${name} ${o[name]} ms must be a number of milliseconds, 0 or more`);
      }
    }
    this.#lease = drainLease(client, this.address, o.lease);
    this.owner = this.#lease?.owner ?? "unleased";
  }

  get metrics(): DrainerMetrics {
    const cursor = this.#sink?.cursor() ?? this.#failedAt;
    const head = this.#head;
    let lag = 0;
    if (head !== undefined) {
      lag =
        cursor !== undefined && cursor.epoch === head.epoch ? Math.max(0, head.seq - cursor.seq) : head.seq;
    }
    return {
      stream: this.address.stream,
      layout: this.address.layout,
      active: this.#active,
      owner: this.owner,
      head: head && { ...head },
      cursor,
      lag,
      entriesPerSecond: this.#entriesPerSecond(),
      entries: this.#entries,
      gaps: this.#gaps,
      late: this.#late,
      lastDrainAt: this.#lastDrainAt,
      lastError: this.#lastError,
      unreachable:
        this.#unreachable !== undefined && this.options.clock() - this.#unreachable.at < UNREACHABLE_SHOWN
          ? [...this.#unreachable.servers]
          : [],
    };
  }

  /**
   * For polling ("wait until drained"): true once a head read that began after the first call of this poll
   * found everything up to the head durably written and nothing pending. The first call only marks the
   * moment, so entries appended before a poll began are always covered when it turns true.
   */
  caughtUp(): boolean {
    if (this.#askedAtRead === undefined) {
      this.#askedAtRead = this.#headReads;
      return false;
    }
    if (this.#caughtUpAtRead > this.#askedAtRead) {
      this.#askedAtRead = undefined;
      return true;
    }
    return false;
  }

  /**
   * When the last head read found every number up to the head already handed to the sink (undefined when it
   * found more to do, or when not active): entries appended after that moment are still to come, entries
   * appended before it have all been handed over. The merger of a partitioned stream orders by it.
   */
  get idleAt(): number | undefined {
    return this.#active ? this.#idleAt : undefined;
  }

  /** Whether the step that just read the head found nothing left to write. */
  #isCaughtUp(): boolean {
    return this.#inFlight.length === 0 && this.#handedAll();
  }

  /** Whether the step that just read the head found nothing left to hand to the sink. */
  #handedAll(): boolean {
    if (this.#end !== undefined) return false;
    if (this.#finished) return true;
    const head = this.#head;
    if (head === undefined) return this.#epoch === undefined || this.address.layout === Layout.seed;
    return this.#epoch === head.epoch && this.#next > head.seq;
  }

  /**
   * Stands by until this drainer holds the lease, then drains while holding it; goes back to standing by
   * if the lease is lost. Resolves when `signal` aborts (after the work in flight has settled).
   */
  async run(signal?: AbortSignal): Promise<void> {
    await serveDrain(
      this.#lease,
      (active) => this.#activeRun(active),
      signal,
      (error) => this.#noteError(error),
    );
  }

  /** Drains until `signal` aborts; errors close the sink and start again from its durable cursor. */
  async #activeRun(signal: AbortSignal | undefined): Promise<void> {
    while (!signal?.aborted) {
      try {
        checkHeld(this.#lease);
        await this.#start();
        this.#active = true;
        while (!signal?.aborted) {
          const progressed = await this.#step();
          if (this.#failure !== undefined) throw this.#failure;
          await this.#maybeCheckLate();
          await this.#maybePublish();
          // Stopped at a number just handed out: its entry is most likely on its way, so look again soon.
          const wait = this.#waitingAtHole
            ? Math.min(this.options.pollEvery, HOLE_POLL_EVERY)
            : this.options.pollEvery;
          if (!progressed) await pause(wait, signal);
        }
      } catch (error) {
        if (!signal?.aborted) {
          this.#noteError(error as Error);
          this.#failedAt = this.#sink?.cursor() ?? this.#failedAt;
          await this.#stop();
          await pause(RETRY_AFTER, signal);
          continue;
        }
      }
      await this.#stop();
    }
  }

  #noteError(error: Error): void {
    this.#lastError = error.message;
    this.options.onError?.(error);
  }

  /** Opens the sink and takes the position from its durable cursor. */
  async #start(): Promise<void> {
    this.#failure = undefined;
    this.#inFlight = [];
    this.#onFallback = new Set();
    this.#sink = await this.options.openSink();
    this.#failedAt = undefined;
    const cursor = this.#sink.cursor();
    const next = cursor === undefined ? 1 : cursor.seq + 1;
    this.#fresh = cursor === undefined;
    if (cursor === undefined || cursor.epoch !== this.#epoch) {
      this.#epoch = cursor?.epoch;
      this.#end = undefined;
      this.#finished = false;
      this.#seen = [];
    } else {
      // Starting again after an error in the same process (memcached went away, the lease was lost): what
      // was learnt of this epoch still holds, above all how far its head had gone, which a reset needs for
      // its gap.
      if (next !== this.#next) this.#finished = false;
    }
    this.#next = next;
    this.#handed = cursor;
    if (this.address.layout === Layout.seed && this.#epoch === undefined) this.#epoch = 1;
    this.#processSent = -1;
    this.#processStored = false;
    // Gaps written before a restart are watched again, minus the late entries already written for them.
    this.#watched = [];
    this.#written = new Set();
    const now = this.options.clock();
    const recent = await this.#sink.recent?.(now - this.options.lateWindow);
    if (recent !== undefined) {
      for (const gap of recent.gaps) this.#watch(gap, now);
      for (const late of recent.late) this.#written.add(`${late.epoch}:${late.seq}`);
    }
    await this.#deleteLeftovers(cursor, recent);
  }

  /**
   * A drainer killed between a durable commit and its deletes leaves those entries in memcached, behind the
   * cursor, where nothing would read them again: delete them now. The sink says which entries it wrote
   * last; a sink that cannot (raw lines) gets the numbers just behind the cursor deleted, except those
   * inside recent gaps, whose entries would be late ones still to write.
   */
  async #deleteLeftovers(cursor: Cursor | undefined, recent: RecentRecords | undefined): Promise<void> {
    if (cursor === undefined) return;
    // In the seed layout keys carry no epoch: only the cursor's epoch may be touched.
    const mine = (at: Cursor) => this.address.layout === Layout.default || at.epoch === cursor.epoch;
    let keys: string[];
    if (recent?.entries !== undefined) {
      keys = recent.entries.filter(mine).map((at) => entryKey(this.address, at.epoch, at.seq));
      // Refused-entry markers are deleted with their gap's commit, as entries are.
      for (const gap of recent.gaps) {
        if (gap.reason !== "refused" || !mine({ epoch: gap.epoch, seq: gap.to })) continue;
        for (let seq = gap.from; seq <= gap.to && seq - gap.from < MAX_WATCHED; seq++) {
          keys.push(entryKey(this.address, gap.epoch, seq));
        }
      }
    } else {
      const span = (this.options.maxInFlight + 1) * READ_AHEAD * this.options.batch;
      const inGap = (seq: number) =>
        recent?.gaps.some(
          (gap) => gap.reason !== "refused" && gap.epoch === cursor.epoch && gap.from <= seq && seq <= gap.to,
        ) === true;
      keys = [];
      for (let seq = Math.max(1, cursor.seq - span + 1); seq <= cursor.seq; seq++) {
        if (!inGap(seq)) keys.push(entryKey(this.address, cursor.epoch, seq));
      }
    }
    for (let start = 0; start < keys.length; start += LEFTOVER_DELETES) {
      try {
        await this.#client.deleteMulti(keys.slice(start, start + LEFTOVER_DELETES));
      } catch (error) {
        // A server of the pool is down: its keys stay behind the cursor, where nothing reads them again.
        if (!isUnreachable(error)) throw error;
        this.#lastError = `could not delete entries left behind by a killed drainer: ${error.message}`;
      }
    }
  }

  async #stop(): Promise<void> {
    this.#active = false;
    this.#idleAt = undefined;
    await Promise.allSettled(this.#inFlight);
    this.#inFlight = [];
    const sink = this.#sink;
    this.#sink = undefined;
    await sink?.close().catch(() => undefined);
  }

  // -- one step ---------------------------------------------------------------------------------------------

  /** Reads the head and drains one window. True when it wrote something or moved on. */
  async #step(): Promise<boolean> {
    this.#waitingAtHole = false;
    const now = this.options.clock();
    // Far behind a recent head read, the head can wait: read-ahead windows are what matter.
    const behind = this.#knownHead() - this.#next >= this.options.batch * READ_AHEAD;
    if (!behind || this.#end !== undefined || now - this.#lastHeadRead >= HEAD_READ_EVERY) {
      this.#lastHeadRead = now;
      const read = ++this.#headReads;
      // In the middle of an epoch the head read touches nothing before its reply: on a pool, a counter whose
      // server is down (or being retried) is read again at the next poll, not by starting the drainer over.
      const steady = this.#epoch !== undefined && !this.#finished && this.#client.servers.length > 1;
      try {
        if (this.address.layout === Layout.seed) await this.#readSeedHead(now);
        else await this.#readHead(now);
      } catch (error) {
        if (!steady || !isUnreachable(error)) throw error;
        this.#lastError = `the counter could not be read (${error.message}): trying again`;
        this.#idleAt = undefined;
        return false;
      }
      if (this.#isCaughtUp()) this.#caughtUpAtRead = read;
      this.#idleAt = this.#handedAll() ? now : undefined;
    }
    if (this.#epoch === undefined || this.#finished) return false;
    const end = this.#end;
    const last = end !== undefined ? end.last : Math.min(this.#knownHead(), this.options.limit);
    if (this.#next > last) {
      if (end === undefined) return false;
      const settling = now - end.since < this.options.resetSettle;
      if (!end.rolled && (end.probedAt < this.#next || settling) && this.address.layout === Layout.default) {
        // A reset: entries written after our last head read may sit past `last`, and, on a pool with
        // failover, a writer whose client still uses the old counter may add more for a while (resetSettle).
        end.probedAt = this.#next;
        const found = await this.#fetch(this.#epoch, this.#next, this.#next + this.options.batch - 1);
        if (found.found > 0) {
          let last = found.entries.length - 1;
          while (found.entries[last] === undefined) last--;
          end.last = found.from + last;
          end.since = now;
          this.#sawHead(end.last, now);
          return true;
        }
        if (settling) return false;
      }
      await this.#finishEpoch();
      return true;
    }
    // Several windows are read at once (one round trip's wait for all), then written in order.
    const epoch = this.#epoch;
    const windows: Array<{ from: number; to: number; found: Promise<Fetched> }> = [];
    for (let from = this.#next; from <= last && windows.length < READ_AHEAD;) {
      const to = Math.min(last, from + this.options.batch - 1);
      windows.push({ from, to, found: this.#fetch(epoch, from, to) });
      from = to + 1;
    }
    // One commit for the whole step: fewer sink writes and fsyncs, and a gap can run across windows.
    const batch: Batch = { records: [], keys: [], gaps: [] };
    try {
      for (const window of windows) {
        const found = await window.found;
        this.#window(batch, epoch, window.from, window.to, found, now);
        if (this.#next <= window.to) break; // stopped at a hole still within its timeout
      }
    } finally {
      // Reads not used (a hole, a failure) must not be left rejected without a handler.
      for (const window of windows) window.found.catch(() => undefined);
    }
    this.#waitingAtHole = this.#next <= last;
    if (batch.records.length === 0) return false;
    this.#commit(batch.records, batch.keys, batch.gaps);
    if (this.#inFlight.length >= this.options.maxInFlight) await Promise.race(this.#inFlight);
    return true;
  }

  #knownHead(): number {
    const seen = this.#seen;
    return seen.length === 0 ? this.#next - 1 : seen[seen.length - 1]!.seq;
  }

  /** Notes that numbers up to `seq` were handed out by `at`. */
  #sawHead(seq: number, at: number): void {
    const seen = this.#seen;
    if (seen.length > 0 && seen[seen.length - 1]!.seq >= seq) return;
    seen.push({ seq, at });
  }

  /** When `seq` was first known to be handed out (undefined: not known to be). */
  #handedOutAt(seq: number): number | undefined {
    const seen = this.#seen;
    // Drop reads that only cover numbers already written; keep the rest in order.
    let drop = 0;
    while (drop < seen.length && seen[drop]!.seq < this.#next) drop++;
    if (drop > 0) seen.splice(0, drop);
    for (const read of seen) if (read.seq >= seq) return read.at;
    return undefined;
  }

  async #readHead(now: number): Promise<void> {
    const found = await this.#client.get(headKey(this.address));
    const head = found === undefined ? undefined : splitHead(BigInt(found.value.toString("latin1").trim()));
    this.#head = head;
    if (this.#finished || this.#epoch === undefined) {
      if (head === undefined) return;
      if (this.#epoch === head.epoch) return;
      if (this.#epoch === undefined) {
        // A fresh output starts in the head's epoch, or the oldest epoch of its rollover chain still waiting
        // to be drained; epochs before a reset are history it was not asked to hold.
        const start = await this.#chainStart(head.epoch);
        this.#enterEpoch(start);
        this.#next = await this.#freshStart(start, start === head.epoch ? head.seq : this.options.limit);
      } else {
        this.#enterEpoch(await this.#chainStart(head.epoch));
      }
    }
    if (head !== undefined && head.epoch === this.#epoch) {
      this.#sawHead(head.seq, now);
      return;
    }
    if (this.#end !== undefined) return;
    // The head left this epoch: rolled over, or reset (restarted, evicted, flushed).
    const epoch = this.#epoch!;
    // The next epoch in line means a rollover (a reset's random epoch is that one only by a 1 in 2^31
    // draw); so does a marker, which also covers a head that rolled more than once since the last read.
    const marker = head?.epoch === nextEpoch(epoch) ? true : await this.#marker(epoch);
    if (marker !== undefined) {
      this.#end = { last: this.options.limit, rolled: true, probedAt: 0, lost: false, since: now };
      this.#sawHead(this.options.limit, now);
    } else {
      this.#end = { last: this.#knownHead(), rolled: false, probedAt: 0, lost: false, since: now };
    }
  }

  async #readSeedHead(now: number): Promise<void> {
    const { counter: counterKey, process: processKey } = this.address.seed;
    // We keep Process written; its absence means memcached lost everything (restarted or flushed). Only a
    // read sent after a write of it was acknowledged can tell.
    const processStored = this.#processStored;
    const found = await this.#client.getMulti([counterKey, processKey]);
    const text = found.get(counterKey)?.value.toString("latin1").trim();
    const lost = processStored && !found.has(processKey);
    const counter = text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
    this.#head = counter === undefined ? undefined : { epoch: this.#epoch!, seq: counter };
    if (this.#finished) {
      // The previous run of numbers is closed: a counter (re)created starts the next epoch.
      if (counter === undefined || counter === 0) return;
      this.#enterEpoch(this.#epoch! + 1);
      this.#head = { epoch: this.#epoch!, seq: counter };
    }
    if (this.#end !== undefined) return;
    if (this.#fresh && counter !== undefined) {
      this.#fresh = false;
      this.#next = await this.#freshStart(this.#epoch!, counter);
    }
    const known = this.#knownHead();
    if (counter !== undefined && counter >= known && !lost) {
      this.#sawHead(counter, now);
      return;
    }
    // Gone or gone back: a reset. Nothing was ever drained yet? Then there is nothing to close.
    if (counter === undefined && known === 0) return;
    // With no epochs in its keys, old entries are told from new ones only by draining the old range before
    // the writers reach it again; when memcached lost everything there is nothing old left to wait for.
    this.#end = { last: known, rolled: false, probedAt: 0, lost, since: now };
    this.#processSent = -1;
    this.#processStored = false;
  }

  /**
   * Where a fresh output (no cursor) starts. A young stream: at 1. A stream with a long history: at the
   * oldest entry still in memcached, found by bisection (a previous drainer deleted the ones before, in
   * order), less a margin for numbers whose entries are still on their way; those missing there become an
   * ordinary gap after the hole timeout.
   */
  async #freshStart(epoch: number, head: number): Promise<number> {
    this.#fresh = false;
    if (head <= FRESH_SEARCH_ABOVE) return 1;
    const present = async (seq: number) =>
      (await this.#client.get(entryKey(this.address, epoch, seq))) !== undefined;
    let low = 1;
    let high = head + 1;
    if (await present(low)) return 1;
    while (low < high) {
      const middle = Math.floor((low + high) / 2);
      if (await present(middle)) high = middle;
      else low = middle + 1;
    }
    return Math.max(1, low - FRESH_MARGIN);
  }

  /**
   * The first epoch not yet drained of the rollover chain that ends at `epoch` (the head's): walks back
   * while the epoch before carries a rollover marker (markers are deleted once their epoch is drained).
   */
  async #chainStart(epoch: number): Promise<number> {
    let start = epoch;
    for (let steps = 0; steps < MAX_CHAIN; steps++) {
      const before = start === 1 ? MAX_EPOCH : start - 1;
      if (before === this.#epoch || before === epoch) break;
      if ((await this.#marker(before)) === undefined) break;
      start = before;
    }
    return start;
  }

  /**
   * The rollover marker of `epoch`, if any. A marker on a server of the pool that is down counts as none:
   * the epoch is then closed as after a reset, which still drains every entry found past the last head read
   * (probing window by window), rather than stalling this partition until the server is back.
   */
  async #marker(epoch: number): Promise<unknown> {
    try {
      return await this.#client.get(rolledKey(this.address, epoch));
    } catch (error) {
      if (!isUnreachable(error) || this.#client.servers.length === 1) throw error;
      this.#lastError = `the rollover marker of epoch ${epoch} could not be read (${error.message}): taken as none`;
      return undefined;
    }
  }

  #enterEpoch(epoch: number): void {
    this.#epoch = epoch;
    this.#next = 1;
    this.#end = undefined;
    this.#finished = false;
    this.#seen = [];
  }

  /** The current epoch is fully written: clear its marker and wait for (or move to) the next epoch. */
  async #finishEpoch(): Promise<void> {
    await this.#settle();
    const epoch = this.#epoch!;
    const rolled = this.#end?.rolled === true;
    if (this.address.layout === Layout.default) {
      // A marker left on a server that is down only makes a fresh output look one epoch further back.
      await this.#client.delete(rolledKey(this.address, epoch)).catch((error: unknown) => {
        if (!isUnreachable(error)) throw error;
      });
    }
    if (rolled) {
      // Rollovers chain: the next epoch is known even if the head has already moved past it.
      this.#enterEpoch(nextEpoch(epoch));
      return;
    }
    this.#finished = true;
    this.#end = undefined;
    this.#seen = [];
  }

  /** Reads `from`..`to` and hands what can be written, in order, to the sink. True if it wrote. */
  #window(batch: Batch, epoch: number, from: number, to: number, found: Fetched, now: number): void {
    const { records, keys, gaps } = batch;
    const reason = this.#end !== undefined && !this.#end.rolled ? "reset" : "hole-timeout";
    const lost = this.#end?.lost === true;
    let seq = from;
    for (; seq <= to; seq++) {
      const entry = found.entries[seq - found.from];
      if (entry !== undefined) {
        records.push(entry);
        keys.push(found.keys[seq - found.from]!);
        continue;
      }
      // The server refused this number's entry: nothing is coming, so no hole timeout; the marker goes too.
      const refused = found.refused?.has(seq - found.from) === true;
      if (refused) keys.push(found.keys[seq - found.from]!);
      else if (!lost) {
        const since = this.#handedOutAt(seq);
        if (since === undefined || now - since < this.options.holeTimeout) break;
      }
      const why = refused ? "refused" : reason;
      const previous = records[records.length - 1];
      if (previous?.kind === "gap" && previous.to === seq - 1 && previous.reason === why) previous.to = seq;
      else {
        const gap: GapRecord = { kind: "gap", epoch, from: seq, to: seq, reason: why };
        records.push(gap);
        gaps.push(gap);
      }
    }
    this.#next = seq;
  }

  /** The entries present among `from`..`to` of `epoch`, by number. */
  async #fetch(epoch: number, from: number, to: number): Promise<Fetched> {
    const keys: string[] = [];
    // entryKey's form, its fixed part made once.
    const prefix = entryKey(this.address, epoch, 0).slice(0, -1);
    for (let seq = from; seq <= to; seq++) keys.push(prefix + seq);
    // On a pool, a server that is down must not stop the others' entries: its keys read as missing, and
    // become gaps after the hole timeout (late entries if the server comes back with them).
    const pool = this.#client.servers.length > 1;
    // With failover, an entry written while its server was marked dead sits on the next server: missing
    // entries are looked for there too (and deleted from there once written).
    const { buffers, starts, ends, unreachable, fallback } = await this.#client.getManyRanges(keys, {
      skipUnreachable: pool,
      fallback: pool && this.#client.options.failover,
    });
    if (fallback !== undefined) for (const i of fallback) this.#onFallback.add(keys[i]!);
    if (unreachable !== undefined) {
      this.#unreachable = { servers: unreachable.servers, at: this.options.clock() };
      this.#lastError = `${unreachable.keys} entries on ${unreachable.servers.join(", ")} could not be read (${unreachable.error.message}): missing ones become gaps after the hole timeout`;
    }
    const entries = new Array<EntryRecord | undefined>(keys.length);
    let found = 0;
    let refused: Set<number> | undefined;
    const now = this.options.clock();
    const entry = this.#decoded;
    for (let i = 0; i < keys.length; i++) {
      const buffer = buffers[i];
      if (buffer === undefined) continue;
      decodeEntryAt(buffer, starts[i]!, ends[i]!, entry);
      if (entry.refused !== undefined) {
        (refused ??= new Set()).add(i);
        continue;
      }
      entries[i] = {
        kind: "entry",
        epoch,
        seq: from + i,
        time: entry.t ?? now,
        node: entry.n ?? "",
        data: entry.d,
        dataJson: entry.dataJson,
      };
      found++;
    }
    return { from, keys, entries, found, refused };
  }

  /**
   * Hands records to the sink without waiting for them to be durable (up to maxInFlight windows), then,
   * once they are, deletes their keys. A failure stops the run: it starts again from the durable cursor.
   */
  #commit(records: SinkRecord[], keys: string[], gaps: GapRecord[]): void {
    const sink = this.#sink!;
    // Each batch names the one it follows, so a batch queued behind a failed one is refused, not written
    // after a hole (the run then starts again from the durable cursor). Counted now, so the records can go
    // once the sink has them (they would live on until the fsync).
    const after = this.#handed ?? null;
    let entries = 0;
    let late = 0;
    for (const record of records) {
      if (record.kind === "gap") this.#handed = { epoch: record.epoch, seq: record.to };
      else {
        entries++;
        if (record.late === true) late++;
        else this.#handed = { epoch: record.epoch, seq: record.seq };
      }
    }
    const done = sink.write(records, { after }).then(
      async (commit) => {
        this.#committed(commit, entries, late, gaps);
        if (keys.length > 0) await this.#client.deleteMulti(keys);
        const moved = this.#onFallback.size === 0 ? [] : keys.filter((key) => this.#onFallback.delete(key));
        if (moved.length > 0) await this.#client.deleteMulti(moved, { fallback: true });
        await this.#updateProcess(commit);
      },
      (error: unknown) => {
        this.#failure ??= error instanceof Error ? error : new SinkError(String(error));
      },
    );
    const tracked: Promise<void> = done.catch((error: unknown) => {
      // Deleting failed: the entries are durable, so they are only left behind in memcached.
      this.#lastError = `could not delete drained entries: ${(error as Error).message}`;
    });
    this.#inFlight.push(tracked);
    void tracked.then(() => {
      const index = this.#inFlight.indexOf(tracked);
      if (index >= 0) this.#inFlight.splice(index, 1);
    });
  }

  async #settle(): Promise<void> {
    await Promise.all(this.#inFlight);
    if (this.#failure !== undefined) throw this.#failure;
  }

  #committed(commit: Commit, entries: number, late: number, gaps: readonly GapRecord[]): void {
    const now = this.options.clock();
    this.#late += late;
    this.#entries += entries;
    this.#gaps += gaps.length;
    this.#lastDrainAt = now;
    this.#lastError = undefined;
    this.#rate.push({ at: now, entries });
    for (const gap of gaps) this.#watch(gap, now);
    this.options.onCommit?.(commit);
  }

  #watch(gap: GapRecord, now: number): void {
    // A refused entry never turns up late: its number holds the marker, deleted with the gap's commit.
    if (gap.reason === "refused") return;
    this.#watched.push({
      epoch: gap.epoch,
      from: gap.from,
      to: Math.min(gap.to, gap.from + MAX_WATCHED - 1),
      until: now + this.options.lateWindow,
    });
  }

  async #updateProcess(commit: Commit): Promise<void> {
    if (this.address.layout !== Layout.seed || commit.cursor === undefined) return;
    const seq = commit.cursor.seq;
    if (seq === this.#processSent) return;
    this.#processSent = seq;
    await this.#client.set(this.address.seed.process, String(seq));
    this.#processStored = true;
  }

  // -- late entries -----------------------------------------------------------------------------------------

  async #maybeCheckLate(): Promise<void> {
    const now = this.options.clock();
    if (this.#watched.length === 0 || now - this.#lastLateCheck < LATE_CHECK_EVERY) return;
    this.#lastLateCheck = now;
    const watched = this.#watched.filter((gap) => gap.until > now);
    if (watched.length < this.#watched.length) {
      // Late entries of gaps no longer watched are never looked for again.
      const inWatched = (at: string) => {
        const [epoch, seq] = at.split(":").map(Number) as [number, number];
        return watched.some((gap) => gap.epoch === epoch && gap.from <= seq && seq <= gap.to);
      };
      this.#written = new Set([...this.#written].filter(inWatched));
    }
    this.#watched = watched;
    for (const gap of this.#watched) {
      const found = await this.#fetch(gap.epoch, gap.from, gap.to);
      // A refused-entry marker that came after its number's gap: only the marker is left to delete.
      const markers = [...(found.refused ?? [])].map((i) => found.keys[i]!);
      if (markers.length > 0) await this.#client.deleteMulti(markers);
      if (found.found === 0) continue;
      const records: EntryRecord[] = [];
      const keys: string[] = [];
      for (let i = 0; i < found.entries.length; i++) {
        const entry = found.entries[i];
        if (entry === undefined) continue;
        const seq = found.from + i;
        const key = found.keys[i]!;
        if (this.#written.has(`${gap.epoch}:${seq}`)) {
          // Written before a restart that came before its delete: only the delete is left to do.
          keys.push(key);
          continue;
        }
        records.push({ ...entry, late: true });
        keys.push(key);
      }
      if (records.length === 0) {
        await this.#client.deleteMulti(keys);
        continue;
      }
      // Written once: the keys are deleted right after the commit, and if a delete does not reach the entry
      // (its server down, or the entry on the server a pool failed over to), it is only deleted again.
      await this.#settle();
      this.#commit(records, keys, []);
      await this.#settle();
      for (const record of records) this.#written.add(`${record.epoch}:${record.seq}`);
    }
  }

  // -- metrics ----------------------------------------------------------------------------------------------

  #entriesPerSecond(): number {
    const now = this.options.clock();
    while (this.#rate.length > 0 && now - this.#rate[0]!.at > RATE_WINDOW) this.#rate.shift();
    if (this.#rate.length === 0) return 0;
    const total = this.#rate.reduce((sum, sample) => sum + sample.entries, 0);
    return Math.round((total * 1000) / RATE_WINDOW);
  }

  async #maybePublish(): Promise<void> {
    if (!this.options.publish) return;
    const now = this.options.clock();
    if (now - this.#lastPublish < PUBLISH_EVERY) return;
    this.#lastPublish = now;
    // Informational: a failed publish (its server down) is tried again a second later.
    await this.#client
      .set(drainerKey(this.address), JSON.stringify(this.metrics), { ttl: PUBLISH_TTL })
      .catch((error: unknown) => {
        if (!isUnreachable(error)) throw error;
      });
  }
}

/** The lease of a stream's drainer (`drain:<stream>`), or none when `lease` is false. */
export function drainLease(
  client: Client,
  address: StreamAddress,
  lease: Partial<LeaseOptions> | false,
): Lease | undefined {
  if (lease === false) return undefined;
  return new Lease(client, {
    ttlSeconds: DEFAULT_LEASE_TTL,
    namespace: address.namespace,
    ...lease,
    name: `drain:${address.stream}`,
  });
}

/**
 * Runs `work` while holding `lease` (standing by for it, again after a loss) until `signal` aborts; without a
 * lease, runs it until then. `work` returns when its signal aborts or it gives up the holding.
 */
export async function serveDrain(
  lease: Lease | undefined,
  work: (signal: AbortSignal | undefined) => Promise<void>,
  signal: AbortSignal | undefined,
  onError: (error: Error) => void,
): Promise<void> {
  if (lease === undefined) {
    while (!signal?.aborted) await work(signal);
    return;
  }
  await lease.serve((held) => work(held), { signal, onError, retryAfter: RETRY_AFTER });
}

/**
 * Throws LeaseLostError once `lease`'s deadline has passed. Checked before opening a sink, not only through
 * the lease's signal: after a pause (SIGSTOP, a frozen VM) its timers have not run yet, but the deadline has.
 */
export function checkHeld(lease: Lease | undefined): void {
  if (lease !== undefined && !lease.held) {
    throw new LeaseLostError(`drainer: the lease ${lease.key} is no longer held: standing by`);
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
