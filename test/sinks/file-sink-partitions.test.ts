// The file sink's partitioned mode against real files: records that name their partition, a cursor per
// partition, recovery (by scanning back, or stopping at a checkpoint line), raw lines with a per-partition
// cursor file, recent(), and the generation that refuses batches pipelined behind a failed one.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SinkError } from "../../src/errors.js";
import {
  CHECKPOINT_EVERY,
  formatCheckpoint,
  formatJsonLine,
  formatRawLine,
  openFileSink,
  type Cursor,
  type EntryRecord,
  type FileSinkOptions,
  type GapRecord,
  type SinkRecord,
} from "../../src/sinks/file-sink.js";

const DAY1 = Date.UTC(2026, 10, 24, 10, 0, 0); // 2026-11-24, the day every file here is named after
const LATER = DAY1 + 60_000; // the clock of a sink reopened later the same day

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "memipc-parts-"));
  dirs.push(dir);
  return dir;
}

function randomStream(): string {
  return `parts-${randomBytes(4).toString("hex")}`;
}

function entry(part: number | undefined, seq: number, extra: Partial<EntryRecord> = {}): EntryRecord {
  const record: EntryRecord = {
    kind: "entry",
    epoch: 1,
    seq,
    time: DAY1 + seq,
    node: "web-1",
    data: { seq },
  };
  if (part !== undefined) record.part = part;
  return { ...record, ...extra };
}

function gap(part: number | undefined, from: number, to: number, extra: Partial<GapRecord> = {}): GapRecord {
  const record: GapRecord = { kind: "gap", epoch: 1, from, to, reason: "hole-timeout" };
  if (part !== undefined) record.part = part;
  return { ...record, ...extra };
}

function dataFile(dir: string, stream: string, ext = "jsonl"): string {
  return join(dir, `${stream}-2026-11-24.${ext}`);
}

function lines(path: string): string[] {
  const text = readFileSync(path, "utf8");
  assert.ok(text === "" || text.endsWith("\n"), `${path} ends with a newline`);
  return text === "" ? [] : text.slice(0, -1).split("\n");
}

function isCheckpoint(line: string): boolean {
  return line.startsWith('{"checkpoint":');
}

function positions(entries: Array<[number, Cursor]>): Map<number, Cursor> {
  return new Map(entries);
}

test("partitioned sink: interleaved partitions are written with their part first and each gets its own durable cursor", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const sink = await openFileSink(dir, { stream, partitioned: true, fsync: "batch", now: () => DAY1 });
  assert.deepEqual(sink.cursors(), new Map());
  const records: SinkRecord[] = [
    entry(0, 1),
    entry(1, 1),
    entry(0, 2),
    gap(2, 1, 4),
    entry(1, 2, { epoch: 7 }),
    entry(0, 3),
  ];
  const commit = await sink.write(records);
  const expected = positions([
    [0, { epoch: 1, seq: 3 }],
    [1, { epoch: 7, seq: 2 }],
    [2, { epoch: 1, seq: 4 }],
  ]);
  assert.deepEqual(commit.cursors, expected);
  assert.deepEqual(commit.cursor, { epoch: 1, seq: 3 }, "commit.cursor is partition 0's");
  assert.equal(commit.durable, true);
  assert.deepEqual(sink.cursors(), expected);
  assert.deepEqual(sink.cursor(1), { epoch: 7, seq: 2 });
  assert.deepEqual(sink.cursor(2), { epoch: 1, seq: 4 });
  assert.deepEqual(sink.cursor(), sink.cursor(0));
  assert.equal(sink.cursor(3), undefined, "a partition never written has no cursor");

  const written = lines(dataFile(dir, stream));
  assert.deepEqual(
    written,
    records.map((record) => formatJsonLine(record, DAY1).slice(0, -1)),
  );
  assert.deepEqual(
    written.map((line) => /^\{"part":(\d+),/.exec(line)?.[1]),
    ["0", "1", "0", "2", "1", "0"],
  );
  assert.equal(
    written[3],
    `{"part":2,"epoch":1,"time":"${new Date(DAY1).toISOString()}","ms":${DAY1},` +
      `"gap":{"from":1,"to":4,"reason":"hole-timeout"}}`,
  );
  assert.ok(!written.some(isCheckpoint), "a fresh sink has no position to checkpoint");
  await sink.close();
});

test("partitioned sink: the order rule holds within each partition, independently, and a refused batch writes nothing", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const sink = await openFileSink(dir, { stream, partitioned: true, fsync: "never", now: () => DAY1 });
  await sink.write([entry(0, 1), entry(0, 2), entry(0, 3), entry(1, 1)]);
  const path = dataFile(dir, stream);
  const size = statSync(path).size;
  const before = sink.cursors();

  // Partition 0 moves on, but partition 1 goes back: the whole batch is refused.
  await assert.rejects(sink.write([entry(0, 4), entry(1, 1)]), (error: unknown) => {
    assert.ok(error instanceof SinkError);
    assert.match(error.message, /partition 1 at epoch 1 seq 1 is out of order/);
    return true;
  });
  await assert.rejects(
    sink.write([entry(1, 2), entry(0, 3)]),
    /partition 0 at epoch 1 seq 3 is out of order/,
  );
  // A late entry may not go forward, in its own partition.
  await assert.rejects(sink.write([entry(1, 9, { late: true })]), SinkError);
  assert.equal(statSync(path).size, size, "nothing of a refused batch is written");
  assert.deepEqual(sink.cursors(), before);
  assert.equal(sink.generation, 0, "an order refusal touches no file, so nothing is rolled back");

  // Partition 1 at seq 2 is new for it even though partition 0 is past it.
  await sink.write([entry(1, 2), entry(0, 4)]);
  // Late entries go back within their partition and move no cursor; a new epoch in one partition leaves
  // the other in its own.
  await sink.write([entry(0, 2, { late: true }), entry(1, 1, { epoch: 5 }), entry(0, 5)]);
  assert.deepEqual(
    sink.cursors(),
    positions([
      [0, { epoch: 1, seq: 5 }],
      [1, { epoch: 5, seq: 1 }],
    ]),
  );
  await assert.rejects(sink.write([entry(1, 1, { epoch: 5 })]), SinkError);
  await sink.close();
  const seen = lines(path).map((line) => {
    const { part, seq, late } = JSON.parse(line) as { part: number; seq: number; late?: boolean };
    return `${part}:${seq}${late === true ? "L" : ""}`;
  });
  assert.deepEqual(seen, ["0:1", "0:2", "0:3", "1:1", "1:2", "0:4", "0:2L", "1:1", "0:5"]);
});

test("partitioned sink: a record without part is refused; an unpartitioned sink refuses a part of 1 or more", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const partitioned = await openFileSink(dir, { stream, partitioned: true, fsync: "never", now: () => DAY1 });
  for (const missing of [entry(undefined, 2), gap(undefined, 2, 3)]) {
    await assert.rejects(partitioned.write([entry(0, 1), missing]), (error: unknown) => {
      assert.ok(error instanceof SinkError);
      assert.equal(error.code, "ESINK");
      assert.match(error.message, /names no partition/);
      return true;
    });
  }
  assert.equal(existsSync(dataFile(dir, stream)), false, "no file was even opened");
  assert.deepEqual(partitioned.cursors(), new Map());
  await partitioned.close();

  const other = randomStream();
  const plain = await openFileSink(dir, { stream: other, fsync: "never", now: () => DAY1 });
  await plain.write([entry(undefined, 1)]);
  const size = statSync(dataFile(dir, other)).size;
  for (const stray of [entry(1, 2), gap(3, 2, 2)]) {
    await assert.rejects(plain.write([entry(undefined, 2), stray]), (error: unknown) => {
      assert.ok(error instanceof SinkError);
      assert.match(error.message, /not partitioned: open it with partitioned: true/);
      return true;
    });
  }
  assert.equal(statSync(dataFile(dir, other)).size, size);
  assert.deepEqual(plain.cursor(), { epoch: 1, seq: 1 });
  await plain.close();
});

test("partitioned sink: reopening recovers every partition's cursor, an idle partition's far back in the file too", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const options: FileSinkOptions = { stream, partitioned: true, fsync: "never", now: () => DAY1 };
  const sink = await openFileSink(dir, options);
  // Partitions 1 and 2 write once at the start, then go idle; partition 0 writes far more than the 64 KiB
  // recovery reads back at a time. The partition 1 late entry after that must not count as its position.
  await sink.write([entry(1, 41), gap(2, 1, 6), entry(0, 1)]);
  const pad = "x".repeat(400);
  for (let seq = 2; seq <= 2001; seq += 100) {
    const batch: SinkRecord[] = [];
    for (let n = seq; n < seq + 100; n++) batch.push(entry(0, n, { data: { n, pad } }));
    await sink.write(batch);
  }
  await sink.write([entry(1, 3, { late: true }), entry(0, 2102)]);
  const written = sink.cursors();
  assert.deepEqual(
    written,
    positions([
      [0, { epoch: 1, seq: 2102 }],
      [1, { epoch: 1, seq: 41 }],
      [2, { epoch: 1, seq: 6 }],
    ]),
  );
  await sink.close();
  const path = dataFile(dir, stream);
  assert.ok(statSync(path).size > 8 * 64 * 1024, "partition 1's record is several read windows back");
  assert.ok(!lines(path).some(isCheckpoint), "no checkpoint to stop at: recovery scans back");

  const again = await openFileSink(dir, options);
  assert.deepEqual(again.cursors(), written);
  assert.deepEqual(again.cursor(1), { epoch: 1, seq: 41 });
  // The recovered cursors are the ones the order rule checks against.
  await assert.rejects(again.write([entry(2, 6)]), SinkError);
  await again.write([entry(2, 7), entry(1, 42)]);
  await again.close();
  const third = await openFileSink(dir, options);
  assert.deepEqual(third.cursor(1), { epoch: 1, seq: 42 });
  assert.deepEqual(third.cursor(2), { epoch: 1, seq: 7 });
  assert.deepEqual(third.cursor(0), { epoch: 1, seq: 2102 });
  await third.close();
});

test("partitioned sink: the first batch after an open starts with a checkpoint of where each partition stood", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream);
  const first = await openFileSink(dir, { stream, partitioned: true, fsync: "batch", now: () => DAY1 });
  await first.write([entry(0, 1), entry(1, 1)]);
  await first.write([entry(2, 5), entry(0, 2)]);
  await first.close();
  assert.equal(lines(path).length, 4);
  assert.ok(!lines(path).some(isCheckpoint), "nothing to checkpoint when a fresh sink opens");

  const second = await openFileSink(dir, { stream, partitioned: true, fsync: "batch", now: () => LATER });
  const before = lines(path).length;
  await second.write([entry(1, 2)]);
  await second.write([entry(0, 3)]);
  await second.close();
  const added = lines(path).slice(before);
  const iso = new Date(LATER).toISOString();
  assert.deepEqual(added, [
    `{"checkpoint":{"0":{"epoch":1,"seq":2},"1":{"epoch":1,"seq":1},"2":{"epoch":1,"seq":5}},` +
      `"time":"${iso}","ms":${LATER}}`,
    formatJsonLine(entry(1, 2), LATER).slice(0, -1),
    formatJsonLine(entry(0, 3), LATER).slice(0, -1),
  ]);
  assert.equal(
    added[0],
    formatCheckpoint(
      positions([
        [2, { epoch: 1, seq: 5 }],
        [0, { epoch: 1, seq: 2 }],
        [1, { epoch: 1, seq: 1 }],
      ]),
      LATER,
    ).slice(0, -1),
    "formatCheckpoint writes partitions in order whatever the map's order",
  );
  const third = await openFileSink(dir, { stream, partitioned: true, fsync: "batch", now: () => LATER });
  assert.deepEqual(
    third.cursors(),
    positions([
      [0, { epoch: 1, seq: 3 }],
      [1, { epoch: 1, seq: 2 }],
      [2, { epoch: 1, seq: 5 }],
    ]),
  );
  await third.close();
});

test("partitioned sink: a checkpoint line comes every CHECKPOINT_EVERY records", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream);
  const sink = await openFileSink(dir, { stream, partitioned: true, fsync: "never", now: () => DAY1 });
  const batchSize = Math.ceil(CHECKPOINT_EVERY / 10);
  let total = 0;
  let next = 1;
  let checkpointAt = -1; // the line number the checkpoint must be at
  let expected = new Map<number, Cursor>();
  // A fresh sink writes its first checkpoint once CHECKPOINT_EVERY records follow the (empty) start.
  while (checkpointAt < 0 || total < checkpointAt + batchSize) {
    if (total >= CHECKPOINT_EVERY && checkpointAt < 0) {
      checkpointAt = total;
      expected = sink.cursors();
    }
    const batch: SinkRecord[] = [];
    for (let i = 0; i < batchSize; i++, next++) batch.push(entry(next % 3, next, { data: null }));
    await sink.write(batch);
    total += batchSize;
  }
  await sink.close();
  const all = lines(path);
  assert.equal(all.length, total + 1, "exactly one checkpoint line");
  const found = all.findIndex(isCheckpoint);
  assert.equal(found, checkpointAt, "before the first record past CHECKPOINT_EVERY");
  const parsed = JSON.parse(all[found]!) as { checkpoint: Record<string, Cursor>; ms: number };
  assert.deepEqual(
    new Map(Object.entries(parsed.checkpoint).map(([part, at]) => [Number(part), at])),
    expected,
  );
  assert.equal(parsed.ms, DAY1);
  const again = await openFileSink(dir, { stream, partitioned: true, fsync: "never", now: () => DAY1 });
  assert.deepEqual(
    again.cursors(),
    positions(
      [0, 1, 2].map((part): [number, Cursor] => [
        part,
        { epoch: 1, seq: next - 1 - ((next - 1 - part) % 3) },
      ]),
    ),
  );
  await again.close();
});

test("partitioned sink: recovery stops at the newest checkpoint and takes its positions instead of scanning back", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream);
  // Before the checkpoint: partition 2 at seq 5, partition 3 at seq 7. The checkpoint puts partition 2 at
  // seq 9 and does not name partition 3; after it, no partition 2 record except a late one.
  const at = (record: SinkRecord) => formatJsonLine(record, DAY1);
  writeFileSync(
    path,
    at(entry(2, 5)) +
      at(entry(3, 7)) +
      at(entry(0, 1)) +
      formatCheckpoint(
        positions([
          [0, { epoch: 1, seq: 1 }],
          [2, { epoch: 1, seq: 9 }],
        ]),
        DAY1,
      ) +
      at(entry(0, 2)) +
      at(entry(2, 4, { late: true })) +
      at(gap(1, 1, 4)),
  );
  const sink = await openFileSink(dir, { stream, partitioned: true, fsync: "never", now: () => DAY1 });
  assert.deepEqual(sink.cursor(2), { epoch: 1, seq: 9 }, "the checkpoint's, not the record's before it");
  assert.equal(sink.cursor(3), undefined, "nothing before the checkpoint was read");
  assert.deepEqual(
    sink.cursors(),
    positions([
      [0, { epoch: 1, seq: 2 }],
      [1, { epoch: 1, seq: 4 }],
      [2, { epoch: 1, seq: 9 }],
    ]),
  );
  await assert.rejects(sink.write([entry(2, 9)]), SinkError, "the order rule starts from the checkpoint");
  await sink.write([entry(2, 10)]);
  await sink.close();
});

test("partitioned sink: a torn last line is cut off at reopen and each partition resumes after its last complete record", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream);
  const options: FileSinkOptions = { stream, partitioned: true, fsync: "batch", now: () => DAY1 };
  const sink = await openFileSink(dir, options);
  await sink.write([entry(0, 1), entry(1, 1), entry(1, 2)]);
  await sink.close();
  const reopened = await openFileSink(dir, options);
  await reopened.write([entry(0, 2)]); // a checkpoint line and a record
  await reopened.close();
  const good = statSync(path).size;
  appendFileSync(path, '{"part":1,"seq":3,"epoch":1,"ti');
  const again = await openFileSink(dir, options);
  assert.equal(statSync(path).size, good, "the torn line is cut");
  assert.deepEqual(
    again.cursors(),
    positions([
      [0, { epoch: 1, seq: 2 }],
      [1, { epoch: 1, seq: 2 }],
    ]),
  );
  await again.write([entry(1, 3)]);
  await again.close();
  const records = lines(path)
    .filter((line) => !isCheckpoint(line))
    .map((line) => {
      const { part, seq } = JSON.parse(line) as { part: number; seq: number };
      return `${part}:${seq}`;
    });
  assert.deepEqual(records, ["0:1", "1:1", "1:2", "0:2", "1:3"]);
});

test("partitioned raw sink: the cursor file holds every partition, reopening recovers each, gap lines name their part", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream, "log");
  const cursorPath = join(dir, `${stream}.cursor`);
  const options: FileSinkOptions = {
    stream,
    format: "raw",
    partitioned: true,
    fsync: "batch",
    now: () => DAY1,
  };
  const sink = await openFileSink(dir, options);
  // No partition 0 yet: the cursor file's own epoch and seq (partition 0's) stay null.
  const first: SinkRecord[] = [
    entry(1, 1, { data: "GET /a" }),
    gap(2, 1, 3),
    entry(1, 2, { data: "GET /b" }),
  ];
  await sink.write(first);
  assert.deepEqual(JSON.parse(readFileSync(cursorPath, "utf8")), {
    epoch: null,
    seq: null,
    file: `${stream}-2026-11-24.log`,
    bytes: statSync(path).size,
    partitions: { "1": { epoch: 1, seq: 2 }, "2": { epoch: 1, seq: 3 } },
  });
  const second: SinkRecord[] = [entry(0, 4, { data: "GET /c", epoch: 3 }), entry(2, 4, { data: "GET /d" })];
  await sink.write(second);
  const written = sink.cursors();
  assert.deepEqual(JSON.parse(readFileSync(cursorPath, "utf8")), {
    epoch: 3,
    seq: 4,
    file: `${stream}-2026-11-24.log`,
    bytes: statSync(path).size,
    partitions: {
      "0": { epoch: 3, seq: 4 },
      "1": { epoch: 1, seq: 2 },
      "2": { epoch: 1, seq: 4 },
    },
  });
  await sink.close();
  assert.deepEqual(lines(path), [
    "GET /a",
    `#memipc gap part=2 epoch=1 from=1 to=3 reason=hole-timeout time=${new Date(DAY1).toISOString()}`,
    "GET /b",
    "GET /c",
    "GET /d",
  ]);
  assert.equal(lines(path)[1], formatRawLine(gap(2, 1, 3), DAY1).slice(0, -1));

  // Bytes appended but never in the cursor file are cut at reopen, as for an unpartitioned raw sink.
  const committed = statSync(path).size;
  appendFileSync(path, "GET /never-acknowledged\n");
  const again = await openFileSink(dir, options);
  assert.equal(statSync(path).size, committed);
  assert.deepEqual(again.cursors(), written);
  const recent = await again.recent(0);
  assert.deepEqual(recent.gaps, [gap(2, 1, 3)]);
  assert.equal(recent.entries, undefined, "raw lines carry no positions");
  await again.write([entry(1, 3, { data: "GET /e" })]);
  await again.close();
  const third = await openFileSink(dir, options);
  assert.deepEqual(third.cursor(1), { epoch: 1, seq: 3 });
  assert.deepEqual(third.cursor(0), { epoch: 3, seq: 4 });
  await third.close();
});

test("partitioned sink: recent() reports gaps, late entries and entries with their part; an unpartitioned sink's skips parts 1 and up", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const sink = await openFileSink(dir, { stream, partitioned: true, fsync: "never", now: () => DAY1 });
  await sink.write([
    entry(0, 1),
    gap(1, 1, 2),
    entry(1, 1, { late: true }),
    entry(2, 5),
    gap(0, 2, 2),
    entry(0, 3),
    entry(0, 2, { late: true }),
  ]);
  const recent = await sink.recent(0);
  assert.deepEqual(recent.gaps, [gap(1, 1, 2), gap(0, 2, 2)]);
  assert.deepEqual(recent.late, [
    { part: 1, epoch: 1, seq: 1 },
    { part: 0, epoch: 1, seq: 2 },
  ]);
  assert.deepEqual(recent.entries, [
    { part: 0, epoch: 1, seq: 1 },
    { part: 2, epoch: 1, seq: 5 },
    { part: 0, epoch: 1, seq: 3 },
  ]);
  assert.deepEqual((await sink.recent(DAY1 + 1)).gaps, [], "gaps written before sinceMs are left out");
  await sink.close();

  // Read as an unpartitioned stream (part 0 only); the checkpoint line of the reopen is no record either.
  const reopened = await openFileSink(dir, { stream, partitioned: true, fsync: "never", now: () => DAY1 });
  await reopened.write([entry(2, 6)]);
  await reopened.close();
  const plain = await openFileSink(dir, { stream, fsync: "never", now: () => DAY1 });
  assert.deepEqual(plain.cursor(), { epoch: 1, seq: 3 });
  const mine = await plain.recent(0);
  assert.deepEqual(
    mine.gaps.map(({ epoch, from, to }) => ({ epoch, from, to })),
    [{ epoch: 1, from: 2, to: 2 }],
  );
  assert.deepEqual(mine.late, [{ part: 0, epoch: 1, seq: 2 }]);
  assert.deepEqual(mine.entries, [
    { part: 0, epoch: 1, seq: 1 },
    { part: 0, epoch: 1, seq: 3 },
  ]);
  await plain.close();
});

test("partitioned sink: a failed append bumps the generation, and batches naming the old one are refused unwritten", async (t) => {
  if (!existsSync("/dev/full")) {
    t.skip("no /dev/full here");
    return;
  }
  const dir = tempDir();
  const stream = randomStream();
  const sink = await openFileSink(dir, {
    stream,
    partitioned: true,
    fsync: "never",
    maxBytes: 400,
    now: () => DAY1,
  });
  assert.equal(sink.generation, 0);
  await sink.write([entry(0, 1), entry(1, 1)], { generation: 0 });
  const first = dataFile(dir, stream);
  const committed = statSync(first).size;
  const durable = sink.cursors();
  // The next file the sink rotates into refuses every byte (ENOSPC).
  const full = join(dir, `${stream}-2026-11-24.1.jsonl`);
  symlinkSync("/dev/full", full);
  const padded = (part: number, seq: number) => entry(part, seq, { data: { seq, pad: "x".repeat(80) } });

  // Three batches handed over at once, as a drainer pipelines partitions: the first fits the current file
  // (appended, not yet resolved), the second spills into the full one, the third waits behind them.
  const fits = sink.write([entry(1, 2)], { generation: 0 });
  const spills = sink.write([padded(0, 2), padded(0, 3), padded(0, 4), padded(0, 5)], { generation: 0 });
  const behind = sink.write([entry(2, 1)], { generation: 0 });
  const [a, b, c] = await Promise.allSettled([fits, spills, behind]);
  assert.equal(a.status, "rejected");
  assert.ok(a.status === "rejected" && a.reason instanceof SinkError);
  assert.match(String(a.reason), /undid this batch/);
  assert.ok(b.status === "rejected" && b.reason instanceof SinkError && b.reason.errno === "ENOSPC");
  assert.ok(c.status === "rejected" && c.reason instanceof SinkError);
  assert.match(String(c.reason), /generation 0 refused/);
  assert.equal(sink.generation, 1);
  assert.equal(statSync(first).size, committed, "the file is cut back to the last durable point");
  assert.deepEqual(sink.cursors(), durable);

  unlinkSync(full);
  await assert.rejects(sink.write([entry(2, 1)], { generation: 0 }), (error: unknown) => {
    assert.ok(error instanceof SinkError);
    assert.match(error.message, /generation 0 refused.*generation 1/);
    return true;
  });
  assert.equal(statSync(first).size, committed, "a refused generation writes nothing");
  assert.equal(existsSync(full), false, "nor opens a new file");
  assert.equal(sink.generation, 1, "a refusal is not a roll-back");

  // Resent from the cursors under the new generation, everything lands once.
  await sink.write([entry(1, 2)], { generation: 1 });
  await sink.write([padded(0, 2), padded(0, 3), padded(0, 4), padded(0, 5)], { generation: 1 });
  await sink.write([entry(2, 1)], { generation: sink.generation });
  const expected = positions([
    [0, { epoch: 1, seq: 5 }],
    [1, { epoch: 1, seq: 2 }],
    [2, { epoch: 1, seq: 1 }],
  ]);
  assert.deepEqual(sink.cursors(), expected);
  await sink.close();
  const names = readdirSync(dir)
    .filter((name) => name.endsWith(".jsonl"))
    .sort();
  const records = names
    .flatMap((name) => lines(join(dir, name)))
    .filter((line) => !isCheckpoint(line))
    .map((line) => {
      const { part, seq } = JSON.parse(line) as { part: number; seq: number };
      return `${part}:${seq}`;
    });
  assert.deepEqual(records.sort(), ["0:1", "0:2", "0:3", "0:4", "0:5", "1:1", "1:2", "2:1"]);
  const again = await openFileSink(dir, { stream, partitioned: true, fsync: "never", maxBytes: 400 });
  assert.deepEqual(again.cursors(), expected);
  await again.close();
});
