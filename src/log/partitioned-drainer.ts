// The drainer of a partitioned stream: one lease for the whole stream, one Drainer per partition (each with
// its own counter, epochs, holes and late entries, exactly as an unpartitioned stream), and a Merger that
// interleaves their records in time order into one sink with a cursor per partition.
//
// Any failure of the sink stops every partition's drainer; the sink is opened again and each partition goes
// on from its own durable cursor, so the output holds every entry once whatever failed.
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "../client/index.js";
import { ConfigError, SinkError } from "../errors.js";
import type { Lease } from "../lease/index.js";
import {
  Drainer,
  checkHeld,
  drainLease,
  serveDrain,
  type DrainerMetrics,
  type DrainerOptions,
  type LogDrainer,
  type LogSink,
} from "./drainer.js";
import { checkPartitions, drainerKey, streamAddress, type StreamAddress } from "./layout.js";
import { DEFAULT_REORDER_WINDOW, Merger, type PartitionedSink } from "./merge.js";

const RETRY_AFTER = 1000; // ms before the partitions start again after the sink failed
const PUBLISH_EVERY = 1000; // ms between metrics published to memcached
const PUBLISH_TTL = 60; // s the published metrics outlive their drainer

export interface PartitionedDrainerOptions extends Omit<
  DrainerOptions,
  "openSink" | "publish" | "partition"
> {
  /** Partitions to drain: at least as many as the producers use. */
  partitions: number;
  /** ms a record waits for older records of partitions with nothing waiting (DEFAULT_REORDER_WINDOW). */
  reorderWindow: number;
  /** Opens (and recovers) the sink, partitioned: a FileSink opened with `partitioned: true`. */
  openSink: () => Promise<PartitionedSink>;
}

/** One partition's part of the metrics. */
export interface PartitionMetrics {
  partition: number;
  head: DrainerMetrics["head"];
  cursor: DrainerMetrics["cursor"];
  lag: number;
  entriesPerSecond: number;
  entries: number;
  gaps: number;
  late: number;
  lastError: string | undefined;
}

/** What the partitioned drainer itself uses of its options (the rest goes to each partition's Drainer). */
interface Settings {
  partitions: number;
  reorderWindow: number;
  openSink: () => Promise<PartitionedSink>;
  onError: ((error: Error) => void) | undefined;
  clock: () => number;
}

export class PartitionedDrainer implements LogDrainer {
  readonly address: StreamAddress;
  readonly options: Settings;
  readonly owner: string;
  readonly #client: Client;
  readonly #lease: Lease | undefined;
  readonly #drainers: Drainer[];
  #merger: Merger | undefined;
  #active = false;
  #lastError: string | undefined;
  /** Partitions found caught up since the current caughtUp() poll began. */
  readonly #caught = new Set<number>();

  constructor(
    client: Client,
    options: Partial<PartitionedDrainerOptions> & {
      openSink: () => Promise<PartitionedSink>;
      partitions: number;
    },
  ) {
    this.#client = client;
    this.address = streamAddress({ ...options, partition: 0 });
    this.options = {
      partitions: options.partitions,
      reorderWindow: options.reorderWindow ?? DEFAULT_REORDER_WINDOW,
      openSink: options.openSink,
      onError: options.onError,
      clock: options.clock ?? Date.now,
    };
    checkPartitions(options.partitions, this.address.layout);
    const window = this.options.reorderWindow;
    if (!Number.isFinite(window) || window < 0) {
      throw new ConfigError(
        `drainer: reorderWindow ${window} ms must be a number of milliseconds, 0 or more`,
      );
    }
    if (typeof options.openSink !== "function") {
      throw new ConfigError("drainer: openSink is missing: pass a function that opens a partitioned sink");
    }
    const { openSink: _openSink, partitions: _partitions, reorderWindow: _window, ...rest } = options;
    this.#drainers = Array.from(
      { length: options.partitions },
      (_, partition) =>
        new Drainer(client, {
          ...rest,
          partition,
          lease: false,
          publish: false,
          openSink: async () => this.#view(partition),
        }),
    );
    this.#lease = drainLease(client, this.address, options.lease ?? {});
    this.owner = this.#lease?.owner ?? "unleased";
  }

  get metrics(): DrainerMetrics & { partitions: PartitionMetrics[]; merging: number } {
    const parts = this.#drainers.map((drainer, partition): PartitionMetrics => {
      const m = drainer.metrics;
      const { head, cursor, lag, entriesPerSecond, entries, gaps, late, lastError } = m;
      return { partition, head, cursor, lag, entriesPerSecond, entries, gaps, late, lastError };
    });
    const sum = (pick: (m: PartitionMetrics) => number) => parts.reduce((total, m) => total + pick(m), 0);
    const lastDrainAt = Math.max(...this.#drainers.map((d) => d.metrics.lastDrainAt ?? -Infinity));
    return {
      stream: this.address.stream,
      layout: this.address.layout,
      active: this.#active,
      owner: this.owner,
      head: undefined,
      cursor: undefined,
      lag: sum((m) => m.lag),
      entriesPerSecond: sum((m) => m.entriesPerSecond),
      entries: sum((m) => m.entries),
      gaps: sum((m) => m.gaps),
      late: sum((m) => m.late),
      lastDrainAt: Number.isFinite(lastDrainAt) ? lastDrainAt : undefined,
      lastError: this.#lastError ?? parts.find((m) => m.lastError !== undefined)?.lastError,
      unreachable: [...new Set(this.#drainers.flatMap((d) => d.metrics.unreachable))],
      partitions: parts,
      merging: this.#merger?.waiting ?? 0,
    };
  }

  /** True once every partition has been found caught up since the first call of this poll (Drainer.caughtUp). */
  caughtUp(): boolean {
    this.#drainers.forEach((drainer, partition) => {
      if (!this.#caught.has(partition) && drainer.caughtUp()) this.#caught.add(partition);
    });
    if (this.#caught.size < this.#drainers.length) return false;
    this.#caught.clear();
    return true;
  }

  async run(signal?: AbortSignal): Promise<void> {
    await serveDrain(
      this.#lease,
      (active) => this.#activeRun(active),
      signal,
      (error) => this.#noteError(error),
    );
  }

  /** Opens the sink and runs every partition into it, until `signal` aborts; starts again after a failure. */
  async #activeRun(signal: AbortSignal | undefined): Promise<void> {
    while (!signal?.aborted) {
      let sink: PartitionedSink;
      try {
        checkHeld(this.#lease);
        sink = await this.options.openSink();
      } catch (error) {
        this.#noteError(error as Error);
        await pause(RETRY_AFTER, signal);
        continue;
      }
      const round = new AbortController();
      const both = signal === undefined ? round.signal : AbortSignal.any([signal, round.signal]);
      const merger = new Merger(sink, {
        partitions: this.#drainers.length,
        window: this.options.reorderWindow,
        idleAt: (part) => this.#drainers[part]!.idleAt,
        clock: this.options.clock,
        onBroken: (error) => {
          this.#noteError(error);
          round.abort(error);
        },
      });
      this.#merger = merger;
      this.#active = true;
      this.#lastError = undefined;
      const publishing = this.#publish(both);
      await Promise.all(this.#drainers.map((drainer) => drainer.run(both)));
      this.#active = false;
      round.abort();
      merger.stop();
      this.#merger = undefined;
      await publishing;
      await sink.close().catch(() => undefined);
      if (!signal?.aborted) await pause(RETRY_AFTER, signal);
    }
  }

  #view(partition: number) {
    const merger = this.#merger;
    if (merger === undefined || merger.broken !== undefined) {
      throw new SinkError(
        `drainer: partition ${partition} has no sink to write to (the sink failed: ${merger?.broken?.message ?? "not open"}); it is opened again shortly`,
      );
    }
    return merger.view(partition);
  }

  #noteError(error: Error): void {
    this.#lastError = error.message;
    this.options.onError?.(error);
  }

  /** Publishes the whole stream's metrics in memcached while active, for dashboards on other nodes. */
  async #publish(signal: AbortSignal): Promise<void> {
    const key = drainerKey(this.address);
    while (!signal.aborted) {
      // Informational only: a failed publish is tried again at the next tick.
      await this.#client.set(key, JSON.stringify(this.metrics), { ttl: PUBLISH_TTL }).catch(() => false);
      await pause(PUBLISH_EVERY, signal);
    }
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

export interface AnyDrainerOptions extends Partial<Omit<PartitionedDrainerOptions, "openSink">> {
  /** Opens the sink; with more than one partition it must be partitioned (FileSink's `partitioned: true`). */
  openSink: () => Promise<LogSink & PartitionedSink>;
}

/** A Drainer for one partition (the default), a PartitionedDrainer for several. */
export function createDrainer(client: Client, options: AnyDrainerOptions): LogDrainer {
  const partitions = options.partitions ?? 1;
  if (partitions === 1) {
    const { partitions: _partitions, reorderWindow: _window, ...rest } = options;
    return new Drainer(client, rest);
  }
  return new PartitionedDrainer(client, { ...options, partitions });
}
