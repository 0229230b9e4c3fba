// The collector killed with SIGKILL at random moments while 8 processes count: after restarts, the SQLite
// totals equal exactly what the writers had confirmed, on the embedded server and on real memcached.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { Cli, randomName, waitFor } from "../cli/run-cli.js";
import { WorkerProcess } from "../log/workers/control.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";
import { COUNTER_ENV, type CounterLine, type CounterSettings } from "./workers/counter.js";

const WRITERS = 8;
const COUNT_FOR_MS = 8000; // each writer counts this long, over several 1 s buckets
const NAMES = ["accounts.created", "posts.published", "reports.generated", "logins"];
const MIN_KILLS = 6; // collectors killed while working, at least
const PASS_LINE = /new buckets/; // a collector's line after each pass (--verbose)
const SETTLE_TIMEOUT_MS = 30_000; // after the writers end, the collector has stored everything by then
const COUNTER_WORKER = fileURLToPath(new URL("./workers/counter.js", import.meta.url));

/** Seeded so a failing run can be repeated: MEMIPC_CRASH_SEED=<n>. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

for (const target of TARGETS) {
  describe(`stats collector under SIGKILL (${target.name})`, () => {
    let server: RunningServer | undefined;
    let dir: string;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "memipc-collect-crash-"));
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
    });
    after(async () => {
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("collector: killed with SIGKILL at random moments and restarted, it stores exactly the counts of 8 writers", async (t) => {
      if (!server) return void requireMemcached(t);
      const seed = Number(process.env.MEMIPC_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
      const random = seededRandom(seed);
      const namespace = randomName("cc");
      const db = join(dir, `${namespace}.db`);
      const collectArgs = [
        "collect",
        `--memcached=127.0.0.1:${server.port}`,
        `--namespace=${namespace}`,
        `--db=${db}`,
        "--bucket=1",
        "--grace=2",
        "--interval=0.2",
        "--lookback=60",
        "--lease-ttl=2",
        "--no-reports",
        "--verbose",
      ];
      const writers = Array.from({ length: WRITERS }, (_, i) => {
        const settings: CounterSettings = {
          port: server!.port,
          namespace,
          bucketSeconds: 1,
          names: NAMES,
          durationMs: COUNT_FOR_MS,
          inFlight: 16,
          seed: seed + i,
        };
        return new WorkerProcess<CounterLine>(`writer ${i}`, COUNTER_WORKER, {
          [COUNTER_ENV]: JSON.stringify(settings),
        });
      });
      let collector = new Cli(t, collectArgs);
      let kills = 0;
      try {
        // Kill each collector at a random moment after it has started working (its first pass line), and
        // start a new one, which takes over once the dead one's lease has expired; go on after the writers
        // end, while the last buckets are still being collected.
        const writersDone = Promise.all(writers.map((w) => w.exited));
        let counting = true;
        void writersDone.then(() => (counting = false));
        while (counting || kills < MIN_KILLS) {
          await waitFor(() => PASS_LINE.test(collector.stderr), "a collector pass");
          await sleep(random() * 300);
          collector.child.kill("SIGKILL");
          await collector.exited;
          kills++;
          collector = new Cli(t, collectArgs);
        }
        const lines = await Promise.all(
          writers.map((w) => w.waitFor((l) => l.event === "done", 30_000, "its totals")),
        );
        const expected = new Map(NAMES.map((n) => [n, 0]));
        for (const line of lines) {
          assert.equal(line.failed, 0, "every increment was confirmed");
          for (const [name, n] of Object.entries(line.totals)) expected.set(name, expected.get(name)! + n);
        }
        // The last collector stores the remaining buckets once their grace has passed.
        const deadline = Date.now() + SETTLE_TIMEOUT_MS;
        let stored = new Map<string, number>();
        for (;;) {
          stored = totals(db);
          if (NAMES.every((n) => stored.get(n) === expected.get(n)) || Date.now() > deadline) break;
          await sleep(200);
        }
        assert.deepEqual(
          Object.fromEntries(stored),
          Object.fromEntries(expected),
          `seed ${seed} (MEMIPC_CRASH_SEED=${seed} repeats it); collector stderr:\n${collector.stderr}`,
        );
        for (const total of expected.values()) assert.ok(total > 1000, "each name was counted many times");
      } finally {
        await Promise.all(writers.map((w) => w.stop()));
        collector.child.kill("SIGTERM");
        await collector.exited;
      }
    });
  });
}

/** Counter totals per name in the database, read as another process would. */
function totals(file: string): Map<string, number> {
  let db: StatsDb;
  try {
    db = StatsDb.open(file, { readonly: true });
  } catch {
    return new Map(); // not created yet
  }
  const out = new Map<string, number>();
  for (const row of db.counters(0, 2 ** 40)) out.set(row.name, (out.get(row.name) ?? 0) + row.value);
  db.close();
  return out;
}
