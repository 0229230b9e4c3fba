// The stats database's schema versioning: a new file gets the current schema, a file from a newer memipc is
// refused rather than damaged, and a read-only open never migrates.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import Database from "better-sqlite3";
import { SinkError } from "../../src/errors.js";
import { SCHEMA_VERSION, StatsDb } from "../../src/sinks/stats-db.js";

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
  assert.deepEqual(tables, ["buckets", "counters", "gauges", "legacy", "reports", "timers"]);
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
