// A drainer process for the drainer tests: a Drainer writing into a file sink in a folder, running until
// SIGTERM. It prints JSON lines on stdout: "start", then "metrics" (the drainer's metrics and caughtUp())
// every few ms, then "stopped"; "error" if run() fails. Settings come in MEMIPC_LOG_DRAINER; without them
// (as when the test runner loads every file) it does nothing.
import { Drainer } from "../../../src/log/drainer.js";
import { openFileSink } from "../../../src/sinks/index.js";
import { workerClient } from "./control.js";

export const DRAINER_ENV = "MEMIPC_LOG_DRAINER";

export interface DrainerSettings {
  port: number;
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
  event: "start" | "metrics" | "error" | "stopped";
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
  };
  message?: string;
}

const raw = process.env[DRAINER_ENV];
if (raw !== undefined) await drain(JSON.parse(raw) as DrainerSettings);

async function drain(settings: DrainerSettings): Promise<void> {
  const client = workerClient(settings.port);
  const drainer = new Drainer(client, {
    namespace: settings.namespace,
    stream: settings.stream,
    ...(settings.limit === undefined ? {} : { limit: settings.limit }),
    ...(settings.holeTimeout === undefined ? {} : { holeTimeout: settings.holeTimeout }),
    lease:
      settings.leaseTtl === false
        ? false
        : { ttlSeconds: settings.leaseTtl, owner: settings.owner, pollEvery: 100 },
    openSink: () => openFileSink(settings.dir, { stream: settings.stream, fsync: "batch" }),
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
