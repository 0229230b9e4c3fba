// The file sink against real files: formats, recovery after torn writes and crashes (including real kill -9
// of a writing child process), rotation by size and day, group commit, and refused writes.
// Run with MEMIPC_SINK_CHILD set, this file is instead the child that the kill -9 test starts and kills.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  rmdirSync,
  statSync,
} from "node:fs";
import { symlinkSync, unlinkSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SinkError } from "../../src/errors.js";
import {
  formatJsonLine,
  openFileSink,
  type FileSinkOptions,
  type SinkRecord,
} from "../../src/sinks/index.js";

const CHILD_ENV = "MEMIPC_SINK_CHILD";
const DAY1 = Date.UTC(2026, 10, 24, 23, 59, 0); // 2026-11-24
const DAY2 = Date.UTC(2026, 10, 25, 0, 1, 0); // 2026-11-25
const KILL_ROUNDS = 6;
const KILL_TOTAL = 3000; // records the child writes in all
const CHILD_TIMEOUT_MS = 20_000;

function entry(seq: number, extra: Partial<SinkRecord> = {}): SinkRecord {
  return {
    kind: "entry",
    epoch: 1,
    seq,
    time: DAY1 + seq,
    node: "web-1",
    data: { n: seq },
    ...extra,
  } as SinkRecord;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "memipc-sink-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function files(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith(".jsonl") || name.endsWith(".log"))
    .sort((a, b) => order(a) - order(b) || a.localeCompare(b));
}

/** Sort key inside one day: the rotation index (none = 0). */
function order(name: string): number {
  const match = /\.(\d+)\.(?:jsonl|log)$/.exec(name);
  return match ? Number(match[1]) : 0;
}

function lines(path: string): string[] {
  const text = readFileSync(path, "utf8");
  assert.ok(text === "" || text.endsWith("\n"), `${path} ends with a newline`);
  return text === "" ? [] : text.slice(0, -1).split("\n");
}

if (process.env[CHILD_ENV] !== undefined) {
  await runChild(JSON.parse(process.env[CHILD_ENV]) as ChildArgs);
} else {
  registerTests();
}

interface ChildArgs {
  dir: string;
  format: "jsonl" | "raw";
  total: number;
  maxBytes: number;
}

/** The killable writer: numbered records in random batches, a line on stdout after each durable commit. */
async function runChild(args: ChildArgs): Promise<void> {
  const sink = await openFileSink(args.dir, { format: args.format, maxBytes: args.maxBytes, fsync: "batch" });
  let next = (sink.cursor()?.seq ?? 0) + 1;
  while (next <= args.total) {
    const batch: SinkRecord[] = [];
    const size = 1 + Math.floor(Math.random() * 40);
    for (let i = 0; i < size && next <= args.total; i++, next++) {
      batch.push(
        next % 97 === 0
          ? { kind: "gap", epoch: 1, from: next, to: next, reason: "hole-timeout" }
          : { kind: "entry", epoch: 1, seq: next, time: Date.now(), node: "child", data: `n=${next}` },
      );
    }
    const commit = await sink.write(batch);
    process.stdout.write(`durable ${commit.cursor?.seq}\n`);
  }
  await sink.close();
  process.stdout.write("done\n");
}

/** The numbers the files of a kill test hold, in file order (entries and gaps alike). */
function numbersIn(dir: string, format: "jsonl" | "raw"): number[] {
  const out: number[] = [];
  for (const name of files(dir)) {
    for (const line of lines(join(dir, name))) {
      if (format === "jsonl") {
        const record = JSON.parse(line) as { seq?: number; gap?: { from: number; to: number } };
        if (record.gap) for (let n = record.gap.from; n <= record.gap.to; n++) out.push(n);
        else out.push(record.seq!);
      } else {
        const gap = /^#memipc gap epoch=1 from=(\d+) to=(\d+) /.exec(line);
        if (gap) for (let n = Number(gap[1]); n <= Number(gap[2]); n++) out.push(n);
        else out.push(Number(/^"?n=(\d+)"?$/.exec(line)![1]));
      }
    }
  }
  return out;
}

function registerTests(): void {
  const SELF = fileURLToPath(import.meta.url);

  test("file sink: JSON Lines round trip writes the documented format and a durable cursor", async (t) => {
    const dir = tempDir(t);
    const sink = await openFileSink(dir, { stream: "site", now: () => DAY1 });
    assert.equal(sink.cursor(), undefined);
    const commit = await sink.write([
      entry(1),
      entry(2, { data: "text" } as Partial<SinkRecord>),
      { kind: "gap", epoch: 1, from: 3, to: 4, reason: "hole-timeout" },
      entry(3, { late: true } as Partial<SinkRecord>),
      entry(5, { data: undefined } as Partial<SinkRecord>),
    ]);
    assert.deepEqual(commit.cursor, { epoch: 1, seq: 5 });
    assert.equal(commit.file, join(dir, "site-2026-11-24.jsonl"));
    assert.equal(commit.durable, true);
    assert.deepEqual(sink.cursor(), { epoch: 1, seq: 5 });
    const iso = (ms: number) => new Date(ms).toISOString();
    assert.deepEqual(lines(join(dir, "site-2026-11-24.jsonl")), [
      `{"seq":1,"epoch":1,"time":"${iso(DAY1 + 1)}","ms":${DAY1 + 1},"node":"web-1","data":{"n":1}}`,
      `{"seq":2,"epoch":1,"time":"${iso(DAY1 + 2)}","ms":${DAY1 + 2},"node":"web-1","data":"text"}`,
      `{"epoch":1,"time":"${iso(DAY1)}","ms":${DAY1},"gap":{"from":3,"to":4,"reason":"hole-timeout"}}`,
      `{"seq":3,"epoch":1,"time":"${iso(DAY1 + 3)}","ms":${DAY1 + 3},"node":"web-1","data":{"n":3},"late":true}`,
      `{"seq":5,"epoch":1,"time":"${iso(DAY1 + 5)}","ms":${DAY1 + 5},"node":"web-1","data":null}`,
    ]);
    const m = sink.metrics;
    assert.equal(m.records, 5);
    assert.equal(m.entries, 4);
    assert.equal(m.gaps, 1);
    assert.equal(m.late, 1);
    assert.equal(m.bytes, statSync(join(dir, "site-2026-11-24.jsonl")).size);
    assert.ok(m.fsyncs >= 1);
    assert.equal(m.lastCommitAt, DAY1);
    assert.equal(m.file, join(dir, "site-2026-11-24.jsonl"));
    await assert.rejects(sink.write([entry(5)]), SinkError, "a position that does not grow is refused");
    await sink.close();
    const again = await openFileSink(dir, { stream: "site", now: () => DAY1 });
    assert.deepEqual(again.cursor(), { epoch: 1, seq: 5 });
    await again.close();
  });

  test("file sink: JSON Lines bytes are formatJsonLine's, whatever the record; dataJson is written as it is", async (t) => {
    const dir = tempDir(t);
    const sink = await openFileSink(dir, { stream: "site", now: () => DAY1, fsync: "never" });
    const datas = [
      "plain",
      "é ✓ \u2028",
      { a: [1, 2.5, null], "b\u0000": "\ud800" },
      -3.5e-7,
      null,
      undefined,
      true,
      'q"\\\n',
    ];
    const nodes = ["", "web-1", "nœud", 'q"x', "\u0001"];
    const times = [0, DAY1, 1.5, -1, 8.64e15, 4102444800000];
    const records: SinkRecord[] = [];
    let seq = 2 ** 31 - 5; // past 2^31: numbers written digit by digit must still be right
    for (let i = 0; i < 120; i++) {
      const data = datas[i % datas.length];
      const late = i % 7 === 0 ? { late: false } : {};
      const json = i % 3 === 0 && typeof data === "string" ? { dataJson: JSON.stringify(data) } : {};
      const time = times[i % times.length]!;
      records.push({
        kind: "entry",
        epoch: 2 ** 31 - 1,
        seq: ++seq,
        time,
        node: nodes[i % 5]!,
        data,
        ...late,
        ...json,
      });
      if (i % 50 === 0)
        records.push({ kind: "gap", epoch: 2 ** 31 - 1, from: ++seq, to: ++seq, reason: "reset" });
    }
    records.push({ kind: "entry", epoch: 2 ** 31 - 1, seq: 3, time: 5, node: "x", data: "y", late: true });
    // dataJson wins over data: the drainer gives both, the JSON text read straight from memcached.
    records.push({
      kind: "entry",
      epoch: 2 ** 31 - 1,
      seq: ++seq,
      time: 5,
      node: "x",
      data: "y",
      dataJson: '"z"',
    });
    await sink.write(records);
    await sink.close();
    const expected = records.map((record) => formatJsonLine(record, DAY1).slice(0, -1));
    assert.deepEqual(lines(join(dir, "site-2026-11-24.jsonl")), expected);
    assert.match(expected.at(-1)!, /"data":"z"}$/);
    const broken = await openFileSink(dir, { stream: "site", now: () => DAY1 });
    await assert.rejects(broken.write([entry(seq + 1, { data: 1n } as Partial<SinkRecord>)]), SinkError);
    await assert.rejects(broken.write([entry(seq + 1, { data: () => 1 } as Partial<SinkRecord>)]), SinkError);
    await broken.close();
  });

  test("file sink: raw lines round trip, gap lines, and a cursor file", async (t) => {
    const dir = tempDir(t);
    const sink = await openFileSink(dir, { format: "raw", now: () => DAY1 });
    await sink.write([
      entry(1, { data: "GET /a 200" } as Partial<SinkRecord>),
      entry(2, { data: "two\nlines" } as Partial<SinkRecord>),
      { kind: "gap", epoch: 1, from: 3, to: 3, reason: "reset" },
      entry(4),
    ]);
    assert.deepEqual(lines(join(dir, "log-2026-11-24.log")), [
      "GET /a 200",
      "two\\nlines",
      `#memipc gap epoch=1 from=3 to=3 reason=reset time=${new Date(DAY1).toISOString()}`,
      `{"n":4}`,
    ]);
    const saved = JSON.parse(readFileSync(join(dir, "log.cursor"), "utf8")) as Record<string, unknown>;
    assert.deepEqual(saved, {
      epoch: 1,
      seq: 4,
      file: "log-2026-11-24.log",
      bytes: statSync(join(dir, "log-2026-11-24.log")).size,
    });
    await sink.close();
    const again = await openFileSink(dir, { format: "raw", now: () => DAY1 });
    assert.deepEqual(again.cursor(), { epoch: 1, seq: 4 });
    await again.close();
  });

  test("file sink: recovery cuts a torn last line and resumes after the last complete record", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "log-2026-11-24.jsonl");
    const sink = await openFileSink(dir, { now: () => DAY1 });
    await sink.write([entry(1), entry(2), entry(3)]);
    await sink.close();
    const good = statSync(path).size;
    appendFileSync(path, '{"seq":4,"epoch":1,"ti');
    const again = await openFileSink(dir, { now: () => DAY1 });
    assert.equal(statSync(path).size, good);
    assert.deepEqual(again.cursor(), { epoch: 1, seq: 3 });
    await again.write([entry(4)]);
    await again.close();
    assert.deepEqual(
      lines(path).map((line) => (JSON.parse(line) as { seq: number }).seq),
      [1, 2, 3, 4],
    );
  });

  test("file sink: recovery cuts zeros left by a power cut and ignores late entries for the cursor", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "log-2026-11-24.jsonl");
    const sink = await openFileSink(dir, { now: () => DAY1 });
    await sink.write([entry(1), { kind: "gap", epoch: 1, from: 2, to: 3, reason: "hole-timeout" }]);
    await sink.write([entry(2, { late: true } as Partial<SinkRecord>)]);
    await sink.close();
    const good = statSync(path).size;
    appendFileSync(path, Buffer.alloc(100));
    const again = await openFileSink(dir, { now: () => DAY1 });
    assert.equal(statSync(path).size, good);
    assert.deepEqual(again.cursor(), { epoch: 1, seq: 3 }, "the gap's `to`, not the late entry's seq");
    await again.close();
  });

  test("file sink: raw recovery cuts bytes appended after the last committed cursor", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "log-2026-11-24.log");
    const sink = await openFileSink(dir, { format: "raw", now: () => DAY1 });
    await sink.write([entry(1), entry(2), entry(3)]);
    await sink.close();
    const committed = statSync(path).size;
    // A crash between appending a batch and writing the cursor file: complete lines, never acknowledged.
    appendFileSync(path, '{"n":4}\n{"n":5}\n');
    const again = await openFileSink(dir, { format: "raw", now: () => DAY1 });
    assert.equal(statSync(path).size, committed);
    assert.deepEqual(again.cursor(), { epoch: 1, seq: 3 });
    await again.write([entry(4), entry(5)]);
    await again.close();
    assert.deepEqual(lines(path), ['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}', '{"n":5}']);
  });

  test("file sink: a new epoch starts wherever the drainer says, whatever its number; order is kept within it", async (t) => {
    const dir = tempDir(t);
    const sink = await openFileSink(dir, { stream: "site", now: () => DAY1 });
    await sink.write([
      entry(1, { epoch: 900 } as Partial<SinkRecord>),
      entry(2, { epoch: 900 } as Partial<SinkRecord>),
    ]);
    // Epochs are random: the next one may be a smaller number.
    await sink.write([entry(1, { epoch: 7 } as Partial<SinkRecord>)]);
    assert.deepEqual(sink.cursor(), { epoch: 7, seq: 1 });
    await assert.rejects(sink.write([entry(1, { epoch: 7 } as Partial<SinkRecord>)]), SinkError);
    await sink.close();
    const again = await openFileSink(dir, { stream: "site", now: () => DAY1 });
    assert.deepEqual(again.cursor(), { epoch: 7, seq: 1 });
    await again.close();
  });

  test("file sink: raw files without their cursor file are refused, not guessed at", async (t) => {
    const dir = tempDir(t);
    const sink = await openFileSink(dir, { format: "raw", now: () => DAY1 });
    await sink.write([entry(1)]);
    await sink.close();
    unlinkSync(join(dir, "log.cursor"));
    await assert.rejects(openFileSink(dir, { format: "raw", now: () => DAY1 }), (error: unknown) => {
      assert.ok(error instanceof SinkError);
      assert.equal(error.code, "ESINK");
      assert.match(error.message, /no cursor file .*log\.cursor/);
      return true;
    });
  });

  test("file sink: rotation by size never splits a record and recovery reads the newest file", async (t) => {
    for (const format of ["jsonl", "raw"] as const) {
      const dir = tempDir(t);
      const options: FileSinkOptions = { format, maxBytes: 300, now: () => DAY1 };
      const sink = await openFileSink(dir, options);
      for (let seq = 1; seq <= 40; seq += 4) {
        await sink.write([entry(seq), entry(seq + 1), entry(seq + 2), entry(seq + 3)]);
      }
      const big = entry(41, { data: "x".repeat(500) } as Partial<SinkRecord>);
      await sink.write([big, entry(42)]);
      await sink.close();
      const names = files(dir);
      const ext = format === "jsonl" ? "jsonl" : "log";
      assert.equal(names[0], `log-2026-11-24.${ext}`);
      assert.equal(names[1], `log-2026-11-24.1.${ext}`);
      let count = 0;
      for (const name of names) {
        const size = statSync(join(dir, name)).size;
        const held = lines(join(dir, name));
        assert.ok(size <= 300 || held.length === 1, `${name} is ${size} bytes with ${held.length} lines`);
        count += held.length;
      }
      assert.equal(count, 42);
      const again = await openFileSink(dir, options);
      assert.deepEqual(again.cursor(), { epoch: 1, seq: 42 });
      await again.write([entry(43)]);
      await again.close();
      assert.equal(files(dir).length, names.length, "appends to the newest file while it has room");
    }
  });

  test("file sink: rotation by day follows the injected clock and never goes back", async (t) => {
    const dir = tempDir(t);
    let now = DAY1;
    const sink = await openFileSink(dir, { now: () => now });
    await sink.write([entry(1)]);
    now = DAY2;
    const commit = await sink.write([entry(2)]);
    assert.equal(commit.file, join(dir, "log-2026-11-25.jsonl"));
    now = DAY1; // the clock steps back: keep writing the newest file
    await sink.write([entry(3)]);
    await sink.close();
    assert.deepEqual(files(dir), ["log-2026-11-24.jsonl", "log-2026-11-25.jsonl"]);
    assert.equal(lines(join(dir, "log-2026-11-24.jsonl")).length, 1);
    assert.equal(lines(join(dir, "log-2026-11-25.jsonl")).length, 2);
    const again = await openFileSink(dir, { now: () => DAY2 });
    assert.deepEqual(again.cursor(), { epoch: 1, seq: 3 });
    await again.close();
  });

  test("file sink: group commit resolves writes only after the fsync that covers them", async (t) => {
    const dir = tempDir(t);
    const sink = await openFileSink(dir, { fsync: { everyMs: 300 }, now: () => DAY1 });
    await sink.write([entry(1)]); // the first fsync may come at once
    const before = sink.metrics.fsyncs;
    const resolved: number[] = [];
    const writes = [2, 3, 4].map((seq) =>
      sink.write([entry(seq)]).then((commit) => {
        resolved.push(sink.metrics.fsyncs);
        return commit;
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(resolved, [], "nothing resolves before the fsync");
    assert.equal(sink.metrics.fsyncs, before);
    assert.deepEqual(sink.cursor(), { epoch: 1, seq: 1 }, "the cursor waits for the fsync");
    const commits = await Promise.all(writes);
    assert.equal(resolved.length, 3);
    assert.ok(
      resolved.every((fsyncs) => fsyncs === before + 1),
      "one fsync covers all three",
    );
    assert.deepEqual(
      commits.map((c) => c.cursor),
      [1, 2, 3].map(() => ({ epoch: 1, seq: 4 })),
    );
    await sink.close();
  });

  test("file sink: fsync never resolves at once and says the commit is not durable", async (t) => {
    const dir = tempDir(t);
    const sink = await openFileSink(dir, { fsync: "never", now: () => DAY1 });
    const commit = await sink.write([entry(1)]);
    assert.equal(commit.durable, false);
    assert.equal(sink.metrics.fsyncs, 0);
    assert.deepEqual(sink.cursor(), { epoch: 1, seq: 1 });
    await sink.close();
  });

  test("file sink: an output folder under a file is refused with a SinkError", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, "plain"), "");
    await assert.rejects(openFileSink(join(dir, "plain", "out")), (error: unknown) => {
      assert.ok(error instanceof SinkError);
      assert.equal(error.errno, "ENOTDIR");
      assert.match(error.message, /plain/);
      return true;
    });
  });

  test("file sink: a refused write (a folder where the file goes) keeps the cursor; retry works", async (t) => {
    for (const format of ["jsonl", "raw"] as const) {
      const dir = tempDir(t);
      let now = DAY1;
      const sink = await openFileSink(dir, { format, now: () => now });
      await sink.write([entry(1)]);
      const blocker = join(dir, `log-2026-11-25.${format === "jsonl" ? "jsonl" : "log"}`);
      mkdirSync(blocker);
      now = DAY2;
      const batch = [entry(2), entry(3)];
      await assert.rejects(sink.write(batch), (error: unknown) => {
        assert.ok(error instanceof SinkError);
        assert.equal(error.errno, "EISDIR");
        assert.match(error.message, /log-2026-11-25/);
        assert.match(error.message, /retry/);
        return true;
      });
      assert.deepEqual(sink.cursor(), { epoch: 1, seq: 1 });
      rmdirSync(blocker);
      const commit = await sink.write(batch);
      assert.deepEqual(commit.cursor, { epoch: 1, seq: 3 });
      await sink.close();
      assert.equal(lines(join(dir, files(dir)[0]!)).length, 1);
      assert.equal(lines(blocker).length, 2);
    }
  });

  test("file sink: a batch pipelined behind a failed one is refused when it names the batch it follows", async (t) => {
    const dir = tempDir(t);
    let now = DAY1;
    const sink = await openFileSink(dir, { now: () => now });
    await sink.write([entry(1)], { after: null });
    const blocker = join(dir, "log-2026-11-25.jsonl");
    mkdirSync(blocker);
    now = DAY2;
    // Both handed over before the first fails, as a drainer pipelines them.
    const failed = sink.write([entry(2), entry(3)], { after: { epoch: 1, seq: 1 } });
    const behind = sink.write([entry(4)], { after: { epoch: 1, seq: 3 } });
    await assert.rejects(failed, SinkError);
    await assert.rejects(behind, /out of sequence/);
    rmdirSync(blocker);
    // Without `after` a batch is only checked for order, which a hole passes: the reason for `after`.
    await sink.write([entry(2), entry(3)], { after: { epoch: 1, seq: 1 } });
    await sink.write([entry(4)], { after: { epoch: 1, seq: 3 } });
    await sink.close();
    const written = [...lines(join(dir, files(dir)[0]!)), ...lines(blocker)].map(
      (line) => JSON.parse(line).seq,
    );
    assert.deepEqual(written, [1, 2, 3, 4]);
  });

  test("file sink: ENOSPC mid-batch (rotation onto /dev/full) undoes the batch and keeps the cursor", async (t) => {
    if (!existsSync("/dev/full")) {
      t.skip("no /dev/full here");
      return;
    }
    for (const format of ["jsonl", "raw"] as const) {
      const dir = tempDir(t);
      const ext = format === "jsonl" ? "jsonl" : "log";
      const sink = await openFileSink(dir, { format, maxBytes: 200, now: () => DAY1 });
      await sink.write([entry(1)]);
      const first = join(dir, `log-2026-11-24.${ext}`);
      const committed = statSync(first).size;
      const full = join(dir, `log-2026-11-24.1.${ext}`);
      symlinkSync("/dev/full", full);
      // The batch fills the first file, then spills into the second, which refuses: all of it is undone.
      const padded = (seq: number) =>
        entry(seq, { data: { n: seq, pad: "x".repeat(60) } } as Partial<SinkRecord>);
      const batch = [2, 3, 4, 5, 6, 7].map(padded);
      await assert.rejects(sink.write(batch), (error: unknown) => {
        assert.ok(error instanceof SinkError);
        assert.equal(error.errno, "ENOSPC");
        assert.match(error.message, /disk space/);
        return true;
      });
      assert.deepEqual(sink.cursor(), { epoch: 1, seq: 1 });
      assert.equal(statSync(first).size, committed, "the bytes appended before the failure are cut");
      unlinkSync(full);
      await sink.write(batch);
      await sink.close();
      const reopened = await openFileSink(dir, { format, maxBytes: 200, now: () => DAY1 });
      assert.deepEqual(reopened.cursor(), { epoch: 1, seq: 7 });
      await reopened.close();
      const all = files(dir).flatMap((name) => lines(join(dir, name)));
      assert.equal(all.length, 7, "every record exactly once");
    }
  });

  test("file sink: kill -9 at random moments neither duplicates nor loses a record", async (t) => {
    for (const format of ["jsonl", "raw"] as const) {
      const dir = tempDir(t);
      const args: ChildArgs = { dir, format, total: KILL_TOTAL, maxBytes: 4096 };
      let acknowledged = 0;
      let midRun = 0; // kills that landed while the child was still writing
      for (let round = 0; round <= KILL_ROUNDS; round++) {
        const last = round === KILL_ROUNDS;
        const child = spawn(process.execPath, [SELF], {
          env: { ...process.env, [CHILD_ENV]: JSON.stringify(args) },
          stdio: ["ignore", "pipe", "pipe"],
        });
        const pid = child.pid!;
        let out = "";
        let err = "";
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
        child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
        const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
        const guard = setTimeout(() => child.kill("SIGKILL"), CHILD_TIMEOUT_MS);
        if (!last) {
          // Kill once it is writing, a random few milliseconds into it.
          for (let waited = 0; !out.includes("durable") && waited < CHILD_TIMEOUT_MS; waited += 5) {
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 40));
          // It may have finished meanwhile (then this round counts as a kill after the end).
          if (child.exitCode === null && child.signalCode === null) process.kill(pid, "SIGKILL");
        }
        const code = await exited;
        clearTimeout(guard);
        if (!last && !out.includes("done")) midRun++;
        if (last) assert.equal(code, 0, `the last run completes: ${err}`);
        const printed = [...out.matchAll(/durable (\d+)/g)].map((match) => Number(match[1]));
        if (printed.length > 0) acknowledged = Math.max(acknowledged, ...printed);
        // Every acknowledged cursor survives the kill.
        const check = await openFileSink(dir, { format, maxBytes: 4096 });
        assert.ok((check.cursor()?.seq ?? 0) >= acknowledged, `${format} round ${round}: cursor behind acks`);
        await check.close();
      }
      assert.ok(midRun >= KILL_ROUNDS / 2, `${format}: only ${midRun} kills landed mid-run`);
      const numbers = numbersIn(dir, format);
      assert.equal(numbers.length, KILL_TOTAL, `${format}: every number once`);
      assert.ok(
        numbers.every((n, i) => n === i + 1),
        `${format}: in order`,
      );
    }
  });
}
