// Appending to a log stream: pick the entry's partition, reserve sequence numbers on that partition's counter
// with one increment, then store each entry under its number with `add`. Appends made in the same tick to
// the same partition share one reservation and go out pipelined.
import { hostname } from "node:os";
import { crc32 } from "node:zlib";
import type { Client } from "../client/index.js";
import { ConfigError, InputError, LogError, ServerError } from "../errors.js";
import {
  Layout,
  MAX_LIMIT,
  checkPartitions,
  encodeEntry,
  encodeRefused,
  entryKey,
  headKey,
  headValue,
  newEpoch,
  nextEpoch,
  partitionAddress,
  rolledKey,
  splitHead,
  streamAddress,
  type StreamAddress,
} from "./layout.js";

export const DEFAULT_ENTRY_TTL = 0; // seconds; 0 keeps entries until the drainer deletes them
export const RESERVE_ATTEMPTS = 64; // tries to reserve numbers while the counter is being recreated or rolled

/** How a producer picks the partition of an entry appended without a key. */
export const PartitionBy = {
  /** Every entry of this producer goes to the partition of its node name: one node's entries keep their order. */
  node: "node",
  /** Entries take the partitions in turn: one busy producer spreads its appends over all of them. */
  roundRobin: "round-robin",
} as const;
export type PartitionBy = (typeof PartitionBy)[keyof typeof PartitionBy];

/** The partition of a key among `partitions`: CRC-32 (zlib's, of the key's UTF-8 bytes) modulo the count. */
/** A UTF-16 surrogate without its pair: no UTF-8 text can hold it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** JSON.stringify writes a lone surrogate as a \ud8xx…\udfxx escape (and a pair as it is): one not itself escaped. */
const ESCAPED_LONE_SURROGATE = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f]/;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function partitionOf(key: string, partitions: number): number {
  return partitions === 1 ? 0 : crc32(key) % partitions;
}

export interface ProducerOptions extends Partial<StreamAddress> {
  /** This node's name, recorded with each entry. Default: the host name. */
  node: string;
  /** Partitions of the stream (default 1); the drainer must drain at least as many. */
  partitions: number;
  /** How entries appended without a key pick their partition (default: by node). */
  partitionBy: PartitionBy;
  /** Largest sequence number before the counter rolls to a new epoch (default layout only). */
  limit: number;
  /** TTL of stored entries, in seconds (memcached's rules); 0 never expires. */
  entryTtl: number;
  /** Milliseconds since 1970, injectable for tests. */
  clock: () => number;
}

/** Where an appended entry went: its partition, epoch (0 in the seed layout) and sequence number. */
export interface Appended {
  partition: number;
  epoch: number;
  seq: number;
}

export interface AppendOptions {
  /** Places the entry by this key (partitionOf): entries with the same key keep their order. */
  key?: string;
}

/** An entry with the number it will be stored under. */
interface Placed {
  waiting: Waiting;
  epoch: number;
  seq: number;
}

interface Waiting {
  value: string;
  resolve(result: Appended): void;
  reject(error: Error): void;
}

export class LogProducer {
  readonly address: StreamAddress;
  readonly options: ProducerOptions;
  readonly #client: Client;
  readonly #partitions: PartitionAppender[];
  /** The partition of this producer's node name. */
  readonly #nodePartition: number;
  #turn = 0;

  constructor(client: Client, options: Partial<ProducerOptions> = {}) {
    this.#client = client;
    this.address = streamAddress(options);
    this.options = {
      ...options,
      ...this.address,
      node: options.node ?? hostname(),
      partitions: options.partitions ?? 1,
      partitionBy: options.partitionBy ?? PartitionBy.node,
      limit: options.limit ?? MAX_LIMIT,
      entryTtl: options.entryTtl ?? DEFAULT_ENTRY_TTL,
      clock: options.clock ?? Date.now,
    };
    const { limit, partitions, partitionBy } = this.options;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new ConfigError(`limit ${limit} must be a whole number from 1 to ${MAX_LIMIT}`);
    }
    checkPartitions(partitions, this.address.layout);
    if (LONE_SURROGATE.test(this.options.node)) {
      throw new ConfigError(
        `node ${JSON.stringify(this.options.node)} is not UTF-8 text (a lone surrogate): fix the name`,
      );
    }
    if (partitionBy !== PartitionBy.node && partitionBy !== PartitionBy.roundRobin) {
      throw new ConfigError(`partitionBy "${String(partitionBy)}" is not known: use "node" or "round-robin"`);
    }
    this.#partitions = Array.from(
      { length: partitions },
      (_, p) => new PartitionAppender(client, partitionAddress(this.address, p), this.options),
    );
    this.#nodePartition = partitionOf(this.options.node, partitions);
  }

  /**
   * Appends one entry; resolves with its partition and sequence number once it is stored. An entry that
   * cannot be stored (too large, not UTF-8 text) is refused with InputError before a number is taken.
   */
  append(data: unknown, options: AppendOptions = {}): Promise<Appended> {
    let value: string;
    try {
      value = this.#encode(data);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#partitions[this.#pick(options.key)]!.append(value);
  }

  /**
   * Appends several entries; those that share a partition share one reservation and get consecutive numbers.
   * All are checked first: if one cannot be stored, none is appended (InputError naming it).
   */
  appendMany(data: readonly unknown[], options: AppendOptions = {}): Promise<Appended[]> {
    const values: string[] = [];
    for (let i = 0; i < data.length; i++) {
      try {
        values.push(this.#encode(data[i]));
      } catch (error) {
        const message = `entry ${i} of ${data.length}: ${(error as Error).message}; none of them was appended`;
        return Promise.reject(new InputError(message, { cause: error }));
      }
    }
    return Promise.all(values.map((value) => this.#partitions[this.#pick(options.key)]!.append(value)));
  }

  #pick(key: string | undefined): number {
    const count = this.#partitions.length;
    if (count === 1) return 0;
    if (key !== undefined) return partitionOf(key, count);
    if (this.options.partitionBy === PartitionBy.node) return this.#nodePartition;
    this.#turn = (this.#turn + 1) % count;
    return this.#turn;
  }

  /** The value stored for `data`, or InputError when it cannot be stored as it is (nothing is sent then). */
  #encode(data: unknown): string {
    // Bytes are taken as the text they hold: JSON would otherwise turn a Buffer into a list of numbers.
    const payload = data instanceof Uint8Array ? textOf(data) : data;
    let value: string;
    if (this.address.layout === Layout.seed) {
      // The seed layout stores what the original idiom stored: the line itself.
      value = String(payload);
      if (LONE_SURROGATE.test(value)) throw notText();
    } else {
      value = encodeEntry(this.options.clock(), this.options.node, payload);
      // Lone surrogates are rare: the JSON is searched for their escape first, and looked at closely only then.
      if (value.includes("\\ud") && ESCAPED_LONE_SURROGATE.test(value)) throw notText();
    }
    const size = Buffer.byteLength(value);
    if (size > this.#client.options.maxValueSize) {
      throw new InputError(
        `log entry is ${size} bytes, over the client's ${this.#client.options.maxValueSize}-byte value limit ` +
          "(memcached's item size, -I): log a reference to large data instead of the data; nothing was written",
      );
    }
    return value;
  }
}

/** The UTF-8 text in `bytes`, or InputError when they are not UTF-8. */
function textOf(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch (error) {
    throw notText(error);
  }
}

function notText(cause?: unknown): InputError {
  return new InputError(
    "log entry is not UTF-8 text (bytes that are not UTF-8, or a string with a lone surrogate): entries are " +
      "text; encode binary data first (base64, hex); nothing was written",
    { cause },
  );
}

/** One partition's appends: group commit on its counter, stores under its keys. */
class PartitionAppender {
  readonly address: StreamAddress;
  readonly options: ProducerOptions;
  readonly #client: Client;
  #queue: Waiting[] = [];
  #scheduled = false;
  /** A reservation is out: new appends wait for the next block. */
  #reserving = false;
  /** The last epoch this producer marked as rolled over. */
  #marked = 0;

  constructor(client: Client, address: StreamAddress, options: ProducerOptions) {
    this.#client = client;
    this.address = address;
    this.options = options;
  }

  /** Queues an encoded entry for the next block. */
  append(value: string): Promise<Appended> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ value, resolve, reject });
      if (!this.#scheduled && !this.#reserving) {
        this.#scheduled = true;
        queueMicrotask(() => void this.#flush());
      }
    });
  }

  /**
   * Group commit: one reservation (`incr`) in flight at a time. Appends made while it is out wait for it and
   * then go together as the next block, so under load blocks grow by themselves and each costs two round
   * trips whatever its size; the next block's `incr` leaves in the same write as this block's `add`s.
   */
  async #flush(): Promise<void> {
    this.#scheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    this.#reserving = true;
    const placed: Placed[] = [];
    let next = 0;
    try {
      while (next < batch.length) {
        // Never ask for more than an epoch holds: a block past the limit would only be thrown away.
        const wanted = Math.min(batch.length - next, this.options.limit);
        for (const { epoch, first, count } of await this.#reserve(wanted)) {
          for (let i = 0; i < count; i++) placed.push({ waiting: batch[next + i]!, epoch, seq: first + i });
          next += count;
        }
      }
    } catch (error) {
      for (const waiting of batch.slice(next)) waiting.reject(error as Error);
    } finally {
      this.#reserving = false;
      // The stores below are sent first, so they share a write with the next block's incr.
      const store = this.#store(placed);
      if (this.#queue.length > 0 && !this.#scheduled) void this.#flush();
      await store;
    }
  }

  /** Stores a block's entries under their numbers: quiet adds, one round trip (Client.addMulti). */
  async #store(placed: readonly Placed[]): Promise<void> {
    if (placed.length === 0) return;
    const items = placed.map(({ waiting, epoch, seq }) => ({
      key: entryKey(this.address, epoch, seq),
      value: waiting.value,
    }));
    let stored: Array<boolean | Error>;
    try {
      stored = await this.#client.addEach(items, { ttl: this.options.entryTtl });
    } catch (error) {
      // Their numbers stay unused: the drainer records them as a gap after its hole timeout.
      for (const { waiting } of placed) waiting.reject(error as Error);
      return;
    }
    for (let i = 0; i < placed.length; i++) {
      const { waiting, epoch, seq } = placed[i]!;
      const result = stored[i]!;
      // The server answered and refused an entry of the block (over its item size limit, out of memory).
      if (result instanceof ServerError) void this.#refused(items[i]!.key, placed[i]!, result);
      // A server of the pool failed: only its entries fail. Each may or may not have been stored; the
      // drainer writes it if it was, and records a gap for it after its hole timeout if not.
      else if (result instanceof Error) waiting.reject(result);
      else if (result) waiting.resolve({ partition: this.address.partition, epoch, seq });
      else {
        waiting.reject(
          new LogError(
            `log entry ${items[i]!.key} already exists: two writers were handed the same number ` +
              "(the counter was reset to a value in use); this entry was not stored",
          ),
        );
      }
    }
  }

  /**
   * An error line carries no opaque, so every entry of the block sent to that server gets it, stored or not.
   * The number is this producer's alone: a marker (encodeRefused) added under it tells them apart. Stored,
   * the entry was refused, and the drainer records a `refused` gap at once instead of waiting out the hole
   * timeout; not stored, the key holds the entry, which went in after all.
   */
  async #refused(key: string, placed: Placed, error: ServerError): Promise<void> {
    const { waiting, epoch, seq } = placed;
    const bytes = Buffer.byteLength(waiting.value);
    const reply = /SERVER_ERROR[^:]*/.exec(error.message)?.[0] ?? "SERVER_ERROR";
    let recorded = `${key} is recorded as a refused gap`;
    try {
      const marker = encodeRefused(this.options.clock(), this.options.node, reply, bytes);
      if (!(await this.#client.add(key, marker, { ttl: this.options.entryTtl }))) {
        waiting.resolve({ partition: this.address.partition, epoch, seq });
        return;
      }
    } catch {
      recorded = `${key} becomes a gap after the drainer's hole timeout`;
    }
    if (!/too large/i.test(reply)) {
      waiting.reject(
        new ServerError(`${error.message}; the log entry was not stored and ${recorded}`, { cause: error }),
      );
      return;
    }
    waiting.reject(
      new InputError(
        `log entry is ${bytes} bytes and the server refused it (${reply}): its item size limit (-I) is below ` +
          `this client's maxValueSize (${this.#client.options.maxValueSize}); set maxValueSize to the ` +
          `server's limit, or log a reference to large data; the entry was not stored and ${recorded}`,
        { cause: error },
      ),
    );
  }

  /**
   * Reserves up to `wanted` numbers, as one or two runs: fewer when the epoch's limit cuts the block short;
   * two when the counter carried past 999,999,999 into the next epoch's digits (the default limit), whose
   * numbers from 1 are the next epoch's, exactly as if it had been rolled. Seq 0 is never used.
   */
  async #reserve(wanted: number): Promise<Array<{ epoch: number; first: number; count: number }>> {
    const head = headKey(this.address);
    for (let attempt = 0; attempt < RESERVE_ATTEMPTS; attempt++) {
      const value = await this.#client.incr(head, wanted);
      if (value === undefined) {
        // No counter (first use, memcached restarted, evicted or flushed): start a new epoch. Of several
        // producers doing this at once, one add wins and the others count on from it.
        const start = this.address.layout === Layout.seed ? 0n : headValue(newEpoch(), 0);
        await this.#client.add(head, start.toString());
        continue;
      }
      if (this.address.layout === Layout.seed) {
        const last = Number(value);
        return [{ epoch: 0, first: last - wanted + 1, count: wanted }];
      }
      const limit = this.options.limit;
      const { epoch, seq: first } = splitHead(value - BigInt(wanted) + 1n);
      const { epoch: lastEpoch, seq: last } = splitHead(value);
      const runs: Array<{ epoch: number; first: number; count: number }> = [];
      const from = Math.max(first, 1);
      const to = lastEpoch === epoch ? Math.min(last, limit) : limit;
      if (from <= to) runs.push({ epoch, first: from, count: to - from + 1 });
      if (lastEpoch !== epoch || last >= limit) await this.#markRolled(epoch);
      if (lastEpoch !== epoch && last >= 1)
        runs.push({ epoch: lastEpoch, first: 1, count: Math.min(last, limit) });
      if (runs.length > 0) return runs;
      if (lastEpoch === epoch && last < limit) continue; // only seq 0, after a carry: take the next number
      await this.#roll(head, epoch);
    }
    throw new LogError(
      `could not reserve log numbers on ${head} after ${RESERVE_ATTEMPTS} tries: the counter keeps ` +
        "disappearing or rolling; check memcached's memory (evictions) and the stream's limit",
    );
  }

  /** Every number of `epoch` is handed out: say so before the counter moves on (see rolledKey). */
  async #markRolled(epoch: number): Promise<void> {
    if (this.#marked === epoch) return;
    await this.#client.add(rolledKey(this.address, epoch), String(this.options.limit));
    this.#marked = epoch;
  }

  /**
   * Moves the counter to a new epoch, unless another producer already did. Every increment changes the
   * counter's CAS unique, so the compare-and-swap is retried (without incrementing) until it lands or the
   * epoch has moved on: producers past the limit all end up here, so the increments stop and one swap wins.
   */
  async #roll(head: string, epoch: number): Promise<void> {
    for (let attempt = 0; attempt < RESERVE_ATTEMPTS; attempt++) {
      const current = await this.#client.gets(head);
      if (current === undefined) return;
      const value = BigInt(current.value.toString("latin1").trim());
      if (splitHead(value).epoch !== epoch) return;
      const swapped = await this.#client.cas(head, headValue(nextEpoch(epoch), 0).toString(), current.cas!);
      if (swapped !== "exists") return;
    }
  }
}
