// Scenario "scale": the site log end to end (producer processes → a pool of memcached servers → one drainer
// process → files, fsync per batch) with 1, 2 and 4 partitions side by side, against one server
// unpartitioned;
// the same rows draining a backlog; then sizing figures for one memcached server: appends/s, counter
// increments/s, memory per undrained entry, and from it how long a backlog lasts before memcached evicts.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Client } from "../src/client/index.js";
import { KetamaRing } from "../src/client/ketama.js";
import { encodeEntry, entryKey, headKey, partitionAddress, streamAddress } from "../src/log/layout.js";
import { PartitionBy } from "../src/log/producer.js";
import {
  HOST,
  checkAlive,
  cpuPercent,
  cpuPercentJson,
  cpuSeconds,
  cpuSince,
  findExecutable,
  formatRate,
  formatUs,
  memcachedTarget,
  nodeWorker,
  parseScenarioArgs,
  progress,
  pushTable,
  ratio,
  round,
  startTarget,
  startWorkers,
  versionOf,
  wholeNumber,
  withScenarioDir,
  workerScenarioFlags,
  workerScenarioOptions,
  workerScript,
  type RunningServer,
  type WorkerProcess,
  type WorkerScenarioOptions,
} from "./common.js";
import { quantile, readLatencies } from "./latencies.js";
import type { WorkerConfig as LogWorkerConfig } from "./log-worker.js";
import type { Scenario } from "./main.js";
import type { IncrementsDone, WorkerConfig as StatsWorkerConfig } from "./stats-worker.js";

export const DEFAULT_SECONDS = 5; // seconds of producing per run
export const DEFAULT_PROCS = 8; // producer processes, as web processes on one machine
export const DEFAULT_INFLIGHT = 64; // appends in flight per process, as in the log scenario
export const DEFAULT_PARTITIONS = [1, 2, 4]; // partition counts measured on the pool
export const DEFAULT_SERVERS = 3; // memcached servers in the pool
// memcached's -t for every server: three servers with one worker thread each already have more workers than
// the reference machine has cores (2); on a farm each server has a machine of its own. The single server gets
// the same, so that it differs from partitions_1 by the pool alone.
export const DEFAULT_MEMCACHED_THREADS = 1;
// The producer's own default: each producer appends to its node's partition, so its group commit keeps whole
// blocks (round-robin splits every block over the partitions; see docs/BENCHMARKS.md).
export const DEFAULT_PARTITION_BY = PartitionBy.node;
export const DEFAULT_ROUNDS = 1; // runs per end-to-end and drain row; with more, a median (pickRound)
export const DEFAULT_BACKLOG = 1_000_000; // undrained entries appended in the memory runs
export const DEFAULT_DRAIN_BACKLOG = 300_000; // entries appended before the drainer starts (drain_* runs)
export const DEFAULT_NAMES = 100; // counter names in the counters run, as in the stats scenario
const ENTRY_BYTES = 100; // the log entries' payload, as in the log scenario
const LARGE_ENTRY_BYTES = 300; // the second payload of the memory runs
const MEMORY_MB = 4096; // memcached -m of every run but the eviction check: nothing is evicted
const SMALL_MEMORY_MB = 64; // memcached's default -m (and Debian's memcached.conf): the eviction check
const BUCKET_SECONDS = 60; // StatsWriter's default bucket, for the counters run
const READY_TIMEOUT_MS = 30_000; // a worker must connect (and a drainer start) within this
const DONE_TIMEOUT_MS = 300_000; // producers must finish, and the drainer catch up, within this
const QUIET_MARGIN = 10; // % of a core of other work over the quietest round that still counts as quiet
const STREAM_TRIES = 1000; // stream names tried for an even spread of the partitions' counters
const INSTALL_HINT = "apt-get install -y memcached";
const CORES = availableParallelism(); // for the ceiling: the entries/s the run's CPU per entry allows
/** Memory limits and append rates of the backlog table. */
const BACKLOG_LIMITS_MB = [64, 1024, 4096];
const BACKLOG_RATES = [1_000, 10_000, 50_000, 100_000];

/** A payload of `bytes` bytes: an access-log line, as in the log scenario, padded or cut. */
function line(bytes: number): string {
  const text =
    '10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "GET /catalog/item/12345 HTTP/1.1" 200 5120 "-" "bench"';
  return text.padEnd(bytes, "-").slice(0, bytes);
}

// ---- runs and options -----------------------------------------------------------------------------------

const SIZING_IDS = [
  "sizing_appends",
  "sizing_counters",
  "sizing_memory_100",
  "sizing_memory_300",
  "sizing_evictions_64mb",
] as const;
type SizingId = (typeof SIZING_IDS)[number];
/** single_server, partitions_<P>, drain_<either>, or a sizing run. */
type RunId = string;

interface Options extends WorkerScenarioOptions<RunId> {
  partitions: number[];
  servers: number;
  partitionBy: PartitionBy;
  stream: string | undefined;
  rounds: number;
  backlog: number;
  drainBacklog: number;
  names: number;
}

export const scaleScenario: Scenario = {
  name: "scale",
  summary:
    "the site log (8 producers → 3 memcached servers → drainer → files) with 1, 2, 4 partitions vs one " +
    "server, end to end and draining a backlog; sizing: appends/s, counters/s, memory per entry on one memcached",
  options: [
    `  --json                  print one JSON object with every figure as the last line`,
    `  --seconds N             seconds of producing per end-to-end run (default ${DEFAULT_SECONDS})`,
    `  --procs N               producer processes (default ${DEFAULT_PROCS})`,
    `  --inflight N            appends (increments) in flight per process (default ${DEFAULT_INFLIGHT})`,
    `  --partitions A,B        partition counts on the pool, a row each (default ${DEFAULT_PARTITIONS.join(",")})`,
    `  --servers N             memcached servers in the pool (default ${DEFAULT_SERVERS})`,
    `  --partition-by HOW      node (each producer to its node's partition) or round-robin (each`,
    `                          producer over all partitions) (default ${DEFAULT_PARTITION_BY})`,
    `  --stream NAME           the stream's name; without it, the first of scale, scale-1, … whose`,
    `                          partitions' counters hash evenly over the pool's servers`,
    `  --rounds N              runs per end-to-end and drain row, in rotating order; each row shows the`,
    `                          median of its quiet rounds: those with the least CPU taken by other work`,
    `                          (default ${DEFAULT_ROUNDS})`,
    `  --drain-backlog N       entries appended before the drainer starts in the drain_* runs`,
    `                          (default ${formatRate(DEFAULT_DRAIN_BACKLOG)})`,
    `  --backlog N             undrained entries appended in the memory runs (default ${formatRate(DEFAULT_BACKLOG)})`,
    `  --names N               counter names in sizing_counters (default ${DEFAULT_NAMES})`,
    `  --memcached-threads N   memcached's -t for every server (default ${DEFAULT_MEMCACHED_THREADS})`,
    `  --only A,B              only these runs, or groups of them:`,
    `                          scale: single_server, partitions_<P> (for each of --partitions)`,
    `                          drain: drain_single_server, drain_partitions_<P>`,
    `                          sizing: ${SIZING_IDS.slice(0, 3).join(", ")},`,
    `                                  ${SIZING_IDS.slice(3).join(", ")}`,
    `  --cpu-prof DIR          write V8 CPU profiles of each run's drainer and first producer to DIR`,
    "",
    `Needs memcached on PATH (or $MEMCACHED_BIN): ${INSTALL_HINT}`,
  ].join("\n"),
  run: runScaleScenario,
};

const OPTION_SPEC = {
  ...workerScenarioFlags({
    seconds: DEFAULT_SECONDS,
    procs: DEFAULT_PROCS,
    inflight: DEFAULT_INFLIGHT,
    memcachedThreads: DEFAULT_MEMCACHED_THREADS,
  }),
  partitions: { type: "string", default: DEFAULT_PARTITIONS.join(",") },
  servers: { type: "string", default: String(DEFAULT_SERVERS) },
  "partition-by": { type: "string", default: DEFAULT_PARTITION_BY },
  stream: { type: "string" },
  rounds: { type: "string", default: String(DEFAULT_ROUNDS) },
  backlog: { type: "string", default: String(DEFAULT_BACKLOG) },
  "drain-backlog": { type: "string", default: String(DEFAULT_DRAIN_BACKLOG) },
  names: { type: "string", default: String(DEFAULT_NAMES) },
} as const;

function parseOptions(args: readonly string[]): Options {
  const values = parseScenarioArgs(args, OPTION_SPEC, "scale");
  const partitions = [
    ...new Set(values.partitions.split(",").map((text) => wholeNumber(text, "--partitions", 1, 256))),
  ];
  const groups: Record<string, readonly RunId[]> = {
    scale: endToEndIds(partitions),
    drain: drainIds(partitions),
    sizing: SIZING_IDS,
  };
  // The groups stand for their runs.
  const only = values.only
    ?.split(",")
    .flatMap((name) => groups[name] ?? [name])
    .join(",");
  const partitionBy = values["partition-by"];
  if (partitionBy !== PartitionBy.roundRobin && partitionBy !== PartitionBy.node) {
    throw new Error(`--partition-by ${partitionBy}: use round-robin or node`);
  }
  if (values.stream !== undefined) streamAddress({ stream: values.stream }); // checks the name
  return {
    ...workerScenarioOptions({ ...values, only }, Object.values(groups).flat()),
    partitions,
    servers: wholeNumber(values.servers, "--servers", 1, 16),
    partitionBy,
    stream: values.stream,
    rounds: wholeNumber(values.rounds, "--rounds", 1, 99),
    backlog: wholeNumber(values.backlog, "--backlog", 1, 100_000_000),
    drainBacklog: wholeNumber(values["drain-backlog"], "--drain-backlog", 1, 100_000_000),
    names: wholeNumber(values.names, "--names", 1, 100_000),
  };
}

function endToEndIds(partitions: readonly number[]): RunId[] {
  return ["single_server", ...partitions.map((p) => `partitions_${p}`)];
}

/** The same rows drained from a backlog. */
function drainIds(partitions: readonly number[]): RunId[] {
  return endToEndIds(partitions).map((id) => `drain_${id}`);
}

/** The servers and partitions of an end-to-end or drain row, from its name. */
function rowShape(id: RunId, options: Options): { servers: number; partitions: number; drain: DrainMode } {
  const drain = id.startsWith("drain_") ? "after" : "live";
  const name = id.replace(/^drain_/, "");
  if (name === "single_server") return { servers: 1, partitions: 1, drain };
  return { servers: options.servers, partitions: Number(name.slice("partitions_".length)), drain };
}

// ---- memcached: servers, their stats, where keys go ----------------------------------------------------

interface Context {
  options: Options;
  memcached: string;
  dir: string;
}

/** `count` fresh memcached servers with `memoryMb` of item memory each, on free loopback ports. */
async function startServers(
  context: Context,
  id: RunId,
  count: number,
  memoryMb: number,
  started: RunningServer[],
): Promise<void> {
  for (let i = 0; i < count; i++) {
    const target = memcachedTarget(
      `${id}_server_${i}`,
      `memcached ${i} (${id})`,
      context.memcached,
      context.options.memcachedThreads,
      memoryMb,
    );
    started.push(await startTarget(target));
  }
}

/** What the run reads of each server before and after. */
interface Snapshot {
  cpuSeconds: number | undefined;
  rssBytes: number | undefined;
  stats: Map<string, string>;
  slabs: Map<string, string>;
}

/** Each server's `stats`, `stats slabs`, CPU time and resident memory, in the servers' order. */
async function snapshot(client: Client, servers: readonly RunningServer[]): Promise<Snapshot[]> {
  const stats = [...(await client.stats()).values()];
  const slabs = [...(await client.stats("slabs")).values()];
  return servers.map((server, i) => ({
    // memcached's own getrusage (µs), finer than /proc's 10 ms ticks; /proc where it is missing.
    cpuSeconds: rusageOf(stats[i]!) ?? cpuSeconds(server.pid),
    rssBytes: rssOf(server.pid),
    stats: stats[i]!,
    slabs: slabs[i]!,
  }));
}

/** User + system CPU seconds of the server process, from its `stats` (rusage_user, rusage_system). */
function rusageOf(stats: Map<string, string>): number | undefined {
  const user = stats.get("rusage_user");
  const system = stats.get("rusage_system");
  return user === undefined || system === undefined ? undefined : Number(user) + Number(system);
}

/** VmRSS from /proc/<pid>/status, in bytes. */
function rssOf(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

function stat(snapshot: Snapshot, name: string): number {
  return Number(snapshot.stats.get(name) ?? snapshot.slabs.get(name) ?? 0);
}

/** A server's requests over a run, by kind, from its stats counters. */
interface ServerOps {
  incr: number;
  /** Keys asked for by gets (memcached's cmd_get counts keys). */
  get: number;
  set: number;
  delete: number;
  cpuSeconds: number | undefined;
}

function opsBetween(before: Snapshot, after: Snapshot): ServerOps {
  const delta = (...names: string[]) => names.reduce((sum, n) => sum + stat(after, n) - stat(before, n), 0);
  return {
    incr: delta("incr_hits", "incr_misses"),
    get: delta("cmd_get"),
    set: delta("cmd_set"),
    delete: delta("delete_hits", "delete_misses"),
    cpuSeconds:
      after.cpuSeconds === undefined || before.cpuSeconds === undefined
        ? undefined
        : after.cpuSeconds - before.cpuSeconds,
  };
}

/** Which server (index into the pool) holds each partition's counter. */
function headPlacement(ring: KetamaRing, stream: string, partitions: number): number[] {
  const address = streamAddress({ stream });
  return Array.from({ length: partitions }, (_, p) => ring.serverFor(headKey(partitionAddress(address, p))));
}

/**
 * The stream name to use: --stream, or the first of scale, scale-1, … whose partitions' counters fall as
 * evenly on the servers as they can (every server has its share, rounded down, and none more than its share,
 * rounded up: 2 + 1 + 1 for four partitions on three servers), so that the runs measure counters spread over
 * the pool rather than where the hash happened to put them.
 */
function streamFor(options: Options, ring: KetamaRing, partitions: number): string {
  if (options.stream !== undefined) return options.stream;
  const servers = ring.live.length;
  const least = Math.floor(partitions / servers);
  const most = Math.ceil(partitions / servers);
  for (let i = 0; i < STREAM_TRIES; i++) {
    const stream = i === 0 ? "scale" : `scale-${i}`;
    const perServer = new Array<number>(servers).fill(0);
    for (const server of headPlacement(ring, stream, partitions)) perServer[server]!++;
    if (perServer.every((count) => count >= least && count <= most)) return stream;
  }
  return "scale";
}

/**
 * CPU time of the whole machine from /proc/stat, in seconds: busy (all but idle, iowait and steal), the part
 * of it in interrupts (softirqs: much of loopback networking, charged to no process), and stolen by the host.
 */
interface MachineCpu {
  busy: number;
  irq: number;
  steal: number;
}

function machineCpu(): MachineCpu | undefined {
  try {
    const fields = readFileSync("/proc/stat", "utf8")
      .split("\n")[0]!
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const [user, nice, system, , , irq, softirq, steal] = fields;
    return {
      busy: (user! + nice! + system! + irq! + softirq!) / 100,
      irq: (irq! + softirq!) / 100,
      steal: (steal ?? 0) / 100,
    };
  } catch {
    return undefined;
  }
}

function machineSince(before: MachineCpu | undefined): MachineCpu | undefined {
  const after = machineCpu();
  return before === undefined || after === undefined
    ? undefined
    : { busy: after.busy - before.busy, irq: after.irq - before.irq, steal: after.steal - before.steal };
}

// ---- worker processes -----------------------------------------------------------------------------------

interface LogMessage {
  type: string;
  count?: number;
  errors?: number;
  firstError?: string;
  seconds?: number;
  cpuSeconds?: number;
  entries?: number;
  gaps?: number;
  message?: string;
}

type LogWorker = WorkerProcess<LogMessage>;

/**
 * Waits until every worker is ready, runs `atGo` (readings taken just before "go", so that start-up is not
 * counted), says "go" and collects every "done"; the workers are then stopped.
 */
async function goAndCollect<M extends { type: string }, D>(
  workers: WorkerProcess<M & { message?: string }>[],
  atGo: () => Promise<void>,
): Promise<{ startedAt: number; finishedAt: number; dones: D[] }> {
  await Promise.all(workers.map((worker) => worker.expect("ready", READY_TIMEOUT_MS)));
  await atGo();
  const startedAt = performance.now();
  for (const worker of workers) worker.send({ type: "go" });
  let finishedAt = startedAt;
  const dones = await Promise.all(
    workers.map(async (worker) => {
      const done = await worker.expect<D>("done", DONE_TIMEOUT_MS);
      finishedAt = Math.max(finishedAt, performance.now());
      return done;
    }),
  );
  await Promise.all(workers.map((worker) => worker.stop()));
  return { startedAt, finishedAt, dones };
}

// ---- the log runs ---------------------------------------------------------------------------------------

/** When the drainer runs: with the producers (end to end), after them (a backlog), or not at all. */
type DrainMode = "live" | "after" | "none";

interface LogRunSettings {
  servers: number;
  partitions: number;
  drain: DrainMode;
  entryBytes: number;
  memoryMb: number;
  /** Appends in all (split over the producers) instead of --seconds. */
  count?: number;
}

/** What one log run measured. */
interface LogResult {
  id: RunId;
  settings: LogRunSettings;
  stream: string;
  ports: number[];
  /** Index of the server holding each partition's counter. */
  placement: number[];
  /**
   * live: entries durable in the files per second from "go"; after: per second of draining; none:
   * acknowledged per second.
   */
  entriesPerSecond: number;
  /** Acknowledged to the producers per second of producing. */
  ackedPerSecond: number;
  entries: number;
  errors: number;
  firstError: string | undefined;
  gaps: number;
  /** Entry lines in the drainer's files. */
  output: number | undefined;
  /** Measured seconds: "go" to the last entry durable (live), drainer start to it (after), or producing. */
  seconds: number;
  /** From "go" until the last producer finished. */
  producingSeconds: number;
  p50Us: number;
  p99Us: number;
  /** CPU seconds over the measured time (producers: 0 when they ran before it). */
  cpu: { producers: number; drainer: number | undefined; machine: MachineCpu | undefined };
  ops: ServerOps[];
  before: Snapshot[];
  after: Snapshot[];
}

/** Runs so far, so that each run's files (sink, latencies) are its own. */
let runNumber = 0;

async function runLog(context: Context, id: RunId, settings: LogRunSettings): Promise<LogResult> {
  const { options, dir } = context;
  const tag = `${id}-${++runNumber}`;
  const servers: RunningServer[] = [];
  const producers: LogWorker[] = [];
  let drainer: LogWorker | undefined;
  let client: Client | undefined;
  try {
    await startServers(context, id, settings.servers, settings.memoryMb, servers);
    const list = servers.map((server) => `${HOST}:${server.port}`).join(",");
    const ring = new KetamaRing(servers.map((server) => ({ host: HOST, port: server.port })));
    const stream = streamFor(options, ring, settings.partitions);
    const pool = { port: servers[0]!.port, servers: list, partitions: settings.partitions, stream };
    const sinkDir = join(dir, `${tag}-sink`);
    const profile = options.cpuProf;
    const startDrainer = async (startOnGo: boolean): Promise<LogWorker> => {
      const config: LogWorkerConfig = {
        role: "drainer",
        ...pool,
        layout: "default",
        dir: sinkDir,
        startOnGo,
      };
      const started = nodeWorker<LogMessage>("log-worker", `${id} drainer`, config, profile);
      drainer = started;
      await started.expect("ready", READY_TIMEOUT_MS);
      return started;
    };
    if (settings.drain === "live") await startDrainer(false);
    const files = startWorkers(producers, options.procs, dir, tag, (i, latencies) => {
      const share = (total: number) =>
        Math.floor(total / options.procs) + (i < total % options.procs ? 1 : 0);
      const config: LogWorkerConfig = {
        role: "memipc",
        ...pool,
        partitionBy: options.partitionBy,
        node: `web-${i}`,
        inflight: options.inflight,
        line: line(settings.entryBytes),
        latencies,
        rate: 0,
        ...(settings.count === undefined ? { seconds: options.seconds } : { count: share(settings.count) }),
      };
      const profiled = i === 0 && settings.drain !== "after" ? profile : undefined;
      return nodeWorker<LogMessage>("log-worker", `${id} producer ${i}`, config, profiled);
    });
    client = new Client({ servers: list });
    const stats = client;
    let before: Snapshot[] = [];
    let machine: MachineCpu | undefined;
    let drainerCpu: (() => number | undefined) | undefined;
    /** Readings at the start of the measured time. */
    const measureFromHere = async (): Promise<void> => {
      before = await snapshot(stats, servers);
      machine = machineCpu();
      if (drainer !== undefined) drainerCpu = cpuSince(drainer.child.pid!);
    };
    const { startedAt, finishedAt, dones } = await goAndCollect<LogMessage, LogMessage>(
      producers,
      settings.drain === "after" ? async () => undefined : measureFromHere,
    );
    const entries = dones.reduce((sum, done) => sum + (done.count ?? 0), 0);
    const errors = dones.reduce((sum, done) => sum + (done.errors ?? 0), 0);
    const firstError = dones.find((done) => done.firstError !== undefined)?.firstError;
    if (errors > 0) progress(`  ${errors} appends failed, the first with: ${firstError}`);
    const producingSeconds = Math.max(...dones.map((done) => done.seconds ?? 0));
    let measuredFrom = startedAt;
    let measuredTo = finishedAt;
    let gaps = 0;
    if (settings.drain === "live") {
      drainer!.send({ type: "target", entries });
    } else if (settings.drain === "after") {
      if (errors > 0) throw new Error(`${errors} appends of the backlog failed: ${firstError}`);
      const started = await startDrainer(true);
      await measureFromHere();
      measuredFrom = performance.now();
      started.send({ type: "go-target", entries });
    }
    if (drainer !== undefined) {
      const reached = await drainer.expect<LogMessage>("reached", DONE_TIMEOUT_MS);
      measuredTo = performance.now();
      gaps = reached.gaps ?? 0;
    }
    const drainerSeconds = drainerCpu?.();
    const machineUsed = machineSince(machine);
    const after = await snapshot(stats, servers);
    for (const server of servers) checkAlive(server);
    await drainer?.stop();
    const seconds = settings.drain === "none" ? producingSeconds : (measuredTo - measuredFrom) / 1000;
    const latencies = readLatencies(files);
    return {
      id,
      settings,
      stream,
      ports: servers.map((server) => server.port),
      placement: headPlacement(ring, stream, settings.partitions),
      entriesPerSecond: entries / seconds,
      ackedPerSecond: entries / producingSeconds,
      entries,
      errors,
      firstError,
      gaps,
      output: settings.drain === "none" ? undefined : countEntryLines(sinkDir),
      seconds,
      producingSeconds,
      p50Us: quantile(latencies, 0.5),
      p99Us: quantile(latencies, 0.99),
      cpu: {
        producers:
          settings.drain === "after" ? 0 : dones.reduce((sum, done) => sum + (done.cpuSeconds ?? 0), 0),
        drainer: drainerSeconds,
        machine: machineUsed,
      },
      ops: servers.map((_, i) => opsBetween(before[i]!, after[i]!)),
      before,
      after,
    };
  } finally {
    client?.close();
    await Promise.all(producers.map((worker) => worker.stop()));
    await drainer?.stop();
    await Promise.all(servers.map((server) => server.stop()));
  }
}

/** Entry lines (not gaps or a partitioned sink's checkpoints) in the JSON Lines files of a sink's folder. */
function countEntryLines(folder: string): number | undefined {
  if (!existsSync(folder)) return undefined;
  const seq = Buffer.from('"seq":');
  let lines = 0;
  for (const name of readdirSync(folder).filter((file) => file.endsWith(".jsonl"))) {
    const bytes = readFileSync(join(folder, name));
    let start = 0;
    for (let end = bytes.indexOf(0x0a); end >= 0; end = bytes.indexOf(0x0a, start)) {
      // An entry's "seq" comes first, after a partitioned stream's "part":N.
      const at = bytes.indexOf(seq, start);
      if (at >= 0 && at < Math.min(end, start + 16)) lines++;
      start = end + 1;
    }
  }
  return lines;
}

// ---- the counters run -----------------------------------------------------------------------------------

interface CountersResult {
  increments: number;
  errors: number;
  seconds: number;
  p50Us: number;
  p99Us: number;
  workersCpu: number;
  ops: ServerOps;
  machine: MachineCpu | undefined;
}

/** `procs` StatsWriter processes (bench/stats-worker.ts, as in the stats scenario) counting into a server. */
async function runCounters(context: Context, id: RunId): Promise<CountersResult> {
  const { options, dir } = context;
  const servers: RunningServer[] = [];
  const workers: WorkerProcess<{ type: string; message?: string }>[] = [];
  let client: Client | undefined;
  try {
    await startServers(context, id, 1, MEMORY_MB, servers);
    const port = servers[0]!.port;
    const names = Array.from(
      { length: options.names },
      (_, i) => `site.event.${String(i).padStart(String(options.names - 1).length, "0")}`,
    );
    const files = startWorkers(workers, options.procs, dir, id, (i, latencies) => {
      const config: StatsWorkerConfig = {
        role: "memipc",
        port,
        namespace: "bench",
        bucketSeconds: BUCKET_SECONDS,
        inflight: options.inflight,
        names,
        seconds: options.seconds,
        seed: 0x9e3779b9 ^ (i + 1),
        latencies,
      };
      return nodeWorker(
        "stats-worker",
        `${id} incrementer ${i}`,
        config,
        i === 0 ? options.cpuProf : undefined,
      );
    });
    client = new Client({ servers: `${HOST}:${port}` });
    let before: Snapshot[] = [];
    let machine: MachineCpu | undefined;
    const { startedAt, finishedAt, dones } = await goAndCollect<{ type: string }, IncrementsDone>(
      workers,
      async () => {
        before = await snapshot(client!, servers);
        machine = machineCpu();
      },
    );
    const machineUsed = machineSince(machine);
    const after = await snapshot(client, servers);
    checkAlive(servers[0]!);
    const latencies = readLatencies(files);
    return {
      increments: dones.reduce((sum, done) => sum + done.count, 0),
      errors: dones.reduce((sum, done) => sum + done.errors, 0),
      seconds: (finishedAt - startedAt) / 1000,
      p50Us: quantile(latencies, 0.5),
      p99Us: quantile(latencies, 0.99),
      workersCpu: dones.reduce((sum, done) => sum + done.cpuSeconds, 0),
      ops: opsBetween(before[0]!, after[0]!),
      machine: machineUsed,
    };
  } finally {
    client?.close();
    await Promise.all(workers.map((worker) => worker.stop()));
    await Promise.all(servers.map((server) => server.stop()));
  }
}

// ---- the scenario ---------------------------------------------------------------------------------------

interface Results {
  /** Every round of each end-to-end and drain row. */
  rounds: Map<RunId, LogResult[]>;
  /** The round shown for each end-to-end and drain row (see pickRound). */
  endToEnd: Map<RunId, LogResult>;
  appends?: LogResult;
  counters?: CountersResult;
  memory: Map<number, LogResult>;
  evictions?: LogResult;
}

async function runScaleScenario(args: readonly string[]): Promise<void> {
  const options = parseOptions(args);
  const wanted = (id: RunId) => options.only === undefined || options.only.has(id);
  const rows = [...endToEndIds(options.partitions), ...drainIds(options.partitions)].filter(wanted);
  const sizing = SIZING_IDS.filter(wanted);
  const memcached = findExecutable("MEMCACHED_BIN", ["memcached"]);
  if (memcached === undefined) {
    throw new Error(`memcached not found on PATH (or $MEMCACHED_BIN); install with: ${INSTALL_HINT}`);
  }
  workerScript("log-worker");
  if (sizing.includes("sizing_counters")) workerScript("stats-worker");
  await withScenarioDir("scale", async (dir, loadAtStart) => {
    progress(
      `scale: Node.js ${process.version}; ${versionOf(memcached, "-V")} (-t ${options.memcachedThreads}); ` +
        `${options.procs} producer processes, ${options.inflight} appends in flight each, ${ENTRY_BYTES}-byte ` +
        `entries, ${options.seconds} s per run; pool of ${options.servers} servers, partitions ` +
        `${options.partitions.join(", ")} (${options.partitionBy}); ${options.rounds} round(s); files in ${dir}`,
    );
    const context: Context = { options, memcached, dir };
    const results: Results = { rounds: new Map(), endToEnd: new Map(), memory: new Map() };
    for (let r = 0; r < options.rounds; r++) {
      // Each round starts one row later, so no row always runs first or last.
      const order = rows.map((_, i) => rows[(i + r) % rows.length]!);
      for (const id of order) {
        const shape = rowShape(id, options);
        const what =
          shape.drain === "live"
            ? "drained to files as they come"
            : `${formatRate(options.drainBacklog)} entries, then drained to files`;
        progress(
          `${id}${options.rounds > 1 ? ` (round ${r + 1} of ${options.rounds})` : ""}: ${shape.servers} ` +
            `server(s), ${shape.partitions} partition(s), ${what}…`,
        );
        const result = await runLog(context, id, {
          ...shape,
          entryBytes: ENTRY_BYTES,
          memoryMb: MEMORY_MB,
          ...(shape.drain === "after" ? { count: options.drainBacklog } : {}),
        });
        progress(`  ${describeLog(result)}`);
        results.rounds.set(id, [...(results.rounds.get(id) ?? []), result]);
      }
    }
    for (const [id, rounds] of results.rounds) results.endToEnd.set(id, pickRound(rounds));
    for (const id of sizing) await runSizing(context, id, results);
    console.log(renderTables(results, options));
    if (options.json) console.log(JSON.stringify(toJson(results, options, loadAtStart)));
  });
}

/**
 * The round shown for a row. On a machine shared with other work that comes and goes, a median mixes in
 * whatever else ran, so only the quiet rounds count: those in which other work (machine busy minus the run's
 * own processes) took at most QUIET_MARGIN % of a core more than in the quietest; of those, the median by
 * entries/s (the lower middle of an even count). Where the machine's CPU is unknown, the median of all.
 */
function pickRound(rounds: readonly LogResult[]): LogResult {
  const noise = rounds.map((r) => {
    const seconds = notOurs(r.cpu.machine, oursOf(r));
    return seconds === undefined ? undefined : (seconds / r.seconds) * 100;
  });
  let candidates = [...rounds];
  if (noise.every((x) => x !== undefined)) {
    const quietest = Math.min(...(noise as number[]));
    candidates = rounds.filter((_, i) => noise[i]! <= quietest + QUIET_MARGIN);
  }
  const sorted = candidates.sort((a, b) => a.entriesPerSecond - b.entriesPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

async function runSizing(context: Context, id: SizingId, results: Results): Promise<void> {
  const { options } = context;
  const one: LogRunSettings = {
    servers: 1,
    partitions: 1,
    drain: "none",
    entryBytes: ENTRY_BYTES,
    memoryMb: MEMORY_MB,
  };
  switch (id) {
    case "sizing_appends": {
      progress(`${id}: appends from ${options.procs} producers into one memcached, no drainer…`);
      results.appends = await runLog(context, id, one);
      progress(`  ${describeLog(results.appends)}`);
      return;
    }
    case "sizing_counters": {
      progress(`${id}: StatsWriter.incr from ${options.procs} processes into one memcached…`);
      const counters = await runCounters(context, id);
      results.counters = counters;
      progress(
        `  ${formatRate(counters.increments / counters.seconds)} increments/s, ` +
          `${formatRate(counters.ops.incr / counters.seconds)} incr requests/s at the server`,
      );
      return;
    }
    case "sizing_memory_100":
    case "sizing_memory_300": {
      const bytes = id === "sizing_memory_100" ? ENTRY_BYTES : LARGE_ENTRY_BYTES;
      progress(
        `${id}: ${formatRate(options.backlog)} entries of ${bytes} bytes into one memcached, no drainer…`,
      );
      const result = await runLog(context, id, { ...one, entryBytes: bytes, count: options.backlog });
      progress(`  ${describeMemory(result)}`);
      results.memory.set(bytes, result);
      return;
    }
    case "sizing_evictions_64mb": {
      progress(
        `${id}: ${formatRate(options.backlog)} entries of ${ENTRY_BYTES} bytes into memcached -m ` +
          `${SMALL_MEMORY_MB}, no drainer…`,
      );
      const result = await runLog(context, id, { ...one, memoryMb: SMALL_MEMORY_MB, count: options.backlog });
      progress(`  ${describeMemory(result)}`);
      results.evictions = result;
      return;
    }
  }
}

function describeLog(r: LogResult): string {
  const servers = r.ops.map((ops) => cpuPercent(ops.cpuSeconds, r.seconds)).join("+");
  return (
    `${formatRate(r.entriesPerSecond)} entries/s (${formatRate(r.entries)} in ${r.seconds.toFixed(2)} s), acked ` +
    `${formatRate(r.ackedPerSecond)}/s, p50 ${formatUs(r.p50Us)} µs, p99 ${formatUs(r.p99Us)} µs; output ` +
    `${r.output ?? "-"}; CPU % producers ${cpuPercent(r.cpu.producers, r.seconds)}, drainer ` +
    `${cpuPercent(r.cpu.drainer, r.seconds)}, memcached ${servers}; heads on servers ${r.placement.join(",")}`
  );
}

// ---- the report -----------------------------------------------------------------------------------------

/** Memory figures of a run that left its entries in one server. */
interface Memory {
  entries: number;
  keyBytes: number;
  valueBytes: number;
  /** memcached's `bytes` (item headers, keys and values) per entry. */
  statsBytes: number;
  /** The slab chunk the entries are stored in. */
  chunkBytes: number;
  /** Slab memory (total_malloced, what -m limits) per entry. */
  mallocedBytes: number;
  /** The process's resident memory per entry. */
  rssBytes: number | undefined;
  items: number;
  evictions: number;
  limitBytes: number;
}

function memoryOf(r: LogResult): Memory {
  const before = r.before[0]!;
  const after = r.after[0]!;
  const items = stat(after, "curr_items");
  const stored = items - stat(before, "curr_items");
  // The entries' slab class is the one holding the most items.
  let chunkBytes = 0;
  let most = -1;
  for (const [name, value] of after.slabs) {
    const match = /^(\d+):used_chunks$/.exec(name);
    if (match !== null && Number(value) > most) {
      most = Number(value);
      chunkBytes = Number(after.slabs.get(`${match[1]}:chunk_size`));
    }
  }
  const perEntry = (delta: number) => (stored > 0 ? delta / stored : 0);
  const sample = line(r.settings.entryBytes);
  const address = streamAddress({ stream: r.stream });
  return {
    entries: r.entries,
    // A typical key and value: a 10-digit epoch, a 7-digit number, the producers' node names.
    keyBytes: Buffer.byteLength(entryKey(address, 1_234_567_890, 1_000_000)),
    valueBytes: Buffer.byteLength(encodeEntry(Date.now(), "web-0", sample)),
    statsBytes: perEntry(stat(after, "bytes") - stat(before, "bytes")),
    chunkBytes,
    mallocedBytes: perEntry(stat(after, "total_malloced") - stat(before, "total_malloced")),
    rssBytes:
      after.rssBytes === undefined || before.rssBytes === undefined
        ? undefined
        : perEntry(after.rssBytes - before.rssBytes),
    items,
    evictions: stat(after, "evictions") - stat(before, "evictions"),
    limitBytes: stat(after, "limit_maxbytes"),
  };
}

function describeMemory(r: LogResult): string {
  const m = memoryOf(r);
  return (
    `${formatRate(r.entries)} entries at ${formatRate(r.entriesPerSecond)}/s; per entry: ${m.statsBytes.toFixed(0)} ` +
    `bytes (stats), ${m.chunkBytes}-byte chunks, ${m.mallocedBytes.toFixed(0)} bytes malloced, ` +
    `${m.rssBytes?.toFixed(0) ?? "?"} bytes RSS; ${formatRate(m.items)} items held, ${formatRate(m.evictions)} evicted`
  );
}

/** memcached's CPU µs per item (entry, increment) and the items/s one core of it would take at that cost. */
function perItem(cpuSeconds: number | undefined, items: number): { us: number; perCore: number } | undefined {
  if (cpuSeconds === undefined || items === 0 || cpuSeconds === 0) return undefined;
  const us = (cpuSeconds / items) * 1e6;
  return { us, perCore: 1e6 / us };
}

function sumCpu(ops: readonly ServerOps[]): number | undefined {
  return ops.some((o) => o.cpuSeconds === undefined) ? undefined : ops.reduce((s, o) => s + o.cpuSeconds!, 0);
}

/**
 * The machine's busy CPU and the part of it not charged to the run's own processes (`ours`: CPU seconds):
 * other work on the machine, and interrupts charged to no process. "busy / not ours", in % of one core.
 */
function machinePercent(machine: MachineCpu | undefined, ours: number | undefined, seconds: number): string {
  if (machine === undefined) return "-";
  return `${cpuPercent(machine.busy, seconds)} / ${cpuPercent(notOurs(machine, ours), seconds)}`;
}

function notOurs(machine: MachineCpu | undefined, ours: number | undefined): number | undefined {
  return machine === undefined || ours === undefined ? undefined : Math.max(0, machine.busy - ours);
}

/** CPU µs per entry of each process kind, and of all of them together (the run's own processes). */
function costPerEntry(r: LogResult): {
  producers: number;
  drainer: number | undefined;
  memcached: number | undefined;
  all: number | undefined;
  /** The entries/s this CPU per entry allows: see below. */
  ceiling: number | undefined;
} {
  const us = (seconds: number | undefined) =>
    seconds === undefined || r.entries === 0 ? undefined : (seconds / r.entries) * 1e6;
  const all = us(oursOf(r));
  const drainer = us(r.cpu.drainer);
  // The machine's cores at this CPU per entry, and the drainer, one Node.js process, at one core.
  const ceiling =
    all === undefined ? undefined : Math.min((CORES * 1e6) / all, drainer ? 1e6 / drainer : Infinity);
  return { producers: us(r.cpu.producers) ?? 0, drainer, memcached: us(sumCpu(r.ops)), all, ceiling };
}

/** CPU seconds of the run's own processes: producers, drainer and servers (undefined if one is unknown). */
function oursOf(r: LogResult): number | undefined {
  const servers = sumCpu(r.ops);
  if (servers === undefined || (r.settings.drain !== "none" && r.cpu.drainer === undefined)) return undefined;
  return r.cpu.producers + (r.cpu.drainer ?? 0) + servers;
}

/** "ok" when the files hold every acknowledged entry once; otherwise why not. */
function outputCheck(r: LogResult): string {
  if (r.errors > 0) return `not checked: ${formatRate(r.errors)} appends failed`;
  if (r.gaps > 0) return `not checked: ${formatRate(r.gaps)} gaps`;
  if (r.output === undefined) return "?";
  return r.output === r.entries ? "ok" : `${formatRate(r.output)} ≠ ${formatRate(r.entries)}`;
}

/** Appends per counter increment: the producers' average block (group commit) size. */
function entriesPerIncr(r: LogResult): string {
  const incr = r.ops.reduce((sum, ops) => sum + ops.incr, 0);
  return incr === 0 ? "-" : (r.entries / incr).toFixed(1);
}

/** Server index → the partitions whose counters it holds ("0,2"), "-" for none. */
function headsOn(r: LogResult, server: number): string {
  const parts = r.placement.flatMap((s, p) => (s === server ? [p] : []));
  return parts.length === 0 ? "-" : parts.join(",");
}

/** A duration for the backlog table: s, min, h or d. */
function formatDuration(seconds: number): string {
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(0)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} d`;
}

function renderTables(results: Results, options: Options): string {
  const lines: string[] = [""];
  const rows = [...results.endToEnd.values()];
  const live = rows.filter((r) => r.settings.drain === "live");
  const drained = rows.filter((r) => r.settings.drain === "after");
  const base = results.endToEnd.get("partitions_1");
  const drainBase = results.endToEnd.get("drain_partitions_1");
  const versus = (r: LogResult, of: LogResult | undefined) =>
    of === undefined ? "" : ratio(r.entriesPerSecond, of.entriesPerSecond).toFixed(2);
  const cpuColumns = (r: LogResult): string[] => {
    const cost = costPerEntry(r);
    return [
      [r.cpu.producers, r.cpu.drainer, sumCpu(r.ops)].map((x) => cpuPercent(x, r.seconds)).join(" / "),
      machinePercent(r.cpu.machine, oursOf(r), r.seconds),
      [cost.producers, cost.drainer, cost.memcached]
        .map((us) => (us === undefined ? "-" : us.toFixed(1)))
        .join(" / "),
      cost.all === undefined ? "-" : cost.all.toFixed(1),
      cost.ceiling === undefined ? "-" : formatRate(cost.ceiling),
    ];
  };
  const cpuHeader = [
    "CPU % producers / drainer / memcached",
    "machine CPU % busy / not ours",
    "CPU µs per entry producers / drainer / memcached",
    "CPU µs per entry, all",
    `ceiling entries/s (${CORES} cores, drainer ≤ 1)`,
  ];
  pushTable(
    lines,
    [
      "run",
      "servers",
      "partitions",
      "entries/s end to end",
      "ratio vs partitions_1",
      "acked entries/s",
      "append p50 µs",
      "append p99 µs",
      "entries per incr",
      "output",
    ],
    live.map((r) => [
      r.id,
      String(r.settings.servers),
      String(r.settings.partitions),
      formatRate(r.entriesPerSecond),
      versus(r, base),
      formatRate(r.ackedPerSecond),
      formatUs(r.p50Us),
      formatUs(r.p99Us),
      entriesPerIncr(r),
      outputCheck(r),
    ]),
  );
  pushTable(
    lines,
    ["run", ...cpuHeader],
    live.map((r) => [r.id, ...cpuColumns(r)]),
  );
  pushTable(
    lines,
    [
      "run",
      "servers",
      "partitions",
      "backlog",
      "produced entries/s",
      "drain s",
      "drained entries/s",
      "ratio vs drain_partitions_1",
      ...cpuHeader,
      "output",
    ],
    drained.map((r) => [
      r.id,
      String(r.settings.servers),
      String(r.settings.partitions),
      formatRate(r.entries),
      formatRate(r.ackedPerSecond),
      r.seconds.toFixed(2),
      formatRate(r.entriesPerSecond),
      versus(r, drainBase),
      ...cpuColumns(r),
      outputCheck(r),
    ]),
  );
  pushTable(
    lines,
    [
      "run",
      "server",
      "port",
      "counters of partitions",
      "incr/s",
      "keys read/s",
      "sets/s",
      "deletes/s",
      "CPU %",
    ],
    rows.flatMap((r) =>
      r.ops.map((ops, i) => [
        r.id,
        String(i),
        String(r.ports[i]),
        headsOn(r, i),
        formatRate(ops.incr / r.seconds),
        formatRate(ops.get / r.seconds),
        formatRate(ops.set / r.seconds),
        formatRate(ops.delete / r.seconds),
        cpuPercent(ops.cpuSeconds, r.seconds),
      ]),
    ),
  );
  if (results.rounds.size > 0 && options.rounds > 1) {
    lines.push(
      "  every round, entries/s (CPU % not ours); each row above is the median of its rounds within " +
        `${QUIET_MARGIN} % of its quietest:`,
      ...[...results.rounds].map(
        ([id, rounds]) =>
          `    ${id}: ` +
          rounds
            .map(
              (r) =>
                `${formatRate(r.entriesPerSecond)} (${cpuPercent(notOurs(r.cpu.machine, oursOf(r)), r.seconds)})`,
            )
            .join(" / "),
      ),
      "",
    );
  }
  pushTable(
    lines,
    [
      "sizing run",
      "items",
      "items/s",
      "memcached requests/s",
      "memcached CPU %",
      "memcached CPU µs per item",
      "items/s per memcached core",
      "clients CPU %",
      "machine CPU % busy / not ours",
    ],
    sizingRows(results),
  );
  const memoryRuns = [...results.memory.values(), ...(results.evictions ? [results.evictions] : [])];
  pushTable(
    lines,
    [
      "memory run",
      "payload B",
      "key + value B",
      "entries",
      "memcached -m MB",
      "items held",
      "evicted",
      "stats bytes per entry",
      "slab chunk B",
      "malloced B per entry",
      "RSS B per entry",
      "MB per million (malloced / RSS)",
    ],
    memoryRuns.map((r) => {
      const m = memoryOf(r);
      return [
        r.id,
        String(r.settings.entryBytes),
        `${m.keyBytes} + ${m.valueBytes}`,
        formatRate(m.entries),
        String(r.settings.memoryMb),
        formatRate(m.items),
        formatRate(m.evictions),
        m.statsBytes.toFixed(0),
        String(m.chunkBytes),
        m.mallocedBytes.toFixed(0),
        m.rssBytes === undefined ? "-" : m.rssBytes.toFixed(0),
        `${((m.mallocedBytes * 1e6) / 2 ** 20).toFixed(0)} / ${m.rssBytes === undefined ? "-" : ((m.rssBytes * 1e6) / 2 ** 20).toFixed(0)}`,
      ];
    }),
  );
  const check = evictionCheck(results);
  if (check !== undefined) {
    lines.push(
      `  eviction check: at -m ${SMALL_MEMORY_MB} memcached held ${formatRate(check.held)} entries of ` +
        `${formatRate(check.appended)} (${formatRate(check.evicted)} evicted); ${SMALL_MEMORY_MB} MiB ÷ ` +
        `${check.perEntry.toFixed(0)} B per entry predicts ${formatRate(check.predicted)}: held/predicted ` +
        `${check.ratio.toFixed(2)}`,
      "",
    );
  }
  const backlog = backlogRows(results);
  if (backlog.length > 0) {
    lines.push(
      "  backlog before evictions: seconds = memcached -m bytes ÷ (malloced B per entry × (append rate − drain " +
        "rate)); with the drainer stopped, the drain rate is 0",
    );
    pushTable(
      lines,
      [
        "payload B",
        "memcached -m",
        "entries held",
        ...BACKLOG_RATES.map((rate) => `at ${formatRate(rate)}/s`),
      ],
      backlog.map((row) => [
        String(row.payload),
        row.limitMb >= 1024 ? `${row.limitMb / 1024} GiB` : `${row.limitMb} MiB`,
        formatRate(row.capacity),
        ...row.seconds.map(formatDuration),
      ]),
    );
  }
  lines.push(
    `  ${options.procs} producer processes, ${options.inflight} appends in flight each, ${ENTRY_BYTES}-byte payloads; ` +
      `partitions picked ${options.partitionBy}; memcached -t ${options.memcachedThreads} each`,
    "  end to end: from the start until the drainer's files (fsync per batch) hold every acknowledged entry",
    "  CPU %: CPU time over the run's wall time, 100 % = one core; machine busy: all processes and the kernel",
    "  keys read/s: keys asked for by gets (memcached's cmd_get); sets/s: stored entries (cmd_set)",
    "  per memcached core: 1 s ÷ memcached's CPU per item, the rate one core of it would take at that cost",
  );
  return lines.join("\n");
}

function sizingRows(results: Results): string[][] {
  const rows: string[][] = [];
  const row = (
    id: string,
    items: number,
    seconds: number,
    requests: number,
    serverCpu: number | undefined,
    clientsCpu: number | undefined,
    machine: MachineCpu | undefined,
  ) => {
    const cost = perItem(serverCpu, items);
    rows.push([
      id,
      formatRate(items),
      formatRate(items / seconds),
      formatRate(requests / seconds),
      cpuPercent(serverCpu, seconds),
      cost === undefined ? "-" : cost.us.toFixed(2),
      cost === undefined ? "-" : formatRate(cost.perCore),
      cpuPercent(clientsCpu, seconds),
      machinePercent(
        machine,
        serverCpu === undefined || clientsCpu === undefined ? undefined : serverCpu + clientsCpu,
        seconds,
      ),
    ]);
  };
  const requests = (o: ServerOps) => o.incr + o.get + o.set + o.delete;
  const a = results.appends;
  if (a)
    row(
      a.id,
      a.entries,
      a.seconds,
      requests(a.ops[0]!),
      a.ops[0]!.cpuSeconds,
      a.cpu.producers,
      a.cpu.machine,
    );
  const c = results.counters;
  if (c)
    row("sizing_counters", c.increments, c.seconds, c.ops.incr, c.ops.cpuSeconds, c.workersCpu, c.machine);
  // A drained entry's whole cost at the server (incr share, add, get, delete), from the end-to-end run.
  const s = results.endToEnd.get("single_server");
  if (s) {
    const producersAndDrainer = s.cpu.drainer === undefined ? undefined : s.cpu.producers + s.cpu.drainer;
    row(
      "single_server (drained)",
      s.entries,
      s.seconds,
      requests(s.ops[0]!),
      s.ops[0]!.cpuSeconds,
      producersAndDrainer,
      s.cpu.machine,
    );
  }
  return rows;
}

function evictionCheck(
  results: Results,
):
  | { appended: number; held: number; evicted: number; perEntry: number; predicted: number; ratio: number }
  | undefined {
  const small = results.evictions;
  const measured = results.memory.get(ENTRY_BYTES);
  if (small === undefined || measured === undefined) return undefined;
  const m = memoryOf(small);
  const perEntry = memoryOf(measured).mallocedBytes;
  const predicted = perEntry > 0 ? m.limitBytes / perEntry : 0;
  // The stream's counter is one of the items.
  const held = m.items - 1;
  return {
    appended: small.entries,
    held,
    evicted: m.evictions,
    perEntry,
    predicted,
    ratio: ratio(held, predicted),
  };
}

interface BacklogRow {
  payload: number;
  limitMb: number;
  capacity: number;
  seconds: number[];
}

function backlogRows(results: Results): BacklogRow[] {
  const rows: BacklogRow[] = [];
  for (const [payload, r] of results.memory) {
    const perEntry = memoryOf(r).mallocedBytes;
    if (perEntry <= 0) continue;
    for (const limitMb of BACKLOG_LIMITS_MB) {
      const capacity = (limitMb * 2 ** 20) / perEntry;
      rows.push({ payload, limitMb, capacity, seconds: BACKLOG_RATES.map((rate) => capacity / rate) });
    }
  }
  return rows;
}

function toJson(results: Results, options: Options, loadAtStart: number): Record<string, unknown> {
  const json: Record<string, unknown> = {
    scenario: "scale",
    seconds: options.seconds,
    procs: options.procs,
    inflight: options.inflight,
    entry_bytes: ENTRY_BYTES,
    cores: CORES,
    servers: options.servers,
    partitions: options.partitions,
    partition_by: options.partitionBy,
    memcached_threads: options.memcachedThreads,
    rounds: options.rounds,
    backlog: options.backlog,
    drain_backlog: options.drainBacklog,
    load_average_at_start: round(loadAtStart, 2),
  };
  for (const [id, r] of results.endToEnd) {
    json[`${id}_entries_per_s`] = Math.round(r.entriesPerSecond);
    json[`${id}_acked_entries_per_s`] = Math.round(r.ackedPerSecond);
    json[`${id}_entries`] = r.entries;
    json[`${id}_seconds`] = round(r.seconds, 3);
    json[`${id}_p50_us`] = round(r.p50Us, 1);
    json[`${id}_p99_us`] = round(r.p99Us, 1);
    json[`${id}_errors`] = r.errors;
    json[`${id}_gaps`] = r.gaps;
    json[`${id}_output`] = r.output ?? null;
    json[`${id}_output_ok`] = outputCheck(r) === "ok";
    json[`${id}_producers_cpu_percent`] = cpuPercentJson(r.cpu.producers, r.seconds);
    json[`${id}_drainer_cpu_percent`] = cpuPercentJson(r.cpu.drainer, r.seconds);
    json[`${id}_memcached_cpu_percent`] = cpuPercentJson(sumCpu(r.ops), r.seconds);
    json[`${id}_machine_busy_percent`] = cpuPercentJson(r.cpu.machine?.busy, r.seconds);
    json[`${id}_machine_not_ours_percent`] = cpuPercentJson(notOurs(r.cpu.machine, oursOf(r)), r.seconds);
    json[`${id}_machine_irq_percent`] = cpuPercentJson(r.cpu.machine?.irq, r.seconds);
    json[`${id}_machine_steal_percent`] = cpuPercentJson(r.cpu.machine?.steal, r.seconds);
    const cost = costPerEntry(r);
    json[`${id}_producers_cpu_us_per_entry`] = round(cost.producers, 2);
    json[`${id}_drainer_cpu_us_per_entry`] = cost.drainer === undefined ? null : round(cost.drainer, 2);
    json[`${id}_memcached_cpu_us_per_entry`] = cost.memcached === undefined ? null : round(cost.memcached, 2);
    json[`${id}_cpu_us_per_entry`] = cost.all === undefined ? null : round(cost.all, 2);
    json[`${id}_ceiling_entries_per_s`] = cost.ceiling === undefined ? null : Math.round(cost.ceiling);
    const incr = r.ops.reduce((sum, ops) => sum + ops.incr, 0);
    if (r.settings.drain === "live")
      json[`${id}_entries_per_incr`] = incr === 0 ? null : round(r.entries / incr, 1);
    if (r.settings.drain === "after") json[`${id}_produced_entries_per_s`] = Math.round(r.ackedPerSecond);
    json[`${id}_stream`] = r.stream;
    json[`${id}_head_servers`] = r.placement;
    r.ops.forEach((ops, i) => {
      const key = `${id}_server_${i}`;
      json[`${key}_incr_per_s`] = Math.round(ops.incr / r.seconds);
      json[`${key}_keys_read_per_s`] = Math.round(ops.get / r.seconds);
      json[`${key}_sets_per_s`] = Math.round(ops.set / r.seconds);
      json[`${key}_deletes_per_s`] = Math.round(ops.delete / r.seconds);
      json[`${key}_cpu_percent`] = cpuPercentJson(ops.cpuSeconds, r.seconds);
    });
    if (options.rounds > 1) {
      json[`${id}_entries_per_s_rounds`] = results.rounds.get(id)!.map((x) => Math.round(x.entriesPerSecond));
      json[`${id}_not_ours_percent_rounds`] = results.rounds
        .get(id)!
        .map((x) => cpuPercentJson(notOurs(x.cpu.machine, oursOf(x)), x.seconds));
    }
  }
  const base = results.endToEnd.get("partitions_1");
  for (const [id, r] of results.endToEnd) {
    if (base === undefined || !id.startsWith("partitions_") || id === "partitions_1") continue;
    json[`ratio_${r.settings.partitions}_vs_1`] = round(ratio(r.entriesPerSecond, base.entriesPerSecond), 3);
  }
  const single = results.endToEnd.get("single_server");
  if (base !== undefined && single !== undefined) {
    json.ratio_pool_vs_single_server = round(ratio(base.entriesPerSecond, single.entriesPerSecond), 3);
  }
  const drainBase = results.endToEnd.get("drain_partitions_1");
  for (const [id, r] of results.endToEnd) {
    if (drainBase === undefined || !id.startsWith("drain_partitions_") || id === "drain_partitions_1")
      continue;
    json[`ratio_drain_${r.settings.partitions}_vs_1`] = round(
      ratio(r.entriesPerSecond, drainBase.entriesPerSecond),
      3,
    );
  }
  const drainSingle = results.endToEnd.get("drain_single_server");
  if (drainBase !== undefined && drainSingle !== undefined) {
    json.ratio_drain_pool_vs_single_server = round(
      ratio(drainBase.entriesPerSecond, drainSingle.entriesPerSecond),
      3,
    );
  }
  const sizing = (
    prefix: string,
    unit: string,
    items: number,
    seconds: number,
    requests: number,
    serverCpu: number | undefined,
    clientsCpu: number | undefined,
    machine: MachineCpu | undefined,
  ) => {
    const cost = perItem(serverCpu, items);
    json[`${prefix}_${unit}`] = items;
    json[`${prefix}_${unit}_per_s`] = Math.round(items / seconds);
    json[`${prefix}_memcached_requests_per_s`] = Math.round(requests / seconds);
    json[`${prefix}_memcached_cpu_percent`] = cpuPercentJson(serverCpu, seconds);
    json[`${prefix}_memcached_cpu_us_per_item`] = cost === undefined ? null : round(cost.us, 3);
    json[`${prefix}_${unit}_per_s_per_memcached_core`] = cost === undefined ? null : Math.round(cost.perCore);
    json[`${prefix}_clients_cpu_percent`] = cpuPercentJson(clientsCpu, seconds);
    json[`${prefix}_machine_busy_percent`] = cpuPercentJson(machine?.busy, seconds);
    json[`${prefix}_machine_not_ours_percent`] = cpuPercentJson(
      notOurs(
        machine,
        serverCpu === undefined || clientsCpu === undefined ? undefined : serverCpu + clientsCpu,
      ),
      seconds,
    );
  };
  const requests = (o: ServerOps) => o.incr + o.get + o.set + o.delete;
  const a = results.appends;
  if (a) {
    sizing(
      "sizing_appends",
      "entries",
      a.entries,
      a.seconds,
      requests(a.ops[0]!),
      a.ops[0]!.cpuSeconds,
      a.cpu.producers,
      a.cpu.machine,
    );
    json.sizing_appends_p50_us = round(a.p50Us, 1);
    json.sizing_appends_p99_us = round(a.p99Us, 1);
  }
  const c = results.counters;
  if (c) {
    sizing(
      "sizing_counters",
      "increments",
      c.increments,
      c.seconds,
      c.ops.incr,
      c.ops.cpuSeconds,
      c.workersCpu,
      c.machine,
    );
    json.sizing_counters_errors = c.errors;
    json.sizing_counters_p50_us = round(c.p50Us, 1);
    json.sizing_counters_p99_us = round(c.p99Us, 1);
  }
  if (single) {
    const cost = perItem(single.ops[0]!.cpuSeconds, single.entries);
    json.single_server_entries_per_s_per_memcached_core =
      cost === undefined ? null : Math.round(cost.perCore);
  }
  for (const r of [...results.memory.values(), ...(results.evictions ? [results.evictions] : [])]) {
    const m = memoryOf(r);
    json[`${r.id}_entries`] = m.entries;
    json[`${r.id}_entries_per_s`] = Math.round(r.entriesPerSecond);
    json[`${r.id}_memory_mb`] = r.settings.memoryMb;
    json[`${r.id}_key_bytes`] = m.keyBytes;
    json[`${r.id}_value_bytes`] = m.valueBytes;
    json[`${r.id}_items_held`] = m.items;
    json[`${r.id}_evictions`] = m.evictions;
    json[`${r.id}_stats_bytes_per_entry`] = round(m.statsBytes, 1);
    json[`${r.id}_chunk_bytes`] = m.chunkBytes;
    json[`${r.id}_malloced_bytes_per_entry`] = round(m.mallocedBytes, 1);
    json[`${r.id}_rss_bytes_per_entry`] = m.rssBytes === undefined ? null : round(m.rssBytes, 1);
  }
  const check = evictionCheck(results);
  if (check) {
    json.eviction_check_held = check.held;
    json.eviction_check_predicted = Math.round(check.predicted);
    json.eviction_check_held_vs_predicted = round(check.ratio, 3);
  }
  for (const row of backlogRows(results)) {
    const key = `backlog_${row.payload}b_${row.limitMb}mb`;
    json[`${key}_entries`] = Math.round(row.capacity);
    BACKLOG_RATES.forEach((rate, i) => {
      json[`${key}_at_${rate}_per_s_seconds`] = Math.round(row.seconds[i]!);
    });
  }
  return json;
}
