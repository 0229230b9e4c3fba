// Two `memipc collect` processes on one stats.db: the active one is stopped (SIGSTOP) at the worst moment, just
// after it read a legacy counter and before it recorded the value, for longer than its lease. The standby
// takes over and collects; when the stopped one resumes, the database's fence refuses its write, so it neither
// records nor decrements: every increment is counted exactly once. On the embedded server and real memcached.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { Client } from "../../src/client/index.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { Cli, randomName, waitFor } from "../cli/run-cli.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";

const LEASE_TTL = 2; // s: --lease-ttl of both collectors
const TAKEOVER_SLACK_MS = 3000; // beyond the lease TTL: the standby's poll (1 s) and its first steps
const INCREMENT_EVERY_MS = 10; // the counter is never 0 when a collector reads it
const BLOCK_FOR_MS = 500; // the test holds the write lock this long: the active collector's next pass waits on it
const HOLD_ATTEMPTS = 10; // tries at catching the active collector before its record rather than after it
const STOPPED_AFTER_TAKEOVER_MS = 1000; // the successor works this long while the first one is still stopped
const SETTLE_TIMEOUT_MS = 15_000; // after the increments end, the active collector has taken out the rest

for (const target of TARGETS) {
  describe(`stats collector fencing (${target.name})`, () => {
    let server: RunningServer | undefined;
    let client: Client;
    let dir: string;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "memipc-collect-fence-"));
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
      if (server) client = new Client({ servers: `127.0.0.1:${server.port}` });
    });
    after(async () => {
      client?.close();
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("collector: stopped past its lease between reading a legacy counter and recording it, then resumed, it is fenced and counts nothing twice", async (t) => {
      if (!server) return void requireMemcached(t);
      const namespace = randomName("cf");
      const counter = `${namespace}_new_account`; // a legacy plain key, outside the namespace
      const file = join(dir, `${namespace}.db`);
      const args = [
        "collect",
        `--memcached=127.0.0.1:${server.port}`,
        `--namespace=${namespace}`,
        `--db=${file}`,
        `--legacy=${counter}`,
        // Hour buckets and no lookback: no bucket closes during the test, so a collector's only writes are
        // its legacy rows, and the first write of a pass is the record of what it just read.
        "--bucket=3600",
        "--lookback=0",
        "--interval=0.2",
        `--lease-ttl=${LEASE_TTL}`,
        "--no-reports",
        "--verbose",
      ];
      assert.equal(await client.set(counter, "0"), true);

      // The web nodes: increments as the original idiom makes them, counted once memcached confirmed them.
      let sent = 0;
      let counting = true;
      const incrementing = (async () => {
        while (counting) {
          if ((await client.incr(counter, 1)) !== undefined) sent++;
          await sleep(INCREMENT_EVERY_MS);
        }
      })();

      const first = new Cli(t, args);
      let second: Cli | undefined;
      try {
        await waitFor(() => /fencing token 1\b/.test(first.stderr), "the first collector to become active");
        assert.match(await leaseOwner(client, namespace), new RegExp(`:${first.child.pid}:`));
        second = new Cli(t, args);
        const standby = second;
        await waitFor(
          () => standby.stderr.includes("waiting for the lease"),
          "the second collector to start",
        );
        await waitFor(() => /legacy collections/.test(first.stderr), "the first collector's legacy pass");
        assert.doesNotMatch(standby.stderr, /fencing token/, "the second one stands by");

        // Catch the active collector between its read of the counter and its record of it: take the
        // database's write lock so that record waits, make sure it is not the later settle that waits (no
        // pending row), stop the process there, and let go of the lock.
        let stoppedAt: number | undefined;
        for (let attempt = 0; attempt < HOLD_ATTEMPTS && stoppedAt === undefined; attempt++) {
          const raw = new Database(file);
          try {
            raw.pragma("busy_timeout = 5000");
            raw.exec("BEGIN IMMEDIATE");
            await sleep(BLOCK_FOR_MS);
            const pending = raw.prepare("SELECT count(*) FROM legacy WHERE state = 'pending'").pluck().get();
            if (pending === 0) {
              assert.equal(first.child.kill("SIGSTOP"), true);
              stoppedAt = Date.now();
            }
            raw.exec("ROLLBACK");
          } finally {
            raw.close();
          }
          if (stoppedAt === undefined) await sleep(300);
        }
        assert.ok(
          stoppedAt !== undefined,
          `caught the collector before its record in ${HOLD_ATTEMPTS} tries`,
        );

        await waitFor(() => /fencing token 2\b/.test(standby.stderr), "the second collector to take over");
        const tookOver = Date.now() - stoppedAt;
        assert.ok(
          tookOver <= LEASE_TTL * 1000 + TAKEOVER_SLACK_MS,
          `the second collector took over ${tookOver} ms after the first was stopped`,
        );
        assert.match(await leaseOwner(client, namespace), new RegExp(`:${standby.child.pid}:`));
        const before = standby.stderr.length;
        await waitFor(
          () => /legacy collections/.test(standby.stderr.slice(before)),
          "the second collector's legacy pass",
        );
        await sleep(STOPPED_AFTER_TAKEOVER_MS);

        // Resumed, it goes on from where it stopped: it reports being fenced (or, unfenced, finishes its pass).
        const stopped = first.stderr.length;
        assert.equal(first.child.kill("SIGCONT"), true);
        await waitFor(() => first.stderr.length > stopped, "the resumed collector to go on");
        const resumed = first.stderr.slice(stopped);

        counting = false;
        await incrementing;
        // Everything confirmed is either stored (once) or still in the counter, until the active collector
        // has taken out the rest.
        const deadline = Date.now() + SETTLE_TIMEOUT_MS;
        let stored = 0;
        let left = 0;
        for (;;) {
          ({ stored, left } = await legacyTotals(client, file, counter));
          if ((stored + left === sent && left === 0) || Date.now() > deadline) break;
          await sleep(100);
        }
        assert.equal(
          stored + left,
          sent,
          `stored ${stored} + left in memcached ${left} = ${stored + left}, but ${sent} increments were confirmed; ` +
            `first collector:\n${first.stderr}\nsecond collector:\n${standby.stderr}`,
        );
        assert.equal(left, 0, "the active collector took out the rest");
        assert.ok(sent > 100, `the counter was incremented throughout (${sent} times)`);
        assert.match(
          resumed,
          /^memipc collect: fenced: another collector took over collect:\S+ in .* \(fencing token 2\) since this one became active \(token 1\).*stands by/,
        );
        t.diagnostic(`taken over ${tookOver} ms after the stop; ${sent} increments, each stored once`);
        const db = StatsDb.open(file, { readonly: true });
        assert.equal(db.fenceToken(`collect:${namespace}`), 2, "the resumed one took no new token");
        db.close();
        assert.doesNotMatch(
          first.stderr.slice(stopped),
          /holding the lease|legacy collections/,
          "it stands by",
        );

        for (const cli of [first, standby]) cli.child.kill("SIGTERM");
        for (const cli of [first, standby]) assert.equal((await cli.finished()).code, 0, cli.stderr);
      } finally {
        counting = false;
        await incrementing;
        // Nothing is left behind, stopped or running (each child by its own PID).
        first.child.kill("SIGCONT");
        first.kill();
        second?.kill();
      }
    });
  });
}

/** Who holds the collectors' lease, as stored in memcached (`host:pid:random`). */
async function leaseOwner(client: Client, namespace: string): Promise<string> {
  const value = await client.get(`${namespace}:lease:collect`);
  assert.ok(value !== undefined, "someone holds the lease");
  return (JSON.parse(value.value.toString()) as { owner: string }).owner;
}

/** The legacy collections stored (settled ones) and what is left in the counter. */
async function legacyTotals(
  client: Client,
  file: string,
  counter: string,
): Promise<{ stored: number; left: number }> {
  const db = StatsDb.open(file, { readonly: true });
  const stored = db.legacy(0, Date.now() + 1).reduce((sum, row) => sum + row.value, 0);
  const pending = db.pendingLegacy().length;
  db.close();
  const left = Number((await client.get(counter))?.value.toString().trim() ?? 0);
  // A row still pending is a collection in flight: not settled, so not a total yet.
  return { stored: pending === 0 ? stored : NaN, left };
}
