// `memipc serve` as a user runs it: one process starts the embedded server, drainers, the collector and the
// HTTP server; entries logged through it reach the files; SIGTERM stops it cleanly. `memipc config print`
// shows file < environment < flags, and bad configuration exits 2 naming the key.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { run, startServe, waitFor } from "./run-cli.js";

const TEST_TIMEOUT_MS = 60_000;
const dir = mkdtempSync(join(tmpdir(), "memipc-serve-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test(
  "memipc serve: runs server, drainers, collector and HTTP in one process; SIGTERM stops it with the entries on disk",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const data = join(dir, "data");
    const serve = await startServe(t, ["--data-dir", data, "--streams", "log,orders", "--tz", "UTC"]);
    const { memcached, dashboard: url } = serve;
    for (let i = 0; i < 5; i++) {
      const logged = await run(t, ["log", "--memcached", memcached, "--stream", "orders", `order ${i} paid`]);
      assert.equal(logged.code, 0, logged.stderr);
    }
    const jobs = await fetch(`${url}/api/jobs`);
    assert.equal(jobs.status, 200);
    assert.deepEqual(await jobs.json(), { jobs: [] });
    const logs = join(data, "logs");
    const lines = (): string[] =>
      existsSync(logs)
        ? readdirSync(logs)
            .filter((f) => f.startsWith("orders-"))
            .flatMap((f) => readFileSync(join(logs, f), "utf8").split("\n").filter(Boolean))
        : [];
    await waitFor(() => lines().length === 5, "the five entries in the orders files");
    // The drainer's figures and the server's, in the Prometheus text format.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const value = (series: string): number => {
      const line = metrics.split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? NaN : Number(line.slice(series.length + 1));
    };
    assert.equal(value('memipc_log_cursor_seq{stream="orders"}'), 5, metrics);
    assert.equal(value('memipc_log_lag{stream="orders"}'), 0);
    assert.equal(value('memipc_log_entries_total{stream="orders"}'), 5);
    assert.equal(value(`memipc_memcached_up{server="${memcached}"}`), 1);
    assert.equal(value('memipc_jobs{state="running"}'), 0);
    assert.match(metrics, /^# TYPE memipc_memcached_evictions_total counter$/m);
    serve.cli.child.kill("SIGTERM");
    const finished = await serve.cli.finished();
    assert.equal(finished.code, 0, finished.stderr);
    assert.match(finished.stderr, /stopped/);
    assert.deepEqual(
      lines().map((l) => (JSON.parse(l) as { data: string }).data),
      [0, 1, 2, 3, 4].map((i) => `order ${i} paid`),
    );
    assert.ok(existsSync(join(data, "stats.db")), "the collector made its database");
  },
);

test("memipc config print: defaults, then the file, then the environment, then flags; bad values exit 2 naming the key", async (t) => {
  const file = join(dir, "memipc.config.json");
  writeFileSync(file, JSON.stringify({ httpPort: 9000, namespace: "fromfile", streams: ["a", "b"] }));
  const printed = await run(t, ["config", "print", "--config", file, "--http-port", "9100"], {
    MEMIPC_NAMESPACE: "fromenv",
  });
  assert.equal(printed.code, 0, printed.stderr);
  const row = (key: string) => printed.stdout.split("\n").find((l) => l.startsWith(`${key} `))!;
  assert.match(row("httpPort"), /9100\s+flag --http-port$/);
  assert.match(row("namespace"), /"fromenv"\s+env MEMIPC_NAMESPACE$/);
  assert.match(row("streams"), /\["a","b"\]\s+file /);
  assert.match(row("listen"), /"127.0.0.1"\s+default$/);
  assert.match(row("failover"), /false\s+default$/);
  const pool = await run(t, ["config", "print", "--failover", "--partitions", "4", "--lease-ttl", "3"]);
  assert.equal(pool.code, 0, pool.stderr);
  const poolRow = (key: string) => pool.stdout.split("\n").find((l) => l.startsWith(`${key} `))!;
  assert.match(poolRow("failover"), /true\s+flag --failover$/);
  assert.match(poolRow("partitions"), /4\s+flag --partitions$/);
  assert.match(poolRow("leaseTtl"), /3\s+flag --lease-ttl$/);
  for (const [args, env, message] of [
    [["--http-port", "70000"], {}, /--http-port "70000" is not a TCP port/],
    [["--tz", "Nowhere/Else"], {}, /timeZone \(from flag --tz\)/],
    [["--streams", "bad name"], {}, /streams \(from flag --streams\)/],
    [[], { MEMIPC_DRAIN: "maybe" }, /MEMIPC_DRAIN "maybe" must be true or false/],
    [["--partitions", "0"], {}, /--partitions "0" must be a whole number from 1 to 256/],
    [[], { MEMIPC_LEASE_TTL: "1" }, /MEMIPC_LEASE_TTL "1" must be a whole number from 2 to 3600/],
    [["--memcached", "10.0.0.1:11211", "--port", "11300"], {}, /port .* is for the embedded server/],
    [["--config", join(dir, "missing.json")], {}, /does not exist/],
  ] as const) {
    const done = await run(t, ["config", "print", ...args], env);
    assert.equal(done.code, 2, `${args.join(" ")}: ${done.stderr}`);
    assert.match(done.stderr, message);
  }
  writeFileSync(file, JSON.stringify({ htpPort: 1 }));
  const typo = await run(t, ["config", "print", "--config", file]);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /unknown key "htpPort"; the keys are memcached, namespace/);
});
