// `memipc serve`: the whole system in one process: the embedded server (or existing memcached servers), a
// drainer per stream, the stats collector with its daily reports, and the HTTP server for jobs. `memipc
// config print` shows the configuration it would run with and where each value came from.
import { mkdir } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { Client } from "../client/index.js";
import { ConfigError, FencedError } from "../errors.js";
import { startHttpServer } from "../http/index.js";
import { dashboardRoutes } from "../http/dashboard/index.js";
import type { LogDrainer } from "../log/drainer.js";
import { createDrainer } from "../log/partitioned-drainer.js";
import { Progress } from "../progress/index.js";
import { paceCollections } from "../server/collector.js";
import { startServer, parseSize, type MemcachedServer } from "../server/index.js";
import { openFileSink } from "../sinks/file-sink.js";
import { dueReportDay, writeReportFiles } from "../sinks/report-files.js";
import { StatsDb } from "../sinks/stats-db.js";
import { Collector } from "../stats/collector.js";
import { credentialsFrom, optionTable, stopSignal, tlsFrom } from "./common.js";
import { daemonHealth, daemonMetrics } from "./serve-metrics.js";
import {
  CONFIG_FILE,
  configHelpRows,
  formatConfig,
  parseServeFlags,
  resolveServeConfig,
  type ServeConfig,
} from "./serve-config.js";

const ERROR_REPEAT_EVERY = 30_000; // ms before the same error is printed again

export const SERVE_HELP = `Usage: memipc serve [options]

Runs everything on one machine until SIGINT or SIGTERM: the embedded memcached-compatible server (or, with
--memcached, existing servers), a drainer per log stream writing to DATA/logs, the stats collector
(DATA/stats.db) with a daily report in DATA/reports, and the dashboard (overview, log, stats, jobs) with the
jobs API, /metrics and /healthz.

On SIGINT or SIGTERM with the embedded server, it stops taking requests, drains every stream to disk and
stores the stats still in memory before it exits, so nothing acknowledged is lost; with --memcached the
drainers finish their batch and the rest waits in memcached. A second signal exits at once.

Configuration: defaults, then the file ${CONFIG_FILE} (or --config FILE / MEMIPC_CONFIG; JSON, keys as
below in camelCase), then environment variables, then flags. "memipc config print" shows the result.

${optionTable([["--config FILE", "the JSON configuration file", `MEMIPC_CONFIG, else ./${CONFIG_FILE} if present`], ...configHelpRows()])}`;

export const CONFIG_HELP = `Usage: memipc config print [options]

Prints the configuration "memipc serve" would run with, given the same file, environment and flags, and
where each value came from (default, file, env or flag). The token is never shown.

${optionTable([["--config FILE", "the JSON configuration file", `MEMIPC_CONFIG, else ./${CONFIG_FILE} if present`], ...configHelpRows()])}`;

export async function runConfig(args: string[]): Promise<void> {
  const { values, positionals } = parseServeFlags("config", args);
  if (positionals.length !== 1 || positionals[0] !== "print") {
    throw new ConfigError('give "print": see "memipc config --help"');
  }
  const { config, sources } = resolveServeConfig(values, process.env);
  process.stdout.write(formatConfig(config, sources));
}

export async function runServe(args: string[]): Promise<void> {
  const { values, positionals } = parseServeFlags("serve", args);
  if (positionals.length > 0)
    throw new ConfigError(`unexpected argument "${positionals[0]}": see "memipc serve --help"`);
  const { config } = resolveServeConfig(values, process.env);
  const stop = stopSignal();
  try {
    await serve(config, stop.signal);
  } finally {
    stop.dispose();
  }
}

/**
 * Runs the daemon until `signal` aborts, then stops each part in order. With the embedded server, whose
 * memory goes with the process, it first closes the server to everyone else, drains every stream to its
 * head and stores the stats buckets still open, so nothing that was acknowledged is lost; with existing
 * memcached servers the drainers finish their batch and the rest waits there for the next start.
 */
export async function serve(
  config: ServeConfig,
  signal: AbortSignal,
  log = (line: string) => process.stderr.write(`${line}\n`),
): Promise<void> {
  const say = (line: string) => log(`memipc serve: ${line}`);
  const errors = new Map<string, number>();
  const onError = (part: string) => (error: Error) => {
    const key = `${part}: ${error.message}`;
    const now = Date.now();
    if (now - (errors.get(key) ?? 0) < ERROR_REPEAT_EVERY) return;
    errors.set(key, now);
    say(error instanceof FencedError ? key : `${key} (retrying)`); // a fenced part says it stands by
  };
  let server: MemcachedServer | undefined;
  if (config.memcached === undefined) {
    server = await startServer({
      host: config.listen,
      port: config.port,
      memoryLimit: parseSize(config.memory, "memory"),
      authFile: config.authFile,
      tlsCert: config.tlsCert,
      tlsKey: config.tlsKey,
      tlsCa: config.tlsCa,
    });
    // The embedded server's items are most of what this process holds: keep it near the memory limit.
    paceCollections(server);
    const secured = [config.authFile && "authentication", config.tlsCert && "TLS"].filter(Boolean).join(", ");
    say(
      `embedded server on ${config.listen}:${server.port} (memory ${config.memory}${secured ? `, ${secured}` : ""})`,
    );
  } else {
    say(`using memcached ${config.memcached}`);
  }
  // The daemon's own parts reach the embedded server on a listener of their own (plain TCP on loopback),
  // which stays open while the public one closes at shutdown; with an auth file they log in as its first
  // user. Existing servers get the credentials and TLS settings given for them.
  const servers = config.memcached ?? `127.0.0.1:${await server!.listenInternal()}`;
  const client = new Client({
    servers,
    failover: config.failover,
    ...(config.memcached === undefined
      ? { auth: credentialsFrom({ "memcached-auth-file": config.authFile }, {}) }
      : {
          auth: credentialsFrom(
            { "memcached-auth-file": config.memcachedAuthFile },
            { MEMIPC_MEMCACHED_AUTH: process.env.MEMIPC_MEMCACHED_AUTH },
          ),
          tls: tlsFrom(
            { "memcached-tls": config.memcachedTls, "memcached-tls-ca": config.memcachedTlsCa },
            {},
          ),
        }),
  });
  const draining = new AbortController();
  const collecting = new AbortController();
  const running: Array<Promise<void>> = [];
  let collectorRun: Promise<void> | undefined;
  const drainers: LogDrainer[] = [];
  let collector: Collector | undefined;
  let db: StatsDb | undefined;
  let http: Awaited<ReturnType<typeof startHttpServer>> | undefined;
  try {
    const logs = join(config.dataDir, "logs");
    if (config.drain) {
      await mkdir(logs, { recursive: true });
      for (const stream of config.streams) {
        const drainer = createDrainer(client, {
          namespace: config.namespace,
          stream,
          partitions: config.partitions,
          lease: { ttlSeconds: config.leaseTtl },
          openSink: () => openFileSink(logs, { stream, partitioned: config.partitions > 1 }),
          onError: onError(`drainer ${stream}`),
        });
        drainers.push(drainer);
        running.push(drainer.run(draining.signal));
      }
      const parts = config.partitions > 1 ? ` (${config.partitions} partitions each)` : "";
      say(`draining ${config.streams.join(", ")}${parts} into ${logs}, when this daemon holds their leases`);
    }
    if (config.collect) {
      db = StatsDb.open(join(config.dataDir, "stats.db"));
      const stats = db;
      const reports = join(config.dataDir, "reports");
      collector = new Collector(client, stats, {
        namespace: config.namespace,
        bucketSeconds: config.statsBucket,
        grace: config.statsGrace,
        lease: { ttlSeconds: config.leaseTtl },
        legacy: config.legacy,
        onError: onError("collector"),
        afterPass: async () => {
          const day = dueReportDay(stats, Date.now(), config.reportAt, config.timeZone);
          if (day === undefined) return;
          const files = await writeReportFiles(stats, day, reports, { timeZone: config.timeZone });
          say(`wrote the report of ${day}: ${files.join(", ")}`);
        },
      });
      collectorRun = collector.run(collecting.signal);
      say(
        `collecting stats into ${stats.file}; daily reports at ${config.reportAt} (${config.timeZone}) into ${reports}`,
      );
    }
    const parts = {
      client,
      serverNames:
        server === undefined
          ? {}
          : {
              [servers]: `${config.listen.includes(":") ? `[${config.listen}]` : config.listen}:${server.port}`,
            },
      drainers,
      collector,
      progress: new Progress(client, { namespace: config.namespace }),
    };
    http = await startHttpServer({
      client,
      routes: dashboardRoutes({
        ...parts,
        namespace: config.namespace,
        streams: config.drain ? config.streams : [],
        db,
        logsDir: logs,
        reportsDir: join(config.dataDir, "reports"),
      }),
      metrics: () => daemonMetrics(parts),
      health: () => daemonHealth(parts),
      namespace: config.namespace,
      host: config.httpListen,
      port: config.httpPort,
      ...(config.token === undefined ? {} : { token: config.token }),
    });
    say(`dashboard on ${http.url} (jobs API, /metrics and /healthz too)`);
    say("ready; Ctrl-C (SIGINT) or SIGTERM stops it");
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
    if (server !== undefined) {
      await server.closePublic();
      say(
        "stopping: the embedded server accepts nothing more; draining what it holds (a second signal exits at once)",
      );
      await drainToHead(drainers, say);
      collecting.abort();
      await collectorRun;
      if (collector !== undefined) {
        try {
          const last = await collector.collectOnce({ openBuckets: true });
          say(`stored the stats buckets still open (${last.values} values)`);
        } catch (error) {
          // A newer collector took the database over since this one was active: writing past it is what the
          // fence is there to prevent, and stopping goes on.
          if (!(error instanceof FencedError)) throw error;
          say(`did not store the stats buckets still open: ${error.message}`);
        }
      }
    } else {
      say("stopping: drainers finish their batch");
    }
  } finally {
    draining.abort();
    collecting.abort();
    await Promise.allSettled([...running, collectorRun]);
    await http?.close();
    client.close();
    db?.close();
    await server?.close();
  }
  say("stopped");
}

const DRAIN_POLL = 50; // ms between checks that the drainers reached the head
const DRAIN_REPORT_EVERY = 5000; // ms between progress lines while draining at shutdown

/** Waits until every drainer has written everything up to its stream's head (holes become gaps meanwhile). */
async function drainToHead(drainers: readonly LogDrainer[], say: (line: string) => void): Promise<void> {
  const pending = new Set(drainers);
  let reportAt = Date.now() + DRAIN_REPORT_EVERY;
  while (pending.size > 0) {
    for (const drainer of pending) if (drainer.caughtUp()) pending.delete(drainer);
    if (pending.size === 0) break;
    if (Date.now() >= reportAt) {
      reportAt = Date.now() + DRAIN_REPORT_EVERY;
      const left = [...pending].map((d) => `${d.metrics.stream} (lag ${d.metrics.lag ?? "unknown"})`);
      say(`still draining ${left.join(", ")}`);
    }
    await sleep(DRAIN_POLL);
  }
}
