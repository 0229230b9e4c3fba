// The fan-out: one poller per watched job per process. However many event streams watch a job, it is read
// from memcached once per interval, and not at all once nobody watches. The latest read is the only thing
// about a job this process keeps, and only while someone watches it.
import type { JobView, Progress } from "../progress/index.js";

/** What a watcher hears: each new version or state of the job (undefined when it is gone), or a failed read. */
export interface FeedWatcher {
  job(view: JobView | undefined): void;
  error(error: Error): void;
}

interface Feed {
  readonly id: string;
  readonly watchers: Set<FeedWatcher>;
  /** The latest read; absent until the first read lands. */
  latest: { view: JobView | undefined } | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  closed: boolean;
}

export class JobFeeds {
  readonly #progress: Progress;
  readonly #interval: number;
  readonly #feeds = new Map<string, Feed>();
  #reads = 0;

  constructor(progress: Progress, interval: number) {
    this.#progress = progress;
    this.#interval = interval;
  }

  /** Reads made from memcached so far (for tests and metrics). */
  get reads(): number {
    return this.#reads;
  }

  /** Jobs being polled now. */
  get polling(): number {
    return this.#feeds.size;
  }

  /**
   * Adds a watcher of job `id`: it hears the latest read at once (or the first read, when the job was not
   * watched yet), then every change. Returns the function that removes it.
   */
  watch(id: string, watcher: FeedWatcher): () => void {
    let feed = this.#feeds.get(id);
    if (feed === undefined) {
      feed = { id, watchers: new Set(), latest: undefined, timer: undefined, closed: false };
      this.#feeds.set(id, feed);
      void this.#poll(feed);
    } else if (feed.latest !== undefined) {
      const { view } = feed.latest;
      const joined = feed;
      queueMicrotask(() => {
        if (joined.watchers.has(watcher)) watcher.job(view);
      });
    }
    feed.watchers.add(watcher);
    const watched = feed;
    return () => {
      watched.watchers.delete(watcher);
      if (watched.watchers.size === 0) this.#stop(watched);
    };
  }

  /** Stops every poller (their watchers hear nothing more). */
  close(): void {
    for (const feed of [...this.#feeds.values()]) this.#stop(feed);
  }

  #stop(feed: Feed): void {
    feed.closed = true;
    clearTimeout(feed.timer);
    if (this.#feeds.get(feed.id) === feed) this.#feeds.delete(feed.id);
  }

  async #poll(feed: Feed): Promise<void> {
    feed.timer = undefined;
    let view: JobView | undefined;
    let failure: Error | undefined;
    this.#reads++;
    try {
      view = await this.#progress.get(feed.id);
    } catch (error) {
      failure = error as Error;
    }
    if (feed.closed) return;
    if (failure !== undefined) {
      for (const watcher of [...feed.watchers]) watcher.error(failure);
    } else if (feed.latest === undefined || changed(feed.latest.view, view)) {
      feed.latest = { view };
      for (const watcher of [...feed.watchers]) watcher.job(view);
    }
    if (!feed.closed) feed.timer = setTimeout(() => void this.#poll(feed), this.#interval);
  }
}

/** A new version, a new state (stalled has no version of its own), a restarted job, or one that came or went. */
export function changed(before: JobView | undefined, after: JobView | undefined): boolean {
  if (before === undefined || after === undefined) return before !== after;
  return (
    before.version !== after.version || before.state !== after.state || before.startedAt !== after.startedAt
  );
}
