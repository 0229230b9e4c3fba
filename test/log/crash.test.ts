// Exactly once across crashes: four producer processes append while the drainer process is killed with
// SIGKILL at random moments and restarted at once; the files end up holding every entry once, in order, with
// no gaps, and memcached holds none of them any more. Again with a counter that rolls over every 1,000
// numbers, so kills land between epochs too. The kill schedule comes from a seed printed with every failure
// (replay it with MEMIPC_TEST_SEED=<seed>).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { Client } from "../../src/client/index.js";
import { streamAddress } from "../../src/log/layout.js";
import {
  checkLog,
  checkProducerOrder,
  keyRanges,
  leftoverKeys,
  readLog,
  readHead,
  report,
} from "../helpers/log-files.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";
import type { DrainerLine } from "./workers/drainer.js";
import {
  caughtUpWith,
  describeDrainer,
  finishedProducers,
  lastMetrics,
  seededRandom,
  sleep,
  startDrainer,
  startProducer,
  stopAll,
  testSeed,
  type ProducerLine,
  type WorkerProcess,
} from "./workers/control.js";

interface Scenario {
  producers: number;
  perProducer: number;
  /** The producers' and drainer's epoch limit (absent: the default, so one epoch). */
  limit?: number;
  /** SIGKILLs while the producers are still appending, at least. */
  minKills: number;
  /** The producers are paced to take about this long: time for the kills (each takes about a second). */
  appendSeconds: number;
}

const MAIN: Scenario = { producers: 4, perProducer: 50_000, minKills: 20, appendSeconds: 15 };
/** Kills while the counter rolls over every 1,000 numbers: some land between epochs. */
const ROLLING: Scenario = { producers: 2, perProducer: 15_000, limit: 1000, minKills: 10, appendSeconds: 8 };

const IN_FLIGHT = 32; // appends outstanding per producer
const HELD_BACK = 1000; // each producer's last entries wait until the kills are done (a slow machine)
const EARLY_KILLS = 0.25; // share of kills aimed at start-up (sink recovery, lease): 0–300 ms after "start"
const KILL_AFTER = [150, 600] as const; // ms after a drainer became active until the other kills, at random
const LEASE_TTL = 2; // s
const APPEND_DEADLINE_MS = 90_000; // the producers must be done by then
const CATCH_UP_MS = 30_000; // the last drainer must have caught up by then
const TEST_TIMEOUT_MS = 150_000;

for (const target of TARGETS) {
  describe(`drainer crashes (${target.name})`, () => {
    let server: RunningServer | undefined;
    let client: Client;

    before(async () => {
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
      if (server) client = new Client({ servers: `127.0.0.1:${server.port}`, timeout: 5000 });
    });
    after(async () => {
      client?.close();
      await server?.stop();
    });

    it(
      `drainer: ${MAIN.minKills}+ SIGKILLs during ${(MAIN.producers * MAIN.perProducer).toLocaleString("en")} appends neither duplicate nor lose an entry`,
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        if (!server) return void requireMemcached(t);
        await crashScenario(t, server, client, MAIN);
      },
    );

    // The embedded server only: the rollover paths do not depend on the server, and time is short.
    if (!target.real) {
      it(
        `drainer: ${ROLLING.minKills}+ SIGKILLs while the counter rolls over every ${ROLLING.limit!.toLocaleString("en")} numbers neither duplicate nor lose an entry`,
        { timeout: TEST_TIMEOUT_MS },
        async (t) => {
          await crashScenario(t, server!, client, ROLLING);
        },
      );
    }
  });
}

/**
 * Producer processes append while the drainer process is killed (SIGKILL) at random moments and restarted
 * at once; then the last drainer catches up and stops, and the files and memcached are checked.
 */
async function crashScenario(t: TestContext, server: RunningServer, client: Client, scenario: Scenario) {
  const { producers: producerCount, perProducer, limit, minKills } = scenario;
  const seed = testSeed();
  const random = seededRandom(seed);
  const namespace = `crash-${randomBytes(4).toString("hex")}`;
  const stream = `s${randomBytes(4).toString("hex")}`;
  const address = streamAddress({ namespace, stream });
  const base = mkdtempSync(join(tmpdir(), "memipc-crash-"));
  const dir = join(base, "out");
  const gate = join(base, "gate");
  mkdirSync(dir);
  const producers: WorkerProcess<ProducerLine>[] = [];
  const drainers: WorkerProcess<DrainerLine>[] = [];
  const context = (): string => `seed ${seed}, ${drainers.length} drainer runs, namespace ${namespace}`;
  const started = Date.now();
  try {
    let generation = 0;
    const nextDrainer = (): WorkerProcess<DrainerLine> => {
      const drainer = startDrainer({
        port: server.port,
        namespace,
        stream,
        dir,
        owner: `D${++generation}`,
        ...(limit === undefined ? {} : { limit }),
        leaseTtl: LEASE_TTL,
        metricsEvery: 100,
      });
      drainers.push(drainer);
      return drainer;
    };
    let drainer = nextDrainer();
    await drainer.waitFor((line) => line.event === "start", 10_000, "start");
    for (let id = 0; id < producerCount; id++) {
      producers.push(
        startProducer({
          port: server.port,
          namespace,
          stream,
          id,
          count: perProducer,
          ...(limit === undefined ? {} : { limit }),
          inFlight: IN_FLIGHT,
          perSecond: perProducer / scenario.appendSeconds,
          gate: { at: perProducer - HELD_BACK, file: gate },
          results: join(base, `producer-${id}.json`),
        }),
      );
    }

    // Kill the drainer at random moments while the producers append; restart it at once.
    const appendDeadline = Date.now() + APPEND_DEADLINE_MS;
    let kills = 0;
    const drainedByKilled: number[] = []; // entries each killed run had drained, by its last metrics line
    while (producers.some((p) => p.running)) {
      assert.ok(Date.now() < appendDeadline, `producers not done in ${APPEND_DEADLINE_MS} ms`);
      if (kills >= minKills && !existsSync(gate)) writeFileSync(gate, "");
      const early = random() < EARLY_KILLS;
      const wait = random();
      await drainer.waitFor((line) => line.event === "start", 10_000, "start");
      if (early) await sleep(wait * 300);
      else {
        await drainer.waitFor((line) => line.metrics?.active === true, 15_000, "active");
        await sleep(KILL_AFTER[0] + wait * (KILL_AFTER[1] - KILL_AFTER[0]));
      }
      assert.ok(drainer.running, `${drainer.name} ended by itself (${drainer.status}): ${drainer.stderr}`);
      drainer.kill("SIGKILL");
      await drainer.exited;
      kills++;
      drainedByKilled.push(lastMetrics(drainer)?.metrics?.entries ?? 0);
      // The dead process cannot give its lease back: free it, as an operator restarting it would wait
      // out (or delete) it; a standby's take-over after expiry is failover.test.ts's subject.
      await client.delete(`${namespace}:lease:drain:${stream}`);
      drainer = nextDrainer();
    }
    const appendedIn = Date.now() - started;

    const results = await finishedProducers(producers, (id) => join(base, `producer-${id}.json`));
    for (const r of results) assert.equal(r.ok.length, perProducer);

    const head = await readHead(client, address);
    await caughtUpWith(drainer, head, CATCH_UP_MS);
    await drainer.stop();
    assert.equal(drainer.status, "exit 0", `the last drainer stopped badly: ${drainer.stderr}`);
    const drainedIn = Date.now() - started;

    const check = checkLog(readLog(dir, stream), results);
    assert.deepEqual(check.problems, [], report(check.problems, context()));
    assert.equal(check.entries.length, producerCount * perProducer);
    assert.deepEqual(check.gaps, [], "gap records although nothing was lost");
    if (limit === undefined) {
      assert.equal(check.epochs.length, 1, `one epoch expected, saw ${check.epochs.join(", ")}`);
      // Within one epoch a producer's entries keep the order it appended them in.
      const order = checkProducerOrder(check.entries);
      assert.deepEqual(order, [], report(order, context()));
    } else {
      const epochs = Math.ceil((producerCount * perProducer) / limit);
      assert.equal(check.epochs.length, epochs, `epochs in the files: ${check.epochs.join(", ")}`);
    }
    t.diagnostic(
      `seed ${seed}: ${kills} SIGKILLs while appending (entries drained by the killed runs: ` +
        `${drainedByKilled.join(" ")}); appends done in ${appendedIn} ms, drained in ${drainedIn} ms`,
    );
    assert.ok(kills >= minKills, `only ${kills} kills`);
    const left = await leftoverKeys(client, address, results);
    assert.equal(
      left.length,
      0,
      `${left.length} drained entries still in memcached, at ${keyRanges(left).join(" ")}`,
    );
  } catch (error) {
    const tail = drainers.slice(-3).map(describeDrainer).join("\n");
    throw new Error(`${(error as Error).message}\n(${context()})\n${tail}`, { cause: error });
  } finally {
    await stopAll([...producers, ...drainers]);
    rmSync(base, { recursive: true, force: true });
  }
}
