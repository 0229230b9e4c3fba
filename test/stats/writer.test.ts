// The stats writer: counts land in the bucket of their time under the documented keys, once, whether sent
// with meta arithmetic or with text incr/add; the bucket index lists each name; timers fill their
// histogram. Run against the embedded server and real memcached.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { ConfigError } from "../../src/errors.js";
import {
  counterKey,
  gaugeKey,
  indexKey,
  parseIndex,
  timerBucket,
  timerBucketFloor,
  timerKey,
} from "../../src/stats/layout.js";
import { StatsWriter } from "../../src/stats/writer.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";

const T0 = Date.UTC(2026, 10, 24, 10, 0, 0); // a bucket boundary for 60 s buckets

function namespace(): string {
  return "st" + randomBytes(4).toString("hex");
}

for (const target of TARGETS) {
  for (const protocol of ["meta", "text"] as const) {
    describe(`stats writer (${target.name}, ${protocol} protocol)`, () => {
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

      async function number(key: string): Promise<number | undefined> {
        const found = await client.get(key);
        return found === undefined ? undefined : Number(found.value.toString().trim());
      }

      it("stats: concurrent increments from two writers add up exactly in their bucket, and the index lists each name", async (t) => {
        if (!server) return void requireMemcached(t);
        let now = T0 + 5_000;
        const options = { namespace: namespace(), protocol, clock: () => now };
        const a = new StatsWriter(client, options);
        const b = new StatsWriter(client, options);
        const calls: Promise<void>[] = [];
        for (let i = 0; i < 500; i++) {
          calls.push(a.incr("accounts.created"), b.incr("accounts.created", 2), a.incr("posts", 3));
        }
        await Promise.all(calls);
        const address = { namespace: options.namespace, bucketSeconds: 60 };
        const start = T0 / 1000;
        assert.equal(await number(counterKey(address, start, "accounts.created")), 1500);
        assert.equal(await number(counterKey(address, start, "posts")), 1500);
        // The next bucket starts on its own.
        now = T0 + 61_000;
        await a.incr("posts");
        assert.equal(await number(counterKey(address, start + 60, "posts")), 1);
        assert.equal(await number(counterKey(address, start, "posts")), 1500);
        const index = (await client.get(indexKey(address, start)))!.value.toString();
        assert.deepEqual([...parseIndex(index).get("c")!].sort(), ["accounts.created", "posts"]);
        assert.equal(index.split(" ").filter((e) => e === "c:posts").length, 1, "listed once per writer");
        const next = (await client.get(indexKey(address, start + 60)))!.value.toString();
        assert.deepEqual([...parseIndex(next).get("c")!], ["posts"]);
      });

      it("stats: a timing fills count, sum and its histogram bucket; a gauge keeps the last value", async (t) => {
        if (!server) return void requireMemcached(t);
        const options = { namespace: namespace(), protocol, clock: () => T0 };
        const writer = new StatsWriter(client, options);
        const samples = [0.5, 3, 3.2, 250, 250, 1000];
        await Promise.all(samples.map((ms) => writer.timing("report.ms", ms)));
        await writer.gauge("queue.length", 7);
        await writer.gauge("queue.length", 4.5);
        const address = { namespace: options.namespace, bucketSeconds: 60 };
        const start = T0 / 1000;
        assert.equal(await number(timerKey(address, start, "report.ms", "n")), samples.length);
        assert.equal(await number(timerKey(address, start, "report.ms", "s")), 1_506_700);
        const counts = new Map<number, number>();
        for (const ms of samples) counts.set(timerBucket(ms), (counts.get(timerBucket(ms)) ?? 0) + 1);
        for (const [k, count] of counts) {
          assert.equal(await number(timerKey(address, start, "report.ms", `h${k}`)), count);
          assert.ok(timerBucketFloor(k) <= samples.find((ms) => timerBucket(ms) === k)!);
        }
        assert.equal((await client.get(gaugeKey(address, start, "queue.length")))?.value.toString(), "4.5");
        const index = parseIndex((await client.get(indexKey(address, start)))!.value.toString());
        assert.deepEqual([...index.get("t")!], ["report.ms"]);
        assert.deepEqual([...index.get("g")!], ["queue.length"]);
      });

      it("stats: a name is listed in the index once however many writers count it, and 12,000 names fit in one tick", async (t) => {
        if (!server) return void requireMemcached(t);
        const options = { namespace: namespace(), protocol, clock: () => T0 };
        const address = { namespace: options.namespace, bucketSeconds: 60 };
        const writers = Array.from({ length: 5 }, () => new StatsWriter(client, options));
        // One after the other (racing writers may both list a name; that is harmless).
        for (const writer of writers) await writer.incr("shared");
        const names = Array.from({ length: 12_000 }, (_, i) => `n${i}`);
        await Promise.all(names.map((name) => writers[0]!.incr(name)));
        await Promise.all(names.map((name) => writers[1]!.incr(name, 2)));
        const index = (await client.get(indexKey(address, T0 / 1000)))!.value.toString();
        const entries = index.split(" ").filter((e) => e !== "");
        assert.equal(entries.filter((e) => e === "c:shared").length, 1);
        assert.equal(entries.length, names.length + 1, "each name once");
        const values = await client.getMany(names.map((name) => counterKey(address, T0 / 1000, name)));
        assert.ok(values.every((v) => v !== undefined && Number(v.toString().trim()) === 3));
        assert.equal(await number(counterKey(address, T0 / 1000, "shared")), 5);
      });

      it("stats: bad names and amounts are refused before anything is sent, saying what is allowed", async (t) => {
        if (!server) return void requireMemcached(t);
        const writer = new StatsWriter(client, { namespace: namespace(), protocol });
        await assert.rejects(writer.incr("has space"), (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match((error as Error).message, /letters, digits/);
          return true;
        });
        await assert.rejects(writer.incr("ok", 0), /1 or more/);
        await assert.rejects(writer.incr("ok", 1.5), /whole number/);
        await assert.rejects(writer.timing("ok", -1), /duration/);
        await assert.rejects(writer.gauge("ok", Number.NaN), /finite/);
        assert.throws(() => new StatsWriter(client, { bucketSeconds: 0 }), ConfigError);
      });
    });
  }
}

describe("stats layout", () => {
  it("stats: timer buckets are about 19 % wide and in order", () => {
    assert.equal(timerBucket(0), 0);
    assert.equal(timerBucket(0.99), 0);
    assert.equal(timerBucket(1), 1);
    let previous = 0;
    for (let ms = 1; ms < 1e7; ms *= 1.07) {
      const k = timerBucket(ms);
      assert.ok(k >= previous);
      assert.ok(
        timerBucketFloor(k) <= ms + 1e-9 && ms < timerBucketFloor(k + 1) + 1e-9,
        `${ms} in bucket ${k}`,
      );
      previous = k;
    }
  });
});
