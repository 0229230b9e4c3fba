// Merging a partitioned stream into one output: each partition's drainer writes to a view of the sink, and
// the merger interleaves the views' records in time order into the real sink.
//
// Ordering. Within a partition, records go out in the order its drainer handed them (sequence order), so a
// partition's rules hold in the output unchanged. Across partitions the merger always takes, of the records
// waiting at the head of each partition's queue, the one with the earliest time (the producer's clock). A
// partition with nothing waiting may still hand over an older entry, so it holds the others back unless
// - its next entries cannot be older than the record: a partition's entries come in sequence order, which is
//   their order of appending, so its next ones carry a time of at least t - window, where t is the latest
//   time it has handed over, or, if it is idle (its last head read, at time h, found nothing more to hand
//   over), the later of t and h (clocks within `window` of each other); or
// - or the record has waited `window` ms since it reached the merger (a partition catching up slowly, waiting
//   at a hole, or whose server is down, delays the others by at most that).
// Gaps and late entries go out as soon as they reach the head of their queue (they have no place in time).
//
// Durability. A view's write resolves once the real write holding its last record is durable. Real writes
// name the sink's generation, so when one fails, those queued behind it are refused by the sink instead of
// being written after a hole; the merger is then broken for good: every waiting write is rejected and the
// partitioned drainer opens the sink and a new merger again, each partition from its durable cursor.
import { SinkError } from "../errors.js";
import type { Commit, Cursor, RecentRecords, SinkRecord } from "../sinks/index.js";
import type { LogSink } from "./drainer.js";

export const DEFAULT_REORDER_WINDOW = 1000; // ms a record may wait for older ones of partitions with nothing waiting
const RECHECK_EVERY = 10; // ms between looks while held back by a partition that may hand over older entries

/** What the merger needs of the real sink; a FileSink opened with `partitioned: true` is one. */
export interface PartitionedSink {
  cursor(part: number): Cursor | undefined;
  readonly generation: number;
  write(records: readonly SinkRecord[], options: { generation: number }): Promise<Commit>;
  recent?(sinceMs: number): Promise<RecentRecords>;
  close(): Promise<void>;
}

export interface MergerOptions {
  partitions: number;
  /** ms records wait for older records of partitions that have nothing waiting (DEFAULT_REORDER_WINDOW). */
  window: number;
  /** When partition `part`'s drainer last found nothing more to hand over (Drainer.idleAt). */
  idleAt: (part: number) => number | undefined;
  clock: () => number;
  /** Called once, with the error, when a real write fails: the merger takes no more writes. */
  onBroken: (error: Error) => void;
}

/** One view's write: its records (stamped with the partition), how far they have gone out. */
interface Pending {
  part: number;
  /** When it reached the merger (clock): none of its records waits for other partitions beyond the window. */
  at: number;
  records: readonly SinkRecord[];
  next: number;
  resolve: (commit: Commit) => void;
  reject: (error: Error) => void;
}

export class Merger {
  readonly sink: PartitionedSink;
  readonly options: MergerOptions;
  readonly #queues: Pending[][];
  /** Last position handed over by each partition's view (null: none yet), for the views' `after` checks. */
  readonly #handed: Array<Cursor | null>;
  readonly #generation: number;
  /** The latest entry time each partition has handed over. */
  readonly #latest: number[];
  /** Real writes not yet settled, each with the views' writes whose last record it holds. */
  readonly #writing = new Set<Pending[]>();
  #broken: Error | undefined;
  #scheduled = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #recent: Promise<RecentRecords> | undefined;

  constructor(sink: PartitionedSink, options: MergerOptions) {
    this.sink = sink;
    this.options = options;
    this.#queues = Array.from({ length: options.partitions }, () => []);
    this.#handed = Array.from({ length: options.partitions }, (_, part) => sink.cursor(part) ?? null);
    this.#generation = sink.generation;
    this.#latest = new Array<number>(options.partitions).fill(-Infinity);
  }

  get broken(): Error | undefined {
    return this.#broken;
  }

  /** Records waiting in the merger, all partitions together (for metrics). */
  get waiting(): number {
    let count = 0;
    for (const queue of this.#queues)
      for (const pending of queue) count += pending.records.length - pending.next;
    return count;
  }

  /** Partition `part`'s view of the sink, for its drainer. */
  view(part: number): LogSink {
    return {
      cursor: () => this.sink.cursor(part),
      write: (records, options) => this.#write(part, records, options?.after),
      recent: async (sinceMs) => this.#recentOf(part, sinceMs),
      // The real sink is the partitioned drainer's to close.
      close: async () => undefined,
    };
  }

  /** Stops the timer; waiting writes are rejected (the sink itself is closed by its owner). */
  stop(): void {
    this.#break(new SinkError("merger stopped: the partitioned drainer is closing its sink"), false);
  }

  #write(part: number, records: readonly SinkRecord[], after: Cursor | null | undefined): Promise<Commit> {
    if (this.#broken !== undefined) return Promise.reject(this.#broken);
    const handed = this.#handed[part]!;
    if (after !== undefined && !samePosition(after, handed)) {
      return Promise.reject(
        new SinkError(
          `merger: partition ${part}'s batch follows ${JSON.stringify(after)}, but the partition's last batch ` +
            `ended at ${JSON.stringify(handed)}: an earlier batch failed; resend from the cursor`,
        ),
      );
    }
    for (const record of records) {
      record.part = part;
      if (record.kind === "gap") this.#handed[part] = { epoch: record.epoch, seq: record.to };
      else if (record.late !== true) {
        this.#handed[part] = { epoch: record.epoch, seq: record.seq };
        if (record.time > this.#latest[part]!) this.#latest[part] = record.time;
      }
    }
    return new Promise<Commit>((resolve, reject) => {
      if (records.length === 0) {
        resolve(this.#commitFor(part, undefined, 0));
        return;
      }
      this.#queues[part]!.push({ part, at: this.options.clock(), records, next: 0, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  /** Takes every record that may go out now, in merge order, and writes them as one batch. */
  #pump(): void {
    if (this.#broken !== undefined) return;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const queues = this.#queues;
    const batch: SinkRecord[] = [];
    const completes: Pending[] = [];
    const now = this.options.clock();
    let wakeIn = Infinity;
    for (;;) {
      let best: Pending | undefined;
      let bestTime = Infinity;
      for (const queue of queues) {
        const pending = queue[0];
        if (pending === undefined) continue;
        const record = pending.records[pending.next]!;
        if (record.kind === "gap" || record.late === true) {
          best = pending;
          bestTime = -Infinity;
          break;
        }
        if (record.time < bestTime) {
          best = pending;
          bestTime = record.time;
        }
      }
      if (best === undefined) break;
      // Gaps and late entries have no place in time: they never wait.
      if (bestTime !== -Infinity) {
        const left = best.at + this.options.window - now;
        if (left > 0 && this.#heldBack(bestTime)) {
          wakeIn = Math.min(left, RECHECK_EVERY);
          break;
        }
      }
      batch.push(best.records[best.next]!);
      best.next++;
      if (best.next === best.records.length) {
        queues[best.part]!.shift();
        completes.push(best);
      }
    }
    if (wakeIn !== Infinity) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#pump();
      }, wakeIn);
    }
    if (batch.length === 0) return;
    this.#writing.add(completes);
    this.sink.write(batch, { generation: this.#generation }).then(
      (commit) => {
        this.#writing.delete(completes);
        for (const pending of completes) {
          pending.resolve(this.#commitFor(pending.part, commit, pending.records.length));
        }
      },
      (error: unknown) => {
        this.#writing.delete(completes);
        const failure = error instanceof Error ? error : new SinkError(String(error));
        for (const pending of completes) pending.reject(failure);
        this.#break(failure, true);
      },
    );
  }

  /** Whether a partition with nothing waiting may still hand over an entry older than `time`. */
  #heldBack(time: number): boolean {
    const { window, idleAt } = this.options;
    for (let part = 0; part < this.#queues.length; part++) {
      if (this.#queues[part]!.length > 0) continue;
      const idle = idleAt(part) ?? -Infinity;
      if (Math.max(idle, this.#latest[part]!) - window < time) return true;
    }
    return false;
  }

  #break(error: Error, notify: boolean): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#broken !== undefined) return;
    this.#broken = error;
    for (const queue of this.#queues) {
      for (const pending of queue.splice(0)) pending.reject(error);
    }
    if (notify) this.options.onBroken(error);
  }

  #commitFor(part: number, commit: Commit | undefined, records: number): Commit {
    return {
      cursor: this.sink.cursor(part),
      cursors: commit?.cursors ?? new Map(),
      records,
      bytes: 0,
      file: commit?.file,
      durable: commit?.durable ?? true,
    };
  }

  /** The real sink's recent records of one partition (read once per merger: every partition asks at start). */
  async #recentOf(part: number, sinceMs: number): Promise<RecentRecords> {
    if (this.sink.recent === undefined) return { gaps: [], late: [], entries: undefined };
    this.#recent ??= this.sink.recent(sinceMs);
    const recent = await this.#recent;
    return {
      gaps: recent.gaps.filter((gap) => (gap.part ?? 0) === part),
      late: recent.late.filter((at) => at.part === part),
      entries: recent.entries?.filter((at) => at.part === part),
    };
  }
}

function samePosition(a: Cursor | null, b: Cursor | null): boolean {
  return a === null || b === null ? a === b : a.epoch === b.epoch && a.seq === b.seq;
}
