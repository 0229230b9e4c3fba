// The log page's live tail: one follower per stream reads the drainer's files (polling their size), and every
// browser watching that stream shares what it reads. A stream's follower starts with its first watcher, at
// the end of the newest file, and stops when its last watcher leaves.
import {
  LogFollower,
  detectFormat,
  endPosition,
  extensionOf,
  formatPosition,
  parseLogRecord,
  type LogFileFormat,
  type LogLine,
  type LogPosition,
  type LogRecord,
} from "../../sinks/log-files.js";

export const DEFAULT_LOG_POLL = 250; // ms between looks at a followed stream's files

/** A record as the log API and the live tail send it: the record and where it starts in the files. */
export type LogRecordJson = LogRecord & { cursor: string };

export function recordJson(line: LogLine, format: LogFileFormat): LogRecordJson {
  return { cursor: formatPosition(line.position), ...parseLogRecord(line.text, format) };
}

/** The SSE text of records: one `record` event each, its cursor as the event id (resumed from on reconnect). */
export function recordEvents(lines: readonly LogLine[], format: LogFileFormat): string {
  let text = "";
  for (const line of lines) {
    const record = recordJson(line, format);
    if (record.kind === "checkpoint") continue;
    text += `event: record\nid: ${record.cursor}\ndata: ${JSON.stringify(record)}\n\n`;
  }
  return text;
}

/** What a watcher receives: the SSE text of new records, or a problem reading the files. */
export interface LogWatcher {
  records(events: string): void;
  problem(message: string): void;
}

export interface Watching {
  /** Where the watcher's live records start: what is before it is history (readPageBefore). */
  position: LogPosition | undefined;
  format: LogFileFormat;
  unwatch(): void;
}

class LogFeed {
  readonly stream: string;
  readonly watchers = new Set<LogWatcher>();
  readonly #stop = new AbortController();
  readonly ready: Promise<void>;
  follower: LogFollower | undefined;
  format: LogFileFormat = "jsonl";
  #lastProblem: string | undefined;

  constructor(dir: string, stream: string, pollEvery: number, onEnd: () => void) {
    this.stream = stream;
    this.ready = (async () => {
      this.format = await detectFormat(dir, stream);
      const ext = extensionOf(this.format);
      this.follower = new LogFollower(dir, stream, ext, await endPosition(dir, stream, ext));
    })();
    this.ready
      .then(() =>
        this.follower!.run(
          this.#stop.signal,
          pollEvery,
          (lines) => this.#emit(lines),
          (error) => this.#problem(error),
        ),
      )
      .catch(() => undefined) // a failed start is reported to the watcher that waited for it
      .finally(onEnd);
  }

  get stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  stop(): void {
    this.#stop.abort();
  }

  #emit(lines: LogLine[]): void {
    this.#lastProblem = undefined;
    if (this.watchers.size === 0) return;
    const events = recordEvents(lines, this.format);
    for (const watcher of this.watchers) watcher.records(events);
  }

  #problem(error: Error): void {
    const message = `the files of stream ${this.stream} could not be read: ${error.message}`;
    if (message === this.#lastProblem) return; // said once until reading works again
    this.#lastProblem = message;
    for (const watcher of this.watchers) watcher.problem(message);
  }
}

/** The followers of the streams being watched, one per stream. */
export class LogFeeds {
  readonly #dir: string;
  readonly #pollEvery: number;
  readonly #feeds = new Map<string, LogFeed>();
  #closed = false;

  constructor(dir: string, pollEvery = DEFAULT_LOG_POLL) {
    this.#dir = dir;
    this.#pollEvery = pollEvery;
  }

  /** Streams followed now. */
  get following(): number {
    return this.#feeds.size;
  }

  /**
   * Adds a watcher of `stream`; resolves once its follower knows where it is. From `position` on, every
   * record goes to the watcher, once; rejects when the stream's folder cannot be read.
   */
  async watch(stream: string, watcher: LogWatcher): Promise<Watching> {
    let feed = this.#feeds.get(stream);
    if (feed === undefined || feed.stopped) {
      if (this.#closed) throw new Error("the dashboard is closing");
      const created: LogFeed = new LogFeed(this.#dir, stream, this.#pollEvery, () => {
        if (this.#feeds.get(stream) === created) this.#feeds.delete(stream);
      });
      feed = created;
      this.#feeds.set(stream, feed);
    }
    try {
      await feed.ready;
    } catch (error) {
      if (feed.watchers.size === 0) feed.stop();
      throw error;
    }
    if (feed.stopped) return this.watch(stream, watcher); // its last watcher left while this one waited
    // No await from here: the position and the first record sent to the watcher meet exactly.
    feed.watchers.add(watcher);
    const current = feed;
    return {
      position: feed.follower!.position,
      format: feed.format,
      unwatch: () => {
        current.watchers.delete(watcher);
        if (current.watchers.size === 0) current.stop();
      },
    };
  }

  /** Stops every follower. */
  close(): void {
    this.#closed = true;
    for (const feed of this.#feeds.values()) feed.stop();
    this.#feeds.clear();
  }
}
