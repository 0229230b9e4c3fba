// The dashboard's overview against real parts started here: an embedded server, drainers writing files, a
// collector with its SQLite file, jobs. GET /api/overview gives the drainers' real head, cursor and lag, the
// collector's pass, jobs by state and each server's figures; a server that evicted items carries a warning;
// a server that does not answer shows as down while the rest still shows; the page loads its script only. A
// partitioned stream shows each partition's cursor moving, on this node and on a standby's, and its rows in
// chromium (test-artifacts/dashboard-overview-partitions.png); a drainer on a pool with a server down names
// it in a warning.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "../../src/client/index.js";
import { dashboardRoutes, type DashboardSource } from "../../src/http/dashboard/index.js";
import type { Overview, PartitionView } from "../../src/http/dashboard/overview-data.js";
import { startHttpServer, type HttpServer } from "../../src/http/index.js";
import { Drainer } from "../../src/log/drainer.js";
import { entryKey, headKey, MAX_EPOCH, rolledKey, splitHead, streamAddress } from "../../src/log/layout.js";
import { PartitionedDrainer } from "../../src/log/partitioned-drainer.js";
import { LogProducer, partitionOf } from "../../src/log/producer.js";
import { Progress } from "../../src/progress/index.js";
import { startServer, type MemcachedServer } from "../../src/server/index.js";
import { openFileSink } from "../../src/sinks/index.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { Collector } from "../../src/stats/collector.js";
import { StatsWriter } from "../../src/stats/index.js";
import { fetchJson, fetchText } from "./http-client.js";
import { ARTIFACTS, launchChromium } from "../helpers/browser.js";
import { waitFor } from "../helpers/wait.js";

const TEST_TIMEOUT_MS = 60_000;

function name(prefix: string): string {
  return prefix + randomBytes(4).toString("hex");
}

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Keys that `partitionOf` puts in `partition` of `partitions`, as many as asked for. */
function keysOf(partition: number, partitions: number, count: number): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++)
    if (partitionOf(`key-${i}`, partitions) === partition) keys.push(`key-${i}`);
  return keys;
}

/** A source with nothing running in it but the client: for the server-only checks. */
function bareSource(client: Client, namespace: string, dir: string): DashboardSource {
  return {
    client,
    namespace,
    streams: [],
    drainers: [],
    collector: undefined,
    progress: new Progress(client, { namespace }),
    db: undefined,
    logsDir: join(dir, "logs"),
    reportsDir: join(dir, "reports"),
  };
}

describe("dashboard overview", { timeout: TEST_TIMEOUT_MS }, () => {
  let memcached: MemcachedServer;
  let client: Client;
  let dir: string;
  let db: StatsDb;
  let http: HttpServer;
  const namespace = name("o");
  const busy = name("busy"); // drained, with a hole the drainer waits for
  const quiet = name("quiet"); // drained to the end
  const stop = new AbortController();
  const running: Array<Promise<void>> = [];
  const drainers: Drainer[] = [];
  const closers: Array<() => Promise<void> | void> = [];

  before(async () => {
    memcached = await startServer({ port: 0 });
    client = new Client({ servers: `127.0.0.1:${memcached.port}` });
    dir = await mkdtemp(join(tmpdir(), "memipc-overview-"));
    db = StatsDb.open(join(dir, "stats.db"));
    for (const [stream, holeTimeout] of [
      [busy, 60_000],
      [quiet, 5000],
    ] as const) {
      const drainer = new Drainer(client, {
        namespace,
        stream,
        pollEvery: 10,
        holeTimeout,
        openSink: () => openFileSink(join(dir, "logs"), { stream }),
      });
      drainers.push(drainer);
      running.push(drainer.run(stop.signal));
    }
    const collector = new Collector(client, db, { namespace });
    const progress = new Progress(client, { namespace, throttle: 0 });
    http = await startHttpServer({
      client,
      namespace,
      port: 0,
      routes: dashboardRoutes({
        client,
        namespace,
        streams: [busy, quiet],
        drainers,
        collector,
        progress,
        db,
        logsDir: join(dir, "logs"),
        reportsDir: join(dir, "reports"),
      }),
    });
    // Figures to show: entries on both streams (a hole at 4 of `busy`), a stats pass, jobs in two states.
    const busyLog = new LogProducer(client, { namespace, stream: busy, node: "web-1" });
    for (let i = 1; i <= 3; i++) await busyLog.append(`entry ${i}`);
    await client.incr(headKey(streamAddress({ namespace, stream: busy })), 1); // 4: taken, never written
    for (let i = 5; i <= 6; i++) await busyLog.append(`entry ${i}`);
    const quietLog = new LogProducer(client, { namespace, stream: quiet, node: "web-2" });
    for (let i = 1; i <= 5; i++) await quietLog.append({ i });
    await new StatsWriter(client, { namespace }).incr("accounts.created");
    await collector.collectOnce({ openBuckets: true });
    await progress.start("export", { id: name("run"), total: 10 });
    const finished = await progress.start("import", { id: name("done") });
    await finished.done({ rows: 1 });
  });

  after(async () => {
    stop.abort();
    await Promise.all(running);
    for (const close of closers) await close();
    await http?.close();
    client?.close();
    db?.close();
    await memcached?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("overview: the drainers' head, cursor and lag, the collector's pass, jobs by state and the server's figures", async () => {
    await waitFor(
      () => drainers[0]!.metrics.cursor?.seq === 3 && drainers[0]!.metrics.head?.seq === 6,
      "the busy stream drained up to its hole",
      10_000,
    );
    await waitFor(() => drainers[1]!.metrics.cursor?.seq === 5, "the quiet stream drained", 10_000);
    await sleep(1100); // past the overview's reuse time, so the figures read now are the ones asserted
    const { status, headers, json } = await fetchJson<Overview>(`${http.url}/api/overview`);
    assert.equal(status, 200);
    assert.match(String(headers["content-type"]), /^application\/json/);
    assert.equal(json.namespace, namespace);

    assert.equal(json.servers.length, 1);
    const server = json.servers[0]!;
    assert.equal(server.server, `127.0.0.1:${memcached.port}`);
    assert.equal(server.up, true);
    assert.equal(server.error, null);
    assert.equal(server.evictions, 0);
    assert.ok(server.items! >= 3, `items stored: ${server.items}`);
    assert.ok(server.bytes! > 0 && server.limitBytes! > server.bytes!, "memory used and its limit");
    assert.ok(server.connections! >= 1);
    assert.ok(server.hitRatio! > 0 && server.hitRatio! <= 1, `hit ratio ${server.hitRatio}`);
    assert.ok(!json.warnings.some((w) => /evict/.test(w)), "no eviction warning without evictions");

    const [b, q] = json.streams;
    assert.equal(b!.stream, busy);
    assert.equal(b!.state, "active");
    assert.deepEqual([b!.head?.seq, b!.cursor?.seq, b!.lag], [6, 3, 3], "waiting on the hole at 4");
    assert.equal(b!.entries, 3);
    assert.equal(b!.gaps, 0);
    assert.ok(b!.lastDrainAt !== null && Math.abs(Date.now() - b!.lastDrainAt) < 60_000);
    assert.equal(b!.lastError, null);
    assert.equal(q!.stream, quiet);
    assert.deepEqual([q!.head?.seq, q!.cursor?.seq, q!.lag, q!.entries], [5, 5, 0, 5]);
    assert.equal(typeof q!.entriesPerSecond, "number");

    assert.ok(json.collector !== null);
    assert.equal(json.collector.passes, 1);
    assert.ok(json.collector.values >= 1, "the counter was stored");
    assert.ok(json.collector.lastPassAt !== null && json.collector.newestBucketAt !== null);
    assert.equal(json.collector.lastError, null);

    assert.equal(json.jobs.error, null);
    assert.equal(json.jobs.total, 2);
    assert.equal(json.jobs.byState.running, 1);
    assert.equal(json.jobs.byState.done, 1);
    assert.deepEqual(json.jobs.recent.map((j) => j.label).sort(), ["export", "import"]);
  });

  it("overview: a standby drainer says so and shows the active drainer's figures from memcached", async () => {
    const standby = new Drainer(client, {
      namespace,
      stream: quiet,
      openSink: () => openFileSink(join(dir, "standby"), { stream: quiet }),
    });
    running.push(standby.run(stop.signal));
    const source: DashboardSource = {
      ...bareSource(client, namespace, dir),
      streams: [quiet],
      drainers: [standby],
    };
    const other = await startHttpServer({ client, namespace, port: 0, routes: dashboardRoutes(source) });
    closers.push(() => other.close());
    await waitFor(() => standby.metrics.owner !== "", "the standby to start", 5000);
    let view: Overview["streams"][number] | undefined;
    await waitFor(
      async () => {
        view = (await fetchJson<Overview>(`${other.url}/api/overview`)).json.streams[0];
        return view?.activeElsewhere != null;
      },
      "the active drainer's published figures",
      10_000,
    );
    assert.equal(view!.state, "standby");
    assert.equal(view!.activeElsewhere!.owner, drainers[1]!.metrics.owner);
    assert.equal(view!.activeElsewhere!.cursor?.seq, 5);
  });

  it("overview: evictions are counted and warned about: undrained log entries can be lost", async () => {
    const small = await startServer({ port: 0, memoryLimit: 64 * 1024, maxItemSize: 1024 });
    closers.push(() => small.close());
    const smallClient = new Client({ servers: `127.0.0.1:${small.port}` });
    closers.push(() => smallClient.close());
    const value = "x".repeat(900);
    for (let i = 0; i < 300; i++) await smallClient.set(`fill-${i}`, value);
    const other = await startHttpServer({
      client: smallClient,
      namespace,
      port: 0,
      routes: dashboardRoutes(bareSource(smallClient, namespace, dir)),
    });
    closers.push(() => other.close());
    const { status, json } = await fetchJson<Overview>(`${other.url}/api/overview`);
    assert.equal(status, 200);
    const server = json.servers[0]!;
    assert.ok(server.evictions! > 0, `evictions: ${server.evictions}`);
    const warning = json.warnings.find((w) => w.includes(server.server) && /evicted/.test(w));
    assert.ok(warning, `a warning about the evictions: ${JSON.stringify(json.warnings)}`);
    assert.match(warning, /log entries not drained yet can be lost/);
  });

  it("overview: a server that does not answer shows as down; the other server's figures still show", async () => {
    const down = `127.0.0.1:${await closedPort()}`;
    const pool = new Client({ servers: `127.0.0.1:${memcached.port},${down}` });
    closers.push(() => pool.close());
    const other = await startHttpServer({
      client: pool,
      namespace,
      port: 0,
      routes: dashboardRoutes(bareSource(pool, namespace, dir)),
    });
    closers.push(() => other.close());
    const began = Date.now();
    const { status, json } = await fetchJson<Overview>(`${other.url}/api/overview`);
    assert.equal(status, 200);
    assert.ok(Date.now() - began < 5000, "answered within the client's timeouts");
    assert.deepEqual(
      json.servers.map((s) => [s.server, s.up]),
      [
        [`127.0.0.1:${memcached.port}`, true],
        [down, false],
      ],
    );
    const [up, gone] = json.servers;
    assert.ok(up!.items! >= 1 && up!.evictions === 0, "the live server's figures");
    assert.ok(gone!.error !== null && gone!.error.length > 0, "why it is down");
    assert.equal(gone!.items, null);
    assert.ok(json.warnings.some((w) => w.includes(down) && /does not answer/.test(w)));
    // The page itself still loads.
    const page = await fetchText(`${other.url}/`);
    assert.equal(page.status, 200);
  });

  it("overview: a partitioned stream shows each partition's head, cursor, lag and entries as they move, here, on a standby's node and in chromium", async (t) => {
    const stream = name("parts");
    const PARTITIONS = 3;
    const drainer = new PartitionedDrainer(client, {
      namespace,
      stream,
      partitions: PARTITIONS,
      pollEvery: 10,
      reorderWindow: 50,
      openSink: () => openFileSink(join(dir, "parts"), { stream, partitioned: true }),
    });
    running.push(drainer.run(stop.signal));
    const source: DashboardSource = {
      ...bareSource(client, namespace, dir),
      streams: [stream],
      drainers: [drainer],
    };
    const other = await startHttpServer({ client, namespace, port: 0, routes: dashboardRoutes(source) });
    closers.push(() => other.close());
    const view = async () => (await fetchJson<Overview>(`${other.url}/api/overview`)).json.streams[0]!;
    const cursors = (v: { partitions: PartitionView[] | null } | null | undefined) =>
      v?.partitions?.map((p) => p.cursor?.seq ?? 0).join(",");

    // Entries in partitions 0 and 2, none in 1; then more in partition 0.
    const producer = new LogProducer(client, { namespace, stream, partitions: PARTITIONS, node: "web-3" });
    const [first, third] = [keysOf(0, PARTITIONS, 4), keysOf(2, PARTITIONS, 3)];
    for (const key of first.slice(0, 2)) assert.equal((await producer.append(key, { key })).partition, 0);
    for (const key of third) assert.equal((await producer.append(key, { key })).partition, 2);
    let shown = await view();
    await waitFor(
      async () => cursors((shown = await view())) === "2,0,3",
      "partitions 0 and 2 drained",
      10_000,
    );
    for (const key of first.slice(2)) await producer.append(key, { key });
    await waitFor(
      async () => cursors((shown = await view())) === "4,0,3",
      "partition 0's cursor to move",
      10_000,
    );

    assert.equal(shown.state, "active");
    assert.deepEqual([shown.head, shown.cursor], [null, null], "no head or cursor for the whole stream");
    assert.equal(shown.entries, 7);
    assert.equal(shown.lag, 0);
    assert.deepEqual(shown.unreachable, []);
    assert.deepEqual(
      shown.partitions!.map((p) => [
        p.partition,
        p.head?.seq ?? 0,
        p.cursor?.seq ?? 0,
        p.lag,
        p.entries,
        p.gaps,
      ]),
      [
        [0, 4, 4, 0, 4, 0],
        [1, 0, 0, 0, 0, 0],
        [2, 3, 3, 0, 3, 0],
      ],
    );

    // A standby's node shows the active drainer's partitions, as it publishes them in memcached.
    const standby = new PartitionedDrainer(client, {
      namespace,
      stream,
      partitions: PARTITIONS,
      openSink: () => openFileSink(join(dir, "parts-standby"), { stream, partitioned: true }),
    });
    running.push(standby.run(stop.signal));
    const standbyHttp = await startHttpServer({
      client,
      namespace,
      port: 0,
      routes: dashboardRoutes({ ...source, drainers: [standby] }),
    });
    closers.push(() => standbyHttp.close());
    let elsewhere: Overview["streams"][number] | undefined;
    await waitFor(
      async () => {
        elsewhere = (await fetchJson<Overview>(`${standbyHttp.url}/api/overview`)).json.streams[0];
        return cursors(elsewhere?.activeElsewhere) === "4,0,3";
      },
      "the active drainer's published partitions",
      10_000,
    );
    assert.equal(elsewhere!.state, "standby");
    assert.equal(elsewhere!.activeElsewhere!.owner, drainer.owner);
    assert.deepEqual(
      elsewhere!.activeElsewhere!.partitions!.map((p) => p.entries),
      [4, 0, 3],
    );

    // The page: the stream's row says how many partitions, and a row per partition follows it.
    const browser = await launchChromium(t);
    if (browser === undefined) return;
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(error.message));
    await page.goto(`${other.url}/`);
    const partitionRows = `#streams-body tr.partition[data-partition-of="${stream}"]`;
    const rows = page.locator(partitionRows);
    await rows.nth(PARTITIONS - 1).waitFor({ timeout: 10_000 });
    assert.equal(await rows.count(), PARTITIONS);
    const row = page.locator(`#streams-body tr[data-stream="${stream}"]`);
    assert.match((await row.textContent()) ?? "", /3 partitions/);
    const cells = async (partition: number) =>
      page.locator(`${partitionRows}[data-partition="${partition}"] td`).allTextContents();
    const [label, entries, head, cursor, lag] = await cells(0);
    assert.deepEqual([label, entries, lag], ["partition 0", "4 entries", "0"]);
    assert.match(head!, /^4 \(epoch \d+\)$/);
    assert.equal(cursor, head);
    assert.deepEqual((await cells(1)).slice(0, 2), ["partition 1", "0 entries"]);
    assert.deepEqual(problems, [], "no script errors");
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-overview-partitions.png"), fullPage: true });
  });

  it("overview: a drainer on a pool with a server down names that server in a warning: its entries become gaps", async () => {
    const down = `127.0.0.1:${await closedPort()}`;
    const pool = new Client({ servers: `127.0.0.1:${memcached.port},${down}` });
    closers.push(() => pool.close());
    const onDown = (key: string) => pool.serverIndex(key) === 1;
    // A stream whose counter is on the live server, and whose first entries are on both. Appends whose entry
    // is on the server that is down fail; their numbers are taken all the same. The drainer starts by looking
    // for the rollover marker of the epoch before, a read that fails on a server that is down: that key must
    // be on the live one too.
    let stream = "";
    for (let tries = 1, found = false; !found; tries++) {
      assert.ok(tries <= 1000, "a stream name that puts its keys where the test needs them");
      stream = name("pool");
      const address = streamAddress({ namespace, stream });
      if (onDown(headKey(address))) continue;
      const producer = new LogProducer(pool, { namespace, stream, node: "web-4" });
      for (let i = 1; i <= 4; i++) await producer.append(`entry ${i}`).catch(() => undefined);
      const { epoch } = splitHead(BigInt((await pool.get(headKey(address)))!.value.toString("latin1")));
      found =
        !onDown(rolledKey(address, epoch === 1 ? MAX_EPOCH : epoch - 1)) &&
        !onDown(entryKey(address, epoch, 1)) &&
        [2, 3, 4].some((seq) => onDown(entryKey(address, epoch, seq)));
    }
    const drainer = new Drainer(pool, {
      namespace,
      stream,
      lease: false,
      pollEvery: 10,
      holeTimeout: 60_000,
      openSink: () => openFileSink(join(dir, "pool"), { stream }),
    });
    running.push(drainer.run(stop.signal));
    const other = await startHttpServer({
      client: pool,
      namespace,
      port: 0,
      routes: dashboardRoutes({
        ...bareSource(pool, namespace, dir),
        streams: [stream],
        drainers: [drainer],
      }),
    });
    closers.push(() => other.close());
    let json: Overview | undefined;
    await waitFor(
      async () => {
        json = (await fetchJson<Overview>(`${other.url}/api/overview`)).json;
        return json.streams[0]!.unreachable.length > 0;
      },
      "the drainer to find the server unreachable",
      10_000,
    );
    const view = json!.streams[0]!;
    assert.deepEqual(view.unreachable, [down]);
    assert.equal(view.partitions, null, "an unpartitioned stream");
    assert.ok(view.cursor !== null && view.cursor.seq >= 1, "the live server's entries are drained");
    const warning = json!.warnings.find((w) => w.includes(stream) && w.includes(down));
    assert.ok(warning, `a warning naming the server: ${JSON.stringify(json!.warnings)}`);
    assert.match(warning, /not being read/);
    assert.match(warning, /become gaps after the hole timeout/);
    assert.match(warning, /bring the server back or check the network/);
    assert.equal(
      json!.warnings.filter((w) => w.includes(stream)).length,
      1,
      "the drainer's own error about it is told in the same warning",
    );
  });

  it("overview: browsers polling at once share one read of the figures", async () => {
    await sleep(1100);
    const replies = await Promise.all(
      Array.from({ length: 5 }, () => fetchJson<Overview>(`${http.url}/api/overview`)),
    );
    assert.equal(new Set(replies.map((r) => r.json.time)).size, 1, "one read for five requests");
  });

  it("overview page: the shell with its script from /assets, under a CSP without inline scripts", async () => {
    const page = await fetchText(`${http.url}/`);
    assert.equal(page.status, 200);
    assert.match(String(page.headers["content-type"]), /^text\/html/);
    assert.match(String(page.headers["content-security-policy"]), /script-src 'self'/);
    assert.match(page.body, /<script src="\/assets\/dashboard\.js" defer><\/script>/);
    assert.match(page.body, /<script src="\/assets\/overview\.js" defer><\/script>/);
    assert.doesNotMatch(page.body, /<script>/, "no inline script");
    assert.match(page.body, /id="servers"/);
    const script = await fetchText(`${http.url}/assets/overview.js`);
    assert.equal(script.status, 200);
    assert.match(String(script.headers["content-type"]), /^text\/javascript/);
    assert.match(script.body, /\/api\/overview/);
    assert.doesNotMatch(script.body, /innerHTML/, "values are set as text only");
    const wrong = await fetchText(`${http.url}/api/overview`, { method: "POST" });
    assert.equal(wrong.status, 405);
  });
});
