// One process of the "stats" scenario (bench/stats.ts): an incrementer (memipc's StatsWriter, or the naive
// SQLite `UPDATE … SET n = n + 1`), or the collector, configured by one JSON argument and steered by JSON
// lines on stdin.
//
// Protocol (one JSON object per line): the worker prints {"type":"ready"} once connected, starts on
// {"type":"go"} and prints {"type":"done",…} with its counts; latencies go to a file of float64 µs (native
// byte order).
import { writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import Database from "better-sqlite3";
import { Client } from "../src/client/index.js";
import { StatsDb } from "../src/sinks/stats-db.js";
import { Collector } from "../src/stats/collector.js";
import { StatsWriter } from "../src/stats/writer.js";
import { runWorker, send } from "./worker-io.js";

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

/** Latencies in µs, in a typed array that grows. */
class Latencies {
  values = new Float64Array(1 << 16);
  count = 0;

  record(us: number): void {
    if (this.count === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.count++] = us;
  }

  save(path: string): void {
    writeFileSync(path, new Uint8Array(this.values.buffer, 0, this.count * 8));
  }
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

/** Resolves on the parent's "go"; exits when the parent closes stdin (nothing is left to report to). */
function onGo(): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      const message = JSON.parse(line) as { type: string };
      if (message.type === "go") resolve();
      else reject(new Error(`expected "go" from the parent, got "${message.type}"`));
    });
    lines.on("close", () => process.exit(0));
  });
}

function cpuOf(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1e6;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * `inflight` callers, each calling `StatsWriter.incr` and awaiting it in a loop until the deadline: a web
 * process with that many requests at once, each counting one event. The writer sums the increments of a
 * tick per key and sends them pipelined, so the callers' increments share round trips.
 */
async function runMemipc(config: Extract<WorkerConfig, { role: "memipc" }>): Promise<void> {
  const go = onGo();
  const client = new Client({ servers: `127.0.0.1:${config.port}` });
  const writer = new StatsWriter(client, {
    namespace: config.namespace,
    bucketSeconds: config.bucketSeconds,
  });
  await client.get("bench:warm-up"); // connects
  send({ type: "ready" });
  await go;
  const { names } = config;
  const next = picker(config.seed, names.length);
  const latencies = new Latencies();
  const perName = new Array<number>(names.length).fill(0);
  const done: Omit<IncrementsDone, "cpuSeconds"> = { count: 0, perName, errors: 0, seconds: 0 };
  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + config.seconds * 1000;
  const caller = async (): Promise<void> => {
    for (;;) {
      const i = next();
      const t = performance.now();
      try {
        await writer.incr(names[i]!);
        perName[i]!++;
        done.count++;
      } catch (error) {
        done.errors++;
        done.firstError ??= messageOf(error);
      }
      const end = performance.now();
      latencies.record((end - t) * 1000);
      if (end >= deadline) return;
    }
  };
  await Promise.all(Array.from({ length: config.inflight }, caller));
  done.seconds = (performance.now() - started) / 1000;
  const cpuSeconds = cpuOf(process.cpuUsage(cpu));
  latencies.save(config.latencies);
  send({ type: "done", ...done, cpuSeconds });
  client.close();
}

/**
 * What naive code does: one prepared `UPDATE counters SET n = n + 1 WHERE name = ?` per event, each its own
 * transaction (autocommit), into one database shared by every process. better-sqlite3 is synchronous, so a
 * process has one update in flight whatever its callers.
 */
async function runSqlite(config: Extract<WorkerConfig, { role: "sqlite" }>): Promise<void> {
  const go = onGo();
  const db = new Database(config.path, { timeout: SQLITE_BUSY_TIMEOUT_MS });
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  const update = db.prepare("UPDATE counters SET n = n + 1 WHERE name = ?");
  send({ type: "ready" });
  await go;
  const { names } = config;
  const next = picker(config.seed, names.length);
  const latencies = new Latencies();
  const perName = new Array<number>(names.length).fill(0);
  const done: Omit<IncrementsDone, "cpuSeconds"> = { count: 0, perName, errors: 0, seconds: 0 };
  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + config.seconds * 1000;
  for (;;) {
    const i = next();
    const t = performance.now();
    try {
      if (update.run(names[i]!).changes !== 1) throw new Error(`no row for ${names[i]}`);
      perName[i]!++;
      done.count++;
    } catch (error) {
      done.errors++;
      done.firstError ??= messageOf(error);
    }
    const end = performance.now();
    latencies.record((end - t) * 1000);
    if (end >= deadline) break;
  }
  done.seconds = (performance.now() - started) / 1000;
  const cpuSeconds = cpuOf(process.cpuUsage(cpu));
  latencies.save(config.latencies);
  db.close();
  send({ type: "done", ...done, cpuSeconds });
}

/** One collectOnce() of every closed bucket into a fresh database, timed from the call to its result. */
async function runCollector(config: Extract<WorkerConfig, { role: "collector" }>): Promise<void> {
  const go = onGo();
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
  send({ type: "ready" });
  await go;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const result = await collector.collectOnce();
  const seconds = (performance.now() - started) / 1000;
  const done: CollectDone = {
    seconds,
    buckets: result.buckets,
    values: result.values,
    cpuSeconds: cpuOf(process.cpuUsage(cpu)),
  };
  db.close();
  client.close();
  send({ type: "done", ...done });
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
