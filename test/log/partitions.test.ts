// Partitioned streams in one process: producers pick partitions by node, in turn or by key; the partitioned
// drainer writes every entry once with its partition, keeps each partition's order, merges partitions in time
// order, and a restart goes on from every partition's cursor (an idle one's from a checkpoint). Run against
// the embedded server, real memcached and a pool of three.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { ConfigError } from "../../src/errors.js";
import { entryKey, headKey, partitionAddress, streamAddress } from "../../src/log/layout.js";
import { createDrainer, PartitionedDrainer } from "../../src/log/partitioned-drainer.js";
import { LogProducer, PartitionBy, partitionOf } from "../../src/log/producer.js";
import { openFileSink } from "../../src/sinks/index.js";
import { memcachedAvailable } from "../helpers/real-memcached.js";
import { ALL_TARGETS, type RunningServer } from "../helpers/targets.js";
import { waitFor } from "../helpers/wait.js";

interface Line {
  part?: number;
  seq?: number;
  epoch?: number;
  ms?: number;
  data?: unknown;
  node?: string;
  late?: boolean;
  gap?: { from: number; to: number; reason: string };
  checkpoint?: Record<string, { epoch: number; seq: number }>;
}

async function readLines(dir: string, stream: string): Promise<Line[]> {
  const files = (await readdir(dir)).filter((f) => f.startsWith(`${stream}-`) && f.endsWith(".jsonl")).sort();
  const lines: Line[] = [];
  for (const file of files) {
    const text = await readFile(join(dir, file), "utf8");
    for (const line of text.split("\n")) if (line !== "") lines.push(JSON.parse(line) as Line);
  }
  return lines;
}

function name(): string {
  return "s" + randomBytes(4).toString("hex");
}

/** Per partition: positions strictly increase within an epoch (non-late records). */
function orderProblems(lines: readonly Line[]): string[] {
  const problems: string[] = [];
  const last = new Map<string, number>();
  for (const line of lines) {
    if (line.checkpoint !== undefined || line.late === true) continue;
    const at = `${line.part}:${line.epoch}`;
    const position = line.gap !== undefined ? line.gap.to : line.seq!;
    const first = line.gap !== undefined ? line.gap.from : line.seq!;
    const previous = last.get(at) ?? 0;
    if (first <= previous)
      problems.push(`partition ${line.part} epoch ${line.epoch}: ${first} after ${previous}`);
    last.set(at, position);
  }
  return problems;
}

for (const target of ALL_TARGETS) {
  describe(`partitioned streams (${target.name})`, () => {
    let server: RunningServer | undefined;
    let client: Client;
    const dirs: string[] = [];

    before(async () => {
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
      if (server) client = new Client({ servers: server.servers });
    });
    after(async () => {
      client?.close();
      await server?.stop();
      for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    });

    async function tempDir(): Promise<string> {
      const dir = await mkdtemp(join(tmpdir(), "memipc-parts-"));
      dirs.push(dir);
      return dir;
    }

    /** Runs a drainer of `partitions` partitions until `until` holds, then stops it. */
    async function drainUntil(
      stream: string,
      dir: string,
      partitions: number,
      until: () => Promise<boolean> | boolean,
      what: string,
      reorderWindow = 200,
    ): Promise<PartitionedDrainer> {
      const drainer = createDrainer(client, {
        stream,
        partitions,
        lease: false,
        holeTimeout: 300,
        reorderWindow,
        openSink: () => openFileSink(dir, { stream, partitioned: true, fsync: "never" }),
      }) as PartitionedDrainer;
      const stop = new AbortController();
      const running = drainer.run(stop.signal);
      try {
        await waitFor(until, what);
      } finally {
        stop.abort();
        await running;
      }
      return drainer;
    }

    it("producer: entries go to the partition of their node, in turn, or of their key", async (t) => {
      if (!server) return t.skip("memcached is not installed");
      const stream = name();
      const byNode = new LogProducer(client, { stream, partitions: 4, node: "web-7" });
      const nodePart = partitionOf("web-7", 4);
      for (let i = 0; i < 5; i++) assert.equal((await byNode.append(i)).partition, nodePart);
      const turns = new LogProducer(client, { stream, partitions: 4, partitionBy: PartitionBy.roundRobin });
      const placed = await turns.appendMany([0, 1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(
        placed.map((a) => a.partition).sort(),
        [0, 0, 1, 1, 2, 2, 3, 3],
        "round robin uses each partition in turn",
      );
      const keyed = await byNode.append("x", { key: "user-42" });
      assert.equal(keyed.partition, partitionOf("user-42", 4));
      // Each partition has its own counter: partition 0 the stream's own, the others p<N>.
      const address = streamAddress({ stream });
      assert.equal(headKey(partitionAddress(address, 0)), `memipc:log:${stream}:head`);
      assert.equal(headKey(partitionAddress(address, 3)), `memipc:log:${stream}:p3:head`);
      for (const appended of placed) {
        const key = entryKey(partitionAddress(address, appended.partition), appended.epoch, appended.seq);
        assert.ok((await client.get(key)) !== undefined, `${key} is stored`);
      }
    });

    it("producer: bad partition settings are refused", () => {
      assert.throws(() => new LogProducer(client, { partitions: 0 }), ConfigError);
      assert.throws(() => new LogProducer(client, { partitions: 257 }), ConfigError);
      assert.throws(() => new LogProducer(client, { partitions: 2, layout: "seed" }), ConfigError);
      assert.throws(
        () => new LogProducer(client, { partitions: 2, partitionBy: "random" as PartitionBy }),
        ConfigError,
      );
    });

    it("drainer: 4 partitions, every entry once with its partition, each partition in order", async (t) => {
      if (!server) return t.skip("memcached is not installed");
      const stream = name();
      const dir = await tempDir();
      const producers = Array.from(
        { length: 3 },
        (_, p) =>
          new LogProducer(client, {
            stream,
            partitions: 4,
            partitionBy: PartitionBy.roundRobin,
            node: `n${p}`,
          }),
      );
      const told = new Map<string, { partition: number; epoch: number; seq: number }>();
      for (let round = 0; round < 20; round++) {
        await Promise.all(
          producers.map(async (producer, p) => {
            const placed = await producer.appendMany(
              Array.from({ length: 25 }, (_, i) => ({ p, i: round * 25 + i })),
            );
            placed.forEach((at, i) => told.set(`${p}/${round * 25 + i}`, at));
          }),
        );
      }
      const total = told.size;
      let lines: Line[] = [];
      await drainUntil(
        stream,
        dir,
        4,
        async () => {
          lines = await readLines(dir, stream);
          return lines.filter((l) => l.seq !== undefined).length >= total;
        },
        `${total} entries in the files`,
      );
      lines = await readLines(dir, stream);
      const entries = lines.filter((l) => l.seq !== undefined);
      assert.equal(entries.length, total, "every entry once");
      assert.deepEqual(
        lines.filter((l) => l.gap !== undefined),
        [],
        "no gaps",
      );
      for (const entry of entries) {
        const { p, i } = entry.data as { p: number; i: number };
        const at = told.get(`${p}/${i}`)!;
        assert.deepEqual(
          { part: entry.part, epoch: entry.epoch, seq: entry.seq },
          { part: at.partition, epoch: at.epoch, seq: at.seq },
        );
      }
      assert.deepEqual(orderProblems(lines), []);
      assert.deepEqual(new Set(entries.map((e) => e.part)), new Set([0, 1, 2, 3]));
      // Drained entries are deleted from memcached.
      for (const at of [...told.values()].slice(0, 50)) {
        const key = entryKey(partitionAddress(streamAddress({ stream }), at.partition), at.epoch, at.seq);
        assert.equal(await client.get(key), undefined, `${key} was deleted`);
      }
    });

    it("drainer: entries of different partitions are merged in time order", async (t) => {
      if (!server) return t.skip("memcached is not installed");
      const stream = name();
      const dir = await tempDir();
      // Times set by the producers' clocks: partition 1's entries are older than partition 0's.
      const base = Date.now() - 60_000;
      const clockOf = (offset: number) => {
        let n = 0;
        return () => base + offset + n++ * 10;
      };
      const late = new LogProducer(client, { stream, partitions: 3, node: "a", clock: clockOf(5) });
      const early = new LogProducer(client, { stream, partitions: 3, node: "b", clock: clockOf(0) });
      const partA = partitionOf("a", 3);
      const partB = partitionOf("b", 3);
      assert.notEqual(partA, partB, "the two nodes' partitions differ");
      await late.appendMany(Array.from({ length: 20 }, (_, i) => `a${i}`));
      await early.appendMany(Array.from({ length: 20 }, (_, i) => `b${i}`));
      let lines: Line[] = [];
      await drainUntil(
        stream,
        dir,
        3,
        async () => {
          lines = (await readLines(dir, stream)).filter((l) => l.seq !== undefined);
          return lines.length >= 40;
        },
        "40 entries",
        // Long enough for every partition's first read on a loaded machine: none is skipped by the merge.
        5000,
      );
      const times = lines.map((l) => l.ms!);
      assert.deepEqual(
        times,
        [...times].sort((x, y) => x - y),
        "entries of different partitions interleave by time",
      );
      assert.deepEqual(
        lines.slice(0, 4).map((l) => l.data),
        ["b0", "a0", "b1", "a1"],
      );
    });

    it("drainer: a restart goes on from each partition's cursor, an idle partition's from a checkpoint", async (t) => {
      if (!server) return t.skip("memcached is not installed");
      const stream = name();
      const dir = await tempDir();
      const busy = new LogProducer(client, {
        stream,
        partitions: 3,
        node: "busy",
        partitionBy: PartitionBy.roundRobin,
      });
      await busy.appendMany(Array.from({ length: 30 }, (_, i) => ({ p: 0, i })));
      const count = async () => (await readLines(dir, stream)).filter((l) => l.seq !== undefined).length;
      await drainUntil(stream, dir, 3, async () => (await count()) >= 30, "first 30 entries");
      // Then only partition 0 is written for a while: the others' last records fall far behind.
      const only = partitionAddress(streamAddress({ stream }), 0);
      const zero = new LogProducer(client, { stream, node: "zero" });
      assert.equal(headKey(zero.address), headKey(only));
      await zero.appendMany(Array.from({ length: 300 }, (_, i) => ({ p: 1, i })));
      await drainUntil(stream, dir, 3, async () => (await count()) >= 330, "330 entries");
      await busy.appendMany(Array.from({ length: 30 }, (_, i) => ({ p: 0, i: 30 + i })));
      await drainUntil(stream, dir, 3, async () => (await count()) >= 360, "360 entries");
      const lines = await readLines(dir, stream);
      assert.ok(
        lines.some((l) => l.checkpoint !== undefined),
        "a checkpoint was written after a restart",
      );
      const entries = lines.filter((l) => l.seq !== undefined);
      assert.equal(entries.length, 360);
      const ids = new Set(entries.map((e) => JSON.stringify(e.data)));
      assert.equal(ids.size, 360, "no entry twice");
      assert.deepEqual(orderProblems(lines), []);
    });
  });
}
