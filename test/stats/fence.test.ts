// Fencing tokens in the stats database: a handle whose token is older than the newest one taken has every
// write refused, inside the write's own transaction, so nothing of it lands; and a fenced collector never
// decrements a legacy counter its successor has taken over.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Client } from "../../src/client/index.js";
import { FencedError } from "../../src/errors.js";
import { startServer } from "../../src/server/index.js";
import { StatsDb, type BucketValues } from "../../src/sinks/stats-db.js";
import { Collector } from "../../src/stats/collector.js";

const dir = mkdtempSync(join(tmpdir(), "memipc-fence-"));
const server = await startServer({ port: 0 });
const client = new Client({ servers: `127.0.0.1:${server.port}` });
after(async () => {
  client.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

function randomName(prefix: string): string {
  return prefix + randomBytes(4).toString("hex");
}

function bucket(start: number, value: number): BucketValues {
  return { start, seconds: 60, counters: [{ name: "signups", value }], gauges: [], timers: [] };
}

const isFenced = (token: number, newer: number) => (error: unknown) =>
  error instanceof FencedError &&
  error.code === "EFENCED" &&
  error.message.includes(`fencing token ${newer}`) &&
  error.message.includes(`(token ${token})`) &&
  /stands by/.test(error.message);

test("stats db: the older of two handles on one file has every write refused once the newer took a token", () => {
  const file = join(dir, "two-handles.db");
  const name = "collect:site";
  const a = StatsDb.open(file);
  const b = StatsDb.open(file);
  try {
    a.fence = { name, token: a.takeFence(name) };
    a.storeBucket(bucket(60, 1), 1, undefined); // A is the active one: its writes land
    b.fence = { name, token: b.takeFence(name) };
    assert.deepEqual([a.fence.token, b.fence.token], [1, 2]);

    assert.throws(() => a.storeBucket(bucket(120, 5), 2, 3), isFenced(1, 2));
    assert.throws(
      () => a.storeBuckets([{ values: bucket(180, 5), nextCheck: undefined }], 2),
      isFenced(1, 2),
    );
    assert.throws(() => a.beginLegacy("new_account", 2, 7, 1n), isFenced(1, 2));
    assert.throws(() => a.markReport("2026-11-24", 2, []), isFenced(1, 2));
    // Nothing of the refused transactions was written, as either handle reads it.
    for (const db of [a, b]) {
      assert.deepEqual(
        db.counters(0, 1000).map((r) => [r.start, r.value]),
        [[60, 1]],
      );
      assert.equal(db.bucket(60, 120), undefined);
      assert.equal(db.bucket(60, 180), undefined);
      assert.deepEqual(db.pendingLegacy(), []);
      assert.equal(db.reportWritten("2026-11-24"), undefined);
    }

    b.storeBucket(bucket(120, 5), 3, undefined);
    const id = b.beginLegacy("new_account", 3, 7, 1n);
    b.settleLegacy(id, "done");
    b.markReport("2026-11-24", 3, []);
    assert.deepEqual(
      a.counters(0, 1000).map((r) => [r.start, r.value]),
      [
        [60, 1],
        [120, 5],
      ],
    );
    assert.deepEqual(
      a.legacy(0, 10).map((r) => [r.name, r.value, r.state]),
      [["new_account", 7, "done"]],
    );
    // A's legacy rows written before B took over cannot be settled or dropped by A either.
    assert.throws(() => a.settleLegacy(id, "unconfirmed"), isFenced(1, 2));
    assert.throws(() => a.dropLegacy(id), isFenced(1, 2));
    assert.equal(b.legacy(0, 10)[0]!.state, "done");
  } finally {
    a.close();
    b.close();
  }
});

test("stats db: tokens are per name, kept in the file, and a handle without a fence is not checked", () => {
  const file = join(dir, "per-name.db");
  const first = StatsDb.open(file);
  assert.equal(first.takeFence("collect:a"), 1);
  assert.equal(first.takeFence("collect:a"), 2);
  assert.equal(first.takeFence("collect:b"), 1);
  first.close();
  const again = StatsDb.open(file);
  try {
    assert.equal(again.fenceToken("collect:a"), 2);
    assert.equal(again.takeFence("collect:a"), 3);
    // Another name's newer token does not fence this one.
    again.fence = { name: "collect:b", token: 1 };
    again.storeBucket(bucket(60, 1), 1, undefined);
    // Unfenced (a single collector without a lease): writes are not checked.
    again.fence = undefined;
    again.storeBucket(bucket(120, 2), 1, undefined);
    assert.equal(again.counters(0, 1000).length, 2);
  } finally {
    again.close();
  }
});

test("collector: once a newer collector took the fence, the older one's pass fails with FencedError before it decrements a legacy counter", async () => {
  const ns = randomName("fe");
  const counter = `${ns}_new_account`;
  await client.set(counter, "10");
  const file = join(dir, `${ns}.db`);
  const [dbA, dbB] = [StatsDb.open(file), StatsDb.open(file)];
  try {
    const options = { namespace: ns, legacy: [counter], lease: false as const, lookback: 0 };
    const a = new Collector(client, dbA, options);
    const b = new Collector(client, dbB, options);
    assert.equal(a.fenceName, `collect:${ns}`);
    assert.equal(a.takeFence(), 1);
    assert.equal(b.takeFence(), 2);
    await assert.rejects(a.collectOnce(), isFenced(1, 2));
    assert.equal((await client.get(counter))!.value.toString(), "10", "the fenced collector left it alone");
    assert.deepEqual(dbA.legacy(0, Date.now() + 1), []);
    const result = await b.collectOnce();
    assert.equal(result.legacyTotal, 10);
    assert.equal(Number((await client.get(counter))!.value.toString().trim()), 0);
    assert.deepEqual(
      dbA.legacy(0, Date.now() + 1).map((r) => [r.value, r.state]),
      [[10, "done"]],
    );
  } finally {
    dbA.close();
    dbB.close();
  }
});
