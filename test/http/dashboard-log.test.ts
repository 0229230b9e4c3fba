// The dashboard's log part against real parts started here: an embedded server, producers, drainers writing
// rotating files into a temporary folder. Pages of older records come newest first without overlap across
// files; the live tail delivers new entries within seconds, gap and late records included, resumes after
// Last-Event-ID, shares one follower between browsers, is capped, sends heartbeats and ends on close; bad
// parameters are 400 with what is allowed, an unknown stream 404.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { dashboardRoutes, type DashboardSource } from "../../src/http/dashboard/index.js";
import type { LogRecordJson } from "../../src/http/dashboard/log-feeds.js";
import { createLogModule, type LogModule } from "../../src/http/dashboard/log.js";
import { startHttpServer, type HttpServer } from "../../src/http/index.js";
import { Drainer } from "../../src/log/drainer.js";
import { entryKey, headKey, streamAddress } from "../../src/log/layout.js";
import { LogProducer } from "../../src/log/producer.js";
import { Progress } from "../../src/progress/index.js";
import { startServer, type MemcachedServer } from "../../src/server/index.js";
import { openFileSink } from "../../src/sinks/index.js";
import type { HttpRoutes } from "../../src/http/server.js";
import { endPosition, formatPosition, readPageBefore } from "../../src/sinks/log-files.js";
import { fetchJson, fetchText, openEventStream, type EventStream } from "./http-client.js";
import { waitFor } from "../helpers/wait.js";

const TEST_TIMEOUT_MS = 60_000;
const LIVE_WITHIN_MS = 5000; // a new entry reaches an open tail within this
const HTML = `<img src=x onerror="alert(1)"><script>alert(2)</script>`;

function name(prefix: string): string {
  return prefix + randomBytes(4).toString("hex");
}

interface Page {
  stream: string;
  format: string;
  records: LogRecordJson[];
  next: string | null;
}

function records(stream: EventStream): LogRecordJson[] {
  return stream.events.filter((e) => e.event === "record").map((e) => JSON.parse(e.data) as LogRecordJson);
}

function seqs(list: readonly LogRecordJson[]): Array<number | string> {
  return list.map((r) =>
    r.kind === "entry"
      ? r.seq
      : r.kind === "gap"
        ? `gap ${r.from}-${r.to}`
        : r.kind === "line"
          ? r.text
          : r.kind,
  );
}

/** The log module's routes alone, as the dashboard serves them (for settings the defaults do not have). */
function moduleRoutes(module: LogModule): HttpRoutes {
  return {
    async handle(request: IncomingMessage, response: ServerResponse, url: URL) {
      const route = module.routes.find((r) => r.path === url.pathname);
      if (route === undefined) return false;
      await route.handle({ source: module.source, request, response, url, params: [] });
      return true;
    },
    close: () => module.close(),
  };
}

describe("dashboard log", { timeout: TEST_TIMEOUT_MS }, () => {
  let memcached: MemcachedServer;
  let client: Client;
  let dir: string;
  let logs: string;
  let http: HttpServer;
  let source: DashboardSource;
  const namespace = name("l");
  const main = name("main"); // small files: its records span several
  const holes = name("holes"); // a short hole timeout: gaps and late entries
  const stop = new AbortController();
  const running: Array<Promise<void>> = [];
  const drainers: Drainer[] = [];
  const closers: Array<() => Promise<void> | void> = [];
  let producer: LogProducer;

  before(async () => {
    memcached = await startServer({ port: 0 });
    client = new Client({ servers: `127.0.0.1:${memcached.port}` });
    dir = await mkdtemp(join(tmpdir(), "memipc-dashlog-"));
    logs = join(dir, "logs");
    for (const [stream, holeTimeout, maxBytes] of [
      [main, 5000, 600],
      [holes, 300, undefined],
    ] as const) {
      const drainer = new Drainer(client, {
        namespace,
        stream,
        lease: false,
        pollEvery: 10,
        holeTimeout,
        openSink: () => openFileSink(logs, { stream, ...(maxBytes === undefined ? {} : { maxBytes }) }),
      });
      drainers.push(drainer);
      running.push(drainer.run(stop.signal));
    }
    source = {
      client,
      namespace,
      streams: [main, holes],
      drainers,
      collector: undefined,
      progress: new Progress(client, { namespace }),
      db: undefined,
      logsDir: logs,
      reportsDir: join(dir, "reports"),
    };
    http = await startHttpServer({ client, namespace, port: 0, routes: dashboardRoutes(source) });
    producer = new LogProducer(client, { namespace, stream: main, node: "web-1" });
    for (let i = 1; i <= 25; i++) await producer.append(i === 7 ? HTML : { i });
    await waitFor(() => drainers[0]!.metrics.cursor?.seq === 25, "the first 25 entries drained", 10_000);
  });

  after(async () => {
    stop.abort();
    await Promise.all(running);
    for (const close of closers) await close();
    await http?.close();
    client?.close();
    await memcached?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("log entries: pages newest first, across rotated files, in order and without overlap", async () => {
    const files = (await readdir(logs)).filter((f) => f.startsWith(`${main}-`));
    assert.ok(files.length >= 3, `the entries span several files: ${files.join(", ")}`);
    const seen: LogRecordJson[] = [];
    let before: string | null = "";
    let pages = 0;
    while (before !== null) {
      const query: string = before === "" ? "" : `&before=${encodeURIComponent(before)}`;
      const { status, json }: { status: number; json: Page } = await fetchJson<Page>(
        `${http.url}/api/log/entries?stream=${main}&limit=10${query}`,
      );
      assert.equal(status, 200);
      assert.equal(json.stream, main);
      assert.equal(json.format, "jsonl");
      assert.ok(json.records.length <= 10);
      if (json.next !== null) assert.equal(json.next, json.records[json.records.length - 1]!.cursor);
      seen.push(...json.records);
      before = json.next;
      assert.ok(++pages <= 4, "three pages, then no next");
    }
    assert.deepEqual(
      seqs(seen),
      Array.from({ length: 25 }, (_, i) => 25 - i),
      "every entry once, newest first",
    );
    assert.equal(new Set(seen.map((r) => r.cursor)).size, 25, "cursors are distinct");
    const html = seen.find((r) => r.kind === "entry" && r.seq === 7)!;
    assert.equal(html.kind === "entry" && html.data, HTML, "data comes back as it was logged (as JSON text)");
    const first = seen[seen.length - 1]!;
    assert.ok(first.kind === "entry" && first.node === "web-1" && typeof first.time === "number");
    assert.deepEqual(first.kind === "entry" && first.data, { i: 1 });

    // A page from a record's cursor starts just before it.
    const from = seen[5]!.cursor; // seq 20
    const { json } = await fetchJson<Page>(
      `${http.url}/api/log/entries?stream=${main}&before=${from}&limit=3`,
    );
    assert.deepEqual(seqs(json.records), [19, 18, 17]);
  });

  it("log files: pages read back across files, past lines longer than a read and a torn tail, every line once", async () => {
    const folder = join(dir, "pages");
    await mkdir(folder);
    const all: string[] = [];
    const names = [
      "s-2026-01-01.jsonl",
      "s-2026-01-01.1.jsonl",
      "s-2026-01-02.jsonl",
      "s-2026-01-02.3.jsonl",
    ];
    for (const [f, file] of names.entries()) {
      let text = "";
      for (let i = 0; i < 12; i++) {
        // Some lines far longer than one 64 KiB read and than the page's byte budget; some empty.
        const length = i % 5 === 4 ? 150_000 + i : i % 7 === 6 ? -1 : i * 3;
        const line = length < 0 ? "" : `${f}.${i}:${"é".repeat(length)}`;
        all.push(line);
        text += `${line}\n`;
      }
      await writeFile(join(folder, file), f === names.length - 1 ? `${text}{"seq":99,"torn` : text);
    }
    for (const limit of [1, 5, 7]) {
      const seen: string[] = [];
      const cursors = new Set<string>();
      let before = await endPosition(folder, "s", "jsonl");
      for (let pages = 0; ; pages++) {
        assert.ok(pages < 200, "paging ends");
        const page = await readPageBefore(folder, "s", "jsonl", before, limit, 100_000);
        assert.ok(page.lines.length <= limit);
        for (const line of page.lines) {
          const cursor = formatPosition(line.position);
          assert.ok(!cursors.has(cursor), `${cursor} read once`);
          cursors.add(cursor);
        }
        seen.push(...page.lines.map((line) => line.text));
        if (!page.more) break;
        before = page.lines[page.lines.length - 1]!.position;
      }
      assert.deepEqual(seen.reverse(), all, `limit ${limit}: every complete line once, in order`);
    }
  });

  it("log events: the backlog, then new entries within seconds, in order, with their cursors as ids", async () => {
    const tail = await openEventStream(`${http.url}/api/log/events?stream=${main}&backlog=5`);
    closers.push(() => tail.close());
    assert.equal(tail.status, 200);
    assert.match(String(tail.headers["content-type"]), /^text\/event-stream/);
    await tail.waitFor((s) => s.events.some((e) => e.event === "live"), LIVE_WITHIN_MS, "the live event");
    assert.deepEqual(seqs(records(tail)), [21, 22, 23, 24, 25], "the last five, oldest first");
    const live = JSON.parse(tail.events.find((e) => e.event === "live")!.data) as {
      more: boolean;
      oldest: string;
    };
    assert.equal(live.more, true);
    assert.equal(live.oldest, records(tail)[0]!.cursor);

    const began = Date.now();
    for (let i = 26; i <= 28; i++) await producer.append({ i });
    await tail.waitFor((s) => records(s).length === 8, LIVE_WITHIN_MS, "the three new entries");
    assert.ok(Date.now() - began < LIVE_WITHIN_MS);
    assert.deepEqual(seqs(records(tail)), [21, 22, 23, 24, 25, 26, 27, 28]);
    const events = tail.events.filter((e) => e.event === "record");
    assert.ok(events.every((e) => e.id === (JSON.parse(e.data) as LogRecordJson).cursor));

    // Resuming after a dropped connection: only what came after the last id the browser has.
    const resumed = await openEventStream(`${http.url}/api/log/events?stream=${main}`, {
      headers: { "Last-Event-ID": events[5]!.id! }, // seq 26
    });
    closers.push(() => resumed.close());
    await resumed.waitFor((s) => s.events.some((e) => e.event === "live"), LIVE_WITHIN_MS, "the live event");
    assert.deepEqual(seqs(records(resumed)), [27, 28]);
    assert.ok(!resumed.events.some((e) => e.event === "skipped"));
    tail.close();
    resumed.close();
  });

  it("log events and entries: gap records and late entries are there, marked as such", async () => {
    const address = streamAddress({ namespace, stream: holes });
    const writer = new LogProducer(client, { namespace, stream: holes, node: "web-2" });
    const tail = await openEventStream(`${http.url}/api/log/events?stream=${holes}`);
    closers.push(() => tail.close());
    await tail.waitFor((s) => s.events.some((e) => e.event === "live"), LIVE_WITHIN_MS, "the live event");
    const first = await writer.append("one");
    await client.incr(headKey(address), 1); // 2: taken, not written in time
    await writer.append("three");
    await tail.waitFor((s) => records(s).length === 3, LIVE_WITHIN_MS, "one, the gap and three");
    await client.add(
      entryKey(address, first.epoch, 2),
      JSON.stringify({ t: Date.now(), n: "slow", d: "two" }),
    );
    await tail.waitFor((s) => records(s).length === 4, LIVE_WITHIN_MS, "the late entry");
    const got = records(tail);
    assert.deepEqual(seqs(got), [1, "gap 2-2", 3, 2]);
    const gap = got[1]!;
    assert.ok(gap.kind === "gap" && gap.reason === "hole-timeout" && typeof gap.time === "number");
    const late = got[3]!;
    assert.ok(late.kind === "entry" && late.late && late.data === "two" && late.node === "slow");
    assert.ok(got[0]!.kind === "entry" && !got[0]!.late);
    const { json } = await fetchJson<Page>(`${http.url}/api/log/entries?stream=${holes}`);
    assert.deepEqual(json.records, [...got].reverse(), "the same records in the pages, newest first");
    assert.equal(json.next, null);
    tail.close();
  });

  it("log api: bad parameters are 400 saying what is allowed; an unknown stream is 404", async () => {
    const cases: Array<[string, number, RegExp]> = [
      ["/api/log/entries", 400, new RegExp(`\\?stream=NAME, one of: ${main}, ${holes}`)],
      ["/api/log/entries?stream=../etc", 400, /is not a stream name.*use one of/],
      ["/api/log/entries?stream=nope", 404, new RegExp(`no stream nope here: this server drains ${main}`)],
      [`/api/log/entries?stream=${main}&before=12`, 400, /is not a cursor.*YYYY-MM-DD/],
      [`/api/log/entries?stream=${main}&before=2026-01-01.0:x`, 400, /is not a cursor/],
      [
        `/api/log/entries?stream=${main}&limit=0`,
        400,
        /limit="0" is not allowed: give a whole number from 1 to 1000/,
      ],
      [`/api/log/entries?stream=${main}&limit=5000`, 400, /from 1 to 1000/],
      [`/api/log/entries?stream=${main}&limit=ten`, 400, /limit="ten"/],
      ["/api/log/events", 400, /\?stream=NAME/],
      ["/api/log/events?stream=nope", 404, /no stream nope/],
      ["/api/log/events?stream=%3Cb%3E", 400, /is not a stream name/],
      [
        `/api/log/events?stream=${main}&backlog=-1`,
        400,
        /backlog="-1" is not allowed: give a whole number from 0/,
      ],
    ];
    for (const [path, status, message] of cases) {
      const reply = await fetchText(`${http.url}${path}`);
      assert.equal(reply.status, status, `${path}: ${reply.body}`);
      assert.match(String(reply.headers["content-type"]), /^application\/json/, path);
      const error = (JSON.parse(reply.body) as { error: string }).error;
      assert.match(error, message, path);
    }
    const post = await fetchText(`${http.url}/api/log/entries?stream=${main}`, { method: "POST" });
    assert.equal(post.status, 405);
    const streams = await fetchJson<{ streams: string[] }>(`${http.url}/api/log/streams`);
    assert.deepEqual(streams.json.streams, [main, holes]);
  });

  it("log page: a stream picker, the script from /assets, no inline script; the script sets text only", async () => {
    const page = await fetchText(`${http.url}/log?stream=${holes}`);
    assert.equal(page.status, 200);
    assert.match(String(page.headers["content-security-policy"]), /script-src 'self'/);
    assert.match(page.body, /<script src="\/assets\/log\.js" defer><\/script>/);
    assert.doesNotMatch(page.body, /<script>/);
    assert.match(page.body, new RegExp(`<option value="${holes}" selected>`));
    assert.match(page.body, /id="pause"/);
    assert.match(page.body, /id="filter"/);
    const script = await fetchText(`${http.url}/assets/log.js`);
    assert.equal(script.status, 200);
    assert.match(script.body, /new EventSource\("\/api\/log\/events\?stream="/);
    assert.doesNotMatch(script.body, /innerHTML|insertAdjacentHTML|document\.write/);
  });

  it("log events: one follower per stream for every browser, a cap on open streams, heartbeats, ended by close", async () => {
    const module = createLogModule(source, { maxStreams: 3, heartbeat: 50, pollEvery: 50 });
    const own = await startHttpServer({ client, namespace, port: 0, routes: moduleRoutes(module) });
    closers.push(() => own.close());
    const open = await Promise.all(
      [main, main, holes].map((s) => openEventStream(`${own.url}/api/log/events?stream=${s}&backlog=0`)),
    );
    for (const stream of open) {
      closers.push(() => stream.close());
      assert.equal(stream.status, 200);
      await stream.waitFor((s) => s.events.some((e) => e.event === "live"), LIVE_WITHIN_MS, "the live event");
      assert.equal(records(stream).length, 0, "backlog=0 sends no old records");
    }
    assert.equal(module.streams, 3);
    assert.equal(module.feeds.following, 2, "two streams watched: two followers");

    const refused = await fetchText(`${own.url}/api/log/events?stream=${main}`);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers["retry-after"], "5");
    assert.match((JSON.parse(refused.body) as { error: string }).error, /too many log streams open \(3\)/);

    await open[0]!.waitFor((s) => s.comments.includes("heartbeat"), 2000, "a heartbeat");
    await producer.append({ i: 29 });
    for (const stream of open.slice(0, 2)) {
      await stream.waitFor((s) => seqs(records(s)).includes(29), LIVE_WITHIN_MS, "the new entry in both");
    }

    // A browser leaving frees its place; the last one of a stream stops its follower.
    open[2]!.close();
    await waitFor(
      () => module.streams === 2 && module.feeds.following === 1,
      "the holes follower to stop",
      5000,
    );

    await own.close();
    await Promise.all(open.slice(0, 2).map((s) => s.ended));
    assert.equal(module.streams, 0);
    assert.equal(module.feeds.following, 0);
  });
});
