// Scenario "server": real memcached, the Node.js floor (bench/node-floor.ts) and the embedded server, each in
// its own process, driven in turn by the same native load generator (memcaslap, from Debian's
// libmemcached-tools) under identical settings.
import { spawn } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import {
  HOST,
  alignColumns,
  cpuSeconds,
  findExecutable,
  formatPercent,
  formatRate,
  median,
  memcachedTarget,
  progress,
  ratio,
  round,
  startTarget,
  stopChildrenOnSignal,
  track,
  versionOf,
  wholeNumber,
  type RunningServer,
  type Target,
  parseScenarioArgs,
} from "./common.js";
import type { Scenario } from "./main.js";

export const DEFAULT_SECONDS = 10; // seconds of load per measurement (memcaslap's -t)
export const DEFAULT_ROUNDS = 1; // each round measures every workload on every server; medians are reported
// The reference machine has 2 cores, shared by the load generator and the server under test. memcached gets
// one worker thread per core (-t 2) and memcaslap one thread per core (-T 2): both sides can use the whole
// machine, and the embedded server (one Node.js event loop) competes for it under the same conditions.
export const DEFAULT_MEMCACHED_THREADS = 2; // memcached's -t
export const DEFAULT_LOAD_THREADS = 2; // memcaslap's -T; every concurrency below must be a multiple of it
const MEMORY_MB = 1024; // item memory for both servers (memcached -m 1024, memipc --memory 1024m)
const KEY_BYTES = 32; // memcaslap's keys are 16 to 250 bytes
const VALUE_BYTES = 100;
const LOAD_GRACE_S = 120; // memcaslap's preload (warm-up) comes on top of --seconds; then it is stopped
const OUTPUT_LIMIT = 1 << 20; // bytes of memcaslap output kept; its final summary is a few kilobytes
const HIT_RATE_TOLERANCE = 0.01; // hit rates further apart than this make a row not comparable

export const INSTALL_HINT = "apt-get install -y memcached libmemcached-tools";

/** One load shape, run against each server. */
interface Workload {
  /** The row's name, used in the table and in the JSON keys. */
  readonly id: string;
  readonly label: string;
  /** What the rate counts: single operations, or keys fetched by multi-gets. */
  readonly unit: "ops" | "keys";
  /** Share of gets; the rest are sets. */
  readonly getShare: number;
  readonly concurrency: number;
  /** Keys per get request (memcaslap's -d); 1 is a plain get. */
  readonly keysPerGet: number;
  /** Objects each connection cycles through (memcaslap's -w); preloaded when all commands are gets. */
  readonly window: string;
}

const WORKLOADS: readonly Workload[] = [
  {
    id: "get_set_16c",
    label: "get/set 90/10, 16 conns",
    unit: "ops",
    getShare: 0.9,
    concurrency: 16,
    keysPerGet: 1,
    window: "10k",
  },
  {
    id: "get_set_64c",
    label: "get/set 90/10, 64 conns",
    unit: "ops",
    getShare: 0.9,
    concurrency: 64,
    keysPerGet: 1,
    window: "10k",
  },
  // All gets, so memcaslap preloads every connection's window first; a small window keeps that short.
  {
    id: "multi_get_100_16c",
    label: "multi-get 100 keys, 16 conns",
    unit: "keys",
    getShare: 1,
    concurrency: 16,
    keysPerGet: 100,
    window: "2k",
  },
];

/** One ratio column: the rate of target `of` over the rate of target `to` (indexes into the targets). */
interface Comparison {
  /** JSON key prefix; the workload's id is appended. */
  readonly key: string;
  readonly of: number;
  readonly to: number;
}

/** The servers of a run, in column order (the first is the baseline), and the ratios to report. */
interface Lineup {
  readonly targets: Target[];
  readonly comparisons: Comparison[];
}

/** What one memcaslap run reported, plus the server's CPU use during it. */
export interface LoadResult {
  runSeconds: number;
  /** Operations per second as memcaslap counts them (gets count each key), preload excluded. */
  rate: number;
  cmdGet: number;
  cmdSet: number;
  getMisses: number;
  hitRate: number;
  /** Upper bounds of memcaslap's log2 latency buckets holding the median and 99th percentile request. */
  p50Us: number | undefined;
  p99Us: number | undefined;
  /** Server process CPU time over wall time, in percent of one core (Linux /proc only). */
  serverCpuPercent?: number | undefined;
}

interface Options {
  seconds: number;
  rounds: number;
  memcachedThreads: number;
  loadThreads: number;
  json: boolean;
  validate: boolean;
  floor: boolean;
}

export const serverScenario: Scenario = {
  name: "server",
  summary:
    "embedded server vs real memcached and the Node.js floor under memcaslap: get/set 90/10 at 16 and 64 " +
    "conns, multi-get",
  options: [
    `  --json                  print one JSON object with every figure as the last line`,
    `  --seconds N             seconds of load per measurement (default ${DEFAULT_SECONDS})`,
    `  --rounds N              repeat the alternation N times and report medians (default ${DEFAULT_ROUNDS})`,
    `  --memcached-threads N   memcached's -t (default ${DEFAULT_MEMCACHED_THREADS})`,
    `  --load-threads N        memcaslap's -T; 16 and 64 must be multiples of it (default ${DEFAULT_LOAD_THREADS})`,
    `  --validate              measure real memcached in both columns, to check the harness (ratios near 1)`,
    `  --no-floor              leave out the node floor column (a store-less Node.js server, bench/node-floor.ts)`,
    "",
    `Needs memcached and memcaslap on PATH (or $MEMCACHED_BIN, $MEMCASLAP_BIN): ${INSTALL_HINT}`,
  ].join("\n"),
  run: runServerScenario,
};

const OPTION_SPEC = {
  json: { type: "boolean", default: false },
  validate: { type: "boolean", default: false },
  "no-floor": { type: "boolean", default: false },
  seconds: { type: "string", default: String(DEFAULT_SECONDS) },
  rounds: { type: "string", default: String(DEFAULT_ROUNDS) },
  "memcached-threads": { type: "string", default: String(DEFAULT_MEMCACHED_THREADS) },
  "load-threads": { type: "string", default: String(DEFAULT_LOAD_THREADS) },
} as const;

function parseOptions(args: readonly string[]): Options {
  const values = parseScenarioArgs(args, OPTION_SPEC, "server");
  const options: Options = {
    json: values.json,
    validate: values.validate,
    floor: !values["no-floor"],
    seconds: wholeNumber(values.seconds, "--seconds", 1, 3600),
    rounds: wholeNumber(values.rounds, "--rounds", 1, 100),
    memcachedThreads: wholeNumber(values["memcached-threads"], "--memcached-threads", 1, 64),
    loadThreads: wholeNumber(values["load-threads"], "--load-threads", 1, 64),
  };
  for (const workload of WORKLOADS) {
    if (workload.concurrency % options.loadThreads !== 0) {
      throw new Error(
        `--load-threads ${options.loadThreads} does not divide the ${workload.concurrency} connections of ` +
          `${workload.id}: memcaslap needs the concurrency to be a multiple of its threads; try 1, 2 or 4`,
      );
    }
  }
  return options;
}

async function runServerScenario(args: readonly string[]): Promise<void> {
  const options = parseOptions(args);
  const memcached = findExecutable("MEMCACHED_BIN", ["memcached"]);
  const memcaslap = findExecutable("MEMCASLAP_BIN", ["memcaslap", "memaslap"]);
  if (memcached === undefined || memcaslap === undefined) {
    const missing = [memcached === undefined ? "memcached" : "", memcaslap === undefined ? "memcaslap" : ""];
    throw new Error(
      `${missing.filter(Boolean).join(" and ")} not found on PATH: the server benchmark drives real memcached ` +
        `and the embedded server with Debian's memcaslap; install both with: ${INSTALL_HINT}`,
    );
  }
  const { targets, comparisons } = lineup(options, memcached);

  const workDir = await mkdtemp(join(tmpdir(), "memipc-bench-"));
  const removeSignalHandlers = stopChildrenOnSignal(() => rmSync(workDir, { recursive: true, force: true }));
  try {
    const others = targets.slice(1).map((target) => target.label);
    progress(
      `server: ${versionOf(memcached, "-V")} (-t ${options.memcachedThreads}) vs ${others.join(", ")}, ` +
        `${versionOf(memcaslap, "-V")} -T ${options.loadThreads}, ${options.seconds} s per run, ` +
        `${options.rounds} round(s)`,
    );
    // results[workload][target] = one LoadResult per round
    const results = WORKLOADS.map(() => targets.map((): LoadResult[] => []));
    for (let round = 0; round < options.rounds; round++) {
      for (const [w, workload] of WORKLOADS.entries()) {
        const configFile = join(workDir, `${workload.id}.cnf`);
        await writeFile(configFile, memcaslapConfig(workload));
        // Rotate which server goes first, so drift over the run does not favour one of them: over as many
        // rounds as there are servers, each one takes each place once for every workload.
        const order = targets.map((_, i) => (round + w + i) % targets.length);
        if (round === 0) {
          const args = memcaslapArgs(
            `${HOST}:PORT`,
            `${workload.id}.cnf`,
            workload,
            options.seconds,
            options.loadThreads,
          );
          progress(`${workload.id}: memcaslap ${args.join(" ")}  (${workload.id}.cnf: ${oneLine(workload)})`);
        }
        for (const t of order) {
          const target = targets[t]!;
          progress(`round ${round + 1}/${options.rounds}: ${workload.id} on ${target.label}…`);
          const result = await measure(target, memcaslap, configFile, workload, options);
          progress(
            `  ${formatRate(result.rate)} ${workload.unit}/s, hit rate ${formatPercent(result.hitRate)}` +
              (result.serverCpuPercent === undefined
                ? ""
                : `, server CPU ${result.serverCpuPercent.toFixed(0)}%`),
          );
          results[w]![t]!.push(result);
        }
      }
    }
    const rows = WORKLOADS.map((workload, w) => ({
      workload,
      figures: targets.map((_, t) => summarize(results[w]![t]!)),
    }));
    console.log(renderTable(targets, comparisons, rows));
    for (const { workload, figures } of rows) {
      for (let t = 1; t < targets.length; t++) {
        if (Math.abs(figures[0]!.hitRate - figures[t]!.hitRate) > HIT_RATE_TOLERANCE) {
          console.log(
            `warning: ${workload.id} hit rates differ (${targets[0]!.label} ${formatPercent(figures[0]!.hitRate)}, ` +
              `${targets[t]!.label} ${formatPercent(figures[t]!.hitRate)}): the servers did not do the same work`,
          );
        }
      }
    }
    if (options.json) console.log(JSON.stringify(toJson(targets, comparisons, rows, options)));
  } finally {
    removeSignalHandlers();
    await rm(workDir, { recursive: true, force: true });
  }
}

/**
 * memcached, then the node floor, then memipc; ratios of memipc to both and of the floor to memcached.
 * `--validate` is memcached against itself, with one ratio under the usual key.
 */
function lineup(options: Options, memcached: string): Lineup {
  const baseline = memcachedTarget("memcached", "memcached", memcached, options.memcachedThreads, MEMORY_MB);
  if (options.validate) {
    const again = memcachedTarget(
      "memcached2",
      "memcached (again)",
      memcached,
      options.memcachedThreads,
      MEMORY_MB,
    );
    return { targets: [baseline, again], comparisons: [{ key: "ratio", of: 1, to: 0 }] };
  }
  if (!options.floor) {
    return { targets: [baseline, embeddedTarget()], comparisons: [{ key: "ratio", of: 1, to: 0 }] };
  }
  return {
    targets: [baseline, nodeFloorTarget(), embeddedTarget()],
    comparisons: [
      { key: "ratio", of: 2, to: 0 },
      { key: "ratio_vs_node_floor", of: 2, to: 1 },
      { key: "ratio_node_floor_vs_memcached", of: 1, to: 0 },
    ],
  };
}

function embeddedTarget(): Target {
  // This file runs as dist/bench/server.js; the CLI is built to dist/src/cli/main.js.
  const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  if (!existsSync(cli)) {
    throw new Error(
      `the embedded server's CLI is not built (${cli} is missing): run \`npm run build\`; ` +
        "to check the harness without it, add --validate",
    );
  }
  return {
    id: "memipc",
    label: "memipc",
    command: (port) => ({
      file: process.execPath,
      args: [cli, "server", "--port", String(port), "--listen", HOST, "--memory", `${MEMORY_MB}m`],
    }),
  };
}

function nodeFloorTarget(): Target {
  // Built next to this file: dist/bench/node-floor.js.
  const script = fileURLToPath(new URL("./node-floor.js", import.meta.url));
  if (!existsSync(script)) {
    throw new Error(
      `the node floor server is not built (${script} is missing): run \`npm run build\`, ` +
        "or leave the floor out with --no-floor",
    );
  }
  return {
    id: "node_floor",
    label: "node floor",
    command: (port) => ({
      file: process.execPath,
      args: [script, "--port", String(port), "--value-bytes", String(VALUE_BYTES)],
    }),
  };
}

/** The -F file on one line, for the progress output. */
function oneLine(workload: Workload): string {
  return memcaslapConfig(workload).trim().split("\n").join(" | ");
}

/** memcaslap's -F file: key and value sizes and the get/set mix (0 is set, 1 is get). */
function memcaslapConfig(workload: Workload): string {
  const setShare = Math.round((1 - workload.getShare) * 1000) / 1000;
  return [
    "key",
    `${KEY_BYTES} ${KEY_BYTES} 1`,
    "value",
    `${VALUE_BYTES} ${VALUE_BYTES} 1`,
    "cmd",
    `0 ${setShare}`,
    `1 ${workload.getShare}`,
    "",
  ].join("\n");
}

function memcaslapArgs(
  server: string,
  configFile: string,
  workload: Workload,
  seconds: number,
  threads: number,
): string[] {
  return [
    `--servers=${server}`,
    `--cfg_cmd=${configFile}`,
    `--time=${seconds}s`,
    `--threads=${threads}`,
    `--concurrency=${workload.concurrency}`,
    `--win_size=${workload.window}`,
    `--division=${workload.keysPerGet}`,
    // A period longer than the run: no periodic dumps, but the final latency histogram is printed.
    `--stat_freq=${seconds * 10}s`,
  ];
}

/** Starts a fresh server, runs memcaslap against it once, stops the server. */
async function measure(
  target: Target,
  memcaslap: string,
  configFile: string,
  workload: Workload,
  options: Options,
): Promise<LoadResult> {
  const server = await startTarget(target);
  try {
    const cpuBefore = cpuSeconds(server.pid);
    const started = performance.now();
    const address = `${HOST}:${server.port}`;
    const args = memcaslapArgs(address, configFile, workload, options.seconds, options.loadThreads);
    const output = await runLoad(memcaslap, args, options.seconds + LOAD_GRACE_S, server);
    const wall = (performance.now() - started) / 1000;
    const cpuAfter = cpuSeconds(server.pid);
    const result = parseMemcaslap(output, workload.unit);
    // CPU over the whole memcaslap run, preload included: the share of a core the server used.
    if (cpuBefore !== undefined && cpuAfter !== undefined) {
      result.serverCpuPercent = ((cpuAfter - cpuBefore) / wall) * 100;
    }
    return result;
  } finally {
    await server.stop();
  }
}

/** Runs memcaslap to completion and returns its standard output; fails on a timeout or a dead server. */
async function runLoad(
  file: string,
  args: string[],
  limitSeconds: number,
  server: RunningServer,
): Promise<string> {
  const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"] });
  const closed = track(child);
  let output = "";
  const append = (chunk: string): void => {
    if (output.length < OUTPUT_LIMIT) output += chunk;
  };
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", append);
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", append);
  let spawnError: Error | undefined;
  child.once("error", (error) => {
    spawnError = error;
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, limitSeconds * 1000);
  await closed;
  clearTimeout(timer);
  const command = `memcaslap ${args.join(" ")}`;
  if (spawnError !== undefined) throw new Error(`could not run ${command}: ${spawnError.message}`);
  if (timedOut) throw new Error(`${command} did not finish within ${limitSeconds} s and was stopped`);
  if (server.exited()) {
    throw new Error(`${server.label} exited during the run: ${server.stderr().trim() || "no output"}`);
  }
  if (child.exitCode !== 0 || !/Run time:/.test(output)) {
    throw new Error(
      `${command} failed (${child.exitCode ?? child.signalCode}) against ${server.label}:\n${output.trim()}`,
    );
  }
  return output;
}

/**
 * Reads memcaslap's final summary. Its TPS counts every command, including the sets that preload keys
 * before an all-get run, which its run time leaves out; so the rate is TPS scaled to the commands of
 * the measured phase: for a get/set mix every command, for multi-gets the keys fetched (cmd_get).
 */
export function parseMemcaslap(output: string, unit: "ops" | "keys"): LoadResult {
  const number = (pattern: RegExp, what: string): number => {
    const match = pattern.exec(output);
    if (!match) throw new Error(`memcaslap's output has no ${what}:\n${output.trim()}`);
    return Number(match[1]);
  };
  const runSeconds = number(/Run time:\s*([\d.]+)s/, "run time");
  const ops = number(/Run time:.*?Ops:\s*(\d+)/, "operation count");
  const tps = number(/Run time:.*?TPS:\s*(\d+)/, "TPS");
  const cmdGet = number(/^\s*cmd_get:\s*(\d+)/m, "cmd_get");
  const cmdSet = number(/^\s*cmd_set:\s*(\d+)/m, "cmd_set");
  const getMisses = number(/^\s*get_misses:\s*(\d+)/m, "get_misses");
  const measured = unit === "keys" ? cmdGet : ops;
  const rate = ops === 0 ? 0 : (tps * measured) / ops;
  const histogram = log2Histogram(output);
  return {
    runSeconds,
    rate,
    cmdGet,
    cmdSet,
    getMisses,
    hitRate: cmdGet === 0 ? 1 : 1 - getMisses / cmdGet,
    p50Us: histogram && percentileBound(histogram, 0.5),
    p99Us: histogram && percentileBound(histogram, 0.99),
  };
}

/**
 * The "Log2 Dist" of the "Total Statistics" block: rows such as `8:  0  10  72  500`, where the row
 * label is an exponent and each column the next one; exponent e counts requests in (2^(e-1), 2^e] µs.
 */
function log2Histogram(output: string): Map<number, number> | undefined {
  const start = output.search(/Total Statistics \(\d+ events\)/);
  if (start < 0) return undefined;
  const lines = output.slice(start).split("\n");
  const distAt = lines.findIndex((line) => line.includes("Log2 Dist:"));
  if (distAt < 0) return undefined;
  const histogram = new Map<number, number>();
  for (const line of lines.slice(distAt + 1)) {
    const match = /^\s*(\d+):((?:\s+\d+)+)\s*$/.exec(line);
    if (!match) break;
    const counts = match[2]!.trim().split(/\s+/).map(Number);
    counts.forEach((count, i) => histogram.set(Number(match[1]) + i, count));
  }
  return histogram.size > 0 ? histogram : undefined;
}

function percentileBound(histogram: Map<number, number>, fraction: number): number | undefined {
  const total = [...histogram.values()].reduce((sum, count) => sum + count, 0);
  if (total === 0) return undefined;
  let seen = 0;
  for (const exponent of [...histogram.keys()].sort((a, b) => a - b)) {
    seen += histogram.get(exponent)!;
    if (seen >= fraction * total) return 2 ** exponent;
  }
  return undefined;
}

interface Figures {
  rate: number;
  hitRate: number;
  p50Us: number | undefined;
  p99Us: number | undefined;
  serverCpuPercent: number | undefined;
}

/** Medians over rounds, each figure on its own. */
function summarize(results: LoadResult[]): Figures {
  return {
    rate: median(results.map((r) => r.rate))!,
    hitRate: median(results.map((r) => r.hitRate))!,
    p50Us: median(results.map((r) => r.p50Us)),
    p99Us: median(results.map((r) => r.p99Us)),
    serverCpuPercent: median(results.map((r) => r.serverCpuPercent)),
  };
}

interface Row {
  workload: Workload;
  figures: Figures[];
}

function renderTable(targets: Target[], comparisons: Comparison[], rows: Row[]): string {
  const labels = targets.map((target) => target.label);
  const header = [
    "scenario",
    "unit",
    ...labels,
    ...comparisons.map(({ of, to }) => `ratio ${labels[of]}/${labels[to]}`),
    "hit % (each)",
    "p50 ≤ µs (each)",
    "p99 ≤ µs (each)",
    "server CPU % (each)",
  ];
  const body = rows.map(({ workload, figures }) => {
    const each = (f: (figures: Figures) => string): string => figures.map(f).join(" / ");
    return [
      workload.id,
      `${workload.unit}/s`,
      ...figures.map((f) => formatRate(f.rate)),
      ...comparisons.map(({ of, to }) => ratio(figures[of]!.rate, figures[to]!.rate).toFixed(2)),
      each((f) => (f.hitRate * 100).toFixed(1)),
      each((f) => f.p50Us?.toString() ?? "?"),
      each((f) => f.p99Us?.toString() ?? "?"),
      each((f) => f.serverCpuPercent?.toFixed(0) ?? "?"),
    ];
  });
  const legend = rows.map(({ workload }) => `  ${workload.id}: ${workload.label}`);
  return [
    "",
    ...alignColumns(header, body, 2),
    "",
    ...legend,
    "  p50/p99: upper bound of memcaslap's power-of-two latency bucket",
    `  (each): one figure per server, in column order: ${labels.join(" / ")}`,
  ].join("\n");
}

function toJson(
  targets: Target[],
  comparisons: Comparison[],
  rows: Row[],
  options: Options,
): Record<string, unknown> {
  const json: Record<string, unknown> = {
    scenario: "server",
    seconds: options.seconds,
    rounds: options.rounds,
    memcached_threads: options.memcachedThreads,
    load_threads: options.loadThreads,
    key_bytes: KEY_BYTES,
    value_bytes: VALUE_BYTES,
  };
  for (const { workload, figures } of rows) {
    const unit = workload.unit === "keys" ? "keys_per_s" : "ops_per_s";
    targets.forEach((target, t) => {
      const f = figures[t]!;
      const prefix = `${target.id}_${workload.id}`;
      json[`${prefix}_${unit}`] = Math.round(f.rate);
      json[`${prefix}_hit_rate`] = round(f.hitRate, 4);
      json[`${prefix}_p50_us`] = f.p50Us ?? null;
      json[`${prefix}_p99_us`] = f.p99Us ?? null;
      json[`${prefix}_server_cpu_percent`] =
        f.serverCpuPercent === undefined ? null : round(f.serverCpuPercent, 1);
    });
    for (const { key, of, to } of comparisons) {
      json[`${key}_${workload.id}`] = round(ratio(figures[of]!.rate, figures[to]!.rate), 3);
    }
  }
  return json;
}
