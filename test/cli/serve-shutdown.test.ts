// SIGTERM to `memipc serve` (embedded server) in the middle of heavy demo load: the daemon closes its server
// to the web servers, drains every stream to its head and exits; afterwards the log files hold every entry
// the web servers were told was appended, once.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { logFiles, readLog, type EntryLine } from "../helpers/log-files.js";
import { randomName, startDemo, startServe } from "./run-cli.js";

const TEST_TIMEOUT_MS = 120_000;
const LOAD_RATE = 1500; // requests per second through the proxy, each one log append and three counts
const LOAD_BEFORE_STOP_MS = 5000; // ms of load before SIGTERM

const dir = mkdtempSync(join(tmpdir(), "memipc-shutdown-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test(
  "memipc serve: SIGTERM under heavy demo load loses no acknowledged entry (embedded server drained before exit)",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const namespace = randomName("ns");
    const data = join(dir, "data");
    const serve = await startServe(t, ["--data-dir", data, "--namespace", namespace]);
    const acked = join(dir, "acked.jsonl");
    const demo = await startDemo(t, serve, namespace, ["--rate", String(LOAD_RATE), "--acked", acked]);
    await new Promise((resolve) => setTimeout(resolve, LOAD_BEFORE_STOP_MS));

    serve.cli.child.kill("SIGTERM");
    const stopped = await serve.cli.finished();
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stderr, /the embedded server accepts nothing more; draining/);
    assert.match(stopped.stderr, /memipc serve: stopped/);

    demo.cli.child.kill("SIGTERM");
    const demoDone = await demo.cli.finished();
    assert.ok(demoDone.code === 0 || demoDone.code === 1, demoDone.stderr);

    const positions = readFileSync(acked, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { stream: string; epoch: number; seq: number });
    assert.ok(positions.length > 1000, `only ${positions.length} appends were acknowledged: not heavy load`);
    const logs = join(data, "logs");
    assert.ok(existsSync(logs) && logFiles(logs, "log").length > 0, "the drainer wrote files");
    const entries = readLog(logs, "log").filter((r): r is EntryLine => r.kind === "entry");
    const drained = new Set(entries.map((e) => `${e.epoch}:${e.seq}`));
    const missing = positions.map((p) => `${p.epoch}:${p.seq}`).filter((key) => !drained.has(key));
    assert.deepEqual(
      missing.slice(0, 20),
      [],
      `${missing.length} of ${positions.length} acknowledged entries lost`,
    );
    assert.equal(drained.size, entries.length, "no entry is written twice");
    t.diagnostic(`${positions.length} acknowledged appends, ${entries.length} entries in the files`);
  },
);
