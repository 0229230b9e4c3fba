// Counting on any node: counters, gauges and timers go into the current time bucket. Increments made in the
// same tick are summed per key and sent together: one quiet batch of meta arithmetic (`ma` with auto-create,
// closed by `mn`) once the server has shown it speaks meta, or incr/add on a server that only speaks text.
import type { Client } from "../client/index.js";
import { CommandError, ConfigError, InputError } from "../errors.js";
import {
  DEFAULT_BUCKET_SECONDS,
  DEFAULT_BUCKET_TTL,
  DEFAULT_NAMESPACE,
  Kind,
  bucketStart,
  counterKey,
  gaugeKey,
  indexKey,
  listedKey,
  timerBucket,
  timerKey,
  validateName,
  type StatsAddress,
} from "./layout.js";

export const Protocol = { auto: "auto", meta: "meta", text: "text" } as const;
export type Protocol = (typeof Protocol)[keyof typeof Protocol];

export interface StatsWriterOptions extends StatsAddress {
  /** Seconds a bucket's keys live (memcached's TTL); the collector must read them before. */
  ttl: number;
  /** `auto` uses the meta protocol and falls back to text when the server answers ERROR. */
  protocol: Protocol;
  /** Milliseconds since 1970, injectable for tests. */
  clock: () => number;
}

const MAX_INCREMENT = Number.MAX_SAFE_INTEGER;
const INDEX_TRIES = 3; // append, add, append: enough for two writers creating an index at once
const MAX_TRIES = 20; // compare-and-swap rounds for a timer's max key before giving up
const TEXT_BATCH = 1000; // counters incremented at once with text commands (the client caps requests in flight)
const INDEX_ENTRIES_PER_APPEND = 2000; // names per append to a bucket's index
const MAX_KEYS_KEPT = 10_000; // timer max keys whose largest sent sample a writer remembers

/** A name's keys in the current bucket, made once per bucket. */
interface CounterSlot {
  key: string;
  listed: boolean;
}

/**
 * A counter, gauge or timer name handed in by a caller: it becomes part of memcached keys and of the bucket's
 * space-separated index, so it is checked (InputError) before anything is counted or sent.
 */
function checkName(name: string): void {
  try {
    validateName(name);
  } catch (error) {
    throw new InputError(`${(error as Error).message}; nothing was counted`, { cause: error });
  }
}

export class StatsWriter {
  readonly options: StatsWriterOptions;
  readonly #client: Client;
  #useMeta: boolean;
  /** Set once the server has answered an `ma`: from then on a tick's increments go out as one quiet batch. */
  #metaConfirmed = false;
  /** The bucket the counter slots are for, and the slots by name. */
  #slotsStart = -1;
  #slots = new Map<string, CounterSlot>();
  /** Per tick: counter key → amount to add. */
  #pending = new Map<string, number>();
  /** Per tick: timer max key → the largest sample (µs) of the tick, when above what this process sent. */
  #maxima = new Map<string, number>();
  /** The largest sample (µs) this process has stored per timer max key (the current bucket's and older). */
  #maxSent = new Map<string, number>();
  /** Per tick: bucket start → index entries (`c:name`) this process has not listed yet. */
  #newNames = new Map<number, string[]>();
  /** Index entries this process already listed, per bucket (the current and the one before are kept). */
  #listed = new Map<number, Set<string>>();
  /** The tick's promise, shared by every call made in it. */
  #tick: Promise<void> | undefined;

  constructor(client: Client, options: Partial<StatsWriterOptions> = {}) {
    this.#client = client;
    this.options = {
      namespace: options.namespace ?? DEFAULT_NAMESPACE,
      bucketSeconds: options.bucketSeconds ?? DEFAULT_BUCKET_SECONDS,
      ttl: options.ttl ?? DEFAULT_BUCKET_TTL,
      protocol: options.protocol ?? Protocol.auto,
      clock: options.clock ?? Date.now,
    };
    const o = this.options;
    validateName(o.namespace, "namespace");
    if (!Number.isInteger(o.bucketSeconds) || o.bucketSeconds < 1 || o.bucketSeconds > 86_400) {
      throw new ConfigError(`bucketSeconds ${o.bucketSeconds} must be a whole number from 1 to 86400`);
    }
    if (!Number.isInteger(o.ttl) || o.ttl < 1 || o.ttl > 30 * 86_400) {
      throw new ConfigError(`ttl ${o.ttl} must be a whole number of seconds from 1 to 2592000 (30 days)`);
    }
    if (o.protocol !== "auto" && o.protocol !== "meta" && o.protocol !== "text") {
      throw new ConfigError(`protocol ${JSON.stringify(o.protocol)} must be "auto", "meta" or "text"`);
    }
    this.#useMeta = o.protocol !== Protocol.text;
  }

  /**
   * Adds `by` (a whole number, 1 or more) to the counter `name` in the current bucket. Resolves once the
   * tick's counts have reached memcached; a rejection means some of them may have landed and others not.
   */
  incr(name: string, by = 1): Promise<void> {
    const start = this.#bucket();
    if (start !== this.#slotsStart) {
      this.#slotsStart = start;
      this.#slots = new Map();
    }
    let slot = this.#slots.get(name);
    try {
      if (!Number.isSafeInteger(by) || by < 1) {
        checkName(name);
        throw new InputError(`incr ${name}: ${by} is not a whole number of 1 or more (counters only go up)`);
      }
      if (slot === undefined) {
        checkName(name);
        slot = { key: counterKey(this.options, start, name), listed: false };
        this.#slots.set(name, slot);
      }
      this.#add(slot.key, by);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!slot.listed) {
      slot.listed = true;
      this.#list(start, Kind.counter, name);
    }
    return this.#whenSent();
  }

  /** Records the timing `ms` (0 or more) of `name`: its count, sum, histogram bucket and maximum. */
  timing(name: string, ms: number): Promise<void> {
    try {
      checkName(name);
      if (!Number.isFinite(ms) || ms < 0) {
        throw new InputError(`timing ${name}: ${ms} ms is not a duration (a finite number, 0 or more)`);
      }
      const start = this.#bucket();
      this.#add(timerKey(this.options, start, name, "n"), 1);
      const micros = Math.round(ms * 1000);
      if (micros > 0) this.#add(timerKey(this.options, start, name, "s"), micros);
      this.#add(timerKey(this.options, start, name, `h${timerBucket(ms)}`), 1);
      this.#raise(timerKey(this.options, start, name, "m"), micros);
      this.#list(start, Kind.timer, name);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#whenSent();
  }

  /** Sets the gauge `name` to `value` in the current bucket (the last value set in a bucket is kept). */
  async gauge(name: string, value: number): Promise<void> {
    checkName(name);
    if (!Number.isFinite(value)) throw new InputError(`gauge ${name}: ${value} is not a finite number`);
    const start = this.#bucket();
    this.#list(start, Kind.gauge, name);
    const sent = this.#whenSent();
    await this.#client.set(gaugeKey(this.options, start, name), String(value), { ttl: this.options.ttl });
    await sent;
  }

  #bucket(): number {
    return bucketStart(this.options, this.options.clock());
  }

  #add(key: string, by: number): void {
    const sum = (this.#pending.get(key) ?? 0) + by;
    if (sum > MAX_INCREMENT) throw new ConfigError(`increment of ${key} passes 2^53 - 1 within one tick`);
    this.#pending.set(key, sum);
  }

  #raise(key: string, micros: number): void {
    if (micros <= (this.#maxSent.get(key) ?? -1) || micros <= (this.#maxima.get(key) ?? -1)) return;
    this.#maxima.set(key, micros);
  }

  #list(start: number, kind: Kind, name: string): void {
    let listed = this.#listed.get(start);
    if (listed === undefined) {
      // Keep the sets of the last two buckets only: older ones are never written again by this process.
      if (this.#listed.size >= 2) this.#listed.delete(this.#listed.keys().next().value!);
      this.#listed.set(start, (listed = new Set()));
    }
    const entry = `${kind}:${name}`;
    if (listed.has(entry)) return;
    listed.add(entry);
    const names = this.#newNames.get(start);
    if (names === undefined) this.#newNames.set(start, [entry]);
    else names.push(entry);
  }

  /** The tick's promise: settles once everything counted in this tick has reached memcached. */
  #whenSent(): Promise<void> {
    if (this.#tick === undefined) {
      this.#tick = new Promise<void>((resolve) => queueMicrotask(resolve)).then(() => this.#flush());
    }
    return this.#tick;
  }

  async #flush(): Promise<void> {
    const pending = this.#pending;
    const newNames = this.#newNames;
    const maxima = this.#maxima;
    this.#tick = undefined;
    this.#pending = new Map();
    this.#newNames = new Map();
    this.#maxima = new Map();
    const sends: Promise<void>[] = [this.#incrementAll(pending)];
    for (const [start, entries] of newNames) sends.push(this.#listNames(start, entries));
    for (const [key, micros] of maxima) sends.push(this.#storeMax(key, micros));
    await Promise.all(sends);
  }

  async #incrementAll(pending: Map<string, number>): Promise<void> {
    if (pending.size === 0) return;
    const ttl = this.options.ttl;
    if (this.#metaConfirmed) {
      const items: Array<{ key: string; by: number }> = [];
      for (const [key, by] of pending) items.push({ key, by });
      return this.#client.incrMulti(items, { ttl });
    }
    const entries = [...pending];
    for (let i = 0; i < entries.length; i += TEXT_BATCH) {
      const batch = entries.slice(i, i + TEXT_BATCH);
      await Promise.all(batch.map(([key, by]) => this.#increment(key, by)));
    }
  }

  /** One counter, one round trip: `ma` (which tells whether the server has the meta protocol), else text. */
  async #increment(key: string, by: number): Promise<void> {
    const ttl = this.options.ttl;
    if (this.#useMeta) {
      try {
        // Created with the amount itself on a miss (J), incremented by it otherwise (D): one round trip.
        await this.#client.ma(key, [`N${ttl}`, `J${by}`, `D${by}`]);
        this.#metaConfirmed = true;
        return;
      } catch (error) {
        if (!(error instanceof CommandError) || this.options.protocol === Protocol.meta) throw error;
        this.#useMeta = false; // a server without the meta protocol: text from now on
      }
    }
    for (let attempt = 0; attempt < INDEX_TRIES; attempt++) {
      if ((await this.#client.incr(key, by)) !== undefined) return;
      if (await this.#client.add(key, String(by), { ttl })) return;
    }
    throw new CommandError(`could not create or increment ${key}: it keeps disappearing (evictions?)`);
  }

  /**
   * Raises a timer's max key to `micros` unless it holds as much already: compare-and-swap, so concurrent
   * writers keep the largest. A process sends only samples above its own largest so far in the bucket.
   */
  async #storeMax(key: string, micros: number): Promise<void> {
    if (micros <= (this.#maxSent.get(key) ?? -1)) return;
    this.#maxSent.set(key, micros);
    if (this.#maxSent.size > MAX_KEYS_KEPT) this.#maxSent.delete(this.#maxSent.keys().next().value!);
    const value = String(micros);
    for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
      const stored = await this.#client.gets(key);
      if (stored === undefined) {
        if (await this.#client.add(key, value, { ttl: this.options.ttl })) return;
        continue;
      }
      if (Number(stored.value.toString("latin1").trim()) >= micros) return;
      if ((await this.#client.cas(key, value, stored.cas!, { ttl: this.options.ttl })) === "stored") return;
    }
    throw new CommandError(`could not store the timer maximum ${key}: other writers kept changing it`);
  }

  /**
   * Lists names in a bucket's index. Each name's marker key (`l:<kind>:<name>`) says another writer has
   * listed it already, so the index holds each name about once however many processes count it; the marker
   * is set only after the append, so a name is never left out (two writers racing may both list it).
   */
  async #listNames(start: number, entries: readonly string[]): Promise<void> {
    const o = this.options;
    const markers = entries.map((entry) => listedKey(o, start, entry));
    const found = await this.#client.getMany(markers);
    const missing = entries.filter((_, i) => found[i] === undefined);
    if (missing.length === 0) return;
    const key = indexKey(o, start);
    // Appends are kept well under memcached's 1 MB item limit; a bucket's index grows by one per name.
    for (let i = 0; i < missing.length; i += INDEX_ENTRIES_PER_APPEND) {
      await this.#appendIndex(key, ` ${missing.slice(i, i + INDEX_ENTRIES_PER_APPEND).join(" ")}`);
    }
    // Text `add`s, pipelined: they work on every server (a writer may not know yet whether meta does).
    for (let i = 0; i < missing.length; i += TEXT_BATCH) {
      const batch = missing.slice(i, i + TEXT_BATCH);
      await Promise.all(
        batch.map((entry) => this.#client.add(listedKey(o, start, entry), "1", { ttl: o.ttl })),
      );
    }
  }

  async #appendIndex(key: string, text: string): Promise<void> {
    for (let attempt = 0; attempt < INDEX_TRIES; attempt++) {
      if (await this.#client.append(key, text)) return;
      if (await this.#client.add(key, text, { ttl: this.options.ttl })) return;
    }
    throw new CommandError(
      `could not write the stats index ${key}: append and add were both refused ${INDEX_TRIES} times ` +
        "(evicted as fast as it is written, or past the server's item size limit: too many names in one bucket)",
    );
  }
}
