// `memipc progress` as a user runs it: a demo job watched to its end, listed, and cancelled from another
// process; bad arguments exit 2.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { startServer } from "../../src/server/index.js";
import { Cli, randomName, run, waitFor } from "./run-cli.js";

const TEST_TIMEOUT_MS = 60_000;

const server = await startServer({ port: 0 });
const MEMCACHED = `127.0.0.1:${server.port}`;
after(() => server.close());

test(
  "memipc progress demo, watch and list: the bar reaches the end and watch exits 0",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const common = ["--memcached", MEMCACHED, "--namespace", randomName("ns")];
    const id = randomName("job");
    const demo = new Cli(t, ["progress", "demo", ...common, "--id", id, "--steps", "10", "--delay", "150"]);
    await waitFor(() => demo.stderr.includes("started"), "the demo job to start");
    const watched = await run(t, ["progress", "watch", ...common, id, "--interval", "20"]);
    assert.equal(watched.code, 0, watched.stderr);
    const lines = watched.stdout.trim().split("\n");
    assert.match(lines[lines.length - 1]!, /100%\s+10\/10\s+done\s+demo job: step 10 of 10/);
    assert.ok(lines.length >= 2, "watch showed the job while it ran");
    const finished = await demo.finished();
    assert.equal(finished.code, 0, finished.stderr);
    assert.equal(finished.stdout, `${id}\n`);
    const listed = await run(t, ["progress", "list", ...common, "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const jobs = JSON.parse(listed.stdout) as Array<{ id: string; state: string; done: number }>;
    assert.deepEqual(
      jobs.map((j) => [j.id, j.state, j.done]),
      [[id, "done", 10]],
    );
  },
);

test(
  "memipc progress cancel: the demo job stops, and watch exits 1 showing it cancelled",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const common = ["--memcached", MEMCACHED, "--namespace", randomName("ns")];
    const id = randomName("job");
    const demo = new Cli(t, ["progress", "demo", ...common, "--id", id, "--steps", "1000", "--delay", "20"]);
    await waitFor(() => demo.stderr.includes("started"), "the demo job to start");
    const watching = run(t, ["progress", "watch", ...common, id, "--interval", "20"]);
    const cancelled = await run(t, ["progress", "cancel", ...common, id]);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    const finished = await demo.finished();
    assert.equal(finished.code, 0, finished.stderr);
    assert.match(finished.stderr, /cancelled/);
    const watched = await watching;
    assert.equal(watched.code, 1);
    assert.match(watched.stdout, /cancelled\s+demo job: cancelled after \d+ of 1000 steps/);
    const again = await run(t, ["progress", "cancel", ...common, id]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /has ended already/);
  },
);

test("memipc progress: bad arguments exit 2 saying what to give", async (t) => {
  for (const [args, message] of [
    [[], /give one of list, watch ID, cancel ID or demo/],
    [["watch"], /wrong arguments/],
    [["watch", "bad id"], /job id "bad id" must be/],
    [["list", "extra"], /wrong arguments/],
    [["demo", "--steps", "0"], /--steps/],
  ] as const) {
    const done = await run(t, ["progress", ...args, "--memcached", MEMCACHED]);
    assert.equal(done.code, 2, `${args.join(" ")}: ${done.stderr}`);
    assert.match(done.stderr, message);
  }
});
