// `memipc drain` and `memipc tail --out` as a user runs them, against an embedded server started here: the
// drainer writes what `memipc log` appended to JSON Lines files, deletes it from memcached, stops cleanly on
// SIGTERM, and a second run on the same folder goes on without repeating anything.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "../../src/client/index.js";
import { entryKey, headKey, splitHead, streamAddress } from "../../src/log/layout.js";
import { startServer } from "../../src/server/index.js";
import { Cli, randomName, run, waitFor } from "./run-cli.js";

const TEST_TIMEOUT_MS = 60_000;

const server = await startServer({ port: 0 });
const MEMCACHED = `127.0.0.1:${server.port}`;
const client = new Client({ servers: MEMCACHED });
const folders: string[] = [];
after(async () => {
  client.close();
  await server.close();
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

async function tempFolder(): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), "memipc-cli-"));
  folders.push(folder);
  return folder;
}

interface Line {
  seq?: number;
  epoch: number;
  node?: string;
  data?: unknown;
  gap?: unknown;
}

/** Every record in the stream's JSON Lines files in `dir`, oldest file first. */
async function records(dir: string, stream: string): Promise<Line[]> {
  const names = (await readdir(dir)).filter(
    (name) => name.startsWith(`${stream}-`) && name.endsWith(".jsonl"),
  );
  const lines: Line[] = [];
  for (const name of names.sort()) {
    const text = await readFile(join(dir, name), "utf8");
    for (const line of text.split("\n")) if (line !== "") lines.push(JSON.parse(line) as Line);
  }
  return lines;
}

async function logLines(t: Parameters<typeof run>[0], base: string[], lines: string[]): Promise<void> {
  const cli = new Cli(t, ["log", ...base, "--node", "web-2", "-"], { stdin: "pipe" });
  cli.child.stdin!.end(`${lines.join("\n")}\n`);
  const finished = await cli.finished();
  assert.equal(finished.code, 0, finished.stderr);
}

test(
  "memipc drain --out: writes the entries to JSON Lines in order, deletes them, stops cleanly on SIGTERM",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const stream = randomName();
    const namespace = randomName("ns");
    const out = join(await tempFolder(), "site"); // created by drain
    const base = ["--memcached", MEMCACHED, "--namespace", namespace, "--stream", stream];
    const first = Array.from({ length: 500 }, (_, i) => `entry ${i + 1}`);
    await logLines(t, base, first);

    const drain = new Cli(t, ["drain", ...base, "--out", out, "--hole-timeout", "300", "--fsync", "batch"]);
    await waitFor(async () => {
      if (!drain.running) throw new Error(`drain exited: ${drain.stderr}`);
      return (await records(out, stream).catch(() => [])).length >= 500;
    }, "500 drained records");
    // An entry logged while it runs is drained too.
    assert.equal((await run(t, ["log", ...base, "--node", "web-3", "late", "comer"])).code, 0);
    await waitFor(async () => (await records(out, stream)).length >= 501, "the 501st record");

    assert.ok(drain.child.kill("SIGTERM"), "SIGTERM delivered to this child");
    const finished = await drain.finished();
    assert.equal(finished.signal, null, "exits by itself, not by the signal");
    assert.equal(finished.code, 0, finished.stderr);
    assert.equal(finished.stderr, "", "quiet when stderr is not a terminal and without --verbose");
    assert.equal(finished.stdout, "");

    const written = await records(out, stream);
    assert.equal(written.length, 501, "each entry once, no gap");
    const address = streamAddress({ namespace, stream });
    const { epoch } = splitHead(BigInt((await client.get(headKey(address)))!.value.toString("latin1")));
    written.forEach((record, i) => {
      assert.equal(record.seq, i + 1);
      assert.equal(record.epoch, epoch);
    });
    assert.deepEqual(
      written.slice(0, 500).map((record) => record.data),
      first,
    );
    assert.equal(written[0]!.node, "web-2");
    assert.deepEqual([written[500]!.node, written[500]!.data], ["web-3", "late comer"]);

    const left = await client.getMulti(written.map((record) => entryKey(address, epoch, record.seq!)));
    assert.equal(left.size, 0, "drained entries are deleted from memcached");

    // tail --out reads the drained files: the last N records, oldest first.
    const tail = await run(t, ["tail", "--out", out, "--stream", stream, "-n", "3"]);
    assert.equal(tail.code, 0, tail.stderr);
    assert.deepEqual(
      tail.stdout
        .split("\n")
        .filter(Boolean)
        .map((line) => line.replace(/ \S+Z /, " T ")),
      ["499 T web-2 entry 499", "500 T web-2 entry 500", "501 T web-3 late comer"],
    );

    // tail without --out shows nothing now: memcached holds only what is not drained yet.
    const fromMemcached = await run(t, ["tail", ...base]);
    assert.equal(fromMemcached.stdout, "");

    // A second run on the same folder goes on from the file's cursor: nothing repeated.
    await logLines(t, base, ["after restart"]);
    const again = new Cli(t, ["drain", ...base, "--out", out, "--hole-timeout", "300"]);
    await waitFor(async () => {
      if (!again.running) throw new Error(`drain exited: ${again.stderr}`);
      return (await records(out, stream)).length >= 502;
    }, "the entry logged between the runs");
    again.child.kill("SIGINT");
    assert.equal((await again.finished()).code, 0);
    const all = await records(out, stream);
    assert.deepEqual(
      all.map((record) => record.seq),
      Array.from({ length: 502 }, (_, i) => i + 1),
    );
  },
);

test(
  "memipc drain --verbose: status lines on stderr; a second drainer stands by",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const stream = randomName();
    const base = ["--memcached", MEMCACHED, "--stream", stream];
    const out = await tempFolder();
    await logLines(t, base, ["one", "two"]);
    const active = new Cli(t, ["drain", ...base, "--out", out, "-v", "--lease-ttl", "3"]);
    await waitFor(async () => (await records(out, stream)).length >= 2, "two records");
    const standby = new Cli(t, ["drain", ...base, "--out", await tempFolder(), "--verbose"]);
    await waitFor(
      () => /standing by;/.test(standby.stderr) && /head \d+:2 cursor \d+:2 lag 0/.test(active.stderr),
      "a status line from each",
    );
    assert.match(active.stderr, /2 entries, 0 gaps, 0 late/);
    assert.match(standby.stderr, /standing by; \S+ drains: head/, "the standby names the active drainer");
    standby.child.kill("SIGTERM");
    active.child.kill("SIGTERM");
    const [a, s] = await Promise.all([active.finished(), standby.finished()]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(s.code, 0, s.stderr);
    assert.match(a.stderr, /stopped; 2 entries, 0 gaps, 0 late written\n$/);
  },
);

test("memipc tail --out -f: follows new lines and new files", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const stream = randomName();
  const out = await tempFolder();
  const record = (seq: number, data: unknown) =>
    `${JSON.stringify({ seq, epoch: 7, time: "2026-01-01T00:00:00.000Z", ms: 1767225600000, node: "n1", data })}\n`;
  await writeFile(join(out, `${stream}-2026-01-01.jsonl`), record(1, "a") + record(2, { b: 1 }));
  await writeFile(join(out, `${stream}-2026-01-01.log`), "raw files are not read by default\n");

  const tail = new Cli(t, ["tail", "--out", out, "--stream", stream, "-f", "-n", "5"]);
  await tail.waitForOutput((s) => s.split("\n").length === 3, "the existing records");
  assert.equal(
    tail.stdout,
    '1 2026-01-01T00:00:00.000Z n1 a\n2 2026-01-01T00:00:00.000Z n1 {"b":1}\n',
    "strings as is, other payloads as JSON",
  );
  // A torn line (being written) waits for its line break.
  const gap = `${JSON.stringify({ epoch: 7, time: "2026-01-01T00:00:01.000Z", ms: 1767225601000, gap: { from: 3, to: 4, reason: "hole-timeout" } })}\n`;
  const late = `${JSON.stringify({ seq: 3, epoch: 7, time: "2026-01-01T00:00:02.000Z", ms: 1767225602000, node: "n2", data: "c", late: true })}\n`;
  await writeFile(join(out, `${stream}-2026-01-01.jsonl`), gap.slice(0, 10), { flag: "a" });
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(tail.stdout.split("\n").length, 3, "nothing printed for half a line");
  await writeFile(join(out, `${stream}-2026-01-01.jsonl`), gap.slice(10) + late, { flag: "a" });
  await tail.waitForOutput((s) => s.includes(" c\n"), "the gap and the late entry");
  // Rotation: the next file is followed from its start.
  await writeFile(join(out, `${stream}-2026-01-01.1.jsonl`), record(5, "rotated"));
  await tail.waitForOutput((s) => s.includes("rotated"), "the record in the next file");

  tail.child.kill("SIGTERM");
  const finished = await tail.finished();
  assert.equal(finished.code, 0, finished.stderr);
  assert.deepEqual(finished.stdout.split("\n").slice(2), [
    "3-4 2026-01-01T00:00:01.000Z - gap: hole-timeout",
    "3(late) 2026-01-01T00:00:02.000Z n2 c",
    "5 2026-01-01T00:00:00.000Z n1 rotated",
    "",
  ]);
});

test("memipc drain --help names its flags", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const help = await run(t, ["drain", "--help"]);
  assert.equal(help.code, 0);
  for (const flag of [
    "--out",
    "--format",
    "--fsync",
    "--max-bytes",
    "--hole-timeout",
    "--limit",
    "--lease-ttl",
    "--layout",
    "--seed-counter",
    "--memcached",
    "--namespace",
  ]) {
    assert.ok(help.stdout.includes(flag), `help mentions ${flag}`);
  }
});
