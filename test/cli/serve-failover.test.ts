// Two `memipc serve` daemons against the same pool of three real memcached and the same data folder, as two
// machines sharing a disk would run for failover: the first holds the leases and drains and collects; killed
// with SIGKILL mid-run, the second takes over both within the lease time, and in the end every acknowledged
// entry is in the files once (in four partitions) and the SQLite totals equal the increments exactly.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "../../src/client/index.js";
import { PartitionBy } from "../../src/log/producer.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { StatsWriter } from "../../src/stats/writer.js";
import { checkLog, readLog, readResults, report } from "../helpers/log-files.js";
import {
  memcachedAvailable,
  requireMemcached,
  startRealMemcached,
  type RealMemcached,
} from "../helpers/real-memcached.js";
import { startProducer, stopAll, type ProducerLine, type WorkerProcess } from "../log/workers/control.js";
import { Cli, randomName, waitFor } from "./run-cli.js";

const LEASE_TTL = 3; // s
const LEASE_POLL_MS = 1000; // a standby tries to take a lease this often (the lease's default)
const TAKEOVER_SLACK_MS = 2000; // a loaded test machine
const PARTITIONS = 4;
const PRODUCERS = 4;
const PER_PRODUCER = 3000;
const APPEND_SECONDS = 6;
const INCREMENTS = 3000;
const STATS_BUCKET = 2; // s
const SETTLE_MS = 60_000; // the survivor has written and stored everything by then
const TEST_TIMEOUT_MS = 150_000;

let servers: RealMemcached[] = [];
const dir = mkdtempSync(join(tmpdir(), "memipc-serve-failover-"));
before(async () => {
  if (memcachedAvailable()) servers = await Promise.all([0, 1, 2].map(() => startRealMemcached()));
});
after(async () => {
  await Promise.all(servers.map((server) => server.stop()));
  rmSync(dir, { recursive: true, force: true });
});

/** The PID in a lease's owner ("host:pid:random"), or undefined when nobody holds it. */
async function leaseHolder(client: Client, key: string): Promise<number | undefined> {
  const found = await client.get(key);
  if (found === undefined) return undefined;
  const owner = (JSON.parse(found.value.toString("utf8")) as { owner: string }).owner;
  return Number(owner.split(":").at(-2));
}

test(
  "two memipc serve on one pool: kill the active one, the other drains and collects within the lease time; nothing twice",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    if (!requireMemcached(t)) return;
    const pool = servers.map((server) => `127.0.0.1:${server.port}`).join(",");
    const namespace = randomName("fo");
    const legacy = `${namespace}_legacy_orders`;
    const data = join(dir, "data");
    const client = new Client({ servers: pool, timeout: 5000 });
    const workers: WorkerProcess<ProducerLine>[] = [];
    const daemon = (): Cli =>
      new Cli(t, [
        "serve",
        "--memcached",
        pool,
        "--namespace",
        namespace,
        "--data-dir",
        data,
        "--http-port",
        "0",
        "--partitions",
        String(PARTITIONS),
        "--lease-ttl",
        String(LEASE_TTL),
        "--stats-bucket",
        String(STATS_BUCKET),
        "--stats-grace",
        "1",
        "--legacy",
        legacy,
        "--tz",
        "UTC",
      ]);
    try {
      const first = daemon();
      await waitFor(() => first.stderr.includes("ready"), "the first daemon to be ready");
      const drainLease = `${namespace}:lease:drain:log`;
      const collectLease = `${namespace}:lease:collect`;
      await waitFor(
        async () =>
          (await leaseHolder(client, drainLease)) === first.child.pid &&
          (await leaseHolder(client, collectLease)) === first.child.pid,
        "the first daemon to hold both leases",
      );
      const second = daemon();
      await waitFor(() => second.stderr.includes("ready"), "the second daemon to be ready");

      // The load: producer processes over four partitions, counters and a legacy counter from here.
      for (let id = 0; id < PRODUCERS; id++) {
        workers.push(
          startProducer({
            port: servers[0]!.port,
            ports: servers.map((server) => server.port),
            namespace,
            stream: "log",
            id,
            count: PER_PRODUCER,
            inFlight: 8,
            perSecond: PER_PRODUCER / APPEND_SECONDS,
            partitions: PARTITIONS,
            partitionBy: PartitionBy.roundRobin,
            results: join(dir, `${namespace}-producer-${id}.json`),
          }),
        );
      }
      const stats = new StatsWriter(client, { namespace, bucketSeconds: STATS_BUCKET });
      await client.add(legacy, "0");
      const counting = (async () => {
        for (let i = 0; i < INCREMENTS; i++) {
          await Promise.all([stats.incr("orders"), client.incr(legacy, 1)]);
          if (i % 100 === 99) await sleep((APPEND_SECONDS * 1000) / (INCREMENTS / 100));
        }
      })();

      await sleep(2000);
      const killedAt = Date.now();
      first.child.kill("SIGKILL");
      await first.exited;
      await waitFor(
        async () =>
          (await leaseHolder(client, drainLease)) === second.child.pid &&
          (await leaseHolder(client, collectLease)) === second.child.pid,
        "the second daemon to take both leases",
        LEASE_TTL * 1000 + LEASE_POLL_MS + TAKEOVER_SLACK_MS + 5000,
      );
      const tookOver = Date.now() - killedAt;
      t.diagnostic(
        `the second daemon held both leases ${tookOver} ms after the kill (lease TTL ${LEASE_TTL} s)`,
      );
      assert.ok(
        tookOver <= LEASE_TTL * 1000 + LEASE_POLL_MS + TAKEOVER_SLACK_MS,
        `took over after ${tookOver} ms`,
      );

      for (const producer of workers) {
        await producer.exited;
        assert.equal(producer.status, "exit 0", `${producer.name}: ${producer.stderr}`);
      }
      await counting;
      const results = workers.map((_, id) => readResults(join(dir, `${namespace}-producer-${id}.json`)));
      for (const r of results)
        assert.deepEqual(r.failed, [], `producer ${r.id} failed: ${JSON.stringify(r.errors)}`);

      // Every entry once in the files.
      const logs = join(data, "logs");
      let check = checkLog([], []);
      await waitFor(
        () => {
          check = checkLog(readLog(logs, "log", { tornTail: true }), results);
          return check.missing.size === 0 || check.problems.some((p) => !p.includes("is missing"));
        },
        "every entry in the files",
        SETTLE_MS,
      );
      assert.deepEqual(check.problems, [], report(check.problems, second.stderr));
      assert.equal(check.entries.length, PRODUCERS * PER_PRODUCER);
      assert.deepEqual(new Set(check.entries.map((e) => e.part)), new Set([0, 1, 2, 3]));

      // Every increment counted once in SQLite.
      const db = StatsDb.open(join(data, "stats.db"), { readonly: true });
      const totals = () => {
        const counted = db
          .counters(0, Math.ceil(Date.now() / 1000) + 3600)
          .filter((row) => row.name === "orders")
          .reduce((sum, row) => sum + row.value, 0);
        const taken = db
          .legacy(0, Date.now() + 3_600_000)
          .filter((row) => row.name === legacy && row.state === "done")
          .reduce((sum, row) => sum + row.value, 0);
        return { counted, taken };
      };
      try {
        await waitFor(
          () => {
            const { counted, taken } = totals();
            return counted >= INCREMENTS && taken >= INCREMENTS;
          },
          "the counters stored",
          SETTLE_MS,
        ).catch((error: unknown) => {
          throw new Error(`${(error as Error).message}: ${JSON.stringify(totals())}\n${second.stderr}`);
        });
        // One more collector pass must not add to them.
        await sleep(1500);
        assert.deepEqual(totals(), { counted: INCREMENTS, taken: INCREMENTS });
      } finally {
        db.close();
      }
      const left = await client.get(legacy);
      assert.equal(left?.value.toString().trim(), "0", "the legacy counter was taken out whole");

      second.child.kill("SIGTERM");
      const ended = await second.finished();
      assert.match(ended.stderr, /memipc serve: stopped/);
      assert.match(first.stderr, /draining log \(4 partitions each\)/);
    } finally {
      await stopAll(workers);
      client.close();
    }
  },
);
