// The collector while another process holds the stats database's write lock (BEGIN IMMEDIATE, longer than
// the busy timeout): `memipc collect` says so and retries, keeps reading closed buckets into memory while
// their keys expire in memcached, and once the lock is released stores every count exactly once, legacy
// counters included (a lock taken between the legacy read-then-decr and its row's settling). In process, the
// dashboard's overview warns about the locked database while it lasts, and only then.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, before, describe, it, type TestContext } from "node:test";
import Database from "better-sqlite3";
import { Client } from "../../src/client/index.js";
import { DatabaseBusyError } from "../../src/errors.js";
import { dashboardRoutes } from "../../src/http/dashboard/index.js";
import { startHttpServer } from "../../src/http/index.js";
import { startServer, type MemcachedServer } from "../../src/server/index.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { Collector } from "../../src/stats/collector.js";
import { bucketStart, counterKey } from "../../src/stats/layout.js";
import { StatsWriter } from "../../src/stats/writer.js";
import { fetchJson } from "../http/http-client.js";
import { Cli, randomName, waitFor } from "../cli/run-cli.js";
import { dashboardSource } from "../helpers/dashboard-source.js";

const DB_LOCK = fileURLToPath(new URL("./workers/db-lock.js", import.meta.url));
const TTL = 4; // s the writers' keys live: buckets closed while the lock is held expire before it ends
const COUNT_EVERY_MS = 25; // ms between a node's increments
const AFTER_RELEASE_MS = 1000; // ms the nodes go on counting after the lock is released
const SETTLE_TIMEOUT_MS = 20_000; // after the nodes stop, the collector has stored everything by then
const HOLD_LIMIT_MS = 30_000; // the lock process lets go by itself after this, whatever happens
const COUNTER = "busy.signups";

/** A process holding the database's write lock until release() (or HOLD_LIMIT_MS). */
class DbLock {
  readonly child: ChildProcess;
  readonly locked: Promise<void>;
  readonly released: Promise<void>;

  constructor(t: TestContext, file: string) {
    this.child = spawn(process.execPath, [DB_LOCK, file, String(HOLD_LIMIT_MS)], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const lines = createInterface({ input: this.child.stdout! });
    const seen = (line: string) =>
      new Promise<void>((resolve, reject) => {
        lines.on("line", (text) => text === line && resolve());
        this.child.once("exit", () => reject(new Error(`the lock process exited before "${line}"`)));
      });
    this.locked = seen("locked");
    this.released = seen("released");
    t.after(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    });
  }

  async release(): Promise<void> {
    this.child.stdin!.end("release\n");
    await this.released;
  }
}

/**
 * A TCP proxy between the collector and memcached that, the first time the collector sends `decr KEY`,
 * holds the command until `beforeDecr` resolves: the lock is then taken between a legacy counter's recorded
 * read and its decrement, so the row cannot be settled after memcached confirms.
 */
async function startDecrProxy(
  upstreamPort: number,
  key: string,
  beforeDecr: () => Promise<void>,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const trigger = Buffer.from(`decr ${key} `);
  let triggered = false;
  const server: Server = createServer((client) => {
    const upstream = connect(upstreamPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    upstream.pipe(client);
    let queue = Promise.resolve();
    let tail = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => {
      const seen = Buffer.concat([tail, chunk]);
      tail = seen.subarray(Math.max(0, seen.length - trigger.length));
      const hold = !triggered && seen.includes(trigger);
      if (hold) triggered = true;
      queue = queue.then(async () => {
        if (hold) await beforeDecr();
        upstream.write(chunk);
      });
    });
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", closeBoth).on("error", closeBoth);
    upstream.on("close", closeBoth).on("error", closeBoth);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Sums read straight from the SQLite file, as any other program would. */
function totals(file: string, legacyKey: string) {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const counted = db.prepare(`SELECT coalesce(sum(value), 0) FROM counters WHERE name = ?`).pluck();
    const legacy = db
      .prepare(`SELECT state, count(*) AS n, sum(value) AS total FROM legacy WHERE name = ? GROUP BY state`)
      .all(legacyKey) as Array<{ state: string; n: number; total: number }>;
    return {
      newestBucket: db.prepare(`SELECT coalesce(max(start), 0) FROM buckets`).pluck().get() as number,
      counter: counted.get(COUNTER) as number,
      legacy: Object.fromEntries(legacy.map((r) => [r.state, { n: r.n, total: r.total }])),
    };
  } finally {
    db.close();
  }
}

describe("stats collector on a locked database", { timeout: 90_000 }, () => {
  let dir: string;
  let server: MemcachedServer;
  let client: Client;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "memipc-collect-busy-"));
    server = await startServer({ port: 0 });
    client = new Client({ servers: `127.0.0.1:${server.port}` });
  });
  after(async () => {
    client?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("collector: a write lock held by another process while buckets expire loses and doubles nothing, legacy counters included", async (t) => {
    const namespace = randomName("cb");
    const legacyKey = `busy_legacy_${randomBytes(4).toString("hex")}`;
    const file = join(dir, `${namespace}.db`);
    await client.set(legacyKey, "0");
    let lock: DbLock | undefined;
    let lockedAt = 0;
    const proxy = await startDecrProxy(server.port, legacyKey, async () => {
      lock = new DbLock(t, file);
      await lock.locked;
      lockedAt = Date.now();
    });
    t.after(() => proxy.close());
    const collect = new Cli(t, [
      "collect",
      `--memcached=127.0.0.1:${proxy.port}`,
      `--namespace=${namespace}`,
      `--db=${file}`,
      "--bucket=1",
      "--grace=1",
      "--interval=0.2",
      "--lookback=30",
      `--legacy=${legacyKey}`,
      "--busy-timeout=200",
      "--no-reports",
      "--verbose",
    ]);
    await waitFor(() => collect.stderr.includes("holding the lease"), "the collector to hold its lease");

    // Nodes count until a second after the lock is released.
    const address = { namespace, bucketSeconds: 1 };
    const writer = new StatsWriter(client, { ...address, ttl: TTL });
    let counted = 0;
    let legacyCounted = 0;
    let stopAt = Infinity;
    const nodes = (async () => {
      while (Date.now() < stopAt) {
        await Promise.all([writer.incr(COUNTER), client.incr(legacyKey, 1)]);
        counted++;
        legacyCounted++;
        await new Promise((resolve) => setTimeout(resolve, COUNT_EVERY_MS));
      }
    })();

    await waitFor(() => lockedAt > 0, "the collector's first legacy decrement (the lock is taken then)");
    await waitFor(
      () => /is locked by another process.*\(retrying\)/.test(collect.stderr),
      "memipc collect to report the locked database",
    );
    // Held until the keys of the bucket counted in when the lock was taken are gone from memcached: read
    // again after the lock, it would be found empty.
    const lockedBucket = bucketStart(address, lockedAt);
    await waitFor(
      async () => (await client.get(counterKey(address, lockedBucket, COUNTER))) === undefined,
      "a bucket counted during the lock to expire in memcached",
    );
    assert.match(collect.stderr, /holding \d+ bucket reads/, "the collector reads on into memory");
    await lock!.release();
    stopAt = Date.now() + AFTER_RELEASE_MS;
    await nodes;
    const lastBucket = bucketStart(address, Date.now());

    await waitFor(
      async () => {
        const now = totals(file, legacyKey);
        const left = (await client.get(legacyKey))?.value.toString().trim();
        return now.newestBucket >= lastBucket && left === "0" && now.legacy.pending === undefined;
      },
      "the collector to store the last bucket and take out the legacy counter",
      SETTLE_TIMEOUT_MS,
    );
    collect.kill();
    await collect.exited;
    const stored = totals(file, legacyKey);
    assert.equal(stored.counter, counted, "every increment of the counter once");
    assert.deepEqual(
      Object.keys(stored.legacy),
      ["done"],
      "legacy rows confirmed, none pending or unconfirmed",
    );
    assert.equal(stored.legacy.done!.total, legacyCounted, "every legacy increment once");
    assert.match(collect.stderr, /stored \d+ bucket reads held while the database refused/);
  });

  it("collector: the overview warns that the database is locked while it is, and stops once the held buckets are stored", async (t) => {
    const namespace = randomName("cw");
    const address = { namespace, bucketSeconds: 1 };
    const file = join(dir, `${namespace}.db`);
    const db = StatsDb.open(file, { busyTimeout: 100 });
    t.after(() => db.close());
    const writer = new StatsWriter(client, address);
    await writer.incr("warned.signups", 3);
    // Read as if two seconds later: the bucket just counted in is closed.
    const collector = new Collector(client, db, {
      ...address,
      grace: 0,
      lookback: 10,
      lease: false,
      clock: () => Date.now() + 2000,
    });
    const http = await startHttpServer({
      client,
      namespace,
      port: 0,
      routes: dashboardRoutes(dashboardSource(client, namespace, dir, { collector, db })),
    });
    t.after(() => http.close());
    const warnings = async () =>
      (await fetchJson<{ warnings: string[] }>(`${http.url}/api/overview`)).json.warnings.filter((w) =>
        w.startsWith("collector:"),
      );

    const lock = new DbLock(t, file);
    await lock.locked;
    const refused = await collector.collectOnce();
    assert.ok(refused.held !== undefined && refused.held.error instanceof DatabaseBusyError);
    assert.ok(refused.held.values >= 1, "the counter read is held");
    const [warning, ...more] = await warnings();
    assert.deepEqual(more, []);
    assert.match(warning!, /stats database .* is locked by another process.*keeps what it reads in memory/);

    await lock.release();
    await waitFor(async () => (await collector.collectOnce()).held === undefined, "the held buckets stored");
    // The overview's figures are read once for all browsers polling within a moment.
    await waitFor(async () => (await warnings()).length === 0, "the overview's warning to go");
    const counters = db.counters(0, Number.MAX_SAFE_INTEGER).filter((c) => c.name === "warned.signups");
    assert.equal(
      counters.reduce((sum, c) => sum + c.value, 0),
      3,
    );
  });
});
