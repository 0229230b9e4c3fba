// Failover: two drainer processes share one output folder and a lease with a 2 s TTL. While producers append,
// the active drainer is killed with SIGKILL; the standby takes over within the lease's TTL plus polling, picks
// the cursor up from the files the other wrote, and in the end every entry is there once, with no gap. Done
// twice: the killed drainer comes back as the standby and the second kill hits its rival.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { streamAddress } from "../../src/log/layout.js";
import { startServer } from "../../src/server/index.js";
import { checkLog, checkProducerOrder, readHead, readLog, report } from "../helpers/log-files.js";
import type { DrainerLine } from "./workers/drainer.js";
import {
  caughtUpWith,
  describeDrainer,
  finishedProducers,
  lastMetrics,
  startDrainer,
  startProducer,
  stopAll,
  type ProducerLine,
  waitUntil,
  type WorkerProcess,
} from "./workers/control.js";

const LEASE_TTL = 2; // s: the shortest lease
const TAKEOVER_MS = LEASE_TTL * 1000 + 1000; // the TTL, then a second of polling and opening the sink
const TAKEOVER_SLACK_MS = 1500; // a loaded test machine
const PRODUCERS = 2;
const PER_PRODUCER = 20_000;
const APPEND_SECONDS = 14; // long enough for two take-overs while the producers append
const ROUNDS = 2;
const FENCE_ROUNDS = 1; // pauses per fencing test (one per partition count keeps the suite short)
const FENCE_PER_PRODUCER = 12_000; // at the same rate: about 8 s, enough for one pause, take-over and resume
const CATCH_UP_MS = 30_000;
const TEST_TIMEOUT_MS = 90_000;

describe("drainer failover (embedded server)", () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let client: Client;

  before(async () => {
    server = await startServer({ port: 0 });
    client = new Client({ servers: `127.0.0.1:${server.port}`, timeout: 5000 });
  });
  after(async () => {
    client.close();
    await server.close();
  });

  it(
    "drainer: the active drainer killed with SIGKILL, the standby takes over within the lease TTL + 1 s; every entry once, no gaps",
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const namespace = `fo-${randomBytes(4).toString("hex")}`;
      const stream = `s${randomBytes(4).toString("hex")}`;
      const address = streamAddress({ namespace, stream });
      const base = mkdtempSync(join(tmpdir(), "memipc-failover-"));
      const dir = join(base, "out");
      mkdirSync(dir);
      const drainers: WorkerProcess<DrainerLine>[] = [];
      const producers: WorkerProcess<ProducerLine>[] = [];
      const owners = new Map<WorkerProcess<DrainerLine>, string>();
      const drainer = (owner: string): WorkerProcess<DrainerLine> => {
        const worker = startDrainer({
          port: server.port,
          namespace,
          stream,
          dir,
          owner,
          leaseTtl: LEASE_TTL,
          metricsEvery: 100,
        });
        drainers.push(worker);
        owners.set(worker, owner);
        return worker;
      };
      const takeovers: number[] = [];
      try {
        let pair = [drainer("A1"), drainer("B1")];
        for (const d of pair) await d.waitFor((line) => line.event === "start", 10_000, "start");
        for (let id = 0; id < PRODUCERS; id++) {
          producers.push(
            startProducer({
              port: server.port,
              namespace,
              stream,
              id,
              count: PER_PRODUCER,
              inFlight: 16,
              perSecond: PER_PRODUCER / APPEND_SECONDS,
              results: join(base, `producer-${id}.json`),
            }),
          );
        }

        for (let round = 1; round <= ROUNDS; round++) {
          // The active one, as it says itself, once it has drained something.
          await waitUntil(() => drainingOf(pair) !== undefined, 15_000, `round ${round}: an active drainer`);
          const active = drainingOf(pair)!;
          const standby = pair.find((d) => d !== active)!;
          assert.equal(
            lastMetrics(standby)?.metrics?.active ?? false,
            false,
            "both drainers say they are active",
          );
          assert.ok(
            producers.some((p) => p.running),
            `round ${round}: the producers were done before the kill`,
          );
          const killedAt = Date.now();
          active.kill("SIGKILL");
          await active.exited;
          const took = await standby.waitFor(
            (line) => line.at > killedAt && line.metrics?.active === true,
            TAKEOVER_MS + TAKEOVER_SLACK_MS,
            `take-over after ${active.name} was killed`,
          );
          takeovers.push(took.at - killedAt);
          // The killed one comes back, as a standby.
          const back = drainer(`${owners.get(active)![0]}${round + 1}`);
          pair = [standby, back];
          await back.waitFor((line) => line.event === "metrics", 10_000, "a metrics line");
        }

        const results = await finishedProducers(producers, (id) => join(base, `producer-${id}.json`));
        const head = await readHead(client, address);
        // The last take-over's winner holds the lease; the drainer that came back stood by all along.
        const [holder, standby] = pair as [WorkerProcess<DrainerLine>, WorkerProcess<DrainerLine>];
        await caughtUpWith(holder, head, CATCH_UP_MS);
        assert.ok(
          standby.lines.every((line) => line.metrics?.active !== true),
          `${standby.name} became active while ${holder.name} held the lease`,
        );
        await stopAll(pair);

        const check = checkLog(readLog(dir, stream), results);
        assert.deepEqual(check.problems, [], report(check.problems));
        assert.equal(check.entries.length, PRODUCERS * PER_PRODUCER);
        assert.deepEqual(check.gaps, [], "gap records although nothing was lost");
        assert.deepEqual(checkProducerOrder(check.entries), []);
        t.diagnostic(`take-overs after ${takeovers.join(" ms, ")} ms (lease TTL ${LEASE_TTL} s)`);
        for (const [round, ms] of takeovers.entries()) {
          assert.ok(
            ms <= TAKEOVER_MS + TAKEOVER_SLACK_MS,
            `round ${round + 1}: the standby took ${ms} ms to take over`,
          );
        }
      } catch (error) {
        const tail = drainers.map(describeDrainer).join("\n");
        throw new Error(`${(error as Error).message}\n(take-overs ${takeovers.join(", ")} ms)\n${tail}`, {
          cause: error,
        });
      } finally {
        await stopAll([...producers, ...drainers]);
        rmSync(base, { recursive: true, force: true });
      }
    },
  );
});

describe("drainer fencing (embedded server)", () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let client: Client;

  before(async () => {
    server = await startServer({ port: 0 });
    client = new Client({ servers: `127.0.0.1:${server.port}`, timeout: 5000 });
  });
  after(async () => {
    client.close();
    await server.close();
  });

  for (const partitions of [1, 2]) {
    it(
      `drainer (${partitions} partition${partitions > 1 ? "s" : ""}): paused with SIGSTOP past its lease and resumed, it writes nothing after its successor; every entry once`,
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const namespace = `fence-${randomBytes(4).toString("hex")}`;
        const stream = `s${randomBytes(4).toString("hex")}`;
        const base = mkdtempSync(join(tmpdir(), "memipc-fence-"));
        const dir = join(base, "out");
        mkdirSync(dir);
        const drainers: WorkerProcess<DrainerLine>[] = [];
        const producers: WorkerProcess<ProducerLine>[] = [];
        const drainer = (owner: string): WorkerProcess<DrainerLine> => {
          const worker = startDrainer({
            port: server.port,
            namespace,
            stream,
            dir,
            owner,
            partitions,
            leaseTtl: LEASE_TTL,
            metricsEvery: 100,
          });
          drainers.push(worker);
          return worker;
        };
        const pauses: string[] = [];
        try {
          const pair = [drainer("A"), drainer("B")];
          for (const d of pair) await d.waitFor((line) => line.event === "start", 10_000, "start");
          for (let id = 0; id < PRODUCERS; id++) {
            producers.push(
              startProducer({
                port: server.port,
                namespace,
                stream,
                id,
                count: FENCE_PER_PRODUCER,
                inFlight: 16,
                partitions,
                perSecond: PER_PRODUCER / APPEND_SECONDS,
                results: join(base, `producer-${id}.json`),
              }),
            );
          }
          for (let round = 1; round <= FENCE_ROUNDS; round++) {
            await waitUntil(
              () => drainingOf(pair) !== undefined,
              15_000,
              `round ${round}: an active drainer`,
            );
            const paused = drainingOf(pair)!;
            const successor = pair.find((d) => d !== paused)!;
            assert.ok(
              producers.some((p) => p.running),
              `round ${round}: the producers were done before the pause`,
            );
            const pausedAt = Date.now();
            paused.kill("SIGSTOP");
            // The successor takes the lease once the key expires, and drains. Only if the paused one stopped
            // in the middle of an append (holding the fence's lock) must it be resumed first.
            const before = lastMetrics(successor)?.metrics?.entries ?? 0;
            const tookOver = (line: DrainerLine) =>
              line.at > pausedAt && line.metrics?.active === true && line.metrics.entries > before;
            let resumedAt: number;
            let note = "";
            try {
              await successor.waitFor(
                tookOver,
                TAKEOVER_MS + TAKEOVER_SLACK_MS,
                `${successor.name} taking over`,
              );
              resumedAt = Date.now();
              paused.kill("SIGCONT");
            } catch (error) {
              const blocked = lastMetrics(successor)?.metrics?.lastError ?? "";
              if (!/fence .* (stayed )?locked/.test(blocked)) throw error;
              note = " holding the fence's lock";
              resumedAt = Date.now();
              paused.kill("SIGCONT");
              await successor.waitFor(
                tookOver,
                TAKEOVER_MS + TAKEOVER_SLACK_MS,
                `${successor.name} taking over`,
              );
            }
            // The resumed one finds its lease gone (or its sink fenced) and stands by.
            await paused.waitFor(
              (line) => line.at > resumedAt && line.event === "metrics" && line.metrics?.active === false,
              TAKEOVER_MS + TAKEOVER_SLACK_MS,
              `${paused.name} standing by after it was resumed`,
            );
            const said = paused.lines
              .filter((line) => line.at > resumedAt && line.event === "warning")
              .map((line) => line.message!.split(":")[0]!);
            pauses.push(
              `round ${round}: ${paused.name} paused ${resumedAt - pausedAt} ms${note}, then said ` +
                ([...new Set(said)].join(", ") || "nothing"),
            );
          }
          const results = await finishedProducers(producers, (id) => join(base, `producer-${id}.json`));
          const since = Date.now();
          const holder = drainingOf(pair)!;
          let times = 0;
          await holder.waitFor(
            (line) => line.event === "metrics" && line.at > since && line.caughtUp === true && ++times >= 2,
            CATCH_UP_MS,
            "caught up",
          );
          await stopAll(pair);
          const check = checkLog(readLog(dir, stream), results);
          assert.deepEqual(check.problems, [], report(check.problems));
          assert.equal(check.entries.length, PRODUCERS * FENCE_PER_PRODUCER);
          assert.deepEqual(check.gaps, [], "gap records although nothing was lost");
          t.diagnostic(pauses.join("; "));
        } catch (error) {
          const tail = drainers.map(describeDrainer).join("\n");
          throw new Error(`${(error as Error).message}\n(${pauses.join("; ")})\n${tail}`, { cause: error });
        } finally {
          for (const d of drainers) d.kill("SIGCONT");
          await stopAll([...producers, ...drainers]);
          rmSync(base, { recursive: true, force: true });
        }
      },
    );
  }
});

/** The drainer of the pair whose last line says it is active and has drained something. */
function drainingOf(pair: readonly WorkerProcess<DrainerLine>[]): WorkerProcess<DrainerLine> | undefined {
  return pair.find((d) => {
    const metrics = lastMetrics(d)?.metrics;
    return metrics?.active === true && metrics.entries > 0;
  });
}
