// Full garbage collections when what the store threw away piles up, so the process stays near its memory limit.
import v8 from "node:v8";
import vm from "node:vm";
import type { MemcachedServer } from "./server.js";

/**
 * Bytes of garbage allowed on top of the memory limit, as a share of it (1 / GARBAGE_SHARE), and never less
 * than GARBAGE_MIN. Left to itself V8 lets dead items pile up: old space grows to several times what is live
 * before a full collection, and dead value buffers reach 64 MiB (its external memory trigger) plus what
 * arrives while it marks.
 */
const GARBAGE_SHARE = 8;
const GARBAGE_MIN = 8 * 1024 * 1024; // bytes

/** Where garbage comes from: counters that only grow. */
export interface GarbageSource {
  /** Bytes the store let go (values, replies built for them, and the item objects). */
  readonly released: number;
  /** Bytes received from clients: each network chunk is garbage once parsed. */
  readonly received: number;
}

/** Bytes of V8's heap in use (dead objects included until collected) and of buffers outside it. */
export function memoryInUse(): number {
  const heap = v8.getHeapStatistics();
  return heap.used_heap_size + heap.external_memory;
}

/**
 * A backstop for V8's own pacing. Each time a share of the limit has been thrown away, it looks at the
 * memory in use; only when that is over the limit plus the allowed garbage (and what the process held before
 * the store had anything) does it run a full collection. Where V8 keeps up by itself nothing is forced.
 */
export class Collector {
  readonly #gc: () => void;
  readonly #source: GarbageSource;
  readonly #inUse: () => number;
  readonly #every: number;
  readonly #budget: number;
  #at: number;
  /** Collections run so far. */
  runs = 0;

  constructor(gc: () => void, source: GarbageSource, memoryLimit: number, inUse: () => number = memoryInUse) {
    this.#gc = gc;
    this.#source = source;
    this.#inUse = inUse;
    this.#every = Math.max(GARBAGE_MIN, Math.floor(memoryLimit / GARBAGE_SHARE));
    this.#budget = inUse() + memoryLimit + this.#every;
    this.#at = this.#total() + this.#every;
  }

  #total(): number {
    return this.#source.released + this.#source.received;
  }

  /** Collects when enough was thrown away and memory in use is over budget; cheap to call often. */
  check(): void {
    const total = this.#total();
    if (total < this.#at) return;
    this.#at = total + this.#every;
    if (this.#inUse() <= this.#budget) return;
    this.#gc();
    this.runs++;
  }
}

/**
 * V8's collector as a function, or undefined when it cannot be had. `--expose-gc` set at run time only
 * installs `gc` in contexts created afterwards, hence the new context.
 */
export function exposeGc(): (() => void) | undefined {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc: unknown = vm.runInNewContext("gc");
    return typeof gc === "function" ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Keeps `server`'s process near its memory limit with a Collector, in processes that host the server (the
 * store is then most of what the process holds). Returns false when V8's collector cannot be reached.
 */
export function paceCollections(server: MemcachedServer): boolean {
  const gc = exposeGc();
  if (gc === undefined) return false;
  const { store, stats } = server.engine;
  const source: GarbageSource = {
    get released() {
      return store.released;
    },
    get received() {
      return stats.bytesRead;
    },
  };
  server.engine.collector = new Collector(gc, source, server.options.memoryLimit);
  return true;
}
