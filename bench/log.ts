// Scenario "log": the site log end to end (producer processes → memcached → drainer → file, fsync per batch)
// against the original idiom done naively and what it replaced or would be replaced by: one shared file under
// flock, SQLite, Redis Streams; then the append latency at an offered load, and how fast a backlog drains.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  HOST,
  answersLine,
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
import type { WorkerConfig } from "./log-worker.js";
import type { Scenario } from "./main.js";

export const DEFAULT_SECONDS = 5; // seconds of producing per run
export const DEFAULT_PROCS = 8; // producer processes, as web processes on one machine
export const DEFAULT_INFLIGHT = 64; // appends in flight per process, as requests at once in a busy web process
export const DEFAULT_RATE = 50_000; // entries/s offered in total in the latency runs
export const DEFAULT_BACKLOG = 1_000_000; // entries produced before the drainer starts, in the catch-up runs
export const DEFAULT_MEMCACHED_THREADS = 2; // memcached's -t: one worker per core on the 2-core reference machine
const ENTRY_BYTES = 100; // every producer appends the same 100-byte line
const MEMORY_MB = 4096; // item memory (memcached -m, memipc --memory): a whole backlog fits, nothing is evicted
const READY_TIMEOUT_MS = 30_000; // a worker must connect (and a drainer take over) within this
const DRAIN_TIMEOUT_MS = 300_000; // the drainer must reach the produced count within this after the producers
const INSTALL_HINT = "apt-get install -y memcached redis-server python3";

/** The goals, for the goal table and the JSON. */
const GOAL = {
  entriesPerSecond: 150_000,
  vsNaive: 10,
  vsFlockFsync: 30,
  vsFlock: 1.5,
  vsSqlite: 5,
  vsRedis: 1,
  offeredP99Us: 2000,
  catchUpPerSecond: 500_000,
} as const;

/** A 100-byte access-log line. */
const LINE =
  '10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "GET /catalog/item/12345 HTTP/1.1" 200 5120 "-" "bench"'
    .padEnd(ENTRY_BYTES, "-")
    .slice(0, ENTRY_BYTES);

// The flock baseline's writer. Node.js has no flock(2) and a native addon only for a baseline is not worth
// its build, so each writer is a small Python process (fcntl.flock is flock(2)): the idiom measured is the
// shared file under an exclusive lock, not the language. Same protocol as bench/log-worker.ts.
const FLOCK_WRITER = `
import array, fcntl, json, os, sys, time
config = json.loads(sys.argv[1])
line = (config["line"] + "\\n").encode()
fd = os.open(config["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
latencies = array.array("d")
print(json.dumps({"type": "ready"}), flush=True)
sys.stdin.readline()
clock = time.perf_counter
started = clock()
deadline = started + config["seconds"]
count = 0
cpu = time.process_time()
while True:
    t = clock()
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, line)
    if config["fsync"]:
        os.fdatasync(fd)
    fcntl.flock(fd, fcntl.LOCK_UN)
    end = clock()
    latencies.append((end - t) * 1e6)
    count += 1
    if end >= deadline:
        break
with open(config["latencies"], "wb") as out:
    latencies.tofile(out)
print(json.dumps({"type": "done", "count": count, "errors": 0, "seconds": clock() - started,
                  "cpuSeconds": time.process_time() - cpu}), flush=True)
`;

interface Options extends WorkerScenarioOptions<RunId> {
  rate: number;
  backlog: number;
}

/** The runs with producers appending as fast as they can. */
const SATURATED_IDS = [
  "memipc_embedded",
  "memipc_memcached",
  "naive_idiom",
  "flock_fsync",
  "flock",
  "sqlite",
  "redis_xadd",
  "redis_xadd_everysec",
] as const;

const RUN_IDS = [
  ...SATURATED_IDS,
  "offered_embedded",
  "offered_memcached",
  "catchup_embedded",
  "catchup_memcached",
] as const;
type RunId = (typeof RUN_IDS)[number];

export const logScenario: Scenario = {
  name: "log",
  summary:
    "the site log end to end (8 producer processes → memcached → drainer → file, fsync per batch) vs the naive " +
    "idiom, flock on a shared file, SQLite, Redis XADD; latency at 50,000 entries/s; drain catch-up",
  options: [
    `  --json                  print one JSON object with every figure as the last line`,
    `  --seconds N             seconds of producing per run (default ${DEFAULT_SECONDS})`,
    `  --procs N               producer processes (default ${DEFAULT_PROCS})`,
    `  --inflight N            appends in flight per process, memipc and Redis (default ${DEFAULT_INFLIGHT})`,
    `  --rate N                entries/s offered in total in the offered_* runs (default ${DEFAULT_RATE})`,
    `  --backlog N             entries drained in the catchup_* runs (default ${DEFAULT_BACKLOG})`,
    `  --memcached-threads N   memcached's -t (default ${DEFAULT_MEMCACHED_THREADS})`,
    `  --only A,B              only these runs: ${RUN_IDS.join(", ")}`,
    `  --cpu-prof DIR          write V8 CPU profiles of the memipc runs' drainer, first producer and`,
    `                          embedded server to DIR (node --cpu-prof)`,
    "",
    `Needs memcached, redis-server and python3 on PATH (or $MEMCACHED_BIN, $REDIS_SERVER_BIN, $PYTHON_BIN):`,
    `  ${INSTALL_HINT}`,
  ].join("\n"),
  run: runLogScenario,
};

const OPTION_SPEC = {
  ...workerScenarioFlags({
    seconds: DEFAULT_SECONDS,
    procs: DEFAULT_PROCS,
    inflight: DEFAULT_INFLIGHT,
    memcachedThreads: DEFAULT_MEMCACHED_THREADS,
  }),
  rate: { type: "string", default: String(DEFAULT_RATE) },
  backlog: { type: "string", default: String(DEFAULT_BACKLOG) },
} as const;

function parseOptions(args: readonly string[]): Options {
  const values = parseScenarioArgs(args, OPTION_SPEC, "log");
  return {
    ...workerScenarioOptions(values, RUN_IDS),
    rate: wholeNumber(values.rate, "--rate", 1, 10_000_000),
    backlog: wholeNumber(values.backlog, "--backlog", 1, 100_000_000),
  };
}

// ---- worker processes -----------------------------------------------------------------------------------

interface WorkerMessage {
  type: string;
  count?: number;
  errors?: number;
  firstError?: string;
  seconds?: number;
  cpuSeconds?: number;
  entries?: number;
  gaps?: number;
  late?: number;
  message?: string;
}

/** A process of bench/log-worker.ts, given its configuration as its one argument. */
function logWorker(label: string, config: WorkerConfig, profileDir?: string): Worker {
  return nodeWorker<WorkerMessage>("log-worker", label, config, profileDir);
}

type Worker = WorkerProcess<WorkerMessage>;

// ---- servers --------------------------------------------------------------------------------------------

interface Tools {
  memcached: string;
  redis: string;
  python: string;
}

function embedded(options: Options, id: RunId): Target {
  return embeddedTarget(options.cpuProf, id, MEMORY_MB);
}

function memcached(tools: Tools, options: Options): Target {
  return memcachedTarget("memcached", "memcached", tools.memcached, options.memcachedThreads, MEMORY_MB);
}

/** Debian's redis-server with an append-only file: fsync before each reply (`always`) or once a second. */
function redisTarget(binary: string, dir: string, appendfsync: "always" | "everysec"): Target {
  return {
    id: `redis_${appendfsync}`,
    label: `redis-server (appendfsync ${appendfsync})`,
    command: (port) => ({
      file: binary,
      args: [
        "--port",
        String(port),
        "--bind",
        HOST,
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync,
        "--daemonize",
        "no",
      ],
    }),
    answers: (port) => answersLine(port, "PING\r\n", "+PONG"),
  };
}

// ---- one run --------------------------------------------------------------------------------------------

/** What one run measured. */
interface Result {
  id: RunId;
  /** Entries made durable (or, for baselines without a drainer, acknowledged) per second, from the start. */
  entriesPerSecond: number;
  /** Entries acknowledged to the producers per second, over the producing time. */
  ackedPerSecond: number;
  entries: number;
  errors: number;
  p50Us: number;
  p99Us: number;
  /** Seconds from "go" until the last entry was durable. */
  seconds: number;
  /** CPU seconds over the run: all producers, the server, the drainer. */
  cpu: { producers: number; server: number | undefined; drainer: number | undefined };
  /** What the output holds (lines, rows, stream length), to compare with `entries`. */
  output: number | undefined;
  gaps: number;
  /** Offered-load runs: entries/s asked for. */
  offered?: number;
  /** Catch-up runs: how fast the backlog was produced. */
  fillPerSecond?: number;
}

interface RunContext {
  options: Options;
  tools: Tools;
  dir: string;
}

/** Starts `workers`, waits until all are ready, says "go" and collects their "done". */
async function produce(
  workers: Worker[],
  latencyFiles: string[],
): Promise<{
  startedAt: number;
  finishedAt: number;
  entries: number;
  errors: number;
  producerSeconds: number;
  cpu: number;
  latencies: Float64Array;
}> {
  const { startedAt, finishedAt, dones } = await goAndCollect(workers, READY_TIMEOUT_MS, DRAIN_TIMEOUT_MS);
  const errors = dones.reduce((sum, done) => sum + (done.errors ?? 0), 0);
  const firstError = dones.find((done) => done.firstError !== undefined)?.firstError;
  if (errors > 0) progress(`  ${errors} appends failed, the first with: ${firstError}`);
  return {
    startedAt,
    finishedAt,
    entries: dones.reduce((sum, done) => sum + (done.count ?? 0), 0),
    errors,
    producerSeconds: Math.max(...dones.map((done) => done.seconds ?? 0)),
    cpu: dones.reduce((sum, done) => sum + (done.cpuSeconds ?? 0), 0),
    latencies: readLatencies(latencyFiles),
  };
}

/**
 * memipc end to end: a server, the drainer (draining from the start), `procs` producers; the time runs from
 * "go" until the drainer's durable output holds every acknowledged entry.
 */
async function runMemipc(
  context: RunContext,
  id: RunId,
  target: Target,
  settings: { rate: number; layout: "default" | "seed"; naive: boolean },
): Promise<Result> {
  const { options, dir } = context;
  const profile = options.cpuProf;
  const server = await startTarget(target);
  const stream = "bench";
  const sinkDir = join(dir, `${id}-sink`);
  const workers: Worker[] = [];
  let drainer: Worker | undefined;
  try {
    drainer = logWorker(
      `${id} drainer`,
      { role: "drainer", port: server.port, stream, layout: settings.layout, dir: sinkDir, startOnGo: false },
      profile,
    );
    await drainer.expect("ready", READY_TIMEOUT_MS);
    const files = startWorkers(workers, options.procs, dir, id, (i, latencies) => {
      const common = { port: server.port, line: LINE, latencies, seconds: options.seconds };
      const config: WorkerConfig = settings.naive
        ? { role: "naive", ...common }
        : {
            role: "memipc",
            ...common,
            stream,
            node: `web-${i}`,
            inflight: options.inflight,
            rate: settings.rate / options.procs,
          };
      return logWorker(`${id} producer ${i}`, config, i === 0 ? profile : undefined);
    });
    const serverCpu = cpuSince(server.pid);
    const produced = await produce(workers, files);
    drainer.send({ type: "target", entries: produced.entries });
    const reached = await drainer.expect("reached", DRAIN_TIMEOUT_MS);
    const durableAt = performance.now();
    const serverCpuSeconds = serverCpu();
    await drainer.stop();
    checkAlive(server);
    const seconds = (durableAt - produced.startedAt) / 1000;
    return {
      ...producedFields(id, produced, seconds),
      cpu: { producers: produced.cpu, server: serverCpuSeconds, drainer: reached.cpuSeconds },
      output: countLines(sinkDir),
      gaps: reached.gaps ?? 0,
      ...(settings.rate > 0 ? { offered: settings.rate } : {}),
    };
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
    await drainer?.stop();
    await server.stop();
  }
}

/** A backlog of `--backlog` entries produced with no drainer, then drained: time from the drainer's start. */
async function runCatchUp(context: RunContext, id: RunId, target: Target): Promise<Result> {
  const { options, dir } = context;
  const server = await startTarget(target);
  const stream = "bench";
  const sinkDir = join(dir, `${id}-sink`);
  const workers: Worker[] = [];
  let drainer: Worker | undefined;
  try {
    const files = startWorkers(workers, options.procs, dir, id, (i, latencies) => {
      // The backlog split over the producers, the first ones taking the remainder.
      const count =
        Math.floor(options.backlog / options.procs) + (i < options.backlog % options.procs ? 1 : 0);
      const config: WorkerConfig = {
        role: "memipc",
        port: server.port,
        line: LINE,
        latencies,
        stream,
        node: `web-${i}`,
        inflight: options.inflight,
        count,
        rate: 0,
      };
      return logWorker(`${id} producer ${i}`, config);
    });
    const produced = await produce(workers, files);
    if (produced.errors > 0) throw new Error(`${produced.errors} appends of the backlog failed`);
    drainer = logWorker(
      `${id} drainer`,
      { role: "drainer", port: server.port, stream, layout: "default", dir: sinkDir, startOnGo: true },
      options.cpuProf,
    );
    await drainer.expect("ready", READY_TIMEOUT_MS);
    const serverCpu = cpuSince(server.pid);
    drainer.send({ type: "go-target", entries: produced.entries });
    const reached = await drainer.expect("reached", DRAIN_TIMEOUT_MS);
    const serverCpuSeconds = serverCpu();
    await drainer.stop();
    const seconds = reached.seconds!;
    return {
      ...producedFields(id, produced, seconds),
      fillPerSecond: produced.entries / produced.producerSeconds,
      cpu: { producers: 0, server: serverCpuSeconds, drainer: reached.cpuSeconds },
      output: countLines(sinkDir),
      gaps: reached.gaps ?? 0,
    };
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
    await drainer?.stop();
    await server.stop();
  }
}

/** The same lines appended to one shared file, each under an exclusive flock, with or without fdatasync. */
async function runFlock(context: RunContext, id: RunId, fsync: boolean): Promise<Result> {
  const { options, dir, tools } = context;
  const path = join(dir, `${id}.log`);
  const workers: Worker[] = [];
  try {
    const files = startWorkers(workers, options.procs, dir, id, (i, latencies) => {
      const config = { path, line: LINE, latencies, seconds: options.seconds, fsync };
      return new WorkerProcess<WorkerMessage>(`${id} writer ${i}`, tools.python, [
        "-c",
        FLOCK_WRITER,
        JSON.stringify(config),
      ]);
    });
    const produced = await produce(workers, files);
    return baselineResult(id, produced, countLines(path));
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
  }
}

/** The part of better-sqlite3 12 used here (it ships no types). */
interface Database {
  pragma(source: string): unknown;
  exec(source: string): void;
  prepare(source: string): { get(): unknown };
  close(): void;
}

function openDatabase(path: string): Database {
  const open = createRequire(import.meta.url)("better-sqlite3") as new (path: string) => Database;
  return new open(path);
}

/** One row per transaction into one SQLite database (WAL, synchronous=NORMAL) shared by the producers. */
async function runSqlite(context: RunContext, id: RunId): Promise<Result> {
  const { options, dir } = context;
  const path = join(dir, `${id}.db`);
  const setup = openDatabase(path);
  setup.pragma("journal_mode = WAL");
  setup.exec("CREATE TABLE log (id INTEGER PRIMARY KEY, line TEXT NOT NULL)");
  setup.close();
  const workers: Worker[] = [];
  try {
    const files = startWorkers(workers, options.procs, dir, id, (i, latencies) => {
      const config: WorkerConfig = { role: "sqlite", path, line: LINE, latencies, seconds: options.seconds };
      return logWorker(`${id} producer ${i}`, config);
    });
    const produced = await produce(workers, files);
    const check = openDatabase(path);
    const rows = (check.prepare("SELECT count(*) AS n FROM log").get() as { n: number }).n;
    check.close();
    return baselineResult(id, produced, rows);
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
  }
}

/** XADD from the producers to one Redis stream. */
async function runRedis(context: RunContext, id: RunId, appendfsync: "always" | "everysec"): Promise<Result> {
  const { options, dir, tools } = context;
  const redisDir = join(dir, `${id}-redis`);
  await mkdir(redisDir);
  const server = await startTarget(redisTarget(tools.redis, redisDir, appendfsync));
  const workers: Worker[] = [];
  const key = "bench:log";
  try {
    const files = startWorkers(workers, options.procs, dir, id, (i, latencies) => {
      const config: WorkerConfig = {
        role: "redis",
        port: server.port,
        key,
        line: LINE,
        latencies,
        seconds: options.seconds,
        inflight: options.inflight,
      };
      return logWorker(`${id} producer ${i}`, config);
    });
    const serverCpu = cpuSince(server.pid);
    const produced = await produce(workers, files);
    const serverCpuSeconds = serverCpu();
    const { createClient } = await import("redis");
    const client = createClient({ socket: { host: HOST, port: server.port } });
    await client.connect();
    const length = await client.xLen(key);
    client.destroy();
    const result = baselineResult(id, produced, length);
    result.cpu.server = serverCpuSeconds;
    return result;
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
    await server.stop();
  }
}

/** A baseline with no drainer: an entry is done when its write was acknowledged. */
/** What every run reports of its producers: rates over `seconds`, counts, and append latency. */
function producedFields(id: RunId, produced: Awaited<ReturnType<typeof produce>>, seconds: number) {
  return {
    id,
    entriesPerSecond: produced.entries / seconds,
    ackedPerSecond: produced.entries / produced.producerSeconds,
    entries: produced.entries,
    errors: produced.errors,
    p50Us: quantile(produced.latencies, 0.5),
    p99Us: quantile(produced.latencies, 0.99),
    seconds,
  };
}

function baselineResult(
  id: RunId,
  produced: Awaited<ReturnType<typeof produce>>,
  output: number | undefined,
): Result {
  return {
    ...producedFields(id, produced, (produced.finishedAt - produced.startedAt) / 1000),
    cpu: { producers: produced.cpu, server: undefined, drainer: undefined },
    output,
    gaps: 0,
  };
}

/** Newlines in a file, or in every file of a folder but the sink's cursor file. */
function countLines(path: string): number | undefined {
  if (!existsSync(path)) return undefined;
  const files = statSync(path).isDirectory()
    ? readdirSync(path)
        .filter((name) => !name.endsWith(".cursor"))
        .map((name) => join(path, name))
    : [path];
  let lines = 0;
  for (const file of files) {
    const bytes = readFileSync(file);
    for (let at = bytes.indexOf(0x0a); at >= 0; at = bytes.indexOf(0x0a, at + 1)) lines++;
  }
  return lines;
}

// ---- the scenario ---------------------------------------------------------------------------------------

const RUNS: Record<RunId, ScenarioRun<RunContext, Result>> = {
  memipc_embedded: {
    label: "memipc log, embedded server",
    run: (c) => runMemipc(c, "memipc_embedded", embedded(c.options, "memipc_embedded"), noRate),
  },
  memipc_memcached: {
    label: "memipc log, real memcached",
    run: (c) => runMemipc(c, "memipc_memcached", memcached(c.tools, c.options), noRate),
  },
  naive_idiom: {
    label: "naive idiom: incr, then add, awaited (memcached; memipc drainer, seed layout)",
    run: (c) =>
      runMemipc(c, "naive_idiom", memcached(c.tools, c.options), { rate: 0, layout: "seed", naive: true }),
  },
  flock_fsync: {
    label: "one shared file, flock + write + fdatasync",
    run: (c) => runFlock(c, "flock_fsync", true),
  },
  flock: { label: "one shared file, flock + write", run: (c) => runFlock(c, "flock", false) },
  sqlite: {
    label: "SQLite, WAL, synchronous=NORMAL, a row per transaction",
    run: (c) => runSqlite(c, "sqlite"),
  },
  redis_xadd: { label: "Redis XADD, appendfsync always", run: (c) => runRedis(c, "redis_xadd", "always") },
  redis_xadd_everysec: {
    label: "Redis XADD, appendfsync everysec",
    run: (c) => runRedis(c, "redis_xadd_everysec", "everysec"),
  },
  offered_embedded: {
    label: "memipc log, embedded server, offered load",
    run: (c) =>
      runMemipc(c, "offered_embedded", embedded(c.options, "offered_embedded"), {
        rate: c.options.rate,
        layout: "default",
        naive: false,
      }),
  },
  offered_memcached: {
    label: "memipc log, real memcached, offered load",
    run: (c) =>
      runMemipc(c, "offered_memcached", memcached(c.tools, c.options), {
        rate: c.options.rate,
        layout: "default",
        naive: false,
      }),
  },
  catchup_embedded: {
    label: "drain catch-up, embedded server",
    run: (c) => runCatchUp(c, "catchup_embedded", embedded(c.options, "catchup_embedded")),
  },
  catchup_memcached: {
    label: "drain catch-up, real memcached",
    run: (c) => runCatchUp(c, "catchup_memcached", memcached(c.tools, c.options)),
  },
};

const noRate = { rate: 0, layout: "default", naive: false } as const;

function requireTool(variable: string, names: string[], what: string): string {
  const found = findExecutable(variable, names);
  if (found === undefined) {
    throw new Error(
      `${names[0]} not found on PATH (or $${variable}): ${what}; install with: ${INSTALL_HINT}`,
    );
  }
  return found;
}

async function runLogScenario(args: readonly string[]): Promise<void> {
  const options = parseOptions(args);
  const ids = RUN_IDS.filter((id) => options.only === undefined || options.only.has(id));
  const needs = (prefixes: string[]) => ids.some((id) => prefixes.some((prefix) => id.startsWith(prefix)));
  const tools: Tools = {
    memcached: needs(["memipc_memcached", "naive", "offered_memcached", "catchup_memcached"])
      ? requireTool("MEMCACHED_BIN", ["memcached"], "the memipc and naive runs use real memcached")
      : "",
    redis: needs(["redis"]) ? requireTool("REDIS_SERVER_BIN", ["redis-server"], "the Redis baseline") : "",
    python: needs(["flock"]) ? requireTool("PYTHON_BIN", ["python3"], "the flock baseline's writers") : "",
  };
  workerScript("log-worker");
  await withScenarioDir("log", async (dir, loadAtStart) => {
    progress(
      `log: Node.js ${process.version}; ${options.procs} producer processes, ${options.inflight} appends in ` +
        `flight each, ${ENTRY_BYTES}-byte entries, ${options.seconds} s per run; files in ${dir}` +
        (tools.memcached ? `; ${versionOf(tools.memcached, "-V")} (-t ${options.memcachedThreads})` : "") +
        (tools.redis ? `; ${versionOf(tools.redis, "--version")}` : ""),
    );
    const results = await runEach(ids, RUNS, { options, tools, dir }, describe);
    console.log(renderTables(results, options));
    if (options.json) console.log(JSON.stringify(toJson(results, options, loadAtStart)));
  });
}

function describe(result: Result): string {
  const cpu = [result.cpu.producers, result.cpu.server, result.cpu.drainer]
    .map((seconds) => (seconds === undefined ? "-" : seconds.toFixed(1)))
    .join(" / ");
  return (
    `${formatRate(result.entriesPerSecond)} entries/s end to end (${formatRate(result.entries)} in ` +
    `${result.seconds.toFixed(2)} s), acked ${formatRate(result.ackedPerSecond)}/s, p50 ${formatUs(result.p50Us)} µs, ` +
    `p99 ${formatUs(result.p99Us)} µs; output ${result.output ?? "?"}; CPU s producers/server/drainer ${cpu}`
  );
}

// ---- the report -----------------------------------------------------------------------------------------

/** Baselines the memipc rows are compared with, and the goal for each ratio. */
const COMPARED: readonly { id: RunId; goal: number | undefined }[] = [
  { id: "naive_idiom", goal: GOAL.vsNaive },
  { id: "flock_fsync", goal: GOAL.vsFlockFsync },
  { id: "flock", goal: GOAL.vsFlock },
  { id: "sqlite", goal: GOAL.vsSqlite },
  { id: "redis_xadd", goal: GOAL.vsRedis },
  { id: "redis_xadd_everysec", goal: undefined },
];

/** The CPU % of the run's `parts` (producers, server, drainer), "a / b / c". */
function cpuColumn(result: Result, parts: readonly (keyof Result["cpu"])[]): string {
  return parts.map((part) => cpuPercent(result.cpu[part], result.seconds)).join(" / ");
}

/**
 * "ok" when the output holds every acknowledged entry exactly once. After failed appends (timeouts: an append
 * may have been stored all the same, and its number may end as a gap) the count cannot be checked.
 */
function outputCheck(result: Result): string {
  if (result.errors > 0) return `not checked: ${formatRate(result.errors)} appends failed`;
  if (result.output === undefined) return "?";
  const expected = result.entries + result.gaps;
  return result.output === expected ? "ok" : `${formatRate(result.output)} ≠ ${formatRate(expected)}`;
}

function renderTables(results: Map<RunId, Result>, options: Options): string {
  const lines: string[] = [""];
  /** A row for each of `ids` that ran. */
  const rowsOf = (ids: readonly RunId[], row: (r: Result, id: RunId) => string[]): string[][] =>
    ids.filter((id) => results.has(id)).map((id) => row(results.get(id)!, id));
  const embedded = results.get("memipc_embedded");
  const viaMemcached = results.get("memipc_memcached");
  pushTable(
    lines,
    [
      "run",
      "entries/s end to end",
      "acked entries/s",
      "append p50 µs",
      "append p99 µs",
      "ratio memipc embedded/this",
      "ratio memipc memcached/this",
      "CPU % producers / server / drainer",
      "output",
    ],
    rowsOf(SATURATED_IDS, (r, id) => {
      const versus = (ours: Result | undefined) =>
        ours === undefined || id.startsWith("memipc")
          ? ""
          : ratio(ours.entriesPerSecond, r.entriesPerSecond).toFixed(2);
      return [
        id,
        formatRate(r.entriesPerSecond),
        formatRate(r.ackedPerSecond),
        formatUs(r.p50Us),
        formatUs(r.p99Us),
        versus(embedded),
        versus(viaMemcached),
        cpuColumn(r, ["producers", "server", "drainer"]),
        outputCheck(r),
      ];
    }),
  );
  pushTable(
    lines,
    [
      "run",
      "offered entries/s",
      "acked entries/s",
      "entries/s end to end",
      "append p50 µs",
      "append p99 µs",
      "goal p99",
      "CPU % producers / server / drainer",
      "output",
    ],
    rowsOf(["offered_embedded", "offered_memcached"], (r, id) => {
      return [
        id,
        formatRate(r.offered ?? 0),
        formatRate(r.ackedPerSecond),
        formatRate(r.entriesPerSecond),
        formatUs(r.p50Us),
        formatUs(r.p99Us),
        `≤ ${formatUs(GOAL.offeredP99Us)}: ${r.p99Us <= GOAL.offeredP99Us ? "met" : "not met"}`,
        cpuColumn(r, ["producers", "server", "drainer"]),
        outputCheck(r),
      ];
    }),
  );
  pushTable(
    lines,
    [
      "run",
      "backlog",
      "produced entries/s",
      "drain s",
      "drained entries/s",
      "goal",
      "CPU % server / drainer",
      "output",
    ],
    rowsOf(["catchup_embedded", "catchup_memcached"], (r, id) => {
      return [
        id,
        formatRate(r.entries),
        formatRate(r.fillPerSecond ?? 0),
        r.seconds.toFixed(2),
        formatRate(r.entriesPerSecond),
        `≥ ${formatRate(GOAL.catchUpPerSecond)}: ${r.entriesPerSecond >= GOAL.catchUpPerSecond ? "met" : "not met"}`,
        cpuColumn(r, ["server", "drainer"]),
        outputCheck(r),
      ];
    }),
  );
  pushGoalTable(lines, goalRows(results));
  lines.push(
    `  ${options.procs} producer processes; memipc and Redis: ${options.inflight} appends in flight each; the naive ` +
      "idiom, flock and SQLite: one at a time each (they wait for each write)",
    `  entries: ${ENTRY_BYTES}-byte lines; memipc's drainer writes JSON Lines with an fsync (fdatasync) per batch`,
    "  end to end: from the start until the last entry is durable in the drainer's file (memipc, naive idiom),",
    "  or until the last write was acknowledged (flock, SQLite, Redis); append p50/p99: per entry, at the producer",
    "  offered load: appends issued on a timer at the given total rate, latency from each append call",
    "  CPU %: CPU time over the run's wall time, 100 % = one core; output: lines, rows or stream entries found",
  );
  return lines.join("\n");
}

function goalRows(results: Map<RunId, Result>): GoalRow[] {
  const rows: GoalRow[] = [];
  const ours = (server: "embedded" | "memcached") => results.get(`memipc_${server}`);
  const judge = (value: number | undefined, goal: number, atMost = false, digits = 2): string => {
    if (value === undefined) return "-";
    const shown = round(value, digits);
    const met = atMost ? shown <= goal : shown >= goal;
    return `${digits === 0 ? formatRate(shown) : shown.toFixed(digits)}: ${met ? "met" : "not met"}`;
  };
  if (ours("embedded") || ours("memcached")) {
    rows.push({
      key: "entries_per_s",
      label: `≥ ${formatRate(GOAL.entriesPerSecond)} durable entries/s end to end`,
      embedded: judge(ours("embedded")?.entriesPerSecond, GOAL.entriesPerSecond, false, 0),
      memcached: judge(ours("memcached")?.entriesPerSecond, GOAL.entriesPerSecond, false, 0),
    });
    for (const { id, goal } of COMPARED) {
      const baseline = results.get(id);
      if (baseline === undefined || goal === undefined) continue;
      const versus = (r: Result | undefined) =>
        r === undefined ? undefined : ratio(r.entriesPerSecond, baseline.entriesPerSecond);
      rows.push({
        key: `ratio_vs_${id}`,
        label: `≥ ${goal}× ${id}`,
        embedded: judge(versus(ours("embedded")), goal),
        memcached: judge(versus(ours("memcached")), goal),
      });
    }
  }
  const offered = (server: string) => results.get(`offered_${server}` as RunId)?.p99Us;
  if (offered("embedded") !== undefined || offered("memcached") !== undefined) {
    rows.push({
      key: "offered_p99",
      label: `append p99 ≤ ${formatRate(GOAL.offeredP99Us)} µs at the offered load`,
      embedded: judge(offered("embedded"), GOAL.offeredP99Us, true, 0),
      memcached: judge(offered("memcached"), GOAL.offeredP99Us, true, 0),
    });
  }
  const catchUp = (server: string) => results.get(`catchup_${server}` as RunId)?.entriesPerSecond;
  if (catchUp("embedded") !== undefined || catchUp("memcached") !== undefined) {
    rows.push({
      key: "catchup",
      label: `drain catch-up ≥ ${formatRate(GOAL.catchUpPerSecond)} entries/s`,
      embedded: judge(catchUp("embedded"), GOAL.catchUpPerSecond, false, 0),
      memcached: judge(catchUp("memcached"), GOAL.catchUpPerSecond, false, 0),
    });
  }
  return rows;
}

function toJson(results: Map<RunId, Result>, options: Options, loadAtStart: number): Record<string, unknown> {
  const json: Record<string, unknown> = {
    scenario: "log",
    seconds: options.seconds,
    procs: options.procs,
    inflight: options.inflight,
    entry_bytes: ENTRY_BYTES,
    offered_entries_per_s: options.rate,
    backlog: options.backlog,
    memcached_threads: options.memcachedThreads,
    load_average_at_start: round(loadAtStart, 2),
  };
  for (const [id, r] of results) {
    json[`${id}_entries_per_s`] = Math.round(r.entriesPerSecond);
    json[`${id}_acked_entries_per_s`] = Math.round(r.ackedPerSecond);
    json[`${id}_entries`] = r.entries;
    json[`${id}_seconds`] = round(r.seconds, 3);
    json[`${id}_p50_us`] = round(r.p50Us, 1);
    json[`${id}_p99_us`] = round(r.p99Us, 1);
    json[`${id}_errors`] = r.errors;
    json[`${id}_gaps`] = r.gaps;
    json[`${id}_output`] = r.output ?? null;
    json[`${id}_output_ok`] = outputCheck(r).startsWith("ok");
    json[`${id}_producers_cpu_percent`] = cpuPercentJson(r.cpu.producers, r.seconds);
    json[`${id}_server_cpu_percent`] = cpuPercentJson(r.cpu.server, r.seconds);
    json[`${id}_drainer_cpu_percent`] = cpuPercentJson(r.cpu.drainer, r.seconds);
    if (r.fillPerSecond !== undefined) json[`${id}_produced_entries_per_s`] = Math.round(r.fillPerSecond);
  }
  for (const server of ["embedded", "memcached"] as const) {
    const ours = results.get(`memipc_${server}`);
    if (ours === undefined) continue;
    // memipc through the embedded server is "memipc"; through real memcached it carries its name.
    const prefix = server === "embedded" ? "ratio" : "ratio_memcached";
    for (const { id } of COMPARED) {
      const baseline = results.get(id);
      if (baseline)
        json[`${prefix}_vs_${id}`] = round(ratio(ours.entriesPerSecond, baseline.entriesPerSecond), 3);
    }
  }
  addGoalJson(json, goalRows(results));
  return json;
}
