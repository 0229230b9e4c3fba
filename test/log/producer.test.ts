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
  decodeEntryAt,
  encodeEntry,
  entryKey,
  type EntryFields,
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
          { partition: 0, epoch: 0, seq: 1 },
          { partition: 0, epoch: 0, seq: 2 },
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

  it("layout: decodeEntryAt reads what decodeEntry reads, from a range of a buffer, keeping plain payloads as JSON text", () => {
    const out: EntryFields = { t: undefined, n: undefined, d: undefined, dataJson: undefined };
    const stored = [
      encodeEntry(1795514400000, "web-1", "user 42 logged in"),
      encodeEntry(7, "nœud ✓", "accent é ✓ \u2028"),
      encodeEntry(7, "web-1", 'quote " back \\ tab \t newline \n bell \u0007'),
      encodeEntry(7, "web-1", { a: [1, 2.5] }),
      encodeEntry(7, "web-1", null),
      encodeEntry(7, "web-1", ""),
      encodeEntry(7, 'q"uote', "x"),
      '{"t":007,"n":"a","d":"b"}',
      '{"t":12345678901234567,"n":"a","d":"b"}',
      '{"t":5,"n":"a","d":"x\\u0041"}',
      '{"t":5,"n":"a","d":"x\\/"}',
      '{"t":5,"n":"a","d":"x","e":1}',
      '{"t":5,"n":"a","d":"unterminated\\"}',
      '{"t":5,"n":"a","d":"tab\there"}',
      '{"t":5,"n":"a","d":"bad \x00\x7f"}',
      "user 42 logged in",
      "",
    ];
    for (const text of stored) {
      const bytes = Buffer.from(text, "utf8");
      // Surrounded by other bytes, as in a reply buffer.
      const buffer = Buffer.concat([Buffer.from("VALUE k 0 9\r\n"), bytes, Buffer.from("\r\nEND\r\n")]);
      decodeEntryAt(buffer, 13, 13 + bytes.length, out);
      const expected = decodeEntry(bytes);
      assert.deepEqual({ t: out.t, n: out.n, d: out.d }, { ...expected }, text);
      if (out.dataJson !== undefined) {
        assert.equal(out.dataJson, JSON.stringify(expected.d), `${text}: the JSON text is the payload's`);
        assert.equal(typeof expected.d, "string");
      }
    }
    decodeEntryAt(Buffer.from(stored[0]!), 0, Buffer.byteLength(stored[0]!), out);
    assert.equal(out.dataJson, '"user 42 logged in"', "a plain line passes through as JSON text");
    decodeEntryAt(Buffer.from(stored[3]!), 0, Buffer.byteLength(stored[3]!), out);
    assert.equal(out.dataJson, undefined, "other payloads are parsed");
    const invalid = Buffer.from([
      ...Buffer.from('{"t":5,"n":"a","d":"x'),
      0xff,
      0xe2,
      0x82,
      ...Buffer.from('"}'),
    ]);
    decodeEntryAt(invalid, 0, invalid.length, out);
    assert.equal(
      out.d,
      "x\ufffd\ufffd",
      "bytes that are not UTF-8 read as U+FFFD, as decodeEntry reads them",
    );
    assert.equal(out.dataJson, '"x\ufffd\ufffd"');
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
