// Job progress through memcached, against the embedded server, real memcached and a pool of three: throttled
// writes that end exact, cancel seen by the job, stalled when heartbeats stop, listing and watching.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { ConfigError } from "../../src/errors.js";
import { jobKey } from "../../src/progress/layout.js";
import { Progress, type JobView } from "../../src/progress/progress.js";
import { startServer } from "../../src/server/index.js";
import { requireMemcached } from "../helpers/real-memcached.js";
import { ALL_TARGETS, statTotal, useTarget } from "../helpers/targets.js";

function namespace(): string {
  return "pg" + randomBytes(4).toString("hex");
}

for (const target of ALL_TARGETS) {
  describe(`progress (${target.name})`, () => {
    const use = useTarget(target);

    it("progress: 100,000 ticks write at most duration / throttle + 2 times, and the final state is exact", async (t) => {
      if (!use.server) return void requireMemcached(t);
      const client = use.client;
      const progress = new Progress(client, { namespace: namespace(), throttle: 100 });
      const job = await progress.start("tight loop", { total: 100_000 });
      const before = await statTotal(client, "cmd_set");
      const began = Date.now();
      for (let round = 0; round < 100; round++) {
        for (let i = 0; i < 1000; i++) job.tick();
        await sleep(5); // timers (the throttled writes) get their turn
      }
      await job.done({ rows: 100_000 });
      const duration = Date.now() - began;
      const writes = (await statTotal(client, "cmd_set")) - before;
      assert.ok(writes <= Math.floor(duration / 100) + 2, `${writes} writes in ${duration} ms`);
      assert.ok(writes >= 2, "it wrote while running, not only at the end");
      const final = (await progress.get(job.id))!;
      assert.equal(final.state, "done");
      assert.equal(final.done, 100_000);
      assert.deepEqual(final.result, { rows: 100_000 });
    });

    it("progress: a reader's cancel is seen by the job, which ends as cancelled; watch ends with it", async (t) => {
      if (!use.server) return void requireMemcached(t);
      const client = use.client;
      const progress = new Progress(client, {
        namespace: namespace(),
        throttle: 50,
        heartbeat: 100,
        stallAfter: 1000,
      });
      const job = await progress.start("export", { total: 1000 });
      const seen: JobView[] = [];
      const watching = (async () => {
        for await (const state of progress.watch(job.id, { interval: 20 })) seen.push(state);
      })();
      job.update({ done: 10, message: "10 rows" });
      assert.equal(await progress.cancel(job.id), true);
      const deadline = Date.now() + 3000;
      while (!job.cancelled && Date.now() < deadline) await sleep(20);
      assert.equal(job.cancelled, true, "the job saw the cancel within a few heartbeats");
      assert.equal(job.signal.aborted, true);
      await job.cancel("stopped after 10 rows");
      await watching;
      const last = seen[seen.length - 1]!;
      assert.equal(last.state, "cancelled");
      assert.equal(last.message, "stopped after 10 rows");
      assert.equal(last.done, 10);
      assert.equal(await progress.cancel(job.id), false, "an ended job cannot be cancelled");
      assert.throws(() => job.tick(), ConfigError);
    });

    it("progress: a running job without heartbeats shows as stalled; a finished one does not", async (t) => {
      if (!use.server) return void requireMemcached(t);
      const client = use.client;
      let now = Date.now();
      const ns = namespace();
      const writer = new Progress(client, {
        namespace: ns,
        clock: () => now,
        heartbeat: 1000,
        stallAfter: 5000,
      });
      const job = await writer.start("import");
      const reader = new Progress(client, { namespace: ns, clock: () => now });
      assert.equal((await reader.get(job.id))!.state, "running");
      now += 5001; // the process died: no heartbeat since
      assert.equal((await reader.get(job.id))!.state, "stalled");
      await job.done();
      assert.equal((await reader.get(job.id))!.state, "done");
    });

    it("progress: list shows the jobs started, newest first, with ETA and rate; ids are checked", async (t) => {
      if (!use.server) return void requireMemcached(t);
      const client = use.client;
      let now = Date.now();
      const progress = new Progress(client, { namespace: namespace(), clock: () => now, throttle: 0 });
      const a = await progress.start("first", { id: "job-a", total: 100 });
      now += 1000;
      const b = await progress.start("second", { id: "job-b" });
      now += 1000;
      a.update({ done: 50 });
      await sleep(50);
      const jobs = await progress.list();
      assert.deepEqual(
        jobs.map((j) => j.id),
        ["job-b", "job-a"],
      );
      const first = jobs[1]!;
      assert.equal(first.done, 50);
      assert.equal(first.rate, 25); // 50 in 2 s
      assert.equal(first.eta, 2000); // 50 more at 25/s
      assert.equal(jobs[0]!.total, null);
      await assert.rejects(progress.start("again", { id: "job-a" }), /running already/);
      await a.done();
      const ended = (await progress.get("job-a"))!.version;
      const again = await progress.start("again", { id: "job-a" }); // an ended job's id can be used again
      assert.equal((await progress.get("job-a"))!.label, "again");
      assert.ok((await progress.get("job-a"))!.version > ended, "versions go on rising for a reused id");
      await Promise.all([again.done(), b.fail(new Error("disk full"))]);
      assert.equal((await progress.get("job-b"))!.error, "disk full");
      assert.equal(await progress.get("no-such-job"), undefined);
      await assert.rejects(progress.get("bad id"), ConfigError);
      // A record that is not JSON (another program's key) is not a job.
      await client.set(jobKey(progress.options.namespace, "garbage"), "not json");
      assert.equal(await progress.get("garbage"), undefined);
    });
  });
}

describe("progress writes that fail", () => {
  // A retry loop never yields to timers, so without the fix this test ends only by its timeout.
  it(
    "progress: a write that fails is tried again at the next change or heartbeat, not at once in a loop",
    { timeout: 10_000 },
    async () => {
      const server = await startServer({ port: 0 });
      const client = new Client({ servers: `127.0.0.1:${server.port}` });
      try {
        const progress = new Progress(client, {
          namespace: namespace(),
          throttle: 0,
          heartbeat: 60_000,
          stallAfter: 120_000,
        });
        const job = await progress.start("unreachable later", { total: 10 });
        const started = job.writes;
        client.close(); // every write from now on fails at once
        job.update({ done: 1 });
        await sleep(200);
        assert.ok(job.lastError !== undefined, "the write failed");
        assert.equal(job.writes - started, 1, "one write for one change, however fast failures come");
        job.update({ done: 2 });
        await sleep(50);
        assert.equal(job.writes - started, 2, "the next change tried again");
      } finally {
        client.close();
        await server.close();
      }
    },
  );
});
