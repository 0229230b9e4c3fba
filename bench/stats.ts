// Scenario "stats": counting events from 8 processes through memipc's StatsWriter (embedded server, real
// memcached) against the same counts as naive SQLite updates; then the collector storing 10,000 counters ×
// 60 buckets from memcached into SQLite.
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";
import { Client, DEFAULT_TIMEOUT } from "../src/client/index.js";
import { StatsDb } from "../src/sinks/stats-db.js";
import {
  DEFAULT_BUCKET_TTL,
  bucketStart,
  counterKey,
  indexKey,
  parseIndex,
  type StatsAddress,
} from "../src/stats/layout.js";
import {
  HOST,
  checkAlive,
  cpuPercent,
  cpuPercentJson,
  cpuSince,
  embeddedTarget,
  findExecutable,
  formatRate,
  formatUs,
  goAndCollect,
  memcachedTarget,
  nodeWorker,
  parseScenarioArgs,
  progress,
  pushTable,
  ratio,
  round,
  runEach,
  startWorkers,
  startTarget,
  withScenarioDir,
  WorkerProcess,
  workerScript,
  versionOf,
  wholeNumber,
  workerScenarioFlags,
  workerScenarioOptions,
  type ScenarioRun,
  type Target,
  type WorkerScenarioOptions,
} from "./common.js";
import { addGoalJson, pushGoalTable, type GoalRow } from "./goals.js";
import { quantile, readLatencies } from "./latencies.js";
import type { Scenario } from "./main.js";
import type { CollectDone, IncrementsDone, WorkerConfig } from "./stats-worker.js";

export const DEFAULT_SECONDS = 3; // seconds of incrementing per run
export const DEFAULT_PROCS = 8; // incrementing processes, as web processes on one machine
export const DEFAULT_INFLIGHT = 64; // increments in flight per memipc process, as requests at once in a web process
export const DEFAULT_NAMES = 100; // counter names the increments are spread over
export const DEFAULT_COLLECT_NAMES = 10_000; // counters per bucket in the collect runs
export const DEFAULT_COLLECT_BUCKETS = 60; // closed buckets the collector stores in the collect runs
export const DEFAULT_MEMCACHED_THREADS = 2; // memcached's -t: one worker per core on the 2-core reference machine
const BUCKET_SECONDS = 60; // the writer's and collector's default bucket
const MEMORY_MB = 1024; // item memory (memcached -m, memipc --memory): every filled bucket fits, nothing is evicted
const FILL_CHUNK = 10_000; // counters per addMulti while filling
const FILL_IN_FLIGHT = 4; // addMulti calls in flight while filling
const FILL_TIMEOUT_MS = 10_000; // client timeout while filling: a chunk queued behind others waits its turn
const READY_TIMEOUT_MS = 30_000; // a worker must connect within this
const DONE_TIMEOUT_MS = 300_000; // a worker must finish within this after "go"
const INSTALL_HINT = "apt-get install -y memcached";

/** The goals, for the goal table and the JSON. */
const GOAL = {
  vsSqlite: 10, // memipc's increments/s over SQLite's
  collectSeconds: 10, // the collector storing 10,000 names × 60 buckets
} as const;

const RUN_IDS = [
  "incr_embedded",
  "incr_memcached",
  "incr_sqlite",
  "collect_embedded",
  "collect_memcached",
] as const;
type RunId = (typeof RUN_IDS)[number];
type Server = "embedded" | "memcached";

interface Options extends WorkerScenarioOptions<RunId> {
  names: number;
  collectNames: number;
  collectBuckets: number;
  collectorTimeout: number;
}

export const statsScenario: Scenario = {
  name: "stats",
  summary:
    "counter increments from 8 processes through StatsWriter (embedded server, memcached) vs SQLite " +
    "UPDATE n = n + 1; the collector storing 10,000 names × 60 buckets",
  options: [
    `  --json                  print one JSON object with every figure as the last line`,
    `  --seconds N             seconds of incrementing per run (default ${DEFAULT_SECONDS})`,
    `  --procs N               incrementing processes (default ${DEFAULT_PROCS})`,
    `  --inflight N            increments in flight per memipc process (default ${DEFAULT_INFLIGHT})`,
    `  --names N               counter names the increments are spread over (default ${DEFAULT_NAMES})`,
    `  --collect-names N       counters per bucket in the collect runs (default ${DEFAULT_COLLECT_NAMES})`,
    `  --collect-buckets N     buckets collected in the collect runs (default ${DEFAULT_COLLECT_BUCKETS})`,
    `  --memcached-threads N   memcached's -t (default ${DEFAULT_MEMCACHED_THREADS})`,
    `  --collector-timeout MS  the collector's client timeout per request (default ${DEFAULT_TIMEOUT}, the`,
    `                          client's default, which \`memipc collect\` uses)`,
    `  --only A,B              only these runs: ${RUN_IDS.join(", ")}`,
    `  --cpu-prof DIR          write V8 CPU profiles of the first memipc incrementer, the collector and the`,
    `                          embedded server to DIR (node --cpu-prof)`,
    "",
    `Needs memcached on PATH (or $MEMCACHED_BIN): ${INSTALL_HINT}`,
  ].join("\n"),
  run: runStatsScenario,
};

const OPTION_SPEC = {
  ...workerScenarioFlags({
    seconds: DEFAULT_SECONDS,
    procs: DEFAULT_PROCS,
    inflight: DEFAULT_INFLIGHT,
    memcachedThreads: DEFAULT_MEMCACHED_THREADS,
  }),
  names: { type: "string", default: String(DEFAULT_NAMES) },
  "collect-names": { type: "string", default: String(DEFAULT_COLLECT_NAMES) },
  "collect-buckets": { type: "string", default: String(DEFAULT_COLLECT_BUCKETS) },
  "collector-timeout": { type: "string", default: String(DEFAULT_TIMEOUT) },
} as const;

function parseOptions(args: readonly string[]): Options {
  const values = parseScenarioArgs(args, OPTION_SPEC, "stats");
  return {
    ...workerScenarioOptions(values, RUN_IDS),
    names: wholeNumber(values.names, "--names", 1, 100_000),
    // An index lists every name of its bucket in one value, which memcached keeps under 1 MiB.
    collectNames: wholeNumber(values["collect-names"], "--collect-names", 1, 40_000),
    collectBuckets: wholeNumber(values["collect-buckets"], "--collect-buckets", 1, 1440),
    collectorTimeout: wholeNumber(values["collector-timeout"], "--collector-timeout", 1, 3_600_000),
  };
}

/** `count` counter names as a site would have them: dotted, of similar length. */
function counterNames(count: number, prefix: string): string[] {
  const digits = String(count - 1).length;
  return Array.from({ length: count }, (_, i) => `${prefix}.${String(i).padStart(digits, "0")}`);
}

// ---- worker processes -----------------------------------------------------------------------------------

interface WorkerMessage {
  type: string;
  message?: string;
}

type Worker = WorkerProcess<WorkerMessage>;

/** A worker process of bench/stats-worker.ts, given its configuration as its one argument. */
function statsWorker(label: string, config: WorkerConfig, profileDir: string | undefined): Worker {
  return nodeWorker<WorkerMessage>("stats-worker", label, config, profileDir);
}

// ---- servers --------------------------------------------------------------------------------------------

function serverTarget(context: RunContext, server: Server, id: RunId): Target {
  return server === "embedded"
    ? embeddedTarget(context.options.cpuProf, id, MEMORY_MB)
    : memcachedTarget(
        "memcached",
        "memcached",
        context.memcached,
        context.options.memcachedThreads,
        MEMORY_MB,
      );
}

/** Where a run's counters go: a namespace of its own, so that no run counts another's keys. */
function runAddress(id: RunId): StatsAddress {
  return { namespace: `bench${process.pid}${id.replace(/_/g, "")}`, bucketSeconds: BUCKET_SECONDS };
}

// ---- increments -----------------------------------------------------------------------------------------

interface RunContext {
  options: Options;
  memcached: string;
  dir: string;
}

/** What an increments run measured. */
interface IncrementsResult {
  kind: "increments";
  id: RunId;
  /** Increments acknowledged per second, from "go" until the last process finished. */
  perSecond: number;
  increments: number;
  seconds: number;
  p50Us: number;
  p99Us: number;
  /** CPU seconds of all incrementing processes, and of the server (memipc runs). */
  cpu: { workers: number; server: number | undefined };
  /** What the store holds afterwards (the sum of the counters), to compare with `increments`. */
  counted: number;
}

/** Starts the workers, waits until all are ready, says "go" and collects their "done". */
async function incrementOnGo(
  workers: Worker[],
  latencyFiles: string[],
  names: readonly string[],
): Promise<{ seconds: number; done: IncrementsDone[]; latencies: Float64Array; perName: number[] }> {
  const ran = await goAndCollect<WorkerMessage, IncrementsDone>(workers, READY_TIMEOUT_MS, DONE_TIMEOUT_MS);
  const done = ran.dones;
  const errors = done.reduce((sum, d) => sum + d.errors, 0);
  if (errors > 0) {
    const first = done.find((d) => d.firstError !== undefined)?.firstError;
    throw new Error(`${errors} increments failed, the first with: ${first}`);
  }
  const perName = new Array<number>(names.length).fill(0);
  for (const d of done) d.perName.forEach((n, i) => (perName[i]! += n));
  const seconds = (ran.finishedAt - ran.startedAt) / 1000;
  return { seconds, done, latencies: readLatencies(latencyFiles), perName };
}

/** Throws unless the store's count of every name equals the increments the workers had acknowledged. */
function checkCounts(
  id: RunId,
  names: readonly string[],
  reported: number[],
  stored: Map<string, number>,
): number {
  let counted = 0;
  const wrong: string[] = [];
  for (const [i, name] of names.entries()) {
    const found = stored.get(name) ?? 0;
    counted += found;
    if (found !== reported[i]) wrong.push(`${name}: ${found} stored, ${reported[i]} acknowledged`);
  }
  for (const name of stored.keys())
    if (!names.includes(name)) wrong.push(`${name}: stored, never incremented`);
  if (wrong.length > 0) {
    throw new Error(
      `${id}: the store does not hold what the workers counted (${wrong.length} names differ; ` +
        `${wrong.slice(0, 3).join("; ")})`,
    );
  }
  return counted;
}

/**
 * The sum per name of every counter in the buckets from `fromMs` to `toMs`, read as the collector would:
 * each bucket's index, then its counters.
 */
async function countersInMemcached(
  client: Client,
  address: StatsAddress,
  fromMs: number,
  toMs: number,
): Promise<Map<string, number>> {
  const sums = new Map<string, number>();
  for (
    let start = bucketStart(address, fromMs);
    start <= bucketStart(address, toMs);
    start += address.bucketSeconds
  ) {
    const index = await client.get(indexKey(address, start));
    if (index === undefined) continue;
    const names = [...(parseIndex(index.value.toString("latin1")).get("c") ?? [])];
    const values = await client.getMany(names.map((name) => counterKey(address, start, name)));
    names.forEach((name, i) => {
      const value = values[i];
      if (value !== undefined)
        sums.set(name, (sums.get(name) ?? 0) + Number(value.toString("latin1").trim()));
    });
  }
  return sums;
}

/** `procs` StatsWriter processes counting into a fresh server for `seconds`; the counters are then checked. */
async function runIncrMemipc(context: RunContext, id: RunId, server: Server): Promise<IncrementsResult> {
  const { options, dir } = context;
  const running = await startTarget(serverTarget(context, server, id));
  const address = runAddress(id);
  const names = counterNames(options.names, "site.event");
  const workers: Worker[] = [];
  try {
    const files = startWorkers(workers, options.procs, dir, id, (i, latencies) => {
      const config: WorkerConfig = {
        role: "memipc",
        port: running.port,
        namespace: address.namespace,
        bucketSeconds: address.bucketSeconds,
        inflight: options.inflight,
        names,
        seconds: options.seconds,
        seed: 0x9e3779b9 ^ (i + 1),
        latencies,
      };
      return statsWorker(`${id} incrementer ${i}`, config, i === 0 ? options.cpuProf : undefined);
    });
    const from = Date.now();
    const serverCpu = cpuSince(running.pid);
    const run = await incrementOnGo(workers, files, names);
    const serverCpuSeconds = serverCpu();
    const to = Date.now();
    checkAlive(running);
    const client = new Client({ servers: `${HOST}:${running.port}` });
    let stored: Map<string, number>;
    try {
      stored = await countersInMemcached(client, address, from, to);
    } finally {
      client.close();
    }
    return incrementsResult(id, run, serverCpuSeconds, checkCounts(id, names, run.perName, stored));
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
    await running.stop();
  }
}

/** `procs` processes each running `UPDATE counters SET n = n + 1 WHERE name = ?` in one shared database. */
async function runIncrSqlite(context: RunContext, id: RunId): Promise<IncrementsResult> {
  const { options, dir } = context;
  const path = join(dir, `${id}.db`);
  const names = counterNames(options.names, "site.event");
  const setup = new Database(path);
  setup.pragma("journal_mode = WAL");
  setup.exec("CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL)");
  const insert = setup.prepare("INSERT INTO counters (name, n) VALUES (?, 0)");
  setup.transaction(() => names.forEach((name) => insert.run(name)))();
  setup.close();
  const workers: Worker[] = [];
  try {
    const files = startWorkers(workers, options.procs, dir, id, (i, latencies) => {
      const config: WorkerConfig = {
        role: "sqlite",
        path,
        names,
        seconds: options.seconds,
        seed: 0x9e3779b9 ^ (i + 1),
        latencies,
      };
      return statsWorker(`${id} incrementer ${i}`, config, undefined);
    });
    const run = await incrementOnGo(workers, files, names);
    const check = new Database(path, { readonly: true });
    const rows = check.prepare("SELECT name, n FROM counters").all() as { name: string; n: number }[];
    check.close();
    const stored = new Map(rows.filter((row) => row.n > 0).map((row) => [row.name, row.n]));
    return incrementsResult(id, run, undefined, checkCounts(id, names, run.perName, stored));
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
  }
}

function incrementsResult(
  id: RunId,
  run: Awaited<ReturnType<typeof incrementOnGo>>,
  serverCpu: number | undefined,
  counted: number,
): IncrementsResult {
  const increments = run.done.reduce((sum, d) => sum + d.count, 0);
  return {
    kind: "increments",
    id,
    perSecond: increments / run.seconds,
    increments,
    seconds: run.seconds,
    p50Us: quantile(run.latencies, 0.5),
    p99Us: quantile(run.latencies, 0.99),
    cpu: { workers: run.done.reduce((sum, d) => sum + d.cpuSeconds, 0), server: serverCpu },
    counted,
  };
}

// ---- collect --------------------------------------------------------------------------------------------

/** What a collect run measured. */
interface CollectResult {
  kind: "collect";
  id: RunId;
  /** Counters put into memcached before the collector ran, and how long that took. */
  filled: number;
  fillSeconds: number;
  /** The collector's collectOnce(): its wall time and what it reported. */
  seconds: number;
  buckets: number;
  values: number;
  cpu: { collector: number; server: number | undefined };
  /** Rows found in the database with the value that was filled in. */
  rowsOk: number;
}

/** The value filled into counter `n` of bucket `b`: different for every counter, easy to check. */
function filledValue(n: number, b: number): number {
  return 1 + ((n * 7919 + b * 104_729) % 1_000_000);
}

/**
 * Lays out `names` × `buckets` counters the way StatsWriter leaves them (a counter key per name and bucket,
 * the bucket's index listing ` c:<name>` once per name), with quiet add-mode meta sets, several in flight.
 */
async function fill(
  client: Client,
  address: StatsAddress,
  names: readonly string[],
  starts: readonly number[],
): Promise<void> {
  const items: { key: string; value: string }[] = [];
  for (const [b, start] of starts.entries()) {
    for (const [n, name] of names.entries()) {
      items.push({ key: counterKey(address, start, name), value: String(filledValue(n, b)) });
    }
  }
  let next = 0;
  const sender = async (): Promise<void> => {
    while (next < items.length) {
      const chunk = items.slice(next, (next += FILL_CHUNK));
      const stored = await client.addMulti(chunk, { ttl: DEFAULT_BUCKET_TTL });
      if (stored.includes(false)) throw new Error("a filled counter existed already");
    }
  };
  await Promise.all(Array.from({ length: FILL_IN_FLIGHT }, sender));
  const index = names.map((name) => ` c:${name}`).join("");
  for (const start of starts) {
    if (!(await client.set(indexKey(address, start), index, { ttl: DEFAULT_BUCKET_TTL }))) {
      throw new Error(`the index of bucket ${start} was not stored`);
    }
  }
}

/**
 * Fills a fresh server with `collectNames` × `collectBuckets` counters, then times one collectOnce() of a
 * collector (its own process) into a fresh SQLite file whose clock puts exactly those buckets behind it, and
 * checks every row.
 */
async function runCollect(context: RunContext, id: RunId, server: Server): Promise<CollectResult> {
  const { options, dir } = context;
  const running = await startTarget(serverTarget(context, server, id));
  const address = runAddress(id);
  const names = counterNames(options.collectNames, "site.counter");
  const size = address.bucketSeconds;
  // The buckets just before the current one; the collector's clock is half a bucket after the last one ends.
  const first = bucketStart(address, Date.now()) - options.collectBuckets * size;
  const starts = Array.from({ length: options.collectBuckets }, (_, b) => first + b * size);
  const now = (first + options.collectBuckets * size + size / 2) * 1000;
  const dbFile = join(dir, `${id}.db`);
  let collector: Worker | undefined;
  try {
    const client = new Client({ servers: `${HOST}:${running.port}`, timeout: FILL_TIMEOUT_MS });
    const fillStarted = performance.now();
    try {
      await fill(client, address, names, starts);
    } finally {
      client.close();
    }
    const fillSeconds = (performance.now() - fillStarted) / 1000;
    const filled = names.length * starts.length;
    progress(`  filled ${formatRate(filled)} counters in ${fillSeconds.toFixed(2)} s`);
    collector = statsWorker(
      `${id} collector`,
      {
        role: "collector",
        port: running.port,
        namespace: address.namespace,
        bucketSeconds: size,
        db: dbFile,
        now,
        // One bucket more than was filled: the collector looks at it, finds no index and stores nothing.
        lookback: (options.collectBuckets + 1) * size,
        timeout: options.collectorTimeout,
      },
      options.cpuProf,
    );
    await collector.expect("ready", READY_TIMEOUT_MS);
    const serverCpu = cpuSince(running.pid);
    collector.send({ type: "go" });
    const done = await collector.expect<CollectDone>("done", DONE_TIMEOUT_MS);
    const serverCpuSeconds = serverCpu();
    await collector.stop();
    checkAlive(running);
    const rowsOk = checkCollected(id, dbFile, names, starts);
    if (done.buckets !== starts.length || done.values !== filled) {
      throw new Error(
        `${id}: the collector reported ${done.buckets} buckets and ${done.values} values, ` +
          `expected ${starts.length} and ${filled}`,
      );
    }
    return {
      kind: "collect",
      id,
      filled,
      fillSeconds,
      seconds: done.seconds,
      buckets: done.buckets,
      values: done.values,
      cpu: { collector: done.cpuSeconds, server: serverCpuSeconds },
      rowsOk,
    };
  } finally {
    await collector?.stop();
    await running.stop();
  }
}

/** Throws unless the database holds one row per name and bucket with the filled value; returns the rows. */
function checkCollected(
  id: RunId,
  file: string,
  names: readonly string[],
  starts: readonly number[],
): number {
  const db = StatsDb.open(file, { readonly: true });
  let rows;
  try {
    rows = db.counters(starts[0]!, starts[starts.length - 1]! + BUCKET_SECONDS);
  } finally {
    db.close();
  }
  const nameIndex = new Map(names.map((name, n) => [name, n]));
  const size = starts.length > 1 ? starts[1]! - starts[0]! : BUCKET_SECONDS;
  let ok = 0;
  const wrong: string[] = [];
  for (const row of rows) {
    const n = nameIndex.get(row.name);
    const b = (row.start - starts[0]!) / size;
    if (n !== undefined && Number.isInteger(b) && row.value === filledValue(n, b)) ok++;
    else if (wrong.length < 3) wrong.push(`${row.name} @ ${row.start} = ${row.value}`);
  }
  const expected = names.length * starts.length;
  if (ok !== expected || rows.length !== expected) {
    throw new Error(
      `${id}: the database holds ${rows.length} counter rows, ${ok} of them right, expected ${expected}` +
        (wrong.length > 0 ? ` (wrong: ${wrong.join("; ")})` : ""),
    );
  }
  return ok;
}

// ---- the scenario ---------------------------------------------------------------------------------------

type Result = IncrementsResult | CollectResult;

const RUNS: Record<RunId, ScenarioRun<RunContext, Result>> = {
  incr_embedded: {
    label: "StatsWriter.incr into the embedded server",
    run: (c) => runIncrMemipc(c, "incr_embedded", "embedded"),
  },
  incr_memcached: {
    label: "StatsWriter.incr into real memcached",
    run: (c) => runIncrMemipc(c, "incr_memcached", "memcached"),
  },
  incr_sqlite: {
    label: "SQLite UPDATE counters SET n = n + 1, one per event, autocommit, WAL, synchronous=NORMAL",
    run: (c) => runIncrSqlite(c, "incr_sqlite"),
  },
  collect_embedded: {
    label: "collectOnce() from the embedded server into SQLite",
    run: (c) => runCollect(c, "collect_embedded", "embedded"),
  },
  collect_memcached: {
    label: "collectOnce() from real memcached into SQLite",
    run: (c) => runCollect(c, "collect_memcached", "memcached"),
  },
};

async function runStatsScenario(args: readonly string[]): Promise<void> {
  const options = parseOptions(args);
  const ids = RUN_IDS.filter((id) => options.only === undefined || options.only.has(id));
  let memcached = "";
  if (ids.some((id) => id.endsWith("_memcached"))) {
    const found = findExecutable("MEMCACHED_BIN", ["memcached"]);
    if (found === undefined) {
      throw new Error(
        `memcached not found on PATH (or $MEMCACHED_BIN): the *_memcached runs use real memcached; ` +
          `install it with: ${INSTALL_HINT}, or leave them out with --only`,
      );
    }
    memcached = found;
  }
  workerScript("stats-worker");
  await withScenarioDir("stats", async (dir, loadAtStart) => {
    progress(
      `stats: Node.js ${process.version}; ${options.procs} incrementing processes (memipc: ${options.inflight} ` +
        `increments in flight each), ${options.names} names, ${options.seconds} s per run; collect: ` +
        `${formatRate(options.collectNames)} names × ${options.collectBuckets} buckets; files in ${dir}` +
        (memcached ? `; ${versionOf(memcached, "-V")} (-t ${options.memcachedThreads})` : ""),
    );
    // A failed run (a count that does not add up, a collector error) is reported with the others, and the
    // scenario fails at the end.
    const failures = new Map<RunId, string>();
    const results = await runEach(ids, RUNS, { options, memcached, dir }, describe, failures);
    console.log(renderTables(results, failures, options));
    if (options.json) console.log(JSON.stringify(toJson(results, failures, options, loadAtStart)));
    if (failures.size > 0) {
      throw new Error(`${[...failures.keys()].join(", ")} failed; see above`);
    }
  });
}

function describe(result: Result): string {
  if (result.kind === "increments") {
    return (
      `${formatRate(result.perSecond)} increments/s (${formatRate(result.increments)} in ${result.seconds.toFixed(2)} s), ` +
      `p50 ${formatUs(result.p50Us)} µs, p99 ${formatUs(result.p99Us)} µs; counted ${formatRate(result.counted)}; ` +
      `CPU s workers/server ${result.cpu.workers.toFixed(1)} / ${result.cpu.server?.toFixed(1) ?? "-"}`
    );
  }
  return (
    `${formatRate(result.values)} values in ${result.buckets} buckets collected in ${result.seconds.toFixed(2)} s ` +
    `(${formatRate(result.values / result.seconds)} values/s); ${formatRate(result.rowsOk)} rows right; ` +
    `CPU s collector/server ${result.cpu.collector.toFixed(1)} / ${result.cpu.server?.toFixed(1) ?? "-"}`
  );
}

// ---- the report -----------------------------------------------------------------------------------------

function incrementsOf(results: Map<RunId, Result>, id: RunId): IncrementsResult | undefined {
  const result = results.get(id);
  return result?.kind === "increments" ? result : undefined;
}

function collectOf(results: Map<RunId, Result>, id: RunId): CollectResult | undefined {
  const result = results.get(id);
  return result?.kind === "collect" ? result : undefined;
}

function renderTables(results: Map<RunId, Result>, failures: Map<RunId, string>, options: Options): string {
  const lines: string[] = [""];
  const sqlite = incrementsOf(results, "incr_sqlite");
  const incrementRows = (["incr_embedded", "incr_memcached", "incr_sqlite"] as const)
    .map((id) => incrementsOf(results, id))
    .filter((r): r is IncrementsResult => r !== undefined)
    .map((r) => [
      r.id,
      formatRate(r.perSecond),
      formatUs(r.p50Us),
      formatUs(r.p99Us),
      sqlite === undefined || r.id === "incr_sqlite" ? "" : ratio(r.perSecond, sqlite.perSecond).toFixed(2),
      `${cpuPercent(r.cpu.workers, r.seconds)} / ${cpuPercent(r.cpu.server, r.seconds)}`,
      r.counted === r.increments ? "ok" : `${formatRate(r.counted)} ≠ ${formatRate(r.increments)}`,
    ]);
  pushTable(
    lines,
    [
      "run",
      "increments/s",
      "incr p50 µs",
      "incr p99 µs",
      "ratio this/incr_sqlite",
      "CPU % workers / server",
      "counts",
    ],
    incrementRows,
  );
  const collectRows = (["collect_embedded", "collect_memcached"] as const)
    .map((id) => collectOf(results, id))
    .filter((r): r is CollectResult => r !== undefined)
    .map((r) => [
      r.id,
      formatRate(r.values),
      String(r.buckets),
      r.seconds.toFixed(2),
      formatRate(r.values / r.seconds),
      `${cpuPercent(r.cpu.collector, r.seconds)} / ${cpuPercent(r.cpu.server, r.seconds)}`,
      formatRate(r.filled / r.fillSeconds),
      r.rowsOk === r.filled ? "ok" : `${formatRate(r.rowsOk)} ≠ ${formatRate(r.filled)}`,
    ]);
  pushTable(
    lines,
    [
      "run",
      "values",
      "buckets",
      "collect s",
      "values/s",
      "CPU % collector / server",
      "fill values/s",
      "rows",
    ],
    collectRows,
  );
  pushGoalTable(lines, goalRows(results, failures, options));
  for (const [id, message] of failures) lines.push(`${id} FAILED: ${message}`, "");
  lines.push(
    `  ${options.procs} incrementing processes, ${options.seconds} s each run, each increment on one of ` +
      `${options.names} names picked uniformly at random`,
    `  memipc: ${options.inflight} callers per process, each awaiting StatsWriter.incr(name) in a loop; the ` +
      "writer sums a tick's increments per key and sends them as one quiet `ma … q` batch closed by `mn`",
    "  SQLite: one prepared UPDATE per increment, its own transaction; one at a time per process (synchronous)",
    "  increments/s: acknowledged increments over the time from the start until the last process finished",
    `  collect: ${formatRate(options.collectNames)} counters × ${options.collectBuckets} buckets filled in as ` +
      "StatsWriter lays them out, then one collectOnce() (its own process) into a fresh SQLite file",
    "  CPU %: CPU time over the run's wall time, 100 % = one core; counts / rows: checked against the store",
  );
  return lines.join("\n");
}

function goalRows(results: Map<RunId, Result>, failures: Map<RunId, string>, options: Options): GoalRow[] {
  const rows: GoalRow[] = [];
  const judge = (value: number | undefined, goal: number, atMost: boolean, ran: RunId[]): string => {
    if (ran.some((id) => failures.has(id))) return "failed: not met";
    if (value === undefined) return "-";
    const shown = round(value, 2);
    return `${shown.toFixed(2)}: ${(atMost ? shown <= goal : shown >= goal) ? "met" : "not met"}`;
  };
  const attempted = (id: RunId) => results.has(id) || failures.has(id);
  if (attempted("incr_sqlite")) {
    const sqlite = incrementsOf(results, "incr_sqlite");
    const versus = (server: Server) => {
      const ours = incrementsOf(results, `incr_${server}`);
      return ours === undefined || sqlite === undefined ? undefined : ratio(ours.perSecond, sqlite.perSecond);
    };
    rows.push({
      key: "ratio_vs_sqlite",
      label: `≥ ${GOAL.vsSqlite}× SQLite increments/s`,
      embedded: judge(versus("embedded"), GOAL.vsSqlite, false, ["incr_embedded", "incr_sqlite"]),
      memcached: judge(versus("memcached"), GOAL.vsSqlite, false, ["incr_memcached", "incr_sqlite"]),
    });
  }
  if (attempted("collect_embedded") || attempted("collect_memcached")) {
    const collectSeconds = (server: Server) => collectOf(results, `collect_${server}`)?.seconds;
    rows.push({
      key: "collect_seconds",
      label: `collect ${formatRate(options.collectNames * options.collectBuckets)} values ≤ ${GOAL.collectSeconds} s`,
      embedded: judge(collectSeconds("embedded"), GOAL.collectSeconds, true, ["collect_embedded"]),
      memcached: judge(collectSeconds("memcached"), GOAL.collectSeconds, true, ["collect_memcached"]),
    });
  }
  return rows;
}

function toJson(
  results: Map<RunId, Result>,
  failures: Map<RunId, string>,
  options: Options,
  loadAtStart: number,
): Record<string, unknown> {
  const json: Record<string, unknown> = {
    scenario: "stats",
    seconds: options.seconds,
    procs: options.procs,
    inflight: options.inflight,
    names: options.names,
    collect_names: options.collectNames,
    collect_buckets: options.collectBuckets,
    memcached_threads: options.memcachedThreads,
    collector_timeout_ms: options.collectorTimeout,
    load_average_at_start: round(loadAtStart, 2),
  };
  for (const [id, r] of results) {
    if (r.kind === "increments") {
      json[`${id}_increments_per_s`] = Math.round(r.perSecond);
      json[`${id}_increments`] = r.increments;
      json[`${id}_seconds`] = round(r.seconds, 3);
      json[`${id}_p50_us`] = round(r.p50Us, 1);
      json[`${id}_p99_us`] = round(r.p99Us, 1);
      json[`${id}_counted`] = r.counted;
      json[`${id}_counts_ok`] = r.counted === r.increments;
      json[`${id}_workers_cpu_percent`] = cpuPercentJson(r.cpu.workers, r.seconds);
      json[`${id}_server_cpu_percent`] = cpuPercentJson(r.cpu.server, r.seconds);
    } else {
      json[`${id}_values`] = r.values;
      json[`${id}_buckets`] = r.buckets;
      json[`${id}_seconds`] = round(r.seconds, 3);
      json[`${id}_values_per_s`] = Math.round(r.values / r.seconds);
      json[`${id}_rows_ok`] = r.rowsOk === r.filled;
      json[`${id}_collector_cpu_percent`] = cpuPercentJson(r.cpu.collector, r.seconds);
      json[`${id}_server_cpu_percent`] = cpuPercentJson(r.cpu.server, r.seconds);
      json[`${id}_fill_values_per_s`] = Math.round(r.filled / r.fillSeconds);
    }
  }
  const sqlite = incrementsOf(results, "incr_sqlite");
  if (sqlite !== undefined) {
    // Through the embedded server the ratio is "ratio_vs_sqlite"; through real memcached it carries its name.
    const embedded = incrementsOf(results, "incr_embedded");
    const memcached = incrementsOf(results, "incr_memcached");
    if (embedded) json.ratio_vs_sqlite = round(ratio(embedded.perSecond, sqlite.perSecond), 3);
    if (memcached) json.ratio_memcached_vs_sqlite = round(ratio(memcached.perSecond, sqlite.perSecond), 3);
  }
  for (const [id, message] of failures) json[`${id}_error`] = message;
  addGoalJson(json, goalRows(results, failures, options));
  return json;
}
