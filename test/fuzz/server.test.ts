// Bounded property-based fuzzing of the embedded server over real connections: `memipc server` in a child
// process gets generated streams; each must end with the sentinel answered or the connection closed, a
// fresh connection must still be served, and the server's resident memory must stay bounded.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { describeResult, runProperty, settingsFromEnv } from "./run.js";
import { replayInTest } from "./replay.js";
import {
  RSS_BOUND,
  SERVER_BATCH,
  serverProperty,
  ServerProcess,
  type ServerFuzzState,
} from "./server-target.js";

const settings = settingsFromEnv();
const TEST_TIMEOUT_MS = settings.seconds * 1000 + 120_000; // the budget, shrinking a failure, a loaded machine

let state: ServerFuzzState | undefined;

before(async () => {
  state = { server: await ServerProcess.start(), peakRss: 0 };
});

after(async () => {
  await state?.server.stop();
});

test(
  "fuzz: the server answers the sentinel or closes after any stream, keeps serving, and bounds its memory",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const result = await runProperty(
      "server",
      serverProperty(state!),
      settings,
      replayInTest("server.test.js", "server"),
      SERVER_BATCH,
    );
    const memory = state!.server.memory();
    console.log(
      `${describeResult(result)}, server peak RSS ${memory ? Math.round(memory.peak / 1048576) : "?"} MiB`,
    );
    assert.equal(result.report, undefined, result.report);
    assert.ok(result.executions > 0, "the property never ran");
    assert.ok(state!.server.alive, `the server died: ${state!.server.stderr}`);
    if (memory !== undefined) {
      assert.ok(
        memory.peak <= RSS_BOUND,
        `the server's resident memory peaked at ${memory.peak} bytes, over ${RSS_BOUND}`,
      );
    }
  },
);
