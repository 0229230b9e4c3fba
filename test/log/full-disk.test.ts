// The drainer on a full disk, end to end: `memipc serve` runs as a child; its file size limit is lowered with
// prlimit (util-linux) so its log writes fail with EFBIG, as on a full disk. While they fail, the cursor stays,
// no partial record is left, every entry stays in memcached, and the dashboard's overview names the error;
// once the limit is lifted the daemon goes on by itself, every entry in the files once, in order, no gap.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { Client } from "../../src/client/index.js";
import { SinkError } from "../../src/errors.js";
import { entryKey, streamAddress } from "../../src/log/layout.js";
import { LogProducer } from "../../src/log/producer.js";
import { openFileSink, type SinkRecord } from "../../src/sinks/index.js";
import { randomName, startServe } from "../cli/run-cli.js";
import { logFiles, readLog } from "../helpers/log-files.js";
import { works } from "../helpers/run-program.js";
import { waitFor } from "../helpers/wait.js";

const TEST_TIMEOUT_MS = 60_000;
const BEFORE = 20; // entries written before the disk fills
const DURING = 30; // entries appended while it is full

/** prlimit from util-linux (Essential in Debian); skipped without it, a failure under CI=true. */
function requirePrlimit(t: TestContext): boolean {
  if (works("prlimit", ["--version"])) return true;
  const message = "prlimit not found: it comes with util-linux (apt-get install -y util-linux)";
  if (process.env.CI === "true") throw new Error(message);
  t.skip(message);
  return false;
}

/** Sets the soft file size limit (RLIMIT_FSIZE) of process `pid`: a byte count or "unlimited". */
function limitFileSize(pid: number, limit: number | "unlimited"): void {
  const done = spawnSync("prlimit", ["--pid", String(pid), `--fsize=${limit}:`], { encoding: "utf8" });
  assert.equal(done.status, 0, `prlimit failed: ${done.stderr}`);
}

interface OverviewJson {
  warnings: string[];
  streams: Array<{ stream: string; cursor: { seq: number } | null; lastError: string | null }>;
}

test(
  "drainer on a full disk: EFBIG stops the cursor, the dashboard shows it, and draining resumes with each entry once",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    if (!requirePrlimit(t)) return;
    const dir = mkdtempSync(join(tmpdir(), "memipc-full-disk-"));
    const stream = randomName("fd");
    const serve = await startServe(t, ["--data-dir", dir, "--streams", stream, "--no-collect"]);
    const pid = serve.cli.child.pid!;
    const client = new Client({ servers: serve.memcached });
    t.after(() => {
      client.close();
      serve.cli.kill();
      rmSync(dir, { recursive: true, force: true });
    });
    const logs = join(dir, "logs");
    const address = streamAddress({ stream });
    const producer = new LogProducer(client, { stream, node: "web-1" });
    const overview = async (): Promise<OverviewJson> =>
      (await (await fetch(`${serve.dashboard}/api/overview`)).json()) as OverviewJson;
    const entries = () => readLog(logs, stream).filter((r) => r.kind === "entry").length;

    await producer.appendMany(Array.from({ length: BEFORE }, (_, i) => `before ${i}`));
    await waitFor(() => entries() === BEFORE, "the first entries on disk");
    const file = join(logs, logFiles(logs, stream).at(-1)!);
    const size = statSync(file).size;
    // Any byte past the file's current end now fails with EFBIG (and SIGXFSZ, which Node ignores).
    limitFileSize(pid, size);

    const during = await producer.appendMany(Array.from({ length: DURING }, (_, i) => `during ${i}`));
    const drainerWarning = (o: OverviewJson) =>
      o.warnings.find((w) => w.startsWith(`drainer of stream ${stream}:`));
    await waitFor(
      async () => drainerWarning(await overview()) !== undefined,
      "the overview to warn of the failing writes",
    );
    const shown = await overview();
    // The log file's write fails with EFBIG; the fence's SQLite journal, when the drainer retries, with
    // SQLite's "disk I/O error". Either way the warning says what to do.
    assert.match(drainerWarning(shown)!, /EFBIG|disk I\/O error/);
    assert.match(drainerWarning(shown)!, /file size limit \(ulimit -f\).*raise the limit/);
    assert.match(drainerWarning(shown)!, /the cursor did not move/);
    assert.equal(shown.streams.find((s) => s.stream === stream)?.cursor?.seq, BEFORE, "the cursor stayed");
    assert.ok(serve.cli.running, "the daemon survives its file size limit");
    assert.equal(statSync(file).size, size, "no partial record was left");
    assert.equal(entries(), BEFORE);
    const kept = await client.getMany(during.map((a) => entryKey(address, a.epoch, a.seq)));
    assert.ok(
      kept.every((value) => value !== undefined),
      "every entry not yet written is still in memcached",
    );
    assert.match(serve.cli.stderr, /drainer .*EFBIG.*\(retrying\)/);

    limitFileSize(pid, "unlimited");
    await waitFor(() => entries() === BEFORE + DURING, "the entries appended while the disk was full");
    await waitFor(async () => drainerWarning(await overview()) === undefined, "the warning to go");
    const records = readLog(logs, stream);
    assert.deepEqual(
      records.map((r) => (r.kind === "entry" ? `${r.seq} ${String(r.data)}` : `gap ${r.from}-${r.to}`)),
      [
        ...Array.from({ length: BEFORE }, (_, i) => `${i + 1} before ${i}`),
        ...Array.from({ length: DURING }, (_, i) => `${BEFORE + i + 1} during ${i}`),
      ],
      "every entry once, in order, no gap",
    );
    const keys = during.map((a) => entryKey(address, a.epoch, a.seq));
    await waitFor(
      async () => (await client.getMany(keys)).every((value) => value === undefined),
      "the drained entries deleted from memcached",
    );
  },
);

test("file sink: a write cut short by the file size limit (EFBIG) is undone, and the same batch goes in once the limit is lifted", async (t) => {
  if (!requirePrlimit(t)) return;
  const dir = mkdtempSync(join(tmpdir(), "memipc-efbig-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const record = (seq: number): SinkRecord => ({
    kind: "entry",
    epoch: 1,
    seq,
    time: Date.UTC(2026, 10, 24) + seq,
    node: "web-1",
    data: `entry ${seq} ${"x".repeat(80)}`,
  });
  const sink = await openFileSink(dir, { stream: "efbig" });
  await sink.write([1, 2, 3].map(record));
  const file = join(dir, logFiles(dir, "efbig")[0]!);
  const committed = statSync(file).size;
  const batch = [4, 5, 6, 7].map(record);
  // This test's own process: the first line of the batch fits only in part, so the write is cut short.
  limitFileSize(process.pid, committed + 100);
  try {
    await assert.rejects(sink.write(batch), (error: unknown) => {
      assert.ok(error instanceof SinkError, String(error));
      assert.equal(error.errno, "EFBIG");
      assert.match(error.message, /file size limit \(ulimit -f\).*raise the limit.*the cursor did not move/);
      return true;
    });
    assert.equal(statSync(file).size, committed, "the part written before EFBIG was cut away");
    assert.deepEqual(sink.cursor(), { epoch: 1, seq: 3 });
  } finally {
    limitFileSize(process.pid, "unlimited");
  }
  await sink.write(batch);
  await sink.close();
  const reopened = await openFileSink(dir, { stream: "efbig" });
  assert.deepEqual(reopened.cursor(), { epoch: 1, seq: 7 });
  await reopened.close();
  assert.deepEqual(
    readLog(dir, "efbig").map((r) => (r.kind === "entry" ? r.seq : -1)),
    [1, 2, 3, 4, 5, 6, 7],
  );
});

test("file sink: a fence that cannot take a token on a full disk is a SinkError that says what to do; the next open works", async (t) => {
  if (!requirePrlimit(t)) return;
  const dir = mkdtempSync(join(tmpdir(), "memipc-fence-efbig-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = await openFileSink(dir, { stream: "fenced" });
  await first.write([
    { kind: "entry", epoch: 1, seq: 1, time: Date.UTC(2026, 10, 24), node: "web-1", data: "one" },
  ]);
  await first.close();
  // Taking a token writes SQLite's journal: with a limit smaller than one page it cannot.
  limitFileSize(process.pid, 1000);
  try {
    await assert.rejects(openFileSink(dir, { stream: "fenced" }), (error: unknown) => {
      assert.ok(error instanceof SinkError, String(error));
      assert.match(
        error.message,
        /fence .*file size limit \(ulimit -f\).*raise the limit.*the cursor did not move/,
      );
      return true;
    });
  } finally {
    limitFileSize(process.pid, "unlimited");
  }
  const again = await openFileSink(dir, { stream: "fenced" });
  assert.deepEqual(again.cursor(), { epoch: 1, seq: 1 });
  await again.close();
});
