// Rollover: with a limit of 1,000, concurrent producers push the counter over it again and again while a
// drainer drains; the files hold every entry once, across at least ten epoch changes, and no gap (nothing
// was lost: every number up to the limit of each epoch was handed out and written). Run against the
// embedded server and real memcached.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { Drainer } from "../../src/log/drainer.js";
import { headKey, rolledKey, splitHead, streamAddress } from "../../src/log/layout.js";
import { LogProducer } from "../../src/log/producer.js";
import { openFileSink } from "../../src/sinks/index.js";
import { checkLog, keyRanges, leftoverKeys, readLog, report, type Appends } from "../helpers/log-files.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";
import { waitUntil } from "./workers/control.js";

const LIMIT = 1000;
const PRODUCERS = 3;
const PER_PRODUCER = 3500; // 10,500 entries: 11 epochs of 1,000, so at least 10 rollovers
const IN_FLIGHT = 50; // appends outstanding per producer
const CATCH_UP_MS = 30_000;
const TEST_TIMEOUT_MS = 60_000;

for (const target of TARGETS) {
  describe(`drainer rollover (${target.name})`, () => {
    let server: RunningServer | undefined;
    const clients: Client[] = [];
    const connect = (): Client => {
      const client = new Client({ servers: `127.0.0.1:${server!.port}`, timeout: 5000 });
      clients.push(client);
      return client;
    };

    before(async () => {
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
    });
    after(async () => {
      for (const client of clients) client.close();
      await server?.stop();
    });

    it(
      `drainer: ${(PRODUCERS * PER_PRODUCER).toLocaleString("en")} entries over a limit of ${LIMIT.toLocaleString("en")} cross 10+ rollovers; each drained once, no gaps`,
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        if (!server) return void requireMemcached(t);
        const namespace = `roll-${randomBytes(4).toString("hex")}`;
        const stream = `s${randomBytes(4).toString("hex")}`;
        const address = streamAddress({ namespace, stream });
        const dir = mkdtempSync(join(tmpdir(), "memipc-rollover-"));
        const client = connect();
        const drainer = new Drainer(connect(), {
          namespace,
          stream,
          limit: LIMIT,
          lease: false,
          openSink: () => openFileSink(dir, { stream, fsync: "batch" }),
        });
        const stop = new AbortController();
        const running = drainer.run(stop.signal);
        try {
          const appends: Appends[] = await Promise.all(
            Array.from({ length: PRODUCERS }, async (_, id) => {
              const producer = new LogProducer(connect(), {
                namespace,
                stream,
                limit: LIMIT,
                node: `p${id}`,
              });
              const ok: [number, number, number][] = [];
              let next = 0;
              await Promise.all(
                Array.from({ length: IN_FLIGHT }, async () => {
                  while (next < PER_PRODUCER) {
                    const i = next++;
                    const { epoch, seq } = await producer.append({ p: id, i });
                    ok.push([i, epoch, seq]);
                  }
                }),
              );
              return { id, ok };
            }),
          );
          const told = new Set(appends.flatMap((a) => a.ok.map(([, epoch]) => epoch)));
          assert.ok(told.size > 10, `the producers used only ${told.size} epochs`);

          const head = splitHead(
            BigInt((await client.get(headKey(address)))!.value.toString("latin1").trim()),
          );
          await waitUntil(
            () => {
              const cursor = drainer.metrics.cursor;
              return drainer.caughtUp() && cursor?.epoch === head.epoch && cursor.seq === head.seq;
            },
            CATCH_UP_MS,
            `drainer caught up with head ${head.epoch}:${head.seq} (metrics ${JSON.stringify(drainer.metrics)})`,
          );
          stop.abort();
          await running;

          const check = checkLog(readLog(dir, stream), appends);
          const lost = keyRanges([...check.missing.values()].map((m) => `x:${m.epoch}:${m.seq}`));
          assert.deepEqual(
            check.problems,
            [],
            report(
              check.problems,
              `missing ranges ${lost.join(" ")}; the producers used ${told.size} epochs`,
            ),
          );
          assert.equal(check.entries.length, PRODUCERS * PER_PRODUCER);
          assert.deepEqual(check.gaps, [], "gap records although nothing was lost");
          assert.ok(check.epochs.length > 10, `only ${check.epochs.length} epochs in the files`);
          assert.deepEqual(
            [...check.epochs].sort((a, b) => a - b),
            [...told].sort((a, b) => a - b),
          );
          const left = await leftoverKeys(client, address, appends);
          assert.deepEqual(keyRanges(left), [], "drained entries still in memcached");
          const markers = await client.getMulti(check.epochs.map((epoch) => rolledKey(address, epoch)));
          assert.deepEqual([...markers.keys()], [], "rollover markers of drained epochs left in memcached");
        } finally {
          stop.abort();
          await running.catch(() => undefined);
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );
  });
}
