// A web node for the collector tests: increments counters through the stats writer as fast as replies come
// back (a fixed number of calls in flight), for a fixed time, then prints the totals that memcached
// confirmed, per name, as one JSON line. Settings come in MEMIPC_STATS_COUNTER; without them (as when the
// test runner loads every file) it does nothing.
import { Client } from "../../../src/client/index.js";
import { StatsWriter } from "../../../src/stats/writer.js";

export const COUNTER_ENV = "MEMIPC_STATS_COUNTER";

export interface CounterSettings {
  port: number;
  namespace: string;
  bucketSeconds: number;
  names: string[];
  /** How long to count, ms. */
  durationMs: number;
  /** incr calls in flight at once. */
  inFlight: number;
  /** Seeds the choice of names and amounts. */
  seed: number;
}

export interface CounterLine {
  event: "done";
  /** Confirmed increments per name. */
  totals: Record<string, number>;
  failed: number;
}

const raw = process.env[COUNTER_ENV];
if (raw !== undefined) await count(JSON.parse(raw) as CounterSettings);

async function count(settings: CounterSettings): Promise<void> {
  const client = new Client({ servers: `127.0.0.1:${settings.port}` });
  const writer = new StatsWriter(client, {
    namespace: settings.namespace,
    bucketSeconds: settings.bucketSeconds,
  });
  const totals: Record<string, number> = Object.fromEntries(settings.names.map((n) => [n, 0]));
  let failed = 0;
  let state = settings.seed >>> 0 || 1;
  const random = (n: number): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  const end = Date.now() + settings.durationMs;
  const lane = async (): Promise<void> => {
    while (Date.now() < end) {
      const name = settings.names[random(settings.names.length)]!;
      const by = 1 + random(3);
      try {
        await writer.incr(name, by);
        totals[name]! += by;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: settings.inFlight }, lane));
  client.close();
  process.stdout.write(JSON.stringify({ event: "done", totals, failed } satisfies CounterLine) + "\n");
}
