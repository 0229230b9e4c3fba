// The stats collector on a pool of three real memcached servers with one of them down: a pass still stores
// what the live servers hold and names the one it could not reach; buckets read in part (or whose index it
// could not read) are read again, so a server that comes back with its memory (paused with SIGSTOP, resumed
// with SIGCONT) has its counts picked up exactly, and one that comes back empty (SIGKILL, restarted) lowers
// nothing. Totals never exceed what was counted. A single server keeps failing the pass.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { isUnreachable } from "../../src/errors.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { Collector } from "../../src/stats/collector.js";
import { counterKey, indexKey, type StatsAddress } from "../../src/stats/layout.js";
import { StatsWriter } from "../../src/stats/writer.js";
import { requireMemcached, startRealMemcached, type RealMemcached } from "../helpers/real-memcached.js";
import { waitFor } from "../helpers/wait.js";

const T0 = Date.UTC(2026, 10, 24, 10, 0, 0); // a bucket boundary
const SIZE = 60; // s per bucket
const GRACE = 30; // s
const NAMES = 30; // counters per bucket: enough that every server holds some
const TIMEOUT = 300; // ms a request to a paused server waits before it counts as unreachable

function namespace(): string {
  return "cp" + randomBytes(4).toString("hex");
}

/** A client for the collector: gives up on a paused server quickly and tries it again soon. */
function collectorClient(servers: readonly RealMemcached[]): Client {
  return new Client({
    servers: servers.map((s) => `127.0.0.1:${s.port}`).join(","),
    timeout: TIMEOUT,
    connectTimeout: TIMEOUT,
    deadTime: 300,
  });
}

function serverOf(client: Client, key: string): string {
  const s = client.servers[client.serverIndex(key)]!;
  return `${s.host}:${s.port}`;
}

/** What was counted: per bucket start, per counter name; and each bucket's timer samples. */
class Expected {
  readonly counters = new Map<number, Map<string, number>>();
  readonly timers = new Map<number, number>();

  async write(
    writer: StatsWriter,
    setClock: (ms: number) => void,
    start: number,
    seed: number,
  ): Promise<void> {
    setClock(start * 1000 + 1_000);
    const byName = new Map<string, number>();
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < NAMES; i++) {
      const by = 1 + ((seed * 7 + i * 13) % 11);
      byName.set(`c${i}`, by);
      writes.push(writer.incr(`c${i}`, by));
    }
    const samples = [0.5, 3, 12, 12, 80, 400 + seed];
    for (const ms of samples) writes.push(writer.timing("latency", ms));
    await Promise.all(writes);
    this.counters.set(start, byName);
    this.timers.set(start, samples.length);
  }

  get total(): number {
    let total = 0;
    for (const byName of this.counters.values()) for (const n of byName.values()) total += n;
    return total;
  }
}

/** Sum of every stored counter, and checks that none exceeds what was counted. */
function storedTotal(db: StatsDb, expected: Expected): number {
  let total = 0;
  for (const row of db.counters(0, 2 ** 40)) {
    const counted = expected.counters.get(row.start)?.get(row.name);
    assert.ok(counted !== undefined, `stored a counter never counted: ${row.name} at ${row.start}`);
    assert.ok(row.value <= counted, `${row.name} at ${row.start}: stored ${row.value}, counted ${counted}`);
    total += row.value;
  }
  return total;
}

/** Every stored timer is whole: its histogram holds all its samples, as many as were taken. */
function assertTimersWhole(db: StatsDb, expected: Expected): void {
  for (const row of db.timers(0, 2 ** 40)) {
    const inHistogram = [...row.histogram.values()].reduce((a, b) => a + b, 0);
    assert.equal(
      inHistogram,
      row.count,
      `timer at ${row.start}: histogram of ${inHistogram} for ${row.count}`,
    );
    assert.equal(row.count, expected.timers.get(row.start), `timer at ${row.start}`);
  }
}

describe("stats collector on a pool of three real memcached, one down", () => {
  const dirs: string[] = [];
  const started: RealMemcached[] = [];
  const clients: Client[] = [];

  async function pool(): Promise<RealMemcached[]> {
    const servers = await Promise.all([0, 1, 2].map(() => startRealMemcached()));
    started.push(...servers);
    return servers;
  }

  function database(ns: string): StatsDb {
    const dir = mkdtempSync(join(tmpdir(), "memipc-collect-pool-"));
    dirs.push(dir);
    return StatsDb.open(join(dir, `${ns}.db`));
  }

  after(async () => {
    for (const client of clients) client.close();
    for (const s of started) {
      try {
        process.kill(s.pid, "SIGCONT"); // a paused one would not see its SIGTERM
      } catch {
        // already gone
      }
    }
    await Promise.all(started.map((s) => s.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("collector: a paused server's counts are left out of the pass, named, and picked up exactly once it answers again", async (t) => {
    if (!requireMemcached(t)) return;
    const servers = await pool();
    const ns = namespace();
    const address: StatsAddress = { namespace: ns, bucketSeconds: SIZE };
    const writerClient = new Client({ servers: servers.map((s) => `127.0.0.1:${s.port}`).join(",") });
    const client = collectorClient(servers);
    clients.push(writerClient, client);
    let writeNow = T0;
    const writer = new StatsWriter(writerClient, {
      namespace: ns,
      bucketSeconds: SIZE,
      clock: () => writeNow,
    });
    let now = T0;
    const errors: Error[] = [];
    const db = database(ns);
    const legacy = Array.from({ length: 6 }, (_, i) => `${ns}-legacy-${i}`);
    const collector = new Collector(client, db, {
      namespace: ns,
      bucketSeconds: SIZE,
      grace: GRACE,
      lookback: 3600,
      legacy,
      lease: false,
      clock: () => now,
      onError: (error) => errors.push(error),
    });
    const expected = new Expected();
    const start = (b: number): number => T0 / 1000 + b * SIZE;
    const setClock = (ms: number): void => void (writeNow = ms);

    // Buckets 0-2 and the legacy counters, collected whole while every server answers.
    for (let b = 0; b < 3; b++) await expected.write(writer, setClock, start(b), b);
    for (const [i, name] of legacy.entries()) {
      await writerClient.set(name, "0");
      await writerClient.incr(name, 5 + i);
    }
    now = (start(2) + SIZE + GRACE) * 1000;
    const first = await collector.collectOnce();
    assert.equal(first.buckets, 3);
    assert.equal(first.unreachable, undefined);
    assert.equal(storedTotal(db, expected), expected.total);

    // Buckets 3-8 written; then the server holding bucket 3's index is paused (its memory stays).
    for (let b = 3; b < 9; b++) await expected.write(writer, setClock, start(b), b);
    for (const [i, name] of legacy.entries()) await writerClient.incr(name, 7 * (i + 1));
    const paused = servers.find(
      (s) => `127.0.0.1:${s.port}` === serverOf(client, indexKey(address, start(3))),
    )!;
    const pausedName = `127.0.0.1:${paused.port}`;
    const indexOnPaused = (b: number): boolean =>
      serverOf(client, indexKey(address, start(b))) === pausedName;
    assert.ok(
      [4, 5, 6, 7, 8].some((b) => !indexOnPaused(b)),
      "some index of buckets 4-8 is on a live server",
    );
    const legacyOnPaused = legacy.filter((name) => serverOf(client, name) === pausedName);
    process.kill(paused.pid, "SIGSTOP");
    await waitFor(() => stopped(paused.pid), "every thread of the paused memcached to stop");

    // The pass succeeds: it reads the live servers' values, names the paused one, and fails nothing.
    now = (start(8) + SIZE + GRACE) * 1000;
    const second = await collector.collectOnce();
    assert.ok(second.unreachable !== undefined, "the pass says what it could not read");
    assert.deepEqual(second.unreachable.servers, [pausedName]);
    assert.ok(isUnreachable(second.unreachable.error), second.unreachable.error.message);
    assert.ok(second.unreachable.keys > 0);
    assert.ok(second.unreachable.buckets >= 6, `${second.unreachable.buckets} buckets read in part`);
    assert.deepEqual([...second.unreachable.legacy].sort(), [...legacyOnPaused].sort());
    assert.deepEqual(collector.metrics.unreachable, [pausedName]);
    assert.match(collector.metrics.lastError ?? "", new RegExp(`${pausedName}.*picked up when it is back`));
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.message, collector.metrics.lastError);
    for (let b = 3; b < 9; b++) {
      const rows = db.counters(start(b), start(b) + SIZE);
      if (indexOnPaused(b)) {
        assert.deepEqual(rows, [], `bucket ${b}: its index is on the paused server`);
        assert.ok(db.bucket(SIZE, start(b)) !== undefined, `bucket ${b} is stored (empty), to be read again`);
        continue;
      }
      const stored = new Map(rows.map((r) => [r.name, r.value]));
      for (const [name, counted] of expected.counters.get(start(b))!) {
        const onPaused = serverOf(client, counterKey(address, start(b), name)) === pausedName;
        assert.equal(stored.get(name), onPaused ? undefined : counted, `bucket ${b} ${name}`);
      }
    }
    // Buckets 0-2 were read again (their first recheck is due) without the paused server: nothing lowered.
    for (let b = 0; b < 3; b++) {
      const stored = new Map(db.counters(start(b), start(b) + SIZE).map((r) => [r.name, r.value]));
      assert.deepEqual(stored, expected.counters.get(start(b)), `bucket ${b} keeps what it had`);
    }
    assertTimersWhole(db, expected);
    for (let b = 0; b < 3; b++)
      assert.equal(db.timers(start(b), start(b) + SIZE).length, 1, `bucket ${b} timer`);
    const legacyTaken = (name: string): number =>
      db
        .legacy(0, 2 ** 50)
        .filter((r) => r.name === name)
        .reduce((sum, r) => sum + r.value, 0);
    for (const [i, name] of legacy.entries()) {
      const onPaused = legacyOnPaused.includes(name);
      assert.equal(legacyTaken(name), onPaused ? 5 + i : 5 + i + 7 * (i + 1), `legacy ${name}`);
    }
    const partialTotal = storedTotal(db, expected);
    assert.ok(partialTotal < expected.total);

    // Still paused a minute later: the buckets read in part are read again, and nothing counts twice.
    now += 61_000;
    const third = await collector.collectOnce();
    assert.ok(third.rechecked >= 6, `${third.rechecked} read again`);
    assert.deepEqual(third.unreachable?.servers, [pausedName]);
    assert.equal(storedTotal(db, expected), partialTotal);

    // Resumed: once the client reaches it again, the next re-read makes every total exact.
    process.kill(paused.pid, "SIGCONT");
    await waitFor(() => reaches(client, pausedName), "the collector's client reaches the resumed server");
    now += 121_000; // past the retry of every bucket read in part (twice as long as its age, at most)
    const fourth = await collector.collectOnce();
    assert.equal(fourth.unreachable, undefined, fourth.unreachable?.error.message);
    assert.equal(storedTotal(db, expected), expected.total, "every count picked up, none twice");
    assertTimersWhole(db, expected);
    for (let b = 0; b < 9; b++)
      assert.equal(db.timers(start(b), start(b) + SIZE).length, 1, `bucket ${b} timer`);
    for (const [i, name] of legacy.entries()) assert.equal(legacyTaken(name), 5 + i + 7 * (i + 1), name);
    assert.deepEqual(collector.metrics.unreachable, []);
    assert.equal(collector.metrics.lastError, undefined, "the note about the paused server is cleared");

    // Later passes and re-reads change nothing.
    now += 3_600_000;
    await collector.collectOnce();
    assert.equal(storedTotal(db, expected), expected.total);
    db.close();
  });

  it("collector: a killed server's counts are left out; restarted empty, it lowers nothing", async (t) => {
    if (!requireMemcached(t)) return;
    const servers = await pool();
    const ns = namespace();
    const address: StatsAddress = { namespace: ns, bucketSeconds: SIZE };
    const writerClient = new Client({ servers: servers.map((s) => `127.0.0.1:${s.port}`).join(",") });
    const client = collectorClient(servers);
    clients.push(writerClient, client);
    let writeNow = T0;
    const writer = new StatsWriter(writerClient, {
      namespace: ns,
      bucketSeconds: SIZE,
      clock: () => writeNow,
    });
    let now = T0;
    const db = database(ns);
    const collector = new Collector(client, db, {
      namespace: ns,
      bucketSeconds: SIZE,
      grace: GRACE,
      lookback: 3600,
      lease: false,
      clock: () => now,
    });
    const expected = new Expected();
    const start = (b: number): number => T0 / 1000 + b * SIZE;
    for (let b = 0; b < 4; b++) await expected.write(writer, (ms) => void (writeNow = ms), start(b), b);
    // Not the server of bucket 0's index, so that some bucket is read (in part).
    const killed = servers.find(
      (s) => `127.0.0.1:${s.port}` !== serverOf(client, indexKey(address, start(0))),
    )!;
    const killedName = `127.0.0.1:${killed.port}`;
    await killed.kill("SIGKILL");

    now = (start(3) + SIZE + GRACE) * 1000;
    const pass = await collector.collectOnce();
    assert.deepEqual(pass.unreachable?.servers, [killedName]);
    let live = 0;
    for (const [bucket, byName] of expected.counters) {
      if (serverOf(client, indexKey(address, bucket)) === killedName) continue;
      for (const [name, counted] of byName) {
        if (serverOf(client, counterKey(address, bucket, name)) !== killedName) live += counted;
      }
    }
    assert.ok(live > 0);
    assert.equal(storedTotal(db, expected), live, "exactly what the live servers hold");
    assertTimersWhole(db, expected);

    // Back on its port, empty: the re-reads find nothing more there, and lower nothing.
    const restarted = await startRealMemcached({ port: killed.port });
    started.push(restarted);
    await waitFor(() => reaches(client, killedName), "the collector's client reaches the restarted server");
    now += 121_000;
    const after = await collector.collectOnce();
    assert.equal(after.unreachable, undefined);
    assert.equal(storedTotal(db, expected), live);
    db.close();
  });

  it("collector: on a single server that does not answer, the pass fails with a typed error", async (t) => {
    if (!requireMemcached(t)) return;
    const server = await startRealMemcached();
    started.push(server);
    const client = collectorClient([server]);
    clients.push(client);
    const ns = namespace();
    const db = database(ns);
    let now = T0 + 600_000;
    const collector = new Collector(client, db, {
      namespace: ns,
      grace: GRACE,
      lookback: 3600,
      lease: false,
      clock: () => now,
    });
    await collector.collectOnce();
    await server.kill("SIGKILL");
    now += 60_000; // a new bucket to read
    await assert.rejects(collector.collectOnce(), (error) => isUnreachable(error));
    assert.deepEqual(collector.metrics.unreachable, []);
    db.close();
  });
});

/** True once every thread of process `pid` is stopped: kill() returns before they all are. */
function stopped(pid: number): boolean {
  const tasks = readdirSync(`/proc/${pid}/task`);
  return tasks.every((task) => {
    const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
  });
}

/** True when a read of a key placed on `server` gets an answer. */
async function reaches(client: Client, server: string): Promise<boolean> {
  for (let i = 0; ; i++) {
    const key = `probe-${i}`;
    if (serverOf(client, key) !== server) continue;
    try {
      await client.get(key);
      return true;
    } catch {
      return false;
    }
  }
}
