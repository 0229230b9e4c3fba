// The file sink's fence against real files and a real second process: each open takes a new token, and a
// sink whose token is no longer the newest is refused (FencedError) before it changes a byte, whether it
// was about to append, write the raw cursor file, cut back, or close.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { FencedError, SinkError } from "../../src/errors.js";
import { openFileSink, type EntryRecord, type FileSinkOptions } from "../../src/sinks/file-sink.js";
import { waitFor } from "../helpers/wait.js";

const DAY1 = Date.UTC(2026, 10, 24, 10, 0, 0); // 2026-11-24, the day every file here is named after
const CHILD_TIMEOUT_MS = 15_000;
const NEVER_MS = 600_000; // a group-commit interval no test waits out: the fsync happens at close()

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "memipc-fence-"));
  dirs.push(dir);
  return dir;
}

function randomStream(): string {
  return `fenced-${randomBytes(4).toString("hex")}`;
}

function entry(seq: number, data: unknown = { seq }): EntryRecord {
  return { kind: "entry", epoch: 1, seq, time: DAY1 + seq, node: "web-1", data };
}

function dataFile(dir: string, stream: string, ext = "jsonl"): string {
  return join(dir, `${stream}-2026-11-24.${ext}`);
}

function lines(path: string): string[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, "utf8");
  assert.ok(text === "" || text.endsWith("\n"), `${path} ends with a newline`);
  return text === "" ? [] : text.slice(0, -1).split("\n");
}

function seqs(path: string): number[] {
  return lines(path).map((line) => (JSON.parse(line) as { seq: number }).seq);
}

/** Every file of the folder with its bytes, to prove a step changed none of them. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(dir).sort()) {
    if (name.endsWith(".fence") || name.includes(".fence-")) continue; // SQLite's own, changed by every lock
    out.set(name, readFileSync(join(dir, name), "latin1"));
  }
  return out;
}

function isFenced(error: unknown): boolean {
  assert.ok(error instanceof FencedError, `a FencedError, not ${String(error)}`);
  assert.equal(error.code, "EFENCED");
  assert.match(error.message, /another drainer took over/);
  return true;
}

/** Opens the sink in another process, writes `seqs` and closes; resolves with the token it wrote under. */
async function writeFromChild(dir: string, options: FileSinkOptions, seqs: number[]): Promise<number> {
  const module = new URL("../../src/sinks/file-sink.js", import.meta.url).href;
  const script = `
    import { openFileSink } from ${JSON.stringify(module)};
    const [dir, options, seqs] = JSON.parse(process.argv[1]);
    const sink = await openFileSink(dir, { ...options, now: () => ${DAY1} });
    await sink.write(seqs.map((seq) => ({ kind: "entry", epoch: 1, seq, time: ${DAY1} + seq, node: "child", data: { seq } })));
    await sink.close();
    process.stdout.write(JSON.stringify({ token: sink.token }));
  `;
  const child = spawn(
    process.execPath,
    ["--input-type=module", "-e", script, JSON.stringify([dir, options, seqs])],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const guard = setTimeout(() => child.kill("SIGKILL"), CHILD_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  clearTimeout(guard);
  assert.equal(code, 0, `the child writes and exits: ${err}`);
  return (JSON.parse(out) as { token: number }).token;
}

test("fence: opening a sink creates <stream>.fence and each open of the folder and stream takes the next token", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const options: FileSinkOptions = { stream, fsync: "never", now: () => DAY1 };
  const first = await openFileSink(dir, options);
  assert.equal(first.fenced, true, "on by default");
  assert.ok(statSync(join(dir, `${stream}.fence`)).isFile());
  assert.equal(first.token, 1);
  const second = await openFileSink(dir, options);
  assert.equal(second.token, 2);
  assert.equal(first.token, 1, "an older sink keeps its own token");
  await first.close();
  await second.close();
  const third = await openFileSink(dir, { ...options, format: "raw" });
  assert.equal(third.token, 3, "the token belongs to the folder and stream, whatever the format");
  await third.close();
  const fourth = await openFileSink(dir, options);
  assert.equal(fourth.token, 4);
  await fourth.close();
});

test("fence: once a newer sink opens, the older one's writes are refused with FencedError, for good, and leave no bytes", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream);
  const options: FileSinkOptions = { stream, fsync: "batch", now: () => DAY1 };
  const a = await openFileSink(dir, options);
  await a.write([entry(1), entry(2)]);
  const b = await openFileSink(dir, options);
  assert.deepEqual(b.cursor(), { epoch: 1, seq: 2 }, "B's recovery read A's durable records");
  const before = snapshot(dir);

  await assert.rejects(a.write([entry(3, "from A")]), isFenced);
  assert.deepEqual(snapshot(dir), before, "A's bytes do not reach the files");
  assert.deepEqual(a.cursor(), { epoch: 1, seq: 2 }, "A's cursor does not move");
  await assert.rejects(a.write([entry(3, "from A again")]), isFenced);
  await assert.rejects(a.write([entry(4)], { generation: a.generation }), isFenced);
  assert.deepEqual(snapshot(dir), before);

  const commit = await b.write([entry(3, "from B"), entry(4)]);
  assert.deepEqual(commit.cursor, { epoch: 1, seq: 4 });
  await assert.rejects(a.write([entry(5)]), isFenced, "still refused after B wrote");
  const afterB = snapshot(dir);
  await a.close();
  assert.deepEqual(snapshot(dir), afterB, "A's close neither cuts nor adds to B's data");
  await b.write([entry(5)]);
  await b.close();

  assert.deepEqual(seqs(path), [1, 2, 3, 4, 5], "each record once");
  assert.ok(!readFileSync(path, "utf8").includes("from A"));
  const c = await openFileSink(dir, options);
  assert.deepEqual(c.cursor(), { epoch: 1, seq: 5 });
  await c.close();
});

test("fence: a sink opened by another process fences this one out", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream);
  const options: FileSinkOptions = { stream, fsync: "batch", now: () => DAY1 };
  const a = await openFileSink(dir, options);
  await a.write([entry(1)]);
  const token = await writeFromChild(dir, { stream, fsync: "batch" }, [2, 3]);
  assert.equal(token, 2);
  const before = snapshot(dir);
  await assert.rejects(a.write([entry(2, "from A")]), isFenced);
  await a.close();
  assert.deepEqual(snapshot(dir), before);
  assert.deepEqual(seqs(path), [1, 2, 3]);
});

test("fence: a raw write appended before a takeover is refused at its cursor-file step and leaves the newer sink's files and cursor file as they were", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream, "log");
  const cursorPath = join(dir, `${stream}.cursor`);
  const a = await openFileSink(dir, { stream, format: "raw", fsync: { everyMs: NEVER_MS }, now: () => DAY1 });
  await a.write([entry(1, "a1")]); // the first group commit is at once
  const committed = statSync(path).size;
  // A appends its next batch; its fsync and cursor file wait for the group commit.
  const pending = a.write([entry(2, "a2"), entry(3, "a3")]);
  let outcome: unknown = "pending";
  pending.then(
    () => (outcome = "resolved"),
    (error: unknown) => (outcome = error),
  );
  await waitFor(() => statSync(path).size > committed, "A's append to reach the file");
  assert.equal(outcome, "pending");

  const b = await openFileSink(dir, { stream, format: "raw", fsync: "batch", now: () => DAY1 });
  assert.equal(b.token, 2);
  assert.deepEqual(b.cursor(), { epoch: 1, seq: 1 }, "A's batch was never in the cursor file");
  assert.equal(statSync(path).size, committed, "B cut A's unacknowledged bytes");
  await b.write([entry(2, "b2"), entry(3, "b3")]);
  const left = snapshot(dir);
  const leftCursor = readFileSync(cursorPath, "utf8");

  await a.close(); // runs A's pending fsync and cursor-file step
  await assert.rejects(pending, isFenced);
  assert.deepEqual(snapshot(dir), left, "the data file and the cursor file are exactly as B left them");
  assert.equal(readFileSync(cursorPath, "utf8"), leftCursor);
  assert.deepEqual(lines(path), ["a1", "b2", "b3"]);

  await b.write([entry(4, "b4")]);
  await b.close();
  const c = await openFileSink(dir, { stream, format: "raw", now: () => DAY1 });
  assert.deepEqual(c.cursor(), { epoch: 1, seq: 4 });
  await c.close();
  assert.deepEqual(lines(path), ["a1", "b2", "b3", "b4"]);
});

test("fence: a JSON Lines batch appended before a takeover counts for the newer sink, which does not write it again", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream);
  const a = await openFileSink(dir, { stream, fsync: { everyMs: NEVER_MS }, now: () => DAY1 });
  await a.write([entry(1)]);
  const committed = statSync(path).size;
  const pending = a.write([entry(2), entry(3)]);
  await waitFor(() => statSync(path).size > committed, "A's append to reach the file");

  // The file is the cursor: B reads A's complete lines back and starts after them.
  const b = await openFileSink(dir, { stream, fsync: "batch", now: () => DAY1 });
  assert.deepEqual(b.cursor(), { epoch: 1, seq: 3 });
  await assert.rejects(b.write([entry(3)]), SinkError, "B refuses what A already wrote");
  await b.write([entry(4)]);
  await assert.rejects(a.write([entry(4, "from A")]), isFenced);
  await a.close();
  const commit = await pending; // A's fsync changes no byte, so it is allowed to complete
  assert.deepEqual(commit.cursor, { epoch: 1, seq: 3 });
  await b.close();
  assert.deepEqual(seqs(path), [1, 2, 3, 4]);
});

test("fence: a sink whose recovery fails takes no token, so the sink it would have replaced goes on writing", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const cursorPath = join(dir, `${stream}.cursor`);
  const options: FileSinkOptions = { stream, format: "raw", fsync: "batch", now: () => DAY1 };
  const a = await openFileSink(dir, options);
  await a.write([entry(1, "a1")]);
  writeFileSync(cursorPath, "not json\n");
  await assert.rejects(openFileSink(dir, options), (error: unknown) => {
    assert.ok(error instanceof SinkError);
    assert.match(error.message, /is not JSON/);
    return true;
  });
  await a.write([entry(2, "a2")]); // still the holder: appends and rewrites the cursor file
  await a.close();
  const b = await openFileSink(dir, options);
  assert.equal(b.token, 2, "the failed open's token was never taken");
  assert.deepEqual(b.cursor(), { epoch: 1, seq: 2 });
  await b.close();
  assert.deepEqual(lines(dataFile(dir, stream, "log")), ["a1", "a2"]);
});

test("fence: a write waits while another process holds the fence's lock and goes on once it is released", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream);
  const a = await openFileSink(dir, { stream, fsync: "never", now: () => DAY1 });
  await a.write([entry(1)]);
  const sqlite = pathToFileURL(createRequire(import.meta.url).resolve("better-sqlite3")).href;
  const script = `
    import Database from ${JSON.stringify(sqlite)};
    const db = new Database(process.argv[1]);
    db.exec("BEGIN EXCLUSIVE"); // as a sink holds the fence (see fence.ts)
    process.stdout.write("held\\n");
    process.stdin.once("data", () => { db.exec("COMMIT"); db.close(); process.stdout.write("released\\n"); });
  `;
  const holder = spawn(
    process.execPath,
    ["--input-type=module", "-e", script, join(dir, `${stream}.fence`)],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const guard = setTimeout(() => holder.kill("SIGKILL"), CHILD_TIMEOUT_MS);
  const exited = new Promise((resolve) => holder.on("exit", resolve));
  let out = "";
  holder.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  await waitFor(() => out.includes("held"), "the other process to lock the fence");

  let done = false;
  const write = a.write([entry(2)]).finally(() => (done = true));
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(done, false, "the write waits for the lock");
  assert.deepEqual(seqs(path), [1], "and appends nothing meanwhile");
  holder.stdin.end("go\n"); // closing stdin lets the holder exit
  await write;
  await exited;
  clearTimeout(guard);
  assert.ok(out.includes("released"));
  assert.deepEqual(seqs(path), [1, 2]);
  await a.close();
});

test("fence: with fence: false no fence file is made, and two sinks on one stream both write, twice over", async () => {
  const dir = tempDir();
  const stream = randomStream();
  const path = dataFile(dir, stream);
  const options: FileSinkOptions = { stream, fence: false, fsync: "batch", now: () => DAY1 };
  const a = await openFileSink(dir, options);
  assert.equal(a.fenced, false);
  assert.equal(a.token, undefined);
  await a.write([entry(1), entry(2)]);
  const b = await openFileSink(dir, options);
  assert.equal(b.token, undefined);
  assert.deepEqual(b.cursor(), { epoch: 1, seq: 2 });
  await a.write([entry(3, "from A")]);
  await b.write([entry(3, "from B")]);
  await a.close();
  await b.close();
  assert.equal(existsSync(join(dir, `${stream}.fence`)), false);
  assert.deepEqual(readdirSync(dir), [`${stream}-2026-11-24.jsonl`]);
  assert.deepEqual(seqs(path), [1, 2, 3, 3], "what the fence prevents: seq 3 written by both");
});

test("fence: streams in one folder have independent fences", async () => {
  const dir = tempDir();
  const red = randomStream();
  const blue = randomStream();
  const a = await openFileSink(dir, { stream: red, fsync: "never", now: () => DAY1 });
  const b = await openFileSink(dir, { stream: blue, fsync: "never", now: () => DAY1 });
  assert.equal(a.token, 1);
  assert.equal(b.token, 1, "each stream counts its own tokens");
  assert.ok(existsSync(join(dir, `${red}.fence`)));
  assert.ok(existsSync(join(dir, `${blue}.fence`)));
  await a.write([entry(1)]);
  await b.write([entry(1)]);

  const a2 = await openFileSink(dir, { stream: red, fsync: "never", now: () => DAY1 });
  assert.equal(a2.token, 2);
  await assert.rejects(a.write([entry(2)]), isFenced);
  await b.write([entry(2)]);
  await a2.write([entry(2)]);
  const b2 = await openFileSink(dir, { stream: blue, fsync: "never", now: () => DAY1 });
  assert.equal(b2.token, 2);
  await assert.rejects(b.write([entry(3)]), isFenced);
  await a2.write([entry(3)]);
  await b2.write([entry(3)]);
  for (const sink of [a, b, a2, b2]) await sink.close();
  assert.deepEqual(seqs(dataFile(dir, red)), [1, 2, 3]);
  assert.deepEqual(seqs(dataFile(dir, blue)), [1, 2, 3]);
});
