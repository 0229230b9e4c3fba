// The drainer in one process: entries reach the file in order and leave memcached, a hole becomes one gap
// record after the hole timeout, a late entry one late record, a flush is a reset, the limit a rollover,
// and the seed layout keeps Process. Run against the embedded server and real memcached.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { LogError } from "../../src/errors.js";
import { Drainer, publishedMetrics, type DrainerOptions } from "../../src/log/drainer.js";
import { entryKey, headKey, headValue, streamAddress } from "../../src/log/layout.js";
import { LogProducer } from "../../src/log/producer.js";
import { openFileSink } from "../../src/sinks/index.js";
import {
  memcachedAvailable,
  requireMemcached,
  startRealMemcached,
  type RealMemcached,
} from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";

function name(): string {
  return "s" + randomBytes(4).toString("hex");
}

interface Line {
  seq?: number;
  epoch: number;
  data?: unknown;
  late?: boolean;
  node?: string;
  gap?: { from: number; to: number; reason: string };
}

async function readLines(dir: string): Promise<Line[]> {
  const files = (await readdir(dir)).filter((file) => file.endsWith(".jsonl")).sort();
  const lines: Line[] = [];
  for (const file of files) {
    const text = await readFile(join(dir, file), "utf8");
    for (const line of text.split("\n")) if (line !== "") lines.push(JSON.parse(line) as Line);
  }
  return lines;
}

/** Waits until `check` holds, polling; fails after `ms`. */
async function until(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  detail?: () => string,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${detail ? ": " + detail() : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

for (const target of TARGETS) {
  describe(`log drainer (${target.name})`, () => {
    let server: RunningServer | undefined;
    let client: Client;
    const dirs: string[] = [];
    const running: Array<{ controller: AbortController; done: Promise<void> }> = [];

    before(async () => {
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
      if (server) client = new Client({ servers: `127.0.0.1:${server.port}` });
    });
    after(async () => {
      for (const run of running) run.controller.abort();
      await Promise.all(running.map((run) => run.done));
      client?.close();
      await server?.stop();
      for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    });

    async function start(
      stream: string,
      options: Partial<DrainerOptions> = {},
      reuse?: string,
    ): Promise<{ drainer: Drainer; dir: string; stop(): Promise<void> }> {
      const dir = reuse ?? (await mkdtemp(join(tmpdir(), "memipc-drain-")));
      dirs.push(dir);
      const drainer = new Drainer(client, {
        stream,
        lease: false,
        pollEvery: 10,
        openSink: () => openFileSink(dir, { stream }),
        ...options,
      });
      const controller = new AbortController();
      const done = drainer.run(controller.signal);
      const run = { controller, done };
      running.push(run);
      return {
        drainer,
        dir,
        async stop() {
          controller.abort();
          await done;
        },
      };
    }

    it("drainer: entries from concurrent producers reach the file once, in order, and leave memcached", async (t) => {
      if (!server) return void requireMemcached(t);
      const stream = name();
      const producers = [0, 1, 2].map((n) => new LogProducer(client, { stream, node: `web-${n}` }));
      const { drainer, dir, stop } = await start(stream);
      const appended = await Promise.all(
        Array.from({ length: 3000 }, (_, i) => producers[i % 3]!.append({ i })),
      );
      await until(() => drainer.caughtUp(), 10_000, "the drainer to catch up");
      await stop();
      const lines = await readLines(dir);
      assert.equal(lines.length, 3000);
      assert.ok(lines.every((line) => line.gap === undefined && line.late === undefined));
      assert.deepEqual(
        lines.map((line) => line.seq),
        Array.from({ length: 3000 }, (_, i) => i + 1),
      );
      const byData = new Set(lines.map((line) => (line.data as { i: number }).i));
      assert.equal(byData.size, 3000);
      const address = streamAddress({ stream });
      const left = await client.getMulti(appended.map((a) => entryKey(address, a.epoch, a.seq)));
      assert.equal(left.size, 0, "drained entries are deleted from memcached");
      assert.equal(drainer.metrics.entries, 3000);
    });

    it("drainer: a number taken and never written becomes one gap record after the hole timeout; a late write one late record", async (t) => {
      if (!server) return void requireMemcached(t);
      const stream = name();
      const address = streamAddress({ stream });
      const producer = new LogProducer(client, { stream });
      const first = await producer.append("one");
      // A producer that died between incr and add: number 2 is taken, never written.
      await client.incr(headKey(address), 1);
      await producer.append("three");
      const { drainer, dir, stop } = await start(stream, { holeTimeout: 300 });
      await until(async () => (await readLines(dir)).length === 3, 5000, "the gap to be written");
      const lines = await readLines(dir);
      assert.equal(lines[0]!.seq, 1);
      assert.deepEqual(lines[1]!.gap, { from: 2, to: 2, reason: "hole-timeout" });
      assert.equal(lines[2]!.seq, 3);
      // Now the missing entry shows up.
      await client.add(entryKey(address, first.epoch, 2), JSON.stringify({ t: 1, n: "slow", d: "two" }));
      await until(async () => (await readLines(dir)).length === 4, 5000, "the late entry");
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await stop();
      const final = await readLines(dir);
      assert.equal(final.length, 4, "the late entry is written once");
      assert.equal(final[3]!.seq, 2);
      assert.equal(final[3]!.late, true);
      assert.equal(final[3]!.data, "two");
      assert.equal(drainer.metrics.gaps, 1);
      assert.equal(drainer.metrics.late, 1);
      assert.equal(await client.get(entryKey(address, first.epoch, 2)), undefined);
      // As if the drainer had been killed after writing the late entry but before deleting its key: a new
      // drainer on the same folder finds the entry again and only deletes it.
      await client.add(entryKey(address, first.epoch, 2), JSON.stringify({ t: 1, n: "slow", d: "two" }));
      const again = await start(stream, { holeTimeout: 300 }, dir);
      await until(
        async () => (await client.get(entryKey(address, first.epoch, 2))) === undefined,
        5000,
        "the leftover late entry to be deleted",
      );
      await again.stop();
      assert.equal((await readLines(dir)).length, 4, "the late entry is still written once");
    });

    it("drainer: a flushed counter is a reset: the lost range is one reset gap and the new epoch drains from 1", async (t) => {
      if (!server) return void requireMemcached(t);
      const stream = name();
      const address = streamAddress({ stream });
      const producer = new LogProducer(client, { stream });
      await Promise.all(Array.from({ length: 10 }, (_, i) => producer.append(i)));
      const { drainer, dir, stop } = await start(stream, { holeTimeout: 200 });
      await until(() => drainer.caughtUp(), 5000, "the first catch-up");
      // Numbers 11..15 handed out, their entries lost with the counter (as when memcached restarts).
      const head = (await client.get(headKey(address)))!;
      const epoch = Number(BigInt(head.value.toString()) / 1_000_000_000n);
      await client.set(headKey(address), headValue(epoch, 15).toString());
      await until(() => drainer.metrics.head?.seq === 15, 5000, "the head read");
      await client.delete(headKey(address));
      await Promise.all(Array.from({ length: 5 }, (_, i) => producer.append(100 + i)));
      await until(() => drainer.caughtUp(), 5000, "the catch-up after the reset");
      await stop();
      const lines = await readLines(dir);
      assert.equal(lines.length, 16);
      assert.deepEqual(lines[10]!.gap, { from: 11, to: 15, reason: "reset" });
      const after = lines.slice(11);
      assert.ok(after.every((line) => line.epoch !== epoch && line.seq !== undefined));
      assert.deepEqual(
        after.map((line) => line.seq),
        [1, 2, 3, 4, 5],
      );
    });

    it("drainer: with a limit of 100, 1,000 entries cross ten rollovers and each is written once, with no gap", async (t) => {
      if (!server) return void requireMemcached(t);
      const stream = name();
      const producers = [0, 1].map(() => new LogProducer(client, { stream, limit: 100 }));
      const { drainer, dir, stop } = await start(stream, { limit: 100, holeTimeout: 2000 });
      for (let round = 0; round < 10; round++) {
        await Promise.all(Array.from({ length: 100 }, (_, i) => producers[i % 2]!.append(round * 100 + i)));
      }
      await until(() => drainer.caughtUp(), 10_000, "the drainer to catch up");
      await stop();
      const lines = await readLines(dir);
      assert.ok(lines.every((line) => line.gap === undefined));
      const data = lines.map((line) => line.data as number).sort((a, b) => a - b);
      assert.deepEqual(
        data,
        Array.from({ length: 1000 }, (_, i) => i),
      );
      assert.ok(new Set(lines.map((line) => line.epoch)).size >= 10);
    });

    it("drainer: a fresh output on a long stream starts near its oldest entry and follows the counter's carry past 999,999,999", async (t) => {
      if (!server) return void requireMemcached(t);
      const stream = name();
      const address = streamAddress({ stream });
      const epoch = 1 + Math.floor(Math.random() * 1_000_000);
      await client.set(headKey(address), headValue(epoch, 999_999_990).toString());
      const producer = new LogProducer(client, { stream });
      const before = await Promise.all(Array.from({ length: 5 }, (_, i) => producer.append(`a${i}`)));
      assert.deepEqual(
        before.map((a) => a.seq),
        [999_999_991, 999_999_992, 999_999_993, 999_999_994, 999_999_995],
      );
      const { drainer, dir, stop } = await start(stream, { holeTimeout: 200 });
      await until(() => drainer.caughtUp(), 5000, "the first catch-up");
      // One block that crosses the carry: the next epoch's numbers from 1, seq 0 skipped.
      const crossing = await Promise.all(Array.from({ length: 10 }, (_, i) => producer.append(`b${i}`)));
      assert.deepEqual(
        crossing.map((a) => [a.epoch - epoch, a.seq]),
        [
          [0, 999_999_996],
          [0, 999_999_997],
          [0, 999_999_998],
          [0, 999_999_999],
          [1, 1],
          [1, 2],
          [1, 3],
          [1, 4],
          [1, 5],
          [1, 6],
        ],
      );
      await until(() => drainer.caughtUp(), 5000, "the catch-up after the carry");
      await stop();
      const lines = await readLines(dir);
      // The margin before the oldest entry found: one gap, for numbers a previous drainer had taken.
      assert.deepEqual(lines[0]!.gap, { from: 999_998_991, to: 999_999_990, reason: "hole-timeout" });
      assert.deepEqual(
        lines.slice(1).map((line) => line.data),
        [...before, ...crossing].map((_, i) => (i < 5 ? `a${i}` : `b${i - 5}`)),
      );
      assert.ok(lines.slice(1).every((line) => line.gap === undefined));
      assert.equal(lines[lines.length - 1]!.epoch, epoch + 1);
    });

    it("drainer: restarted on the same folder, it goes on after the last record without repeating one", async (t) => {
      if (!server) return void requireMemcached(t);
      const stream = name();
      const producer = new LogProducer(client, { stream });
      const dir = await mkdtemp(join(tmpdir(), "memipc-drain-"));
      dirs.push(dir);
      const options = {
        stream,
        lease: false as const,
        pollEvery: 10,
        openSink: () => openFileSink(dir, { stream }),
      };
      for (let round = 0; round < 3; round++) {
        await Promise.all(Array.from({ length: 200 }, (_, i) => producer.append(round * 200 + i)));
        const drainer = new Drainer(client, options);
        const controller = new AbortController();
        const done = drainer.run(controller.signal);
        await until(() => drainer.caughtUp(), 5000, "the catch-up");
        controller.abort();
        await done;
      }
      const lines = await readLines(dir);
      assert.deepEqual(
        lines.map((line) => line.data),
        Array.from({ length: 600 }, (_, i) => i),
      );
    });

    it("drainer: seed layout drains Counter/logentry-<n> written by the original idiom and keeps Process", async (t) => {
      if (!server) return void requireMemcached(t);
      const prefix = name();
      const seed = {
        counter: `${prefix}Counter`,
        process: `${prefix}Process`,
        entryPrefix: `${prefix}logentry-`,
      };
      // The original writer: incr Counter (add it when missing), then add logentry-<n>.
      for (let i = 0; i < 50; i++) {
        let n = await client.incr(seed.counter, 1);
        if (n === undefined) {
          await client.add(seed.counter, "0");
          n = (await client.incr(seed.counter, 1))!;
        }
        await client.add(`${seed.entryPrefix}${n}`, `line ${i}`);
      }
      const { drainer, dir, stop } = await start("seedlog", { layout: "seed", seed });
      await until(
        () => drainer.caughtUp(),
        5000,
        "the catch-up",
        () => JSON.stringify(drainer.metrics),
      );
      await until(async () => (await client.get(seed.process))?.value.toString() === "50", 5000, "Process");
      await stop();
      const lines = await readLines(dir);
      assert.deepEqual(
        lines.map((line) => line.data),
        Array.from({ length: 50 }, (_, i) => `line ${i}`),
      );
      assert.ok(lines.every((line) => line.epoch === 1));
      assert.equal(await client.get(`${seed.entryPrefix}1`), undefined);
    });

    it("drainer: publishes its metrics for other nodes", async (t) => {
      if (!server) return void requireMemcached(t);
      const stream = name();
      const producer = new LogProducer(client, { stream });
      await Promise.all(Array.from({ length: 20 }, (_, i) => producer.append(i)));
      const { drainer, stop } = await start(stream);
      await until(() => drainer.caughtUp(), 5000, "the catch-up");
      await until(
        async () => (await publishedMetrics(client, { stream }))?.cursor?.seq === 20,
        5000,
        "published metrics",
      );
      const published = (await publishedMetrics(client, { stream }))!;
      await stop();
      assert.equal(published.entries, 20);
      assert.equal(published.lag, 0);
      assert.equal(published.stream, stream);
    });
  });
}

describe("drainer options", () => {
  it("drainer: rejects options that cannot work, saying which", () => {
    const client = new Client({ servers: "127.0.0.1:1" });
    const openSink = () => Promise.reject(new Error("unused"));
    assert.throws(() => new Drainer(client, { openSink, limit: 0 }), LogError);
    assert.throws(() => new Drainer(client, { openSink, batch: 1.5 }), /batch 1.5/);
    assert.throws(() => new Drainer(client, { openSink, holeTimeout: -1 }), /holeTimeout/);
    client.close();
  });
});

describe("log drainer on a pool of three real memcached servers", () => {
  const servers: RealMemcached[] = [];
  const dirs: string[] = [];
  let client: Client | undefined;

  before(async () => {
    if (!memcachedAvailable()) return;
    for (let i = 0; i < 3; i++) servers.push(await startRealMemcached());
    client = new Client({ servers: servers.map((s) => `127.0.0.1:${s.port}`).join(",") });
  });
  after(async () => {
    client?.close();
    await Promise.all(servers.map((s) => s.stop()));
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it("drainer: entries spread over a pool by ketama are drained once, in order, and deleted from every server", async (t) => {
    if (client === undefined) return void requireMemcached(t);
    const stream = name();
    const address = streamAddress({ stream });
    const producers = [0, 1, 2].map(
      (n) => new LogProducer(client!, { stream, node: `web-${n}`, limit: 1000 }),
    );
    const appended = await Promise.all(Array.from({ length: 3000 }, (_, i) => producers[i % 3]!.append(i)));
    const keys = appended.map((a) => entryKey(address, a.epoch, a.seq));
    const used = new Set(keys.map((key) => client!.serverIndex(key)));
    assert.equal(used.size, 3, "the entries live on all three servers");
    const dir = await mkdtemp(join(tmpdir(), "memipc-drain-"));
    dirs.push(dir);
    const drainer = new Drainer(client, {
      stream,
      limit: 1000,
      lease: false,
      pollEvery: 10,
      openSink: () => openFileSink(dir, { stream }),
    });
    const controller = new AbortController();
    const done = drainer.run(controller.signal);
    await until(() => drainer.caughtUp(), 10_000, "the drainer to catch up");
    controller.abort();
    await done;
    const lines = await readLines(dir);
    assert.ok(lines.every((line) => line.gap === undefined));
    assert.deepEqual(
      lines.map((line) => line.data as number).sort((a, b) => a - b),
      Array.from({ length: 3000 }, (_, i) => i),
    );
    assert.ok(new Set(lines.map((line) => line.epoch)).size >= 3, "the counter rolled over on the pool too");
    assert.equal((await client.getMulti(keys)).size, 0, "drained entries are deleted on every server");
  });
});
