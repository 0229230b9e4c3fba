// `memipc demo` as a user runs it, against `memipc serve`: the proxy serves pages from every web server,
// request counters rise in memcached, the report job started through one server progresses and is served
// by all of them, and after the demo exits every append it was told about is in the drained files.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Client } from "../../src/client/index.js";
import type { RequestEntry } from "../../src/middleware/index.js";
import { bucketStart, counterKey } from "../../src/stats/layout.js";
import { logFiles, readLog, type EntryLine } from "../helpers/log-files.js";
import { randomName, startDemo, startServe, waitFor } from "./run-cli.js";

const TEST_TIMEOUT_MS = 90_000;
const DRAIN_WAIT_MS = 20_000; // every acknowledged entry is in the files by then

const dir = mkdtempSync(join(tmpdir(), "memipc-demo-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test(
  "memipc demo: a farm behind a proxy logs every request; counters rise, the report job progresses on every server, every acked entry is drained",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const namespace = randomName("ns");
    const data = join(dir, "data");
    const serve = await startServe(t, ["--data-dir", data, "--namespace", namespace]);
    const { memcached, dashboard } = serve;
    const client = new Client({ servers: memcached });
    t.after(() => client.close());

    const acked = join(dir, "acked.jsonl");
    const started = await startDemo(t, serve, namespace, [
      "--rate",
      "100",
      "--duration",
      "8",
      "--step-ms",
      "100",
      "--acked",
      acked,
    ]);
    const { cli: demo, proxy, jobPage } = started;
    assert.ok(jobPage.startsWith(`${proxy}/jobs/`), demo.stdout);
    assert.match(demo.stdout, new RegExp(`dashboard\\s+${dashboard.replace(/[.]/g, "\\.")}`));
    const jobId = decodeURIComponent(jobPage.slice(`${proxy}/jobs/`.length));

    // The proxy passes requests to every web server in turn.
    const servedBy = new Set<string>();
    for (let i = 0; i < 30 && servedBy.size < 3; i++) {
      const page = await fetch(`${proxy}/`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /memipc demo shop/);
      servedBy.add(page.headers.get("x-served-by") ?? "");
    }
    assert.deepEqual([...servedBy].sort(), ["web-1", "web-2", "web-3"]);

    // Request counters rise in memcached.
    const requests = async (): Promise<number> => {
      const now = bucketStart({ namespace, bucketSeconds: 60 }, Date.now());
      const keys = [now - 60, now].map((s) =>
        counterKey({ namespace, bucketSeconds: 60 }, s, "http.requests"),
      );
      return (await client.getMany(keys)).reduce(
        (sum, v) => sum + (v === undefined ? 0 : Number(v.toString())),
        0,
      );
    };
    const first = await requests();
    await waitFor(async () => (await requests()) > first + 50, "http.requests to rise by 50");

    // The job, started through one web server, progresses as seen through the others.
    const jobViews: Array<{ done: number; by: string }> = [];
    const page = await fetch(jobPage);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<script>/);
    await waitFor(async () => {
      const answer = await fetch(`${proxy}/api/jobs/${encodeURIComponent(jobId)}`);
      assert.equal(answer.status, 200);
      const job = (await answer.json()) as { id: string; state: string; done: number; total: number };
      assert.equal(job.id, jobId);
      jobViews.push({ done: job.done, by: answer.headers.get("x-served-by") ?? "" });
      const servers = new Set(jobViews.map((v) => v.by));
      return servers.size === 3 && jobViews[jobViews.length - 1]!.done > jobViews[0]!.done;
    }, "the job to progress, as served by all three web servers");

    const finished = await demo.finished();
    assert.equal(finished.code, 0, finished.stderr);
    assert.match(finished.stdout, /demo: stopped after \d+ requests/);

    // Every append a web server was told about is in the drained files, once.
    const positions = readFileSync(acked, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { stream: string; epoch: number; seq: number; node: string });
    assert.ok(positions.length > 300, `${positions.length} acknowledged appends`);
    assert.ok(positions.every((p) => p.stream === "log"));
    const logs = join(data, "logs");
    const entries = (): EntryLine[] =>
      existsSync(logs) && logFiles(logs, "log").length > 0
        ? readLog(logs, "log", { tornTail: true }).filter((r): r is EntryLine => r.kind === "entry")
        : [];
    const missing = (): string[] => {
      const drained = new Set(entries().map((e) => `${e.epoch}:${e.seq}`));
      return positions.map((p) => `${p.epoch}:${p.seq}`).filter((key) => !drained.has(key));
    };
    const deadline = Date.now() + DRAIN_WAIT_MS;
    while (missing().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(missing().slice(0, 20), [], "acknowledged entries missing from the drained files");
    const all = entries();
    const keys = all.map((e) => `${e.epoch}:${e.seq}`);
    assert.equal(new Set(keys).size, keys.length, "no entry is written twice");
    const requestsLogged = all.map((e) => e.data as RequestEntry);
    assert.deepEqual([...new Set(all.map((e) => e.node))].sort(), ["web-1", "web-2", "web-3"]);
    assert.ok(
      requestsLogged.some((r) => r.path === "/search"),
      "searches are logged",
    );
    assert.ok(
      requestsLogged.every((r) => !r.path.includes("?")),
      "query strings are stripped",
    );
    assert.ok(requestsLogged.some((r) => r.status === 404) && requestsLogged.some((r) => r.status === 500));
    assert.ok(
      requestsLogged.some((r) => r.user !== undefined),
      "signed-in users are recorded",
    );
    assert.ok(requestsLogged.some((r) => r.method === "POST" && r.path === "/report"));

    serve.cli.child.kill("SIGTERM");
    const stopped = await serve.cli.finished();
    assert.equal(stopped.code, 0, stopped.stderr);
  },
);
