// `memipc collect` and `memipc stats-list` as a user runs them: counts made with `memipc incr` show up in
// stats-list, land in the SQLite file once, and yesterday's report is written once after its time.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, test } from "node:test";
import { Client } from "../../src/client/index.js";
import { Lease } from "../../src/lease/index.js";
import { dueReportDay, previousDay } from "../../src/sinks/report-files.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { startServer } from "../../src/server/index.js";
import { randomName, run } from "./run-cli.js";

const TEST_TIMEOUT_MS = 60_000;

const server = await startServer({ port: 0 });
const MEMCACHED = `127.0.0.1:${server.port}`;
const client = new Client({ servers: MEMCACHED });
const dir = mkdtempSync(join(tmpdir(), "memipc-collect-cli-"));
after(async () => {
  client.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test(
  "memipc collect --once: counts from memipc incr land once; yesterday's report is written once",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const namespace = randomName("ns");
    const common = ["--memcached", MEMCACHED, "--namespace", namespace];
    for (const by of ["3", "4"]) {
      const done = await run(t, ["incr", ...common, "--bucket", "1", "signups", by]);
      assert.equal(done.code, 0, done.stderr);
    }
    const listed = await run(t, ["stats-list", ...common, "--bucket", "1", "--buckets", "10", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const stats = (JSON.parse(listed.stdout) as { stats: Array<{ name: string; values: unknown[] }> }).stats;
    assert.deepEqual(
      stats.map((s) => [s.name, s.values.reduce((a: number, v) => a + (typeof v === "number" ? v : 0), 0)]),
      [["signups", 7]],
    );
    await sleep(1100); // the bucket closes (grace 0)
    const db = join(dir, `${namespace}.db`);
    const reports = join(dir, `${namespace}-reports`);
    const collect = [
      "collect",
      ...common,
      "--bucket=1",
      "--grace=0",
      "--lookback=60",
      `--db=${db}`,
      `--reports=${reports}`,
      "--report-at=00:00",
      "--tz=UTC",
      "--once",
    ];
    const first = await run(t, collect);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /new buckets/);
    const day = previousDay(Date.now(), "UTC");
    assert.match(first.stderr, new RegExp(`wrote the report of ${day}`));
    assert.deepEqual(readdirSync(reports).sort(), [`${day}.html`, `${day}.json`, `${day}.md`]);
    const second = await run(t, collect);
    assert.equal(second.code, 0, second.stderr);
    assert.doesNotMatch(second.stderr, /wrote the report/);
    const stored = StatsDb.open(db, { readonly: true });
    assert.equal(
      stored.counters(0, 2 ** 40).reduce((sum, r) => sum + r.value, 0),
      7,
    );
    assert.ok(stored.reportWritten(day));
    stored.close();
  },
);

test(
  "memipc collect --once refuses to run while another collector holds the lease",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const namespace = randomName("ns");
    const lease = new Lease(client, { name: "collect", namespace });
    assert.ok(await lease.tryAcquire());
    try {
      const db = join(dir, `${namespace}.db`);
      const done = await run(t, [
        "collect",
        "--memcached",
        MEMCACHED,
        "--namespace",
        namespace,
        `--db=${db}`,
        "--no-reports",
        "--once",
      ]);
      assert.equal(done.code, 1);
      assert.match(done.stderr, /another collector .* holds .*lease:collect/);
    } finally {
      await lease.release();
    }
  },
);

test("memipc collect: bad flags exit 2 before anything starts, saying what is wrong", async (t) => {
  const db = join(dir, "never.db");
  for (const [args, message] of [
    [["--interval", "0"], /--interval "0" must be a number of seconds above 0/],
    [["--tz", "Mars/Olympus"], /is not a time zone/],
    [["--report-at", "25:00"], /not a time of day/],
    [["--no-reports", "--reports", "x"], /contradicts/],
    [["--legacy", ","], /--legacy needs one or more key names/],
    [["--bucket", "0"], /--bucket/],
  ] as const) {
    const done = await run(t, ["collect", "--memcached", MEMCACHED, `--db=${db}`, ...args]);
    assert.equal(done.code, 2, `${args.join(" ")}: ${done.stderr}`);
    assert.match(done.stderr, message);
  }
  assert.equal(existsSync(db), false, "nothing was created");
});

test("daily report: yesterday's is due only after the report time, and only until it is written", () => {
  const db = StatsDb.open(":memory:");
  const at = (iso: string) => Date.parse(iso);
  assert.equal(dueReportDay(db, at("2026-11-25T00:04:59Z"), "00:05", "UTC"), undefined);
  assert.equal(dueReportDay(db, at("2026-11-25T00:05:00Z"), "00:05", "UTC"), "2026-11-24");
  assert.equal(dueReportDay(db, at("2026-11-25T23:59:00Z"), "00:05", "UTC"), "2026-11-24");
  // Local time: 00:05 in Berlin on 25 November is 23:05 UTC the day before.
  assert.equal(dueReportDay(db, at("2026-11-24T23:05:00Z"), "00:05", "Europe/Berlin"), "2026-11-24");
  db.markReport("2026-11-24", at("2026-11-25T00:05:00Z"), []);
  assert.equal(dueReportDay(db, at("2026-11-25T12:00:00Z"), "00:05", "UTC"), undefined);
  db.close();
});
