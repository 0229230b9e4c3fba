// A producer process for the drainer tests: appends entries {p, i} (i = 0, 1, 2…) to a stream with a fixed
// number of appends in flight, and at the end writes which appends succeeded (with their epoch and seq) and
// which failed to a results file. Settings come in MEMIPC_LOG_PRODUCER; without them (as when the test
// runner loads every file) it does nothing.
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { LogProducer, type PartitionBy } from "../../../src/log/producer.js";
import { workerClient } from "./control.js";

export const PRODUCER_ENV = "MEMIPC_LOG_PRODUCER";
const RETRY_PAUSE_MS = 20; // after a failed append, so an outage does not spin the loop
const REPORT_EVERY_MS = 500; // progress lines on stdout
const GATE_POLL_MS = 20; // how often a gated producer looks for its gate file

export interface ProducerSettings {
  port: number;
  /** A pool of memcached servers on loopback (instead of `port`). */
  ports?: number[];
  /** The client moves keys of a dead server to the next one on the ring (instead of failing fast). */
  failover?: boolean;
  partitions?: number;
  partitionBy?: PartitionBy;
  namespace: string;
  stream: string;
  /** The producers' (and drainer's) epoch limit; the producer's default when absent. */
  limit?: number;
  /** `p` in every entry's data; also the node name `p<id>`. */
  id: number;
  /** Entries to append; absent: append until SIGTERM. */
  count?: number;
  /** Appends outstanding at once. */
  inFlight: number;
  /** Appends started per second, at most (absent: as fast as they go), so a run lasts a known time. */
  perSecond?: number;
  /** Entries from `gate.at` on wait until the file `gate.file` exists (the test opens the gate). */
  gate?: { at: number; file: string };
  /** Where the results (ProducerResults as JSON) are written at exit. */
  results: string;
}

export interface ProducerResults {
  id: number;
  /** [i, epoch, seq, partition] of every append that resolved, in the order they resolved. */
  ok: [number, number, number, number][];
  /** i of every append that rejected. */
  failed: number[];
  /** Distinct error messages with how often each came. */
  errors: Record<string, number>;
}

const raw = process.env[PRODUCER_ENV];
if (raw !== undefined) await produce(JSON.parse(raw) as ProducerSettings);

async function produce(settings: ProducerSettings): Promise<void> {
  const client = workerClient(settings.ports ?? settings.port, { failover: settings.failover === true });
  const producer = new LogProducer(client, {
    namespace: settings.namespace,
    stream: settings.stream,
    node: `p${settings.id}`,
    ...(settings.partitions === undefined ? {} : { partitions: settings.partitions }),
    ...(settings.partitionBy === undefined ? {} : { partitionBy: settings.partitionBy }),
    ...(settings.limit === undefined ? {} : { limit: settings.limit }),
  });
  const results: ProducerResults = { id: settings.id, ok: [], failed: [], errors: {} };
  let stopping = false;
  process.once("SIGTERM", () => (stopping = true));
  let next = 0;
  const more = (): boolean => !stopping && (settings.count === undefined || next < settings.count);

  const start = Date.now();
  const lane = async (): Promise<void> => {
    while (more()) {
      if (settings.perSecond !== undefined) {
        const wait = start + (next * 1000) / settings.perSecond - Date.now();
        if (wait > 0) await sleep(wait);
        if (!more()) break;
      }
      if (settings.gate !== undefined && next >= settings.gate.at) {
        while (!existsSync(settings.gate.file) && !stopping) await sleep(GATE_POLL_MS);
      }
      // Taken after the pauses, so appends are called in the order of their i.
      const i = next++;
      try {
        const { epoch, seq, partition } = await producer.append({ p: settings.id, i });
        results.ok.push([i, epoch, seq, partition]);
      } catch (error) {
        results.failed.push(i);
        const message = (error as Error).message.slice(0, 200);
        results.errors[message] = (results.errors[message] ?? 0) + 1;
        await sleep(RETRY_PAUSE_MS);
      }
    }
  };

  const report = (event: string): void => {
    process.stdout.write(
      `${JSON.stringify({ event, id: settings.id, ok: results.ok.length, failed: results.failed.length })}\n`,
    );
  };
  report("start");
  const timer = setInterval(() => report("progress"), REPORT_EVERY_MS);
  await Promise.all(Array.from({ length: settings.inFlight }, lane));
  clearInterval(timer);
  client.close();
  const temp = `${settings.results}.tmp`;
  writeFileSync(temp, JSON.stringify(results));
  renameSync(temp, settings.results);
  report("done");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
