// Log producers given what cannot be stored: an entry over the item size limit, bytes that are not UTF-8, a
// string with a lone surrogate, a bad stream name. Each is refused with InputError before a sequence number is
// taken; an entry only the server can refuse (its -I below the client's limit) leaves a marker the drainer
// turns into a `refused` gap at once. Run against the embedded server, real memcached and a pool.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "../../src/client/index.js";
import { ConfigError, InputError } from "../../src/errors.js";
import { Drainer } from "../../src/log/drainer.js";
import { Layout, decodeEntry, entryKey, headKey, streamAddress } from "../../src/log/layout.js";
import { LogProducer, type Appended } from "../../src/log/producer.js";
import { startServer } from "../../src/server/index.js";
import { openFileSink } from "../../src/sinks/index.js";
import { readLog } from "../helpers/log-files.js";
import { requireMemcached, startRealMemcached } from "../helpers/real-memcached.js";
import { ALL_TARGETS, useTarget } from "../helpers/targets.js";
import { waitFor } from "../helpers/wait.js";

const HOLE_TIMEOUT_MS = 120_000; // longer than any wait here: a drainer that waited out a hole would fail
const TEST_TIMEOUT_MS = 60_000;

function stream(): string {
  return "s" + randomBytes(4).toString("hex");
}

/** Asserts `promise` rejects with InputError whose message matches `pattern` and says nothing was written. */
async function refused(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof InputError, `an InputError, not ${String(error)}`);
    assert.equal(error.code, "EINPUT");
    assert.match(error.message, pattern);
    assert.match(error.message, /nothing was written|none of them was appended/);
    return true;
  });
}

for (const target of ALL_TARGETS) {
  describe(`log producer limits (${target.name})`, () => {
    const use = useTarget(target);

    it("producer: too large, not UTF-8 or a lone surrogate is refused with InputError before a number is taken", async (t) => {
      if (!use.server) return void requireMemcached(t);
      const client = use.client;
      const address = streamAddress({ stream: stream() });
      const producer = new LogProducer(client, { stream: address.stream, node: "web-1" });
      const first = await producer.append("before");
      const head = async () => (await client.get(headKey(address)))?.value.toString("latin1");
      const headBefore = await head();
      const cases: Array<[string, unknown, RegExp]> = [
        [
          "2 MiB",
          "x".repeat(2 * 1024 * 1024),
          /log entry is \d+ bytes, over the client's \d+-byte value limit/,
        ],
        ["bytes that are not UTF-8", Buffer.from([0x66, 0xff, 0xfe]), /not UTF-8 text/],
        ["a lone surrogate", "half a \ud83d pair", /not UTF-8 text/],
        ["a lone surrogate deep in an object", { user: 1, notes: ["ok", "\udc00"] }, /not UTF-8 text/],
        ["a lone surrogate as a key", { ["\ud800"]: 1 }, /not UTF-8 text/],
      ];
      for (const [what, data, pattern] of cases) {
        await t.test(what, () => refused(producer.append(data), pattern));
      }
      // A batch with one bad entry appends none of them.
      await refused(producer.appendMany(["ok 1", Buffer.from([0xc3]), "ok 2"]), /entry 1 of 3: .*not UTF-8/);
      assert.equal(await head(), headBefore, "the counter did not move");
      assert.equal(await client.get(entryKey(address, first.epoch, first.seq + 1)), undefined);
      // Bytes that are UTF-8 are their text; an escaped backslash-u in the text is not a surrogate.
      const text = "héllo 😀 \\ud800";
      const next = await producer.append(Buffer.from(text, "utf8"));
      assert.equal(next.seq, first.seq + 1, "the next number follows: none was lost to the refused entries");
      const stored = await client.get(entryKey(address, next.epoch, next.seq));
      assert.equal(decodeEntry(stored!.value).d, text);
    });

    it("producer: the seed layout refuses a lone surrogate before Counter moves; bad stream names are refused at once", async (t) => {
      if (!use.server) return void requireMemcached(t);
      const client = use.client;
      const id = randomBytes(4).toString("hex");
      const seed = { counter: `Counter-${id}`, process: `Process-${id}`, entryPrefix: `logentry-${id}-` };
      const producer = new LogProducer(client, { layout: Layout.seed, seed });
      const first = await producer.append("plain line");
      await refused(producer.append("broken \udfff line"), /not UTF-8 text/);
      await refused(producer.append(Buffer.from([0xe2, 0x82])), /not UTF-8 text/);
      assert.equal((await client.get(seed.counter))?.value.toString(), String(first.seq));
      for (const name of ["has space", "", "tab\there", "x".repeat(65), "ünï"]) {
        assert.throws(
          () => new LogProducer(client, { stream: name }),
          (error: unknown) => {
            assert.ok(error instanceof ConfigError);
            assert.match(error.message, /must be 1 to 64 letters, digits/);
            return true;
          },
        );
      }
      assert.throws(() => new LogProducer(client, { node: "web-\ud800" }), /node .* is not UTF-8 text/);
    });
  });
}

/** Servers whose item size limit is below the client's: only their reply can tell an entry is too large. */
const SMALL_ITEM_TARGETS = [
  {
    name: "embedded server with a 64 KiB item limit",
    real: false,
    entryBytes: 100_000,
    async start() {
      const server = await startServer({ port: 0, maxItemSize: 64 * 1024 });
      return { servers: `127.0.0.1:${server.port}`, stop: () => server.close() };
    },
  },
  {
    name: "real memcached -I 512k",
    real: true,
    entryBytes: 600_000,
    async start() {
      const memcached = await startRealMemcached({ maxItemSize: "512k" });
      return { servers: `${memcached.host}:${memcached.port}`, stop: () => memcached.stop() };
    },
  },
];

for (const target of SMALL_ITEM_TARGETS) {
  it(
    `producer and drainer (${target.name}): an entry the server refuses for size is a refused gap at once, and its neighbours are stored`,
    { timeout: TEST_TIMEOUT_MS },
    async (t: TestContext) => {
      if (target.real && !requireMemcached(t)) return;
      const server = await target.start();
      const client = new Client({ servers: server.servers });
      const dir = mkdtempSync(join(tmpdir(), "memipc-refused-"));
      t.after(async () => {
        client.close();
        await server.stop();
        rmSync(dir, { recursive: true, force: true });
      });
      const address = streamAddress({ stream: stream() });
      const producer = new LogProducer(client, { stream: address.stream, node: "web-1" });
      const big = "y".repeat(target.entryBytes);
      // One block: the server's error line names no entry, so the producer must tell which one it refused.
      const results = await Promise.allSettled([
        producer.append("first"),
        producer.append(big),
        producer.append("third"),
      ]);
      assert.equal(results[0]!.status, "fulfilled");
      assert.equal(results[2]!.status, "fulfilled");
      const rejected = results[1]!;
      assert.equal(rejected.status, "rejected");
      const error = (rejected as PromiseRejectedResult).reason as Error;
      assert.ok(error instanceof InputError, String(error));
      assert.match(error.message, /the server refused it \(SERVER_ERROR object too large for cache\)/);
      assert.match(error.message, /set maxValueSize to the server's limit/);
      assert.match(error.message, /is recorded as a refused gap/);
      const last = await producer.append("fourth");
      const seqs = [(results[0] as PromiseFulfilledResult<Appended>).value.seq, 2, 3, 4];
      assert.deepEqual(seqs, [1, 2, 3, last.seq]);

      const drainer = new Drainer(client, {
        stream: address.stream,
        lease: false,
        pollEvery: 10,
        holeTimeout: HOLE_TIMEOUT_MS,
        openSink: () => openFileSink(dir, { stream: address.stream }),
      });
      const controller = new AbortController();
      const run = drainer.run(controller.signal);
      t.after(() => controller.abort());
      await waitFor(
        () => drainer.metrics.entries === 3,
        "the three stored entries drained, past the refused one",
      );
      await waitFor(
        async () => (await client.get(entryKey(address, last.epoch, 2))) === undefined,
        "marker deleted",
      );
      controller.abort();
      await run;
      const records = readLog(dir, address.stream).map((r) =>
        r.kind === "gap" ? `gap ${r.from}-${r.to} ${r.reason}` : `${r.seq} ${String(r.data)}`,
      );
      assert.deepEqual(records, ["1 first", "gap 2-2 refused", "3 third", "4 fourth"]);
      assert.equal(drainer.metrics.gaps, 1);
    },
  );
}
