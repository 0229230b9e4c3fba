// A child process for the lease tests: holds a lease with run() (again after a loss) and, while it holds it, appends
// "<id> <ms>" to a file every 100 ms. Started by lease.test.ts with its settings in an environment
// variable; without them (as when the test runner loads every file) it does nothing.
import { appendFileSync } from "node:fs";
import { Client } from "../../src/client/index.js";
import { Lease } from "../../src/lease/index.js";

const WRITE_EVERY_MS = 100;

interface WorkerSettings {
  port: number;
  name: string;
  namespace: string;
  file: string;
  id: string;
  ttlSeconds: number;
}

const raw = process.env.MEMIPC_LEASE_WORKER;
if (raw !== undefined) {
  const settings = JSON.parse(raw) as WorkerSettings;
  const client = new Client({ servers: `127.0.0.1:${settings.port}` });
  const lease = new Lease(client, {
    name: settings.name,
    namespace: settings.namespace,
    owner: settings.id,
    ttlSeconds: settings.ttlSeconds,
    pollEvery: 100,
  });
  const stop = new AbortController();
  process.once("SIGTERM", () => stop.abort());
  // Like a drainer: after losing the lease (a slow machine can miss a renew) go back to standing by.
  while (!stop.signal.aborted) {
    await lease
      .run(async (signal) => {
        // The safety rule: check the lease before each step, not only the signal.
        while (!signal.aborted && lease.held) {
          appendFileSync(settings.file, `${settings.id} ${Date.now()}\n`);
          await new Promise((resolve) => setTimeout(resolve, WRITE_EVERY_MS));
        }
      }, stop.signal)
      .catch(() => undefined);
  }
  client.close();
}
