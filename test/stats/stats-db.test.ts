// The stats database's schema versioning: a new file gets the current schema, a file from a newer memipc is
// refused rather than damaged, and a read-only open never migrates.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import Database from "better-sqlite3";
import { SinkError } from "../../src/errors.js";
import { MIGRATIONS, SCHEMA_VERSION, StatsDb } from "../../src/sinks/stats-db.js";

const dir = mkdtempSync(join(tmpdir(), "memipc-stats-db-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("stats db: a new file gets the current schema in WAL mode, in a folder created for it", () => {
  const file = join(dir, "new", "deeper", "stats.db");
  const db = StatsDb.open(file);
  assert.equal(db.schemaVersion, SCHEMA_VERSION);
  db.close();
  const raw = new Database(file, { readonly: true });
  assert.equal(raw.pragma("journal_mode", { simple: true }), "wal");
  const tables = raw
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .pluck()
    .all();
  assert.deepEqual(tables, ["buckets", "counters", "fence", "gauges", "legacy", "reports", "timers"]);
  raw.close();
});

test("stats db: a file from a newer memipc is refused, saying to upgrade, and left as it was", () => {
  const file = join(dir, "newer.db");
  const raw = new Database(file);
  raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  raw.close();
  assert.throws(
    () => StatsDb.open(file),
    (error: unknown) =>
      error instanceof SinkError && /newer than this memipc knows/.test(error.message) && error.file === file,
  );
  const after = new Database(file, { readonly: true });
  assert.equal(after.pragma("user_version", { simple: true }), SCHEMA_VERSION + 1);
  after.close();
});

test("stats db: read-only opens of a missing or old file fail with what to do, without creating or migrating", () => {
  assert.throws(() => StatsDb.open(join(dir, "missing.db"), { readonly: true }), /memipc collect/);
  const file = join(dir, "old.db");
  new Database(file).close(); // schema version 0
  assert.throws(() => StatsDb.open(file, { readonly: true }), /run `memipc collect` once to upgrade it/);
  const db = StatsDb.open(file); // a writer upgrades it
  assert.equal(db.schemaVersion, SCHEMA_VERSION);
  db.close();
});

test("stats db: a version 1 file is migrated to the current schema with every row kept", () => {
  const file = join(dir, "v1.db");
  const raw = new Database(file);
  raw.exec(MIGRATIONS[0]!);
  raw.pragma("user_version = 1");
  raw
    .prepare("INSERT INTO counters VALUES ('signups', 60, 60, 5), ('signups', 120, 60, 7), ('a', 60, 60, 1)")
    .run();
  raw.prepare("INSERT INTO gauges VALUES ('queue', 60, 60, 2.5)").run();
  raw.prepare(`INSERT INTO timers VALUES ('page.ms', 60, 60, 3, 4500, 2000, '{"2":3}')`).run();
  raw.close();
  const db = StatsDb.open(file);
  assert.equal(db.schemaVersion, SCHEMA_VERSION);
  assert.deepEqual(
    db.counters(0, 1000).map((r) => [r.name, r.start, r.value]),
    [
      ["a", 60, 1],
      ["signups", 60, 5],
      ["signups", 120, 7],
    ],
  );
  assert.deepEqual(db.gauges(0, 1000)[0]!.value, 2.5);
  assert.deepEqual(db.timers(0, 1000)[0]!.histogram, new Map([[2, 3]]));
  // Storing the same bucket again still keeps the larger value under the new key order.
  db.storeBucket(
    { start: 60, seconds: 60, counters: [{ name: "signups", value: 4 }], gauges: [], timers: [] },
    1,
    undefined,
  );
  assert.equal(db.counters(60, 61).find((r) => r.name === "signups")!.value, 5);
  db.close();
});
