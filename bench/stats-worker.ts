// One process of the "stats" scenario (bench/stats.ts): an incrementer (memipc's StatsWriter, or the naive
// SQLite `UPDATE … SET n = n + 1`), or the collector, configured by one JSON argument and steered by JSON
// lines on stdin.
//
// Protocol (one JSON object per line): the worker prints {"type":"ready"} once connected, starts on
// {"type":"go"} and prints {"type":"done",…} with its counts; latencies go to a file of float64 µs (native
// byte order).
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";
import { Client } from "../src/client/index.js";
import { StatsDb } from "../src/sinks/stats-db.js";
import { Collector } from "../src/stats/collector.js";
import { StatsWriter } from "../src/stats/writer.js";
import { measureOnGo, onGo, parentMessages, runWorker, saturated, send } from "./worker-io.js";

const SQLITE_BUSY_TIMEOUT_MS = 60_000; // a writer that finds the database locked waits up to this long

interface Incrementing {
  /** The counter names; each increment picks one at random (uniformly). */
  names: string[];
  seconds: number;
  /** Seeds the name picker, so each process has its own sequence. */
  seed: number;
  /** Where to write the latencies (float64 µs). */
  latencies: string;
}

export type WorkerConfig =
  | (Incrementing & {
      role: "memipc";
      port: number;
      namespace: string;
      bucketSeconds: number;
      /** Callers in this process, each awaiting one increment at a time. */
      inflight: number;
    })
  | (Incrementing & { role: "sqlite"; path: string })
  | {
      role: "collector";
      port: number;
      namespace: string;
      bucketSeconds: number;
      /** The SQLite file the collector stores into. */
      db: string;
      /** The collector's clock, fixed: ms since 1970. */
      now: number;
      /** Seconds back the collector looks for buckets not yet collected. */
      lookback: number;
      /** The collector's client timeout per request, ms. */
      timeout: number;
    };

/** What an incrementer reports: increments acknowledged, in total and per name (in `names` order). */
export interface IncrementsDone {
  count: number;
  perName: number[];
  errors: number;
  firstError?: string;
  seconds: number;
  cpuSeconds: number;
}

/** What the collector reports of its one collectOnce(). */
export interface CollectDone {
  seconds: number;
  buckets: number;
  values: number;
  cpuSeconds: number;
}

/** xorshift32: a cheap, seeded pick of the next name, the same sequence for the same seed. */
function picker(seed: number, n: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % n;
  };
}

/**
 * Reports "ready", waits for "go", then increments names picked at random (`increment`, by `callers` callers)
 * until the deadline; returns the "done" message, with the increments acknowledged per name.
 */
async function incrementOnGo(
  next: () => Promise<{ type: string }>,
  config: Incrementing,
  callers: number,
  increment: (name: string) => Promise<unknown> | undefined,
): Promise<IncrementsDone & { type: "done" }> {
  const { names } = config;
  const pick = picker(config.seed, names.length);
  const perName = new Array<number>(names.length).fill(0);
  return measureOnGo(next, config.latencies, async (latencies) => {
    const done = await saturated(
      () => {
        const i = pick();
        const pending = increment(names[i]!);
        // A synchronous store's increment is done when it returns.
        if (pending === undefined) {
          perName[i]!++;
          return undefined;
        }
        return pending.then(() => {
          perName[i]!++;
        });
      },
      { inflight: callers, seconds: config.seconds },
      latencies,
    );
    return { ...done, perName };
  });
}

/**
 * `inflight` callers, each calling `StatsWriter.incr` and awaiting it in a loop until the deadline: a web
 * process with that many requests at once, each counting one event. The writer sums the increments of a
 * tick per key and sends them pipelined, so the callers' increments share round trips.
 */
async function runMemipc(config: Extract<WorkerConfig, { role: "memipc" }>): Promise<void> {
  const next = parentMessages();
  const client = new Client({ servers: `127.0.0.1:${config.port}` });
  const writer = new StatsWriter(client, {
    namespace: config.namespace,
    bucketSeconds: config.bucketSeconds,
  });
  await client.get("bench:warm-up"); // connects
  send(await incrementOnGo(next, config, config.inflight, (name) => writer.incr(name)));
  client.close();
}

/**
 * What naive code does: one prepared `UPDATE counters SET n = n + 1 WHERE name = ?` per event, each its own
 * transaction (autocommit), into one database shared by every process. better-sqlite3 is synchronous, so a
 * process has one update in flight whatever its callers.
 */
async function runSqlite(config: Extract<WorkerConfig, { role: "sqlite" }>): Promise<void> {
  const next = parentMessages();
  const db = new Database(config.path, { timeout: SQLITE_BUSY_TIMEOUT_MS });
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  const update = db.prepare("UPDATE counters SET n = n + 1 WHERE name = ?");
  const done = await incrementOnGo(next, config, 1, (name) => {
    if (update.run(name).changes !== 1) throw new Error(`no row for ${name}`);
    return undefined;
  });
  db.close();
  send(done);
}

/** One collectOnce() of every closed bucket into a fresh database, timed from the call to its result. */
async function runCollector(config: Extract<WorkerConfig, { role: "collector" }>): Promise<void> {
  const next = parentMessages();
  const client = new Client({ servers: `127.0.0.1:${config.port}`, timeout: config.timeout });
  const db = StatsDb.open(config.db);
  const collector = new Collector(client, db, {
    namespace: config.namespace,
    bucketSeconds: config.bucketSeconds,
    grace: 0,
    lookback: config.lookback,
    lease: false, // the only collector
    clock: () => config.now,
  });
  await client.get("bench:warm-up"); // connects
  const done: CollectDone & { type: "done" } = await onGo(next, async () => {
    const started = performance.now();
    const result = await collector.collectOnce();
    return { seconds: (performance.now() - started) / 1000, buckets: result.buckets, values: result.values };
  });
  db.close();
  client.close();
  send(done);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? "{}") as WorkerConfig;
  switch (config.role) {
    case "memipc":
      return runMemipc(config);
    case "sqlite":
      return runSqlite(config);
    case "collector":
      return runCollector(config);
    default:
      throw new Error(`unknown worker role in ${process.argv[2]}`);
  }
}

runWorker(main);
