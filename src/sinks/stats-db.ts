// The stats history in SQLite: one row per name and collected bucket, written as absolute values, so a
// bucket collected twice (a rerun, a crash before the commit, a re-read for late increments) never counts
// twice. The schema is versioned with `PRAGMA user_version`; each migration runs once, in a transaction.
// Writes can be fenced: a collector paused past its lease cannot write after its successor took over.
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { DatabaseBusyError, FencedError, SinkError } from "../errors.js";

export const DEFAULT_DB_FILE = "memipc-stats.db";
/**
 * ms a write waits for another process's lock on the database before failing with a DatabaseBusyError. The
 * wait blocks the whole process (SQLite is called synchronously), which in `memipc serve` is the embedded
 * server and the dashboard too: kept short, and the collector tries again later instead of waiting longer.
 */
export const DEFAULT_BUSY_TIMEOUT = 1000;

/** The columns of the per-bucket tables, in the order of schema version 1. */
const COLUMNS = {
  counters: "name TEXT NOT NULL, start INTEGER NOT NULL, seconds INTEGER NOT NULL, value INTEGER NOT NULL",
  gauges: "name TEXT NOT NULL, start INTEGER NOT NULL, seconds INTEGER NOT NULL, value REAL NOT NULL",
  timers:
    "name TEXT NOT NULL, start INTEGER NOT NULL, seconds INTEGER NOT NULL, count INTEGER NOT NULL, " +
    "sum_us INTEGER NOT NULL, max_us INTEGER, histogram TEXT NOT NULL",
} as const;

/** Each entry moves the schema from version (index) to version (index + 1). */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE counters (
     name TEXT NOT NULL, start INTEGER NOT NULL, seconds INTEGER NOT NULL, value INTEGER NOT NULL,
     PRIMARY KEY (name, start)) WITHOUT ROWID;
   CREATE INDEX counters_start ON counters (start);
   CREATE TABLE timers (
     name TEXT NOT NULL, start INTEGER NOT NULL, seconds INTEGER NOT NULL,
     count INTEGER NOT NULL, sum_us INTEGER NOT NULL, max_us INTEGER, histogram TEXT NOT NULL,
     PRIMARY KEY (name, start)) WITHOUT ROWID;
   CREATE INDEX timers_start ON timers (start);
   CREATE TABLE gauges (
     name TEXT NOT NULL, start INTEGER NOT NULL, seconds INTEGER NOT NULL, value REAL NOT NULL,
     PRIMARY KEY (name, start)) WITHOUT ROWID;
   CREATE INDEX gauges_start ON gauges (start);
   CREATE TABLE legacy (
     id INTEGER PRIMARY KEY, name TEXT NOT NULL, at INTEGER NOT NULL, value INTEGER NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'unconfirmed')), cas TEXT NOT NULL);
   CREATE INDEX legacy_at ON legacy (at);
   CREATE TABLE buckets (
     seconds INTEGER NOT NULL, start INTEGER NOT NULL, names INTEGER NOT NULL,
     first_collected INTEGER NOT NULL, last_collected INTEGER NOT NULL, checks INTEGER NOT NULL,
     next_check INTEGER, PRIMARY KEY (seconds, start)) WITHOUT ROWID;
   CREATE INDEX buckets_next_check ON buckets (next_check);
   CREATE TABLE reports (day TEXT PRIMARY KEY, written_at INTEGER NOT NULL, files TEXT NOT NULL);`,
  // 2: rows keyed by (start, name), so a bucket's rows go in side by side at the end of each table instead of
  // into every page of it (storing 10,000 names a bucket was several times slower); queries are by time.
  ["counters", "gauges", "timers"]
    .map(
      (table) =>
        `CREATE TABLE ${table}_v2 (${COLUMNS[table as keyof typeof COLUMNS]}, PRIMARY KEY (start, name)) WITHOUT ROWID;
         INSERT INTO ${table}_v2 SELECT * FROM ${table};
         DROP TABLE ${table};
         ALTER TABLE ${table}_v2 RENAME TO ${table};`,
    )
    .join("\n"),
  // 3: fencing tokens. The database issues them itself, since it is what they protect: a holder's writes are
  // refused once a newer holder has taken a token (see StatsDb.takeFence).
  `CREATE TABLE fence (name TEXT PRIMARY KEY, token INTEGER NOT NULL);`,
];
export const SCHEMA_VERSION = MIGRATIONS.length;

/** A timer's histogram: bucket index (see stats/layout timerBucket) → samples in it. */
export type Histogram = Map<number, number>;

export interface CounterRow {
  name: string;
  /** Bucket start, unix seconds. */
  start: number;
  seconds: number;
  value: number;
}

export interface GaugeRow {
  name: string;
  start: number;
  seconds: number;
  value: number;
}

export interface TimerRow {
  name: string;
  start: number;
  seconds: number;
  count: number;
  /** Sum of the samples in whole microseconds. */
  sumUs: number;
  /** The largest sample in whole microseconds, when a writer recorded it. */
  maxUs: number | undefined;
  histogram: Histogram;
}

/** What the collector read of one bucket. */
export interface BucketValues {
  start: number;
  seconds: number;
  counters: ReadonlyArray<{ name: string; value: number }>;
  gauges: ReadonlyArray<{ name: string; value: number }>;
  timers: ReadonlyArray<Omit<TimerRow, "start" | "seconds">>;
}

export const LegacyState = { pending: "pending", done: "done", unconfirmed: "unconfirmed" } as const;
export type LegacyState = (typeof LegacyState)[keyof typeof LegacyState];

/** One collection of a legacy counter: `value` taken out of memcached at `at` (ms since 1970). */
export interface LegacyRow {
  id: number;
  name: string;
  at: number;
  value: number;
  state: LegacyState;
  /** The CAS unique of the counter when it was read, to settle a collection cut short by a crash. */
  cas: string;
}

export interface CollectedBucket {
  seconds: number;
  start: number;
  names: number;
  firstCollected: number;
  lastCollected: number;
  checks: number;
  nextCheck: number | undefined;
}

export interface StatName {
  kind: "counter" | "gauge" | "timer" | "legacy";
  name: string;
  /** Start (unix s) of the newest bucket, or time (ms) of the newest legacy row. */
  last: number;
}

/** A fencing token held by this handle's writer: see StatsDb.fence. */
export interface Fence {
  /** What is guarded, e.g. "collect:memipc" (one collector per namespace). */
  name: string;
  token: number;
}

export interface StatsDbOptions {
  readonly: boolean;
  busyTimeout: number;
}

export class StatsDb {
  readonly file: string;
  /** ms a write waits for another process's lock (SQLite's busy_timeout). */
  readonly busyTimeout: number;
  readonly #db: Database.Database;
  readonly #statements: ReturnType<typeof prepare>;
  /**
   * When set, every write first checks, inside its own transaction, that the fence `name` still stands at
   * `token`, and throws a FencedError (writing nothing) when a newer token was taken since. Unset, writes
   * are not checked (a single writer without a lease).
   */
  fence: Fence | undefined = undefined;
  /** Runs a write in an IMMEDIATE transaction (the fence read and the write see the same state), fenced. */
  readonly #write: Database.Transaction<(work: () => unknown) => unknown>;

  private constructor(file: string, db: Database.Database, busyTimeout: number) {
    this.file = file;
    this.busyTimeout = busyTimeout;
    this.#db = db;
    this.#statements = prepare(db);
    this.#write = db.transaction((work: () => unknown) => {
      this.#checkFence();
      return work();
    });
  }

  /**
   * Opens (and creates, with its folder, unless read-only) the database at `file`, in WAL mode, and
   * brings its schema up to date.
   */
  static open(file: string, options: Partial<StatsDbOptions> = {}): StatsDb {
    const memory = file === ":memory:";
    const path = memory ? file : resolve(file);
    const readonly = options.readonly ?? false;
    let db: Database.Database;
    try {
      if (!readonly && !memory) mkdirSync(dirname(path), { recursive: true });
      db = new Database(path, { readonly, fileMustExist: readonly });
    } catch (error) {
      throw new SinkError(
        `cannot open the stats database ${path}: ${(error as Error).message}` +
          (readonly ? " (does it exist? run `memipc collect` first, or pass --db)" : ""),
        { cause: error, file: path, errno: (error as NodeJS.ErrnoException).code },
      );
    }
    const busyTimeout = options.busyTimeout ?? DEFAULT_BUSY_TIMEOUT;
    try {
      db.pragma(`busy_timeout = ${busyTimeout}`);
      if (!readonly) {
        db.pragma("journal_mode = WAL");
        db.pragma("synchronous = NORMAL");
      }
      migrate(db, path, readonly);
      return new StatsDb(path, db, busyTimeout);
    } catch (error) {
      db.close();
      if (error instanceof SinkError) throw error;
      throw new SinkError(`the stats database ${path} cannot be used: ${(error as Error).message}`, {
        cause: error,
        file: path,
      });
    }
  }

  get schemaVersion(): number {
    return this.#db.pragma("user_version", { simple: true }) as number;
  }

  /**
   * Stores one bucket's values in one transaction, and records when it was collected and when to read it
   * again (`nextCheck`, ms, or undefined for never). Counters and timers keep the larger of the stored and
   * the new value (they only grow while their key lives); a gauge takes the new value.
   */
  storeBucket(values: BucketValues, collectedAt: number, nextCheck: number | undefined): void {
    this.storeBuckets([{ values, nextCheck }], collectedAt);
  }

  /** storeBucket for several buckets, all in one transaction. */
  storeBuckets(
    buckets: ReadonlyArray<{ values: BucketValues; nextCheck: number | undefined }>,
    collectedAt: number,
  ): void {
    const s = this.#statements;
    this.#fenced(() => {
      for (const { values, nextCheck } of buckets) {
        const { start, seconds } = values;
        for (const c of values.counters) s.upsertCounter.run(c.name, start, seconds, c.value);
        for (const g of values.gauges) s.upsertGauge.run(g.name, start, seconds, g.value);
        for (const t of values.timers) {
          const histogram = JSON.stringify(Object.fromEntries(t.histogram));
          s.upsertTimer.run(t.name, start, seconds, t.count, t.sumUs, t.maxUs ?? null, histogram);
        }
        const names = values.counters.length + values.gauges.length + values.timers.length;
        s.upsertBucket.run(seconds, start, names, collectedAt, collectedAt, nextCheck ?? null);
      }
    });
  }

  /** The collected bucket of this size with the latest start, if any. */
  lastBucket(seconds: number): CollectedBucket | undefined {
    const row = this.#statements.lastBucket.get(seconds) as BucketSqlRow | undefined;
    return row && bucketFromSql(row);
  }

  /** Collected buckets of this size whose next re-read is due at `now` (ms), oldest first. */
  bucketsDue(seconds: number, now: number, limit = 1000): CollectedBucket[] {
    return (this.#statements.bucketsDue.all(seconds, now, limit) as BucketSqlRow[]).map(bucketFromSql);
  }

  bucket(seconds: number, start: number): CollectedBucket | undefined {
    const row = this.#statements.bucket.get(seconds, start) as BucketSqlRow | undefined;
    return row && bucketFromSql(row);
  }

  /** Counter rows with a bucket start in [from, to) (unix seconds), ordered by name then start. */
  counters(from: number, to: number): CounterRow[] {
    return this.#statements.counters.all(from, to) as CounterRow[];
  }

  gauges(from: number, to: number): GaugeRow[] {
    return this.#statements.gauges.all(from, to) as GaugeRow[];
  }

  timers(from: number, to: number): TimerRow[] {
    return (this.#statements.timers.all(from, to) as TimerSqlRow[]).map((r) => ({
      name: r.name,
      start: r.start,
      seconds: r.seconds,
      count: r.count,
      sumUs: r.sum_us,
      maxUs: r.max_us ?? undefined,
      histogram: parseHistogram(r.histogram),
    }));
  }

  /** Legacy collections with `at` in [from, to) (ms), ordered by name then time; pending ones left out. */
  legacy(from: number, to: number): LegacyRow[] {
    return this.#statements.legacy.all(from, to) as LegacyRow[];
  }

  /** Records, before the counter is touched, that `value` is about to be taken out of legacy `name`. */
  beginLegacy(name: string, at: number, value: number, cas: bigint): number {
    // Fenced like every write, and that matters most here: a stale collector refused at this step never
    // goes on to decrement the counter its successor has already taken out.
    return this.#fenced(() =>
      Number(this.#statements.beginLegacy.run(name, at, value, cas.toString()).lastInsertRowid),
    );
  }

  /** Settles a pending legacy row: `done` once memcached confirmed the decrement, or `unconfirmed`. */
  settleLegacy(id: number, state: LegacyState): void {
    this.#fenced(() => this.#statements.settleLegacy.run(state, id));
  }

  dropLegacy(id: number): void {
    this.#fenced(() => this.#statements.dropLegacy.run(id));
  }

  /** Legacy rows left pending by a collector that stopped between its two steps. */
  pendingLegacy(): LegacyRow[] {
    return this.#statements.pendingLegacy.all() as LegacyRow[];
  }

  /** Every name stored, with its kind and newest time. */
  names(): StatName[] {
    return this.#statements.names.all() as StatName[];
  }

  /** When the report of `day` (YYYY-MM-DD) was written, if it was. */
  reportWritten(day: string): { writtenAt: number; files: string[] } | undefined {
    const row = this.#statements.report.get(day) as { written_at: number; files: string } | undefined;
    return row && { writtenAt: row.written_at, files: JSON.parse(row.files) as string[] };
  }

  markReport(day: string, writtenAt: number, files: readonly string[]): void {
    this.#fenced(() => this.#statements.markReport.run(day, writtenAt, JSON.stringify(files)));
  }

  /**
   * Takes the next fencing token of `name` (the stored one plus 1, from 1) in one IMMEDIATE transaction and
   * returns it. A writer takes one each time it becomes the active one (right after acquiring its lease,
   * before its first write) and sets `fence` to it; from then on the writes of any handle still holding an
   * older token of `name` are refused.
   */
  takeFence(name: string): number {
    const s = this.#statements;
    const take = this.#db.transaction(() => {
      const token = ((s.fenceToken.get(name) as number | undefined) ?? 0) + 1;
      s.storeFence.run(name, token);
      return token;
    });
    try {
      return take.immediate();
    } catch (error) {
      throw this.#busy(error);
    }
  }

  /** The fencing token of `name` stored now (0 when none was ever taken). */
  fenceToken(name: string): number {
    return (this.#statements.fenceToken.get(name) as number | undefined) ?? 0;
  }

  #fenced<T>(work: () => T): T {
    try {
      return this.#write.immediate(work) as T;
    } catch (error) {
      throw this.#busy(error);
    }
  }

  /** SQLite's "busy" and "locked" as a DatabaseBusyError that says what to do; other errors unchanged. */
  #busy(error: unknown): unknown {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== "string" || !/^SQLITE_(BUSY|LOCKED)/.test(code)) return error;
    return new DatabaseBusyError(
      `the stats database ${this.file} is locked by another process: a write waited ${this.busyTimeout} ms ` +
        `for it and was not made (${code}). Find what keeps it open inside a transaction (fuser ` +
        `${this.file}: an sqlite3 shell, a backup, a script) and end it`,
      { cause: error, file: this.file, errno: code },
    );
  }

  #checkFence(): void {
    const fence = this.fence;
    if (fence === undefined) return;
    const stored = this.fenceToken(fence.name);
    if (stored === fence.token) return;
    throw new FencedError(
      `fenced: another collector took over ${fence.name} in ${this.file} (fencing token ${stored}) since ` +
        `this one became active (token ${fence.token}); nothing of this write was stored. This one stops ` +
        "and stands by for the lease; if it recurs, look for pauses longer than the lease TTL (a stopped " +
        "process or VM, heavy swapping)",
    );
  }

  close(): void {
    this.#db.close();
  }
}

function migrate(db: Database.Database, path: string, readonly: boolean): void {
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    throw new SinkError(
      `the stats database ${path} has schema version ${version}, newer than this memipc knows ` +
        `(${SCHEMA_VERSION}); upgrade memipc, or pass --db to use another file`,
      { file: path },
    );
  }
  if (version === SCHEMA_VERSION) return;
  if (readonly) {
    throw new SinkError(
      `the stats database ${path} has schema version ${version} and needs ${SCHEMA_VERSION}; ` +
        "run `memipc collect` once to upgrade it",
      { file: path },
    );
  }
  for (let v = version; v < SCHEMA_VERSION; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

function prepare(db: Database.Database) {
  return {
    upsertCounter: db.prepare(
      `INSERT INTO counters (name, start, seconds, value) VALUES (?, ?, ?, ?)
       ON CONFLICT (start, name) DO UPDATE SET value = max(value, excluded.value), seconds = excluded.seconds`,
    ),
    upsertGauge: db.prepare(
      `INSERT INTO gauges (name, start, seconds, value) VALUES (?, ?, ?, ?)
       ON CONFLICT (start, name) DO UPDATE SET value = excluded.value, seconds = excluded.seconds`,
    ),
    upsertTimer: db.prepare(
      `INSERT INTO timers (name, start, seconds, count, sum_us, max_us, histogram) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (start, name) DO UPDATE SET
         count = excluded.count, sum_us = excluded.sum_us, histogram = excluded.histogram,
         max_us = CASE WHEN max_us IS NULL THEN excluded.max_us
                       WHEN excluded.max_us IS NULL THEN max_us
                       ELSE max(max_us, excluded.max_us) END,
         seconds = excluded.seconds
       WHERE excluded.count >= timers.count`,
    ),
    upsertBucket: db.prepare(
      `INSERT INTO buckets (seconds, start, names, first_collected, last_collected, checks, next_check)
       VALUES (?, ?, ?, ?, ?, 1, ?)
       ON CONFLICT (seconds, start) DO UPDATE SET names = max(names, excluded.names),
         last_collected = excluded.last_collected, checks = checks + 1, next_check = excluded.next_check`,
    ),
    lastBucket: db.prepare(`SELECT * FROM buckets WHERE seconds = ? ORDER BY start DESC LIMIT 1`),
    bucket: db.prepare(`SELECT * FROM buckets WHERE seconds = ? AND start = ?`),
    bucketsDue: db.prepare(
      `SELECT * FROM buckets WHERE seconds = ? AND next_check IS NOT NULL AND next_check <= ?
       ORDER BY start LIMIT ?`,
    ),
    counters: db.prepare(
      `SELECT name, start, seconds, value FROM counters WHERE start >= ? AND start < ? ORDER BY name, start`,
    ),
    gauges: db.prepare(
      `SELECT name, start, seconds, value FROM gauges WHERE start >= ? AND start < ? ORDER BY name, start`,
    ),
    timers: db.prepare(`SELECT * FROM timers WHERE start >= ? AND start < ? ORDER BY name, start`),
    legacy: db.prepare(
      `SELECT id, name, at, value, state, cas FROM legacy
       WHERE at >= ? AND at < ? AND state != 'pending' ORDER BY name, at`,
    ),
    beginLegacy: db.prepare(
      `INSERT INTO legacy (name, at, value, state, cas) VALUES (?, ?, ?, 'pending', ?)`,
    ),
    settleLegacy: db.prepare(`UPDATE legacy SET state = ? WHERE id = ?`),
    dropLegacy: db.prepare(`DELETE FROM legacy WHERE id = ?`),
    pendingLegacy: db.prepare(
      `SELECT id, name, at, value, state, cas FROM legacy WHERE state = 'pending' ORDER BY id`,
    ),
    names: db.prepare(
      `SELECT 'counter' AS kind, name, max(start) AS last FROM counters GROUP BY name
       UNION ALL SELECT 'gauge', name, max(start) FROM gauges GROUP BY name
       UNION ALL SELECT 'timer', name, max(start) FROM timers GROUP BY name
       UNION ALL SELECT 'legacy', name, max(at) FROM legacy GROUP BY name
       ORDER BY name, kind`,
    ),
    report: db.prepare(`SELECT written_at, files FROM reports WHERE day = ?`),
    markReport: db.prepare(
      `INSERT INTO reports (day, written_at, files) VALUES (?, ?, ?)
       ON CONFLICT (day) DO UPDATE SET written_at = excluded.written_at, files = excluded.files`,
    ),
    fenceToken: db.prepare(`SELECT token FROM fence WHERE name = ?`).pluck(),
    storeFence: db.prepare(
      `INSERT INTO fence (name, token) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET token = excluded.token`,
    ),
  };
}

interface BucketSqlRow {
  seconds: number;
  start: number;
  names: number;
  first_collected: number;
  last_collected: number;
  checks: number;
  next_check: number | null;
}

function bucketFromSql(r: BucketSqlRow): CollectedBucket {
  return {
    seconds: r.seconds,
    start: r.start,
    names: r.names,
    firstCollected: r.first_collected,
    lastCollected: r.last_collected,
    checks: r.checks,
    nextCheck: r.next_check ?? undefined,
  };
}

interface TimerSqlRow {
  name: string;
  start: number;
  seconds: number;
  count: number;
  sum_us: number;
  max_us: number | null;
  histogram: string;
}

function parseHistogram(text: string): Histogram {
  const out: Histogram = new Map();
  for (const [k, n] of Object.entries(JSON.parse(text) as Record<string, number>)) out.set(Number(k), n);
  return out;
}
