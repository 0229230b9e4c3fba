// Log producers: numbers are handed out once, entries land under them, appends in one tick share one
// reservation, a vanished counter starts a new epoch, and the limit rolls the counter over. Run against the
// embedded server and real memcached.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { ConfigError } from "../../src/errors.js";
import {
  EPOCH_FACTOR,
  Layout,
  decodeEntry,
  entryKey,
  headKey,
  splitHead,
  streamAddress,
} from "../../src/log/layout.js";
import { LogProducer } from "../../src/log/producer.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";

/** A stream name no other test uses. */
function stream(): string {
  return "s" + randomBytes(4).toString("hex");
}

for (const target of TARGETS) {
  describe(`log producer (${target.name})`, () => {
    let server: RunningServer | undefined;
    let client: Client;

    before(async () => {
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
      if (server) client = new Client({ servers: `127.0.0.1:${server.port}` });
    });
    after(async () => {
      client?.close();
      await server?.stop();
    });

    it("producer: concurrent appends get distinct consecutive numbers and each entry is stored under its number", async (t) => {
      if (!server) return void requireMemcached(t);
      const name = stream();
      const producer = new LogProducer(client, {
        stream: name,
        node: "web-1",
        clock: () => 1_700_000_000_000,
      });
      const results = await Promise.all(Array.from({ length: 500 }, (_, i) => producer.append({ i })));
      const epochs = new Set(results.map((r) => r.epoch));
      assert.equal(epochs.size, 1);
      const seqs = results.map((r) => r.seq).sort((a, b) => a - b);
      assert.deepEqual(
        seqs,
        Array.from({ length: 500 }, (_, i) => i + 1),
      );
      const address = streamAddress({ stream: name });
      const [epoch] = epochs;
      const stored = await client.getMulti(results.map((r) => entryKey(address, r.epoch, r.seq)));
      assert.equal(stored.size, 500);
      results.forEach((r, i) => {
        const entry = decodeEntry(stored.get(entryKey(address, epoch!, r.seq))!.value);
        assert.deepEqual(entry, { t: 1_700_000_000_000, n: "web-1", d: { i } });
      });
      const head = await client.get(headKey(address));
      assert.equal(BigInt(head!.value.toString().trim()), BigInt(epoch!) * EPOCH_FACTOR + 500n);
    });

    it("producer: appends made in one tick share one reservation (one incr)", async (t) => {
      if (!server) return void requireMemcached(t);
      const name = stream();
      const producer = new LogProducer(client, { stream: name });
      await producer.append("first"); // creates the counter
      const before = Number((await client.stats()).values().next().value!.get("incr_hits"));
      await producer.appendMany(Array.from({ length: 50 }, (_, i) => `line ${i}`));
      const afterHits = Number((await client.stats()).values().next().value!.get("incr_hits"));
      assert.equal(afterHits - before, 1);
    });

    it("producer: a counter that vanished (flush, eviction, restart) starts a new epoch from 1", async (t) => {
      if (!server) return void requireMemcached(t);
      const name = stream();
      const producer = new LogProducer(client, { stream: name });
      const first = await producer.append("before");
      await client.delete(headKey(streamAddress({ stream: name })));
      const second = await producer.append("after");
      assert.notEqual(second.epoch, first.epoch);
      assert.equal(second.seq, 1);
    });

    it("producer: reaching the limit rolls to a new epoch; every append is stored exactly once", async (t) => {
      if (!server) return void requireMemcached(t);
      const name = stream();
      const producers = [1, 2, 3].map(
        (n) => new LogProducer(client, { stream: name, limit: 100, node: `n${n}` }),
      );
      const results = (
        await Promise.all(
          producers.map((producer, p) =>
            Promise.all(Array.from({ length: 350 }, (_, i) => producer.append(`${p}-${i}`))),
          ),
        )
      ).flat();
      const positions = new Set(results.map((r) => `${r.epoch}:${r.seq}`));
      assert.equal(positions.size, 1050, "no number handed out twice");
      for (const r of results) assert.ok(r.seq >= 1 && r.seq <= 100, `seq ${r.seq} within the limit`);
      const epochs = new Set(results.map((r) => r.epoch));
      assert.ok(
        epochs.size >= 11,
        `1050 entries over a limit of 100 need at least 11 epochs, saw ${epochs.size}`,
      );
      const address = streamAddress({ stream: name });
      const stored = await client.getMulti(results.map((r) => entryKey(address, r.epoch, r.seq)));
      assert.equal(stored.size, 1050);
    });

    it("producer: the seed layout is the original idiom: incr Counter, add logentry-<n> with the line itself", async (t) => {
      if (!server) return void requireMemcached(t);
      const prefix = stream();
      const seed = {
        counter: `${prefix}Counter`,
        process: `${prefix}Process`,
        entryPrefix: `${prefix}logentry-`,
      };
      const producer = new LogProducer(client, { layout: Layout.seed, seed });
      const a = await producer.append("GET /index.html 200");
      const b = await producer.append("POST /login 302");
      assert.deepEqual(
        [a, b],
        [
          { epoch: 0, seq: 1 },
          { epoch: 0, seq: 2 },
        ],
      );
      assert.equal((await client.get(`${prefix}logentry-2`))!.value.toString(), "POST /login 302");
      assert.equal((await client.get(`${prefix}Counter`))!.value.toString().trim(), "2");
    });

    it("producer: an entry over the value limit is refused before a number is taken", async (t) => {
      if (!server) return void requireMemcached(t);
      const name = stream();
      const small = new Client({ servers: `127.0.0.1:${server.port}`, maxValueSize: 100 });
      try {
        const producer = new LogProducer(small, { stream: name });
        await assert.rejects(producer.append("x".repeat(200)), /over the client's 100-byte value limit/);
        assert.equal(await client.get(headKey(streamAddress({ stream: name }))), undefined);
      } finally {
        small.close();
      }
    });
  });
}

describe("log layout", () => {
  it("layout: a counter value splits into epoch and sequence", () => {
    assert.deepEqual(splitHead(123n * EPOCH_FACTOR + 45n), { epoch: 123, seq: 45 });
  });

  it("layout: a value another client stored as plain text is read as a raw entry", () => {
    assert.deepEqual(decodeEntry(Buffer.from("user 42 logged in")), {
      t: undefined,
      n: undefined,
      d: "user 42 logged in",
    });
    assert.deepEqual(decodeEntry(Buffer.from('{"t":5,"n":"a","d":[1]}')), { t: 5, n: "a", d: [1] });
  });

  it("layout: bad stream names and limits are refused with a clear message", () => {
    const client = new Client({ servers: "127.0.0.1:1" });
    try {
      assert.throws(() => new LogProducer(client, { stream: "has space" }), ConfigError);
      assert.throws(() => new LogProducer(client, { limit: 0 }), ConfigError);
    } finally {
      client.close();
    }
  });
});
