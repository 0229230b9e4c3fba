// Reset: real memcached is killed with SIGKILL and started again on the same port while producers append and
// a drainer drains. The producers carry on (appends during the outage fail, later ones succeed in a new
// epoch); the drainer records what memcached lost as gap records and goes on in the new epoch. Every entry
// whose append succeeded is in the files exactly once, unless memcached lost it, and then a gap covers it
// whenever the drainer had seen its number handed out.
//
// To make the loss certain, the test takes a few numbers itself just before the kill (as a producer dying
// between incr and add would): the drainer waits at that hole (holeTimeout) while the entries after it pile
// up, and memcached dies with them.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { headKey, splitHead, streamAddress } from "../../src/log/layout.js";
import { checkLog, readHead, readLog, readResults, report, type GapLine } from "../helpers/log-files.js";
import { requireMemcached, startRealMemcached, type RealMemcached } from "../helpers/real-memcached.js";
import type { DrainerLine } from "./workers/drainer.js";
import {
  caughtUpWith,
  sleep,
  startDrainer,
  startProducer,
  stopAll,
  type ProducerLine,
  type WorkerProcess,
} from "./workers/control.js";

const HOLE_TIMEOUT = 2000; // ms: ample time to kill memcached while the drainer waits at the hole
const HOLE = 5; // numbers the test takes without writing them, just before the kill
const PRODUCERS = 2;
const PER_SECOND = 1000; // appends per second per producer
const OUTAGE_MS = 300; // memcached is down this long
const AFTER_RESTART_MS = 3000; // the producers go on this long after memcached is back
const CATCH_UP_MS = 30_000;
const TEST_TIMEOUT_MS = 60_000;

describe("drainer: memcached reset (real memcached)", () => {
  it(
    "drainer: memcached killed and restarted mid-run: lost numbers become reset gaps, the new epoch is drained, nothing twice",
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      if (!requireMemcached(t)) return;
      const namespace = `reset-${randomBytes(4).toString("hex")}`;
      const stream = `s${randomBytes(4).toString("hex")}`;
      const address = streamAddress({ namespace, stream });
      const base = mkdtempSync(join(tmpdir(), "memipc-reset-"));
      const dir = join(base, "out");
      mkdirSync(dir);
      const first = await startRealMemcached();
      const port = first.port;
      let second: RealMemcached | undefined;
      const client = new Client({
        servers: `127.0.0.1:${port}`,
        retryDelay: 20,
        maxRetryDelay: 100,
        deadTime: 100,
      });
      const producers: WorkerProcess<ProducerLine>[] = [];
      let drainer: WorkerProcess<DrainerLine> | undefined;
      try {
        drainer = startDrainer({
          port,
          namespace,
          stream,
          dir,
          owner: "D",
          leaseTtl: 2,
          holeTimeout: HOLE_TIMEOUT,
          metricsEvery: 100,
        });
        await drainer.waitFor((line) => line.event === "start", 10_000, "start");
        for (let id = 0; id < PRODUCERS; id++) {
          producers.push(
            startProducer({
              port,
              namespace,
              stream,
              id,
              inFlight: 8,
              perSecond: PER_SECOND,
              results: join(base, `producer-${id}.json`),
            }),
          );
        }
        await drainer.waitFor(
          (line) => (line.metrics?.entries ?? 0) >= 1000,
          20_000,
          "1,000 entries drained",
        );

        // A hole, then the kill while the drainer still waits at it.
        const taken = await client.incr(headKey(address), HOLE);
        const hole = splitHead(taken!);
        const holeFrom = hole.seq - HOLE + 1;
        // Kill once the drainer has seen entries past the hole and still waits at it.
        const before = await drainer.waitFor(
          (line) =>
            line.metrics?.head?.epoch === hole.epoch &&
            line.metrics.head.seq >= hole.seq + 100 &&
            (line.metrics.cursor?.seq ?? 0) < holeFrom,
          HOLE_TIMEOUT / 2,
          "the drainer waiting at the hole with entries past it",
        );
        const killedAt = Date.now();
        process.kill(first.pid, "SIGKILL");
        await first.stop(); // only waits for the exit
        await sleep(OUTAGE_MS);
        second = await startRealMemcached({ port });
        const restartedAt = Date.now();
        await sleep(AFTER_RESTART_MS);
        await stopAll(producers);
        for (const producer of producers) assert.equal(producer.status, "exit 0", producer.stderr);
        const results = producers.map((_, id) => readResults(join(base, `producer-${id}.json`)));

        const head = await readHead(client, address);
        const old = hole.epoch;
        assert.notEqual(head.epoch, old, "the counter did not start a new epoch after the restart");
        await caughtUpWith(drainer, head, CATCH_UP_MS);
        await drainer.stop();
        assert.equal(drainer.status, "exit 0", drainer.stderr);

        // Entries memcached lost: appended in the old epoch, never drained. Everything else must be there.
        const check = checkLog(readLog(dir, stream), results, { allowMissing: (m) => m.epoch === old });
        const context = `old epoch ${old}, hole ${holeFrom}-${hole.seq}, drainer before the kill ${JSON.stringify(before.metrics)}`;
        assert.deepEqual(check.problems, [], report(check.problems, context));
        assert.deepEqual(check.epochs.slice(0, 2), [old, head.epoch], `epochs in the files (${context})`);

        const oldGaps = check.gaps.filter((gap) => gap.epoch === old);
        const covered = (epoch: number, seq: number): GapLine | undefined =>
          check.gaps.find((gap) => gap.epoch === epoch && gap.from <= seq && seq <= gap.to);
        assert.ok(
          oldGaps.some((gap) => gap.reason === "reset"),
          `no reset gap in the old epoch: ${JSON.stringify(check.gaps)} (${context})`,
        );
        for (const gap of check.gaps) {
          assert.ok(
            gap.reason === "reset" || gap.reason === "hole-timeout",
            `gap ${JSON.stringify(gap)} has reason ${gap.reason}`,
          );
        }
        for (let seq = holeFrom; seq <= hole.seq; seq++) {
          assert.ok(
            covered(old, seq),
            `the hole's number ${seq} is not in a gap: ${JSON.stringify(oldGaps)}`,
          );
        }
        // What the drainer knew was handed out (up to its last gap) is all accounted for; past that, numbers
        // it never saw went down with memcached unrecorded.
        const knownEnd = Math.max(...oldGaps.map((gap) => gap.to));
        const lost = [...check.missing.values()];
        const unexplained = lost.filter((m) => m.seq <= knownEnd && covered(m.epoch, m.seq) === undefined);
        assert.deepEqual(unexplained, [], `lost entries not covered by a gap (${context})`);

        // Every append in the new epoch is there (checkLog), and the producers kept going after the restart.
        for (const r of results) {
          const after = r.ok.filter(([, epoch]) => epoch !== old).length;
          assert.ok(after > 0, `producer ${r.id} appended nothing after the restart`);
        }
        const failed = results.reduce((sum, r) => sum + r.failed.length, 0);
        const unseen = lost.filter((m) => m.seq > knownEnd).length;
        t.diagnostic(
          `old epoch gaps ${oldGaps.map((g) => `${g.from}-${g.to} ${g.reason}`).join(", ")}; ` +
            `${lost.length} appended entries lost with memcached (${unseen} past the drainer's last head read); ` +
            `${failed} appends failed around the outage of ${restartedAt - killedAt} ms`,
        );
      } catch (error) {
        const tail = drainer
          ? `${drainer.name} (${drainer.status}) last ${JSON.stringify(drainer.last)}\n${drainer.stderr}`
          : "";
        throw new Error(`${(error as Error).message}\n${tail}`, { cause: error });
      } finally {
        await stopAll([...producers, ...(drainer ? [drainer] : [])]);
        client.close();
        await first.stop();
        await second?.stop();
        rmSync(base, { recursive: true, force: true });
      }
    },
  );
});
