// A drainer process for the drainer tests: a Drainer writing into a file sink in a folder, running until
// SIGTERM. It prints JSON lines on stdout: "start", then "metrics" (the drainer's metrics and caughtUp())
// every few ms, then "stopped"; "warning" for each error the drainer recovers from (a lost lease, a fenced
// sink), "error" if run() fails. Settings come in MEMIPC_LOG_DRAINER; without them
// (as when the test runner loads every file) it does nothing.
import { createDrainer } from "../../../src/log/partitioned-drainer.js";
import { openFileSink } from "../../../src/sinks/index.js";
import { workerClient } from "./control.js";

export const DRAINER_ENV = "MEMIPC_LOG_DRAINER";

export interface DrainerSettings {
  port: number;
  /** A pool of memcached servers on loopback (instead of `port`). */
  ports?: number[];
  /** The client moves keys of a dead server to the next one on the ring (instead of failing fast). */
  failover?: boolean;
  /** Partitions to drain (default 1). */
  partitions?: number;
  /** ms; the drainer's default when absent. */
  reorderWindow?: number;
  /** The sink's fence (default true); false only to show what goes wrong without it. */
  fence?: boolean;
  namespace: string;
  stream: string;
  /** The output folder (shared by every drainer of the stream in the failover test). */
  dir: string;
  /** Lease owner name, also shown in every line. */
  owner: string;
  /** Must equal the producers' limit; the drainer's default when absent. */
  limit?: number;
  /** ms; the drainer's default when absent. */
  holeTimeout?: number;
  /** Lease TTL in seconds; `false` runs without a lease. */
  leaseTtl: number | false;
  /** ms between metrics lines. */
  metricsEvery: number;
}

/** One line a drainer worker prints. */
export interface DrainerLine {
  event: "start" | "metrics" | "warning" | "error" | "stopped";
  owner: string;
  pid: number;
  at: number;
  caughtUp?: boolean;
  metrics?: {
    active: boolean;
    head?: { epoch: number; seq: number };
    cursor?: { epoch: number; seq: number };
    lag: number;
    entries: number;
    gaps: number;
    late: number;
    lastError?: string;
    unreachable?: string[];
    partitions?: Array<{ partition: number; cursor?: { epoch: number; seq: number }; entries: number }>;
  };
  message?: string;
}

const raw = process.env[DRAINER_ENV];
if (raw !== undefined) await drain(JSON.parse(raw) as DrainerSettings);

async function drain(settings: DrainerSettings): Promise<void> {
  const client = workerClient(settings.ports ?? settings.port, { failover: settings.failover === true });
  const partitioned = (settings.partitions ?? 1) > 1;
  const drainer = createDrainer(client, {
    namespace: settings.namespace,
    stream: settings.stream,
    ...(settings.partitions === undefined ? {} : { partitions: settings.partitions }),
    ...(settings.reorderWindow === undefined ? {} : { reorderWindow: settings.reorderWindow }),
    ...(settings.limit === undefined ? {} : { limit: settings.limit }),
    ...(settings.holeTimeout === undefined ? {} : { holeTimeout: settings.holeTimeout }),
    lease:
      settings.leaseTtl === false
        ? false
        : { ttlSeconds: settings.leaseTtl, owner: settings.owner, pollEvery: 100 },
    openSink: () =>
      openFileSink(settings.dir, {
        stream: settings.stream,
        fsync: "batch",
        partitioned,
        fence: settings.fence !== false,
      }),
    onError: (error) => print({ event: "warning", message: `${error.name}: ${error.message}` }),
  });
  const print = (line: Omit<DrainerLine, "owner" | "pid" | "at">): void => {
    process.stdout.write(
      `${JSON.stringify({ ...line, owner: settings.owner, pid: process.pid, at: Date.now() })}\n`,
    );
  };
  const metrics = (): void =>
    print({ event: "metrics", caughtUp: drainer.caughtUp(), metrics: drainer.metrics });

  const stop = new AbortController();
  process.once("SIGTERM", () => stop.abort());
  print({ event: "start" });
  const timer = setInterval(metrics, settings.metricsEvery);
  let failed = false;
  try {
    await drainer.run(stop.signal);
  } catch (error) {
    if (!stop.signal.aborted) {
      failed = true;
      print({ event: "error", message: String((error as Error)?.stack ?? error) });
    }
  }
  clearInterval(timer);
  metrics();
  client.close();
  print({ event: "stopped" });
  process.exitCode = failed ? 1 : 0;
}
