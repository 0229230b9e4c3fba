// Scenario "client": memipc's client against memcache-client and memjs, all in this process, against one real
// memcached started for the run: sequential get/set, 100 concurrent callers, and multi-gets of 100 keys.
import { createRequire } from "node:module";
import { MemcacheClient, type MultiRetrievalResponse } from "memcache-client";
import { Client } from "../src/index.js";
import {
  HOST,
  alignColumns,
  cpuSeconds,
  findExecutable,
  formatPercent,
  formatRate,
  formatUs,
  median,
  memcachedTarget,
  progress,
  ratio,
  round,
  sleep,
  startTarget,
  stopChildrenOnSignal,
  versionOf,
  wholeNumber,
  type RunningServer,
  parseScenarioArgs,
} from "./common.js";
import type { Scenario } from "./main.js";

export const DEFAULT_SECONDS = 5; // measured seconds per client and workload; 9 measurements make a round
export const DEFAULT_ROUNDS = 1; // each round measures every workload with every client; medians are reported
export const DEFAULT_MEMCACHED_THREADS = 2; // memcached's -t: one worker per core on the 2-core reference machine
const WARMUP_SECONDS = 1; // the same workload, unmeasured, on the same client just before it is measured
const MEMORY_MB = 1024; // memcached's -m: far more than all key spaces of a run, so nothing is evicted
const KEY_BYTES = 32;
const VALUE_BYTES = 100;
const KEY_SPACE = 10_000; // keys per measurement, all preloaded, so every get hits
const GET_SHARE = 0.9; // the rest are sets
const CALLERS = 100; // concurrent callers in the `concurrent` workload
const KEYS_PER_MULTI_GET = 100;
const PRELOAD_BATCH = 500; // sets in flight at once while preloading
// memcache-client stores a Buffer with flag 8 (its TYPE_BINARY) and turns a value with other flags into a
// string when it reads it; preloading with its own flag gives it back Buffers, as it would after its own sets.
const BINARY_FLAG = 8;
const HIT_RATE_TOLERANCE = 0.001; // below 99.9 % hits a client did not do the same work as the others
const INSTALL_HINT = "apt-get install -y memcached";

/** The goal for memipc over the best other client, by workload. */
const GOALS: Record<WorkloadId, number> = { sequential: 1, concurrent: 2, multi_get: 2 };

/** The three clients behind one interface; values are checked to be the 100 bytes that were stored. */
interface Driver {
  /** True on a hit. */
  get(key: string): Promise<boolean>;
  set(key: string, value: Buffer): Promise<void>;
  /** Keys found among `keys`. */
  getMulti(keys: string[]): Promise<number>;
  close(): void;
}

interface Contender {
  /** Prefix of its JSON keys. */
  readonly id: string;
  /** Column heading. */
  readonly label: string;
  /** How its multi-get is done, for the legend. */
  readonly multiGet: string;
  connect(port: number): Driver;
}

type WorkloadId = "sequential" | "concurrent" | "multi_get";

interface Workload {
  readonly id: WorkloadId;
  readonly label: string;
  /** What the rate counts: operations, or keys fetched by multi-gets. */
  readonly unit: "ops" | "keys";
  run(driver: Driver, keys: readonly string[], seconds: number): Promise<Sample>;
}

/** Latencies of one measurement, in nanoseconds, in a typed array that grows. */
class Sample {
  latencies = new Float64Array(1 << 16);
  count = 0;
  /** Keys asked for by gets (one per get, 100 per multi-get), and how many were found. */
  keysAsked = 0;
  keysFound = 0;
  elapsedNs = 0;

  record(ns: number): void {
    if (this.count === this.latencies.length) {
      const grown = new Float64Array(this.latencies.length * 2);
      grown.set(this.latencies);
      this.latencies = grown;
    }
    this.latencies[this.count++] = ns;
  }

  /** The q-quantile in µs (nearest rank). */
  quantilesUs(qs: readonly number[]): number[] {
    const sorted = this.latencies.subarray(0, this.count).sort();
    return qs.map((q) => (this.count === 0 ? 0 : sorted[Math.max(0, Math.ceil(q * this.count) - 1)]! / 1000));
  }
}

/** One measurement's figures. */
interface Result {
  rate: number;
  hitRate: number;
  p50Us: number;
  p99Us: number;
  clientCpuPercent: number;
  memcachedCpuPercent: number | undefined;
}

interface Options {
  seconds: number;
  rounds: number;
  memcachedThreads: number;
  json: boolean;
}

export const clientScenario: Scenario = {
  name: "client",
  summary:
    "memipc's client vs memcache-client and memjs against one real memcached: sequential get/set, " +
    `${CALLERS} concurrent callers, multi-get of ${KEYS_PER_MULTI_GET} keys`,
  options: [
    `  --json                  print one JSON object with every figure as the last line`,
    `  --seconds N             measured seconds per client and workload (default ${DEFAULT_SECONDS}), ` +
      `after ${WARMUP_SECONDS} s of warm-up`,
    `  --rounds N              repeat the alternation N times and report medians (default ${DEFAULT_ROUNDS})`,
    `  --memcached-threads N   memcached's -t (default ${DEFAULT_MEMCACHED_THREADS})`,
    "",
    `Needs memcached on PATH (or $MEMCACHED_BIN): ${INSTALL_HINT}`,
  ].join("\n"),
  run: runClientScenario,
};

const OPTION_SPEC = {
  json: { type: "boolean", default: false },
  seconds: { type: "string", default: String(DEFAULT_SECONDS) },
  rounds: { type: "string", default: String(DEFAULT_ROUNDS) },
  "memcached-threads": { type: "string", default: String(DEFAULT_MEMCACHED_THREADS) },
} as const;

function parseOptions(args: readonly string[]): Options {
  const values = parseScenarioArgs(args, OPTION_SPEC, "client");
  return {
    json: values.json,
    seconds: wholeNumber(values.seconds, "--seconds", 1, 3600),
    rounds: wholeNumber(values.rounds, "--rounds", 1, 100),
    memcachedThreads: wholeNumber(values["memcached-threads"], "--memcached-threads", 1, 64),
  };
}

// ---- the clients ----------------------------------------------------------------------------------------

function memipcContender(): Contender {
  return {
    id: "memipc",
    label: "memipc",
    multiGet: "getMulti(keys): one get line per server",
    connect(port) {
      const client = new Client({ servers: `${HOST}:${port}` });
      return {
        async get(key) {
          const result = await client.get(key);
          return result !== undefined && result.value.byteLength === VALUE_BYTES;
        },
        async set(key, value) {
          await client.set(key, value);
        },
        async getMulti(keys) {
          const found = await client.getMulti(keys);
          let hits = 0;
          for (const result of found.values()) if (result.value.byteLength === VALUE_BYTES) hits++;
          return hits;
        },
        close: () => client.close(),
      };
    },
  };
}

function memcacheClientContender(): Contender {
  return {
    id: "memcache_client",
    label: "memcache-client",
    multiGet: "get([keys]): one get line",
    connect(port) {
      // One connection (its default) like the other two; TCP_NODELAY, which memipc sets and memcache-client
      // documents as the option for lower latency; its default logger would print to stdout.
      const client = new MemcacheClient({ server: `${HOST}:${port}`, noDelay: true, logger: silentLogger });
      const isHit = (value: unknown): boolean => Buffer.isBuffer(value) && value.byteLength === VALUE_BYTES;
      return {
        async get(key) {
          const result = await client.get<Buffer>(key);
          return result !== undefined && isHit(result.value);
        },
        async set(key, value) {
          await client.set(key, value);
        },
        async getMulti(keys) {
          const found = await client.get<MultiRetrievalResponse>(keys);
          let hits = 0;
          for (const key of keys) if (isHit(found[key]?.value)) hits++;
          return hits;
        },
        close: () => client.shutdown(),
      };
    },
  };
}

/** The part of memjs 1.3.2 used here (it ships no types). */
interface MemjsClient {
  get(key: string): Promise<{ value: Buffer | null; flags: Buffer | null }>;
  set(key: string, value: Buffer, options: { expires?: number }): Promise<boolean>;
  close(): void;
}
interface MemjsModule {
  Client: { create(servers: string, options: Record<string, unknown>): MemjsClient };
}

function memjsContender(): Contender {
  const memjs = createRequire(import.meta.url)("memjs") as MemjsModule;
  return {
    id: "memjs",
    label: "memjs",
    multiGet: `no multi-get in memjs: ${KEYS_PER_MULTI_GET} concurrent get(key) calls`,
    connect(port) {
      // memjs logs failures with logger.log, console by default: send them to stderr, away from the JSON.
      const logger = { log: (...parts: unknown[]) => progress(`memjs: ${parts.join(" ")}`) };
      const client = memjs.Client.create(`${HOST}:${port}`, { logger });
      const get = async (key: string): Promise<boolean> => {
        const { value } = await client.get(key);
        return value !== null && value.byteLength === VALUE_BYTES;
      };
      return {
        get,
        async set(key, value) {
          await client.set(key, value, {});
        },
        async getMulti(keys) {
          const hits = await Promise.all(keys.map(get));
          return hits.reduce((sum, hit) => sum + (hit ? 1 : 0), 0);
        },
        close: () => client.close(),
      };
    },
  };
}

const silentLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

// ---- the workloads --------------------------------------------------------------------------------------

const WORKLOADS: readonly Workload[] = [
  {
    id: "sequential",
    label: "one caller, each get/set (90/10) awaited before the next",
    unit: "ops",
    run: (driver, keys, seconds) =>
      timed(seconds, (sample, deadline) => loop(driver, keys, 1, sample, deadline)),
  },
  {
    id: "concurrent",
    label: `${CALLERS} callers, each looping awaited get/set (90/10); total rate`,
    unit: "ops",
    run: (driver, keys, seconds) =>
      timed(seconds, (sample, deadline) =>
        Promise.all(Array.from({ length: CALLERS }, (_, i) => loop(driver, keys, i + 1, sample, deadline))),
      ),
  },
  {
    id: "multi_get",
    label: `one caller, each multi-get of ${KEYS_PER_MULTI_GET} distinct keys awaited; rate counts keys`,
    unit: "keys",
    run: (driver, keys, seconds) =>
      timed(seconds, (sample, deadline) => multiGetLoop(driver, keys, sample, deadline)),
  },
];

/** Runs `body` until the deadline it is given and records the wall time until every caller finished. */
async function timed(
  seconds: number,
  body: (sample: Sample, deadline: bigint) => Promise<unknown>,
): Promise<Sample> {
  const sample = new Sample();
  const started = process.hrtime.bigint();
  await body(sample, started + BigInt(seconds * 1e9));
  sample.elapsedNs = Number(process.hrtime.bigint() - started);
  return sample;
}

/** One caller: get (90 %) or set (10 %) of a random key, awaited, until the deadline. */
async function loop(
  driver: Driver,
  keys: readonly string[],
  seed: number,
  sample: Sample,
  deadline: bigint,
): Promise<void> {
  const random = xorshift(seed);
  const value = VALUE;
  for (;;) {
    const key = keys[random() % keys.length]!;
    const isGet = random() / 0x1_0000_0000 < GET_SHARE;
    const start = process.hrtime.bigint();
    if (isGet) {
      const hit = await driver.get(key);
      sample.keysAsked++;
      if (hit) sample.keysFound++;
    } else {
      await driver.set(key, value);
    }
    const end = process.hrtime.bigint();
    sample.record(Number(end - start));
    if (end >= deadline) return;
  }
}

/** One caller: multi-gets of 100 consecutive keys from a random start, awaited, until the deadline. */
async function multiGetLoop(
  driver: Driver,
  keys: readonly string[],
  sample: Sample,
  deadline: bigint,
): Promise<void> {
  const random = xorshift(1);
  for (;;) {
    const first = random() % (keys.length - KEYS_PER_MULTI_GET);
    const batch = keys.slice(first, first + KEYS_PER_MULTI_GET);
    const start = process.hrtime.bigint();
    const found = await driver.getMulti(batch);
    const end = process.hrtime.bigint();
    sample.keysAsked += batch.length;
    sample.keysFound += found;
    sample.record(Number(end - start));
    if (end >= deadline) return;
  }
}

/** A small deterministic generator (xorshift32), so every client sees the same key sequence. */
function xorshift(seed: number): () => number {
  let state = Math.imul(seed, 0x9e3779b1) | 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
}

const VALUE = Buffer.alloc(VALUE_BYTES, "v");

let keySpaces = 0;

/** KEY_SPACE fresh 32-byte keys, unique to one measurement, so no client reads what another one wrote. */
function newKeySpace(): string[] {
  const prefix = `mb${(keySpaces++).toString(36)}_`;
  return Array.from(
    { length: KEY_SPACE },
    (_, i) => prefix + String(i).padStart(KEY_BYTES - prefix.length, "0"),
  );
}

/** Stores every key of the space (with memipc's client; not measured). */
async function preload(port: number, keys: readonly string[]): Promise<void> {
  const loader = new Client({ servers: `${HOST}:${port}` });
  try {
    for (let start = 0; start < keys.length; start += PRELOAD_BATCH) {
      const slice = keys.slice(start, start + PRELOAD_BATCH);
      await Promise.all(slice.map((key) => loader.set(key, VALUE, { flags: BINARY_FLAG })));
    }
  } finally {
    loader.close();
  }
}

// ---- the run ----------------------------------------------------------------------------------------------

async function runClientScenario(args: readonly string[]): Promise<void> {
  const options = parseOptions(args);
  const memcached = findExecutable("MEMCACHED_BIN", ["memcached"]);
  if (memcached === undefined) {
    throw new Error(
      `memcached not found on PATH (or $MEMCACHED_BIN): the client benchmark runs the clients against real ` +
        `memcached; install it with: ${INSTALL_HINT}`,
    );
  }
  const contenders = [memipcContender(), memcacheClientContender(), memjsContender()];
  const target = memcachedTarget("memcached", "memcached", memcached, options.memcachedThreads, MEMORY_MB);
  const removeSignalHandlers = stopChildrenOnSignal();
  let server: RunningServer | undefined;
  try {
    server = await startTarget(target);
    progress(
      `client: ${versionOf(memcached, "-V")} (-t ${options.memcachedThreads}) on ${HOST}:${server.port}, ` +
        `Node.js ${process.version}, ${contenders.map((c) => c.label).join(" vs ")}; ` +
        `${WARMUP_SECONDS} s warm-up + ${options.seconds} s per measurement, ${options.rounds} round(s)`,
    );
    // results[workload][contender] = one Result per round
    const results = WORKLOADS.map(() => contenders.map((): Result[] => []));
    for (let round = 0; round < options.rounds; round++) {
      for (const [w, workload] of WORKLOADS.entries()) {
        // Rotate which client goes first, so drift over the run does not favour one of them: over three
        // rounds each client takes each place once for every workload.
        const order = contenders.map((_, i) => (round + w + i) % contenders.length);
        for (const c of order) {
          const contender = contenders[c]!;
          progress(`round ${round + 1}/${options.rounds}: ${workload.id} with ${contender.label}…`);
          const result = await measure(contender, workload, server, options.seconds);
          progress(
            `  ${formatRate(result.rate)} ${workload.unit}/s, p50 ${formatUs(result.p50Us)} µs, ` +
              `p99 ${formatUs(result.p99Us)} µs, hit rate ${formatPercent(result.hitRate)}, ` +
              `client CPU ${result.clientCpuPercent.toFixed(0)}%`,
          );
          results[w]![c]!.push(result);
        }
      }
    }
    const rows = WORKLOADS.map((workload, w) => ({
      workload,
      figures: contenders.map((_, c) => summarize(results[w]![c]!)),
    }));
    console.log(renderTable(contenders, rows));
    for (const { workload, figures } of rows) {
      figures.forEach((f, c) => {
        if (f.hitRate < 1 - HIT_RATE_TOLERANCE) {
          console.log(
            `warning: ${workload.id}: ${contenders[c]!.label} found only ${formatPercent(f.hitRate)} of the keys ` +
              "it asked for: it did not do the same work as the others",
          );
        }
      });
    }
    if (options.json) console.log(JSON.stringify(toJson(contenders, rows, options)));
  } finally {
    await server?.stop();
    removeSignalHandlers();
  }
}

/** A fresh key space and client: warm-up, then the measured run; the client is closed after. */
async function measure(
  contender: Contender,
  workload: Workload,
  server: RunningServer,
  seconds: number,
): Promise<Result> {
  const keys = newKeySpace();
  await preload(server.port, keys);
  const driver = contender.connect(server.port);
  try {
    await workload.run(driver, keys, WARMUP_SECONDS);
    await sleep(100); // let the warm-up's garbage and timers settle
    const cpuBefore = process.cpuUsage();
    const serverCpuBefore = cpuSeconds(server.pid);
    const sample = await workload.run(driver, keys, seconds);
    const cpu = process.cpuUsage(cpuBefore);
    const serverCpuAfter = cpuSeconds(server.pid);
    if (server.exited()) throw new Error(`memcached exited during the run: ${server.stderr().trim()}`);
    const wallSeconds = sample.elapsedNs / 1e9;
    const [p50Us, p99Us] = sample.quantilesUs([0.5, 0.99]);
    const operations = workload.unit === "keys" ? sample.keysAsked : sample.count;
    return {
      rate: operations / wallSeconds,
      hitRate: sample.keysAsked === 0 ? 1 : sample.keysFound / sample.keysAsked,
      p50Us: p50Us!,
      p99Us: p99Us!,
      clientCpuPercent: ((cpu.user + cpu.system) / 1e6 / wallSeconds) * 100,
      memcachedCpuPercent:
        serverCpuBefore === undefined || serverCpuAfter === undefined
          ? undefined
          : ((serverCpuAfter - serverCpuBefore) / wallSeconds) * 100,
    };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${workload.id} with ${contender.label} failed: ${reason}`, { cause: error });
  } finally {
    driver.close();
  }
}

// ---- the report -----------------------------------------------------------------------------------------

interface Figures {
  rate: number;
  hitRate: number;
  p50Us: number;
  p99Us: number;
  clientCpuPercent: number;
  memcachedCpuPercent: number | undefined;
}

/** Medians over rounds, each figure on its own. */
function summarize(results: Result[]): Figures {
  return {
    rate: median(results.map((r) => r.rate))!,
    hitRate: median(results.map((r) => r.hitRate))!,
    p50Us: median(results.map((r) => r.p50Us))!,
    p99Us: median(results.map((r) => r.p99Us))!,
    clientCpuPercent: median(results.map((r) => r.clientCpuPercent))!,
    memcachedCpuPercent: median(results.map((r) => r.memcachedCpuPercent)),
  };
}

interface Row {
  workload: Workload;
  /** One per contender; the first is memipc. */
  figures: Figures[];
}

/** The fastest client other than memipc (index 0) on a row. */
function bestOther(row: Row): number {
  let best = 1;
  for (let c = 2; c < row.figures.length; c++) if (row.figures[c]!.rate > row.figures[best]!.rate) best = c;
  return best;
}

function renderTable(contenders: Contender[], rows: Row[]): string {
  const labels = contenders.map((contender) => contender.label);
  const header = [
    "workload",
    "unit",
    ...labels,
    "ratio memipc/best other",
    "best other",
    "goal",
    "p50 µs (each)",
    "p99 µs (each)",
    "hit % (each)",
    "client CPU % (each)",
    "memcached CPU % (each)",
  ];
  const body = rows.map((row) => {
    const { workload, figures } = row;
    const each = (f: (figures: Figures) => string): string => figures.map(f).join(" / ");
    const best = bestOther(row);
    // Judged at the precision printed, so a row never reads "1.00: not met".
    const r = round(ratio(figures[0]!.rate, figures[best]!.rate), 2);
    const goal = GOALS[workload.id];
    return [
      workload.id,
      `${workload.unit}/s`,
      ...figures.map((f) => formatRate(f.rate)),
      r.toFixed(2),
      labels[best]!,
      `≥ ${goal.toFixed(2)}: ${r >= goal ? "met" : "not met"}`,
      each((f) => formatUs(f.p50Us)),
      each((f) => formatUs(f.p99Us)),
      each((f) => (f.hitRate * 100).toFixed(1)),
      each((f) => f.clientCpuPercent.toFixed(0)),
      each((f) => f.memcachedCpuPercent?.toFixed(0) ?? "?"),
    ];
  });
  return [
    "",
    ...alignColumns(header, body, 2),
    "",
    ...rows.map(({ workload }) => `  ${workload.id}: ${workload.label}`),
    ...contenders.map((contender) => `  multi-get, ${contender.label}: ${contender.multiGet}`),
    `  ${KEY_BYTES}-byte keys, ${VALUE_BYTES}-byte values, ${KEY_SPACE} keys preloaded per measurement; ` +
      "one connection per client",
    "  p50/p99: per operation (a whole multi-get for multi_get), from process.hrtime.bigint",
    "  client CPU: this process (all three clients run in it, one at a time); 100 % is one core",
    `  (each): one figure per client, in column order: ${labels.join(" / ")}`,
  ].join("\n");
}

function toJson(contenders: Contender[], rows: Row[], options: Options): Record<string, unknown> {
  const json: Record<string, unknown> = {
    scenario: "client",
    seconds: options.seconds,
    warmup_seconds: WARMUP_SECONDS,
    rounds: options.rounds,
    memcached_threads: options.memcachedThreads,
    key_bytes: KEY_BYTES,
    value_bytes: VALUE_BYTES,
    callers: CALLERS,
    keys_per_multi_get: KEYS_PER_MULTI_GET,
  };
  for (const row of rows) {
    const { workload, figures } = row;
    const unit = workload.unit === "keys" ? "keys_per_s" : "ops_per_s";
    contenders.forEach((contender, c) => {
      const f = figures[c]!;
      const prefix = `${contender.id}_${workload.id}`;
      json[`${prefix}_${unit}`] = Math.round(f.rate);
      json[`${prefix}_p50_us`] = round(f.p50Us, 1);
      json[`${prefix}_p99_us`] = round(f.p99Us, 1);
      json[`${prefix}_hit_rate`] = round(f.hitRate, 4);
      json[`${prefix}_client_cpu_percent`] = round(f.clientCpuPercent, 1);
      json[`${prefix}_memcached_cpu_percent`] =
        f.memcachedCpuPercent === undefined ? null : round(f.memcachedCpuPercent, 1);
    });
    for (let c = 1; c < contenders.length; c++) {
      json[`ratio_${workload.id}_vs_${contenders[c]!.id}`] = round(
        ratio(figures[0]!.rate, figures[c]!.rate),
        3,
      );
    }
    const best = bestOther(row);
    json[`best_other_${workload.id}`] = contenders[best]!.id;
    json[`ratio_${workload.id}_vs_best_other`] = round(ratio(figures[0]!.rate, figures[best]!.rate), 3);
  }
  return json;
}
