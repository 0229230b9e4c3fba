// The HTTP API against the embedded server and real memcached: JSON routes and their status codes, the token,
// event streams (order, end, heartbeats, Last-Event-ID), one memcached read per poll interval however many
// streams watch a job (500 of them, counted by memcached itself), and two servers answering alike.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Agent } from "node:http";
import { after, before, describe, it, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "../../src/client/index.js";
import { ConfigError } from "../../src/errors.js";
import { startHttpServer, type HttpServer } from "../../src/http/index.js";
import { Progress, type JobView } from "../../src/progress/index.js";
import { startServer } from "../../src/server/index.js";
import { memcachedAvailable, requireMemcached, startRealMemcached } from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";
import { fetchJson, fetchText, openEventStream, type EventStream } from "./http-client.js";
import { waitFor } from "../helpers/wait.js";

const TEST_TIMEOUT_MS = 60_000;
const POLL_MS = 50; // a short poll interval, so the tests run fast
const TOKEN = "t0k3n-" + randomBytes(12).toString("hex");

function namespace(): string {
  return "h" + randomBytes(4).toString("hex");
}

for (const target of TARGETS) {
  describe(`http api (${target.name})`, { timeout: TEST_TIMEOUT_MS }, () => {
    let server: RunningServer | undefined;
    let client: Client;
    let ns: string;
    let progress: Progress;
    let http: HttpServer;
    let base: string;

    before(async () => {
      if (target.real && !memcachedAvailable()) return;
      server = await target.start();
      client = new Client({ servers: `127.0.0.1:${server.port}` });
      ns = namespace();
      progress = new Progress(client, { namespace: ns, throttle: 0 });
      http = await startHttpServer({ client, namespace: ns, port: 0, pollInterval: POLL_MS, heartbeat: 100 });
      base = http.url;
    });
    after(async () => {
      await http?.close();
      client?.close();
      await server?.stop();
    });

    it("http: list and get return the jobs as JSON; an unknown job is 404 and a bad id 400", async (t) => {
      if (!server) return void requireMemcached(t);
      const a = await progress.start("export <a>", { id: "list-a", total: 10 });
      const b = await progress.start("import", { id: "list-b" });
      a.update({ done: 3, message: "three" });
      await waitFor(async () => (await progress.get("list-a"))?.done === 3, "the update lands", 2000);

      const list = await fetchJson<{ jobs: JobView[] }>(`${base}/api/jobs`);
      assert.equal(list.status, 200);
      assert.match(String(list.headers["content-type"]), /^application\/json/);
      assert.equal(list.headers["access-control-allow-origin"], "*");
      const ids = list.json.jobs.map((j) => j.id);
      assert.ok(ids.includes("list-a") && ids.includes("list-b"), `both listed: ${ids.join(", ")}`);

      const one = await fetchJson<JobView>(`${base}/api/jobs/list-a`);
      assert.equal(one.status, 200);
      assert.deepEqual(
        { label: one.json.label, state: one.json.state, done: one.json.done, total: one.json.total },
        { label: "export <a>", state: "running", done: 3, total: 10 },
      );
      assert.equal(one.json.message, "three");

      const missing = await fetchJson<{ error: string }>(`${base}/api/jobs/no-such-job`);
      assert.equal(missing.status, 404);
      assert.match(missing.json.error, /no job no-such-job/);
      for (const bad of ["bad%20id", "x".repeat(101), "a%2Fb", "%E0%A4%A"]) {
        const reply = await fetchJson<{ error: string }>(`${base}/api/jobs/${bad}`);
        assert.equal(reply.status, 400, bad);
        assert.match(reply.json.error, /not valid/);
        assert.equal((await fetchText(`${base}/api/jobs/${bad}/events`)).status, 400, `${bad} events`);
      }
      const events404 = await fetchText(`${base}/api/jobs/no-such-job/events`);
      assert.equal(events404.status, 404);
      await a.done();
      await b.done();
    });

    it("http: unknown paths are 404, other methods 405 with Allow", async (t) => {
      if (!server) return void requireMemcached(t);
      for (const path of ["/", "/api", "/api/jobs/x/y", "/api/jobs/x/events/more", "/jobs", "/embed.js/x"]) {
        assert.equal((await fetchText(base + path)).status, 404, path);
      }
      const cases: [string, string, string][] = [
        ["DELETE", "/api/jobs", "GET, HEAD"],
        ["POST", "/api/jobs/x", "GET, HEAD"],
        ["PUT", "/api/jobs/x/events", "GET"],
        ["GET", "/api/jobs/x/cancel", "POST"],
        ["POST", "/jobs/x", "GET, HEAD"],
        ["PATCH", "/embed.js", "GET, HEAD"],
      ];
      for (const [method, path, allow] of cases) {
        const reply = await fetchText(base + path, { method });
        assert.equal(reply.status, 405, `${method} ${path}`);
        assert.equal(reply.headers.allow, allow, `${method} ${path}`);
      }
      const preflight = await fetchText(`${base}/api/jobs/x/cancel`, {
        method: "OPTIONS",
        headers: { Origin: "https://app.example", "Access-Control-Request-Method": "POST" },
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers["access-control-allow-methods"], "POST");
      assert.match(String(preflight.headers["access-control-allow-headers"]), /Authorization/);
    });

    it("http: cancel is 202 for a running job, which then sees it; 409 once it ended; 404 for none", async (t) => {
      if (!server) return void requireMemcached(t);
      const job = await progress.start("cancellable", { id: "cancel-me", total: 100 });
      const reply = await fetchJson<{ cancelled: boolean }>(`${base}/api/jobs/cancel-me/cancel`, {
        method: "POST",
      });
      assert.equal(reply.status, 202);
      assert.deepEqual(reply.json, { cancelled: true });
      let step = 0;
      await waitFor(
        () => {
          if (!job.cancelled) job.update({ done: ++step });
          return job.cancelled;
        },
        "the job sees the cancel at its next write",
        3000,
      );
      await job.cancel();
      const again = await fetchJson<{ error: string }>(`${base}/api/jobs/cancel-me/cancel`, {
        method: "POST",
      });
      assert.equal(again.status, 409);
      assert.match(again.json.error, /ended \(cancelled\)/);
      assert.equal((await fetchText(`${base}/api/jobs/nobody/cancel`, { method: "POST" })).status, 404);
      assert.equal((await fetchText(`${base}/api/jobs/bad%20id/cancel`, { method: "POST" })).status, 400);
    });

    it("http: the page escapes what the job wrote and forbids other scripts; /embed.js is served", async (t) => {
      if (!server) return void requireMemcached(t);
      const hostile = `<script>alert(1)</script>"'&`;
      const job = await progress.start(hostile, { id: "page-job", total: 4 });
      job.update({ done: 1, message: `<img src=x onerror=alert(2)>` });
      await waitFor(async () => (await progress.get("page-job"))?.done === 1, "the update lands", 2000);
      const page = await fetchText(`${base}/jobs/page-job`);
      assert.equal(page.status, 200);
      assert.match(String(page.headers["content-type"]), /^text\/html/);
      assert.match(String(page.headers["content-security-policy"]), /script-src 'sha256-/);
      assert.ok(!page.body.includes("<script>alert(1)"), "the label is escaped");
      assert.ok(!page.body.includes("<img src=x"), "the message is escaped");
      assert.ok(page.body.includes("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
      assert.ok(page.body.includes(">25%<"), "the bar's percent is rendered");
      assert.equal((page.body.match(/<script>/g) ?? []).length, 1, "one script: the widget");
      const unknown = await fetchText(`${base}/jobs/not-here`);
      assert.equal(unknown.status, 404);
      assert.match(unknown.body, /not found/);
      const embed = await fetchText(`${base}/embed.js`);
      assert.equal(embed.status, 200);
      assert.match(String(embed.headers["content-type"]), /^text\/javascript/);
      assert.match(embed.body, /memipcProgress/);
      await job.done();
    });

    it("http sse: events arrive in order, heartbeats keep the stream alive, and it ends after done", async (t) => {
      if (!server) return void requireMemcached(t);
      const job = await progress.start("streamed", { id: "sse-order", total: 8 });
      const stream = await openEventStream(`${base}/api/jobs/sse-order/events`);
      assert.equal(stream.status, 200);
      assert.match(String(stream.headers["content-type"]), /^text\/event-stream/);
      await stream.waitFor((s) => s.events.length >= 1, 2000, "the first event");
      for (let i = 1; i <= 8; i++) {
        job.update({ done: i, message: `step ${i}` });
        await sleep(POLL_MS * 3);
      }
      await job.done({ rows: 8 });
      await Promise.race([stream.ended, sleep(3000)]);
      assert.ok(stream.isEnded, "the server ended the stream after done");
      const jobs = stream.jobs<JobView>();
      assert.equal(stream.retry, 2000);
      assert.ok(jobs.length >= 9, `an event per step: ${jobs.length}`);
      for (let i = 1; i < jobs.length; i++) {
        assert.ok(jobs[i]!.version > jobs[i - 1]!.version, "versions rise");
        assert.ok(jobs[i]!.done >= jobs[i - 1]!.done, "done never goes back");
      }
      assert.deepEqual(
        stream.events.map((e) => e.id),
        jobs.map((j) => String(j.version)),
        "the event id is the version",
      );
      const last = jobs[jobs.length - 1]!;
      assert.equal(last.state, "done");
      assert.deepEqual(last.result, { rows: 8 });
      assert.ok(stream.comments.length >= 2, `heartbeat comments: ${stream.comments.length}`);
    });

    it("http sse: Last-Event-ID at the current version sends nothing until the next change; at the final one, 204", async (t) => {
      if (!server) return void requireMemcached(t);
      const job = await progress.start("resumable", { id: "sse-resume", total: 5 });
      job.update({ done: 2 });
      await waitFor(async () => (await progress.get("sse-resume"))?.done === 2, "the update lands", 2000);
      const current = (await progress.get("sse-resume"))!;

      const older = await openEventStream(`${base}/api/jobs/sse-resume/events`, {
        headers: { "Last-Event-ID": String(current.version - 1) },
      });
      await older.waitFor((s) => s.events.length === 1, 2000, "the current version for an older id");
      assert.equal(older.events[0]!.id, String(current.version));
      older.close();

      const resumed = await openEventStream(`${base}/api/jobs/sse-resume/events`, {
        headers: { "Last-Event-ID": String(current.version) },
      });
      assert.equal(resumed.status, 200);
      await sleep(POLL_MS * 6);
      assert.equal(resumed.events.length, 0, "nothing new: nothing sent");
      job.update({ done: 3 });
      await resumed.waitFor((s) => s.events.length === 1, 2000, "the next version");
      assert.equal(resumed.jobs<JobView>()[0]!.done, 3);
      await job.done();
      await resumed.waitFor((s) => s.isEnded, 2000, "the end after done");
      const final = (await progress.get("sse-resume"))!;
      assert.equal(resumed.events[resumed.events.length - 1]!.id, String(final.version));

      const afterEnd = await fetchText(`${base}/api/jobs/sse-resume/events`, {
        headers: { "Last-Event-ID": String(final.version) },
      });
      assert.equal(afterEnd.status, 204, "a browser that has the final version is told to stop reconnecting");
      const fresh = await openEventStream(`${base}/api/jobs/sse-resume/events`);
      await fresh.waitFor((s) => s.isEnded, 2000, "a new stream of an ended job: one event, then the end");
      assert.equal(fresh.jobs<JobView>().length, 1);
      assert.equal(fresh.jobs<JobView>()[0]!.state, "done");
    });

    it("http: two servers on different ports serve the same job identically and both stream it", async (t) => {
      if (!server) return void requireMemcached(t);
      const second = await startHttpServer({ client, namespace: ns, port: 0, pollInterval: POLL_MS });
      t.after(() => second.close());
      assert.notEqual(second.port, http.port);
      const job = await progress.start("shared", { id: "two-nodes", total: 4 });
      job.update({ done: 1, message: "one" });
      await waitFor(async () => (await progress.get("two-nodes"))?.done === 1, "the update lands", 2000);
      const [one, two] = await Promise.all([
        fetchText(`${base}/api/jobs/two-nodes`),
        fetchText(`${second.url}/api/jobs/two-nodes`),
      ]);
      assert.equal(one.status, 200);
      assert.equal(one.body, two.body, "byte for byte the same JSON");
      const streams = await Promise.all([
        openEventStream(`${base}/api/jobs/two-nodes/events`),
        openEventStream(`${second.url}/api/jobs/two-nodes/events`),
      ]);
      for (let i = 2; i <= 4; i++) {
        await sleep(POLL_MS * 4);
        job.update({ done: i, message: `step ${i}` });
      }
      await sleep(POLL_MS * 4);
      await job.done("ok");
      await Promise.all(streams.map((s) => s.waitFor((x) => x.isEnded, 3000, "the end")));
      const [a, b] = streams.map((s) => s.events.map((e) => e.data));
      assert.deepEqual(a, b, "the same events from both servers");
      assert.equal(JSON.parse(a![a!.length - 1]!).state, "done");
    });

    it("http: with a token every request needs it (header or ?token=), except CORS preflights", async (t) => {
      if (!server) return void requireMemcached(t);
      const guarded = await startHttpServer({
        client,
        namespace: ns,
        port: 0,
        pollInterval: POLL_MS,
        token: TOKEN,
      });
      t.after(() => guarded.close());
      const job = await progress.start("guarded", { id: "guarded", total: 2 });
      for (const path of [
        "/api/jobs",
        "/api/jobs/guarded",
        "/api/jobs/guarded/events",
        "/jobs/guarded",
        "/embed.js",
      ]) {
        const bare = await fetchText(guarded.url + path);
        assert.equal(bare.status, 401, `${path} without the token`);
        assert.match(String(bare.headers["www-authenticate"]), /^Bearer/);
        const wrong = await fetchText(guarded.url + path, { headers: { Authorization: `Bearer ${TOKEN}x` } });
        assert.equal(wrong.status, 401, `${path} with a wrong token`);
      }
      assert.equal(
        (await fetchText(`${guarded.url}/api/jobs/guarded/cancel`, { method: "POST" })).status,
        401,
      );
      assert.equal(
        (await fetchText(`${guarded.url}/nowhere`)).status,
        401,
        "paths are not probed without it",
      );
      const withHeader = await fetchText(`${guarded.url}/api/jobs/guarded`, {
        headers: { Authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(withHeader.status, 200);
      assert.equal((await fetchText(`${guarded.url}/jobs/guarded?token=${TOKEN}`)).status, 200);
      const stream = await openEventStream(`${guarded.url}/api/jobs/guarded/events?token=${TOKEN}`);
      await stream.waitFor((s) => s.events.length === 1, 2000, "an event with ?token=");
      stream.close();
      const preflight = await fetchText(`${guarded.url}/api/jobs/guarded`, { method: "OPTIONS" });
      assert.equal(preflight.status, 204);
      await job.done();
    });
  });
}

test("http: a non-loopback address without a token, or with a short one, is refused before binding", async () => {
  const client = new Client({ servers: "127.0.0.1:1" });
  try {
    for (const host of ["0.0.0.0", "::", "192.0.2.10", "example.com"]) {
      await assert.rejects(startHttpServer({ client, host, port: 0 }), ConfigError, host);
    }
    await assert.rejects(
      startHttpServer({ client, host: "0.0.0.0", port: 0, token: "short" }),
      /at least 16/,
    );
    await assert.rejects(startHttpServer({ client, port: 0, pollInterval: 0 }), ConfigError);
  } finally {
    client.close();
  }
});

test(
  "http fan-out: 500 event streams on one job cost memcached about one read per poll interval, not 500",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    if (!requireMemcached(t)) return;
    const STREAMS = 500;
    const INTERVAL = 250; // ms
    const WATCH_MS = 4000;
    const memcached = await startRealMemcached();
    t.after(() => memcached.stop());
    const client = new Client({ servers: `127.0.0.1:${memcached.port}` });
    t.after(() => client.close());
    const ns = namespace();
    // No heartbeats during the test: every get memcached counts is either the poller's or a job write's.
    const progress = new Progress(client, { namespace: ns, heartbeat: 600_000, stallAfter: 1_200_000 });
    const job = await progress.start("bulk", { id: "fan-out", total: 100 });
    const http = await startHttpServer({ client, namespace: ns, port: 0, pollInterval: INTERVAL });
    t.after(() => http.close());
    const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
    t.after(() => agent.destroy());

    const streams: EventStream[] = await Promise.all(
      Array.from({ length: STREAMS }, () =>
        openEventStream(`${http.url}/api/jobs/fan-out/events`, { agent }),
      ),
    );
    await Promise.all(streams.map((s) => s.waitFor((x) => x.events.length >= 1, 10_000, "the first event")));
    assert.equal(http.streams, STREAMS);
    assert.equal(http.polling, 1, "one poller for the one job");

    const gets = async (): Promise<number> => {
      const stats = [...(await client.stats()).values()][0]!;
      return Number(stats.get("get_hits")) + Number(stats.get("get_misses"));
    };
    const writesBefore = job.writes;
    const readsBefore = http.reads;
    const before = await gets();
    const started = Date.now();
    for (let step = 1; step <= 4; step++) {
      await sleep(WATCH_MS / 4);
      job.update({ done: step * 10, message: `step ${step}` });
    }
    await waitFor(
      () => streams.every((s) => s.jobs<JobView>().at(-1)?.done === 40),
      "every stream has step 4",
      5000,
    );
    const after = await gets();
    const seconds = (Date.now() - started) / 1000;
    // Each running job write reads its cancel flag once: those gets are the job's, not the server's.
    const jobGets = job.writes - writesBefore;
    const serverGets = after - before - jobGets;
    const expected = (seconds * 1000) / INTERVAL;
    t.diagnostic(
      `${STREAMS} streams for ${seconds.toFixed(2)} s at ${INTERVAL} ms: get_hits+get_misses grew by ${after - before} ` +
        `(${jobGets} from the job's writes, ${serverGets} from the server; ${expected.toFixed(1)} poll intervals; ` +
        `poller reads ${http.reads - readsBefore})`,
    );
    assert.ok(serverGets <= 1.5 * expected + 3, `${serverGets} gets for ${expected.toFixed(1)} intervals`);
    assert.ok(serverGets >= 0.5 * expected, `the poller kept reading: ${serverGets} gets`);

    await job.done();
    await Promise.all(streams.map((s) => s.waitFor((x) => x.isEnded, 5000, "the end after done")));
    for (const stream of streams) assert.equal(stream.jobs<JobView>().at(-1)!.state, "done");
    await waitFor(() => http.polling === 0, "the poller stops when nobody watches", 2000);
    const idle = await gets();
    await sleep(INTERVAL * 4);
    assert.equal(await gets(), idle, "no reads once nobody watches");
  },
);

test("http: while memcached cannot be reached, the JSON routes and new event streams answer 503", async (t) => {
  const memcached = await startServer({ port: 0 });
  const port = memcached.port;
  await memcached.close(); // nothing listens there now
  const client = new Client({ servers: `127.0.0.1:${port}`, timeout: 300, connectTimeout: 300 });
  t.after(() => client.close());
  const http = await startHttpServer({ client, port: 0, pollInterval: POLL_MS });
  t.after(() => http.close());
  for (const path of ["/api/jobs", "/api/jobs/some-job", "/api/jobs/some-job/events"]) {
    const reply = await fetchJson<{ error: string }>(http.url + path);
    assert.equal(reply.status, 503, path);
    assert.match(reply.json.error, /memcached could not be/, path);
  }
  assert.equal((await fetchText(`${http.url}/api/jobs/some-job/cancel`, { method: "POST" })).status, 503);
  await waitFor(() => http.polling === 0, "no poller left behind", 2000);
});
