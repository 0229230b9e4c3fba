// One process of the "log" scenario (bench/log.ts): a producer (memipc's LogProducer, the naive idiom,
// SQLite or Redis XADD) or the drainer, configured by one JSON argument and steered by JSON lines on stdin.
//
// Protocol (one JSON object per line): the worker prints {"type":"ready"} once connected, starts on
// {"type":"go"} and prints {"type":"done",…} with its counts; latencies go to a file of float64 µs (native
// byte order). The drainer prints "ready" once it drains (or, with `startOnGo`, once connected: it starts on
// "go", for the catch-up run) and {"type":"reached",…} once its durable output holds `target` entries.
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { Client } from "../src/client/index.js";
import { createDrainer } from "../src/log/partitioned-drainer.js";
import { LogProducer, type PartitionBy } from "../src/log/producer.js";
import { openFileSink } from "../src/sinks/index.js";
import type { Latencies } from "./latencies.js";
import {
  cpuOf,
  measureOnGo,
  messageOf,
  parentMessages,
  runWorker,
  saturated,
  send,
  type Done,
} from "./worker-io.js";

const MAX_OUTSTANDING = 1_000_000; // appends issued and not yet answered at an offered load; past it, give up
const CHECK_EVERY_MS = 1; // how often the drainer worker looks at its metrics, on top of each commit

interface Common {
  /** 100-byte entries: the payload every producer appends. */
  line: string;
  /** Where to write the latencies (float64 µs). */
  latencies: string;
}

/**
 * Where the memipc roles find memcached and how the stream is split (bench/scale.ts); without them, the one
 * server on 127.0.0.1:`port` and one partition.
 */
interface Pool {
  /** "host:port,host:port,…": a pool (ketama), instead of `port`. */
  servers?: string;
  /** Partitions of the stream (default 1). */
  partitions?: number;
  /** How producers pick a partition (default: the producer's default, by node). */
  partitionBy?: PartitionBy;
}

/** The client's `servers`: the pool if given, else the one server on `port`. */
function serversOf(config: { port: number; servers?: string }): string {
  return config.servers ?? `127.0.0.1:${config.port}`;
}

/** Connects before "ready": to the one server, or (`version` goes to each) to every server of a pool. */
async function connect(client: Client, config: { servers?: string }): Promise<void> {
  if (config.servers === undefined) await client.get("bench:warm-up");
  else await client.version();
}

export type WorkerConfig =
  | (Common &
      Pool & {
        role: "memipc";
        port: number;
        stream: string;
        node: string;
        inflight: number;
        /** Stop after this long… */
        seconds?: number;
        /** …or after this many appends (the catch-up backlog). */
        count?: number;
        /** Appends per second, open loop (0: as fast as `inflight` callers go). */
        rate: number;
      })
  | (Common & { role: "naive"; port: number; seconds: number })
  | (Common & { role: "sqlite"; path: string; seconds: number })
  | (Common & { role: "redis"; port: number; key: string; inflight: number; seconds: number })
  | (Pool & {
      role: "drainer";
      port: number;
      stream: string;
      layout: "default" | "seed";
      dir: string;
      /** Connect, then wait for "go" before draining (catch-up); otherwise drain at once. */
      startOnGo: boolean;
    });

type Message =
  | { type: "go" }
  | { type: "target"; entries: number }
  | { type: "stop" }
  | { type: "go-target"; entries: number };

// ---- producers ------------------------------------------------------------------------------------------

async function runMemipc(config: Extract<WorkerConfig, { role: "memipc" }>): Promise<void> {
  const next = parentMessages<Message>();
  const client = new Client({ servers: serversOf(config) });
  const producer = new LogProducer(client, {
    stream: config.stream,
    node: config.node,
    partitions: config.partitions ?? 1,
    partitionBy: config.partitionBy,
  });
  await connect(client, config);
  send(
    await measureOnGo(next, config.latencies, (latencies) =>
      config.rate > 0
        ? offered(producer, config, latencies)
        : saturated(() => producer.append(config.line), config, latencies),
    ),
  );
  client.close();
}

/**
 * Open loop: appends issued on a schedule of `rate` per second whatever the answers do, so latency is not
 * hidden by a caller that waits (coordinated omission). Latency counts from the call of `append`.
 */
async function offered(
  producer: LogProducer,
  config: Extract<WorkerConfig, { role: "memipc" }>,
  latencies: Latencies,
): Promise<Done> {
  const started = performance.now();
  const seconds = config.seconds ?? 0;
  const total = Math.round(config.rate * seconds);
  const done: Done = { count: 0, errors: 0, seconds: 0 };
  let issued = 0;
  let answered = 0;
  await new Promise<void>((resolve, reject) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * config.rate));
      if (issued - answered > MAX_OUTSTANDING) {
        reject(new Error(`over ${MAX_OUTSTANDING} appends unanswered: the server does not keep up`));
        return;
      }
      for (; issued < due; issued++) {
        const t = performance.now();
        producer.append(config.line).then(
          () => {
            done.count++;
            latencies.record((performance.now() - t) * 1000);
            if (++answered === total) resolve();
          },
          (error: unknown) => {
            done.errors++;
            done.firstError ??= messageOf(error);
            if (++answered === total) resolve();
          },
        );
      }
      if (issued < total) setTimeout(tick, 1);
    };
    tick();
  });
  done.seconds = (performance.now() - started) / 1000;
  return done;
}

/** The original idiom, as written: one `incr`, then one `add` of the line under the number, each awaited. */
async function runNaive(config: Extract<WorkerConfig, { role: "naive" }>): Promise<void> {
  const next = parentMessages<Message>();
  const client = new Client({ servers: `127.0.0.1:${config.port}` });
  await client.get("bench:warm-up");
  const append = async (): Promise<void> => {
    let seq = await client.incr("Counter", 1);
    if (seq === undefined) {
      // First use: whoever adds the counter first wins; the others count on from it.
      await client.add("Counter", "0");
      seq = await client.incr("Counter", 1);
      if (seq === undefined) throw new Error("the counter vanished");
    }
    const stored = await client.add(`logentry-${seq}`, config.line);
    if (!stored) throw new Error(`logentry-${seq} already exists`);
  };
  send(
    await measureOnGo(next, config.latencies, (latencies) =>
      saturated(append, { inflight: 1, seconds: config.seconds }, latencies),
    ),
  );
  client.close();
}

/** The part of better-sqlite3 12 used here (it ships no types). */
interface Database {
  pragma(source: string): unknown;
  exec(source: string): void;
  prepare(source: string): { run(...params: unknown[]): unknown };
  close(): void;
}

/** One row per transaction (autocommit), into a database shared by every producer process. */
async function runSqlite(config: Extract<WorkerConfig, { role: "sqlite" }>): Promise<void> {
  const next = parentMessages<Message>();
  const open = createRequire(import.meta.url)("better-sqlite3") as new (
    path: string,
    options: { timeout: number },
  ) => Database;
  // A writer that finds the database locked waits (SQLite's busy handler) up to this long.
  const db = new open(config.path, { timeout: 60_000 });
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  const insert = db.prepare("INSERT INTO log (line) VALUES (?)");
  // better-sqlite3 is synchronous: one insert at a time per process, whatever the callers.
  send(
    await measureOnGo(next, config.latencies, (latencies) =>
      saturated(
        async () => {
          insert.run(config.line);
        },
        { inflight: 1, seconds: config.seconds },
        latencies,
      ),
    ),
  );
  db.close();
}

/** XADD with node-redis, which pipelines the commands issued in the same tick on its one connection. */
async function runRedis(config: Extract<WorkerConfig, { role: "redis" }>): Promise<void> {
  const next = parentMessages<Message>();
  // No per-command timeout: node-redis 6 arms an AbortSignal.timeout for each command by default (5 s), which
  // on Node.js 20 costs about ten times the command itself (7,000–13,000 vs 145,000 ops/s measured here), and
  // the comparison is with Redis, not with that.
  // Loaded here, not at the top: it is a large package, and only this role needs it.
  const { createClient } = await import("redis");
  const client = createClient({
    socket: { host: "127.0.0.1", port: config.port },
    commandOptions: { timeout: 0 },
  });
  client.on("error", (error: Error) => process.stderr.write(`redis client: ${error.message}\n`));
  await client.connect();
  await client.ping();
  const fields = { d: config.line };
  send(
    await measureOnGo(next, config.latencies, (latencies) =>
      saturated(
        async () => {
          await client.xAdd(config.key, "*", fields);
        },
        { inflight: config.inflight, seconds: config.seconds },
        latencies,
      ),
    ),
  );
  client.destroy();
}

// ---- the drainer ----------------------------------------------------------------------------------------

async function runDrainer(config: Extract<WorkerConfig, { role: "drainer" }>): Promise<void> {
  const next = parentMessages<Message>();
  const client = new Client({ servers: serversOf(config) });
  let target = Infinity;
  let started = 0;
  let reached = false;
  const partitions = config.partitions ?? 1;
  // One partition: the plain Drainer; more: one per partition, merged into one partitioned sink.
  const drainer = createDrainer(client, {
    stream: config.stream,
    layout: config.layout,
    partitions,
    lease: false,
    openSink: () =>
      openFileSink(config.dir, { stream: config.stream, partitioned: partitions > 1, fsync: "batch" }),
    onCommit: () => check(),
    onError: (error) => process.stderr.write(`drainer: ${error.message}\n`),
  });
  const check = (): void => {
    if (reached) return;
    const metrics = drainer.metrics;
    if (metrics.entries + metrics.gaps >= target && metrics.entries + metrics.gaps > 0) {
      reached = true;
      send({
        type: "reached",
        seconds: (performance.now() - started) / 1000,
        entries: metrics.entries,
        gaps: metrics.gaps,
        late: metrics.late,
        cpuSeconds: cpuOf(process.cpuUsage()),
      });
    }
  };
  await connect(client, config);
  const controller = new AbortController();
  let running: Promise<void> | undefined;
  const start = (): void => {
    started = performance.now();
    running = drainer.run(controller.signal);
    running.catch((error: unknown) => {
      process.stderr.write(`drainer stopped: ${messageOf(error)}\n`);
      process.exit(1);
    });
  };
  if (!config.startOnGo) {
    start();
    while (!drainer.metrics.active) await new Promise((resolve) => setTimeout(resolve, CHECK_EVERY_MS));
  }
  send({ type: "ready" });
  const timer = setInterval(check, CHECK_EVERY_MS);
  for (;;) {
    const message = await next();
    if (message.type === "go-target") {
      target = message.entries;
      start();
    } else if (message.type === "target") {
      target = message.entries;
      check();
    } else if (message.type === "stop") {
      break;
    }
  }
  clearInterval(timer);
  controller.abort();
  await running?.catch(() => undefined);
  client.close();
  process.exit(0);
}

// ---- entry point ----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? "{}") as WorkerConfig;
  switch (config.role) {
    case "memipc":
      return runMemipc(config);
    case "naive":
      return runNaive(config);
    case "sqlite":
      return runSqlite(config);
    case "redis":
      return runRedis(config);
    case "drainer":
      return runDrainer(config);
    default:
      throw new Error(`unknown worker role in ${process.argv[2]}`);
  }
}

runWorker(main);
