// Bounded property-based fuzzing of the server's command handling, in process: parser and engine as one
// connection drives them, with an injected clock and small memory limits.
import { test } from "node:test";
import assert from "node:assert/strict";
import { engineProperty } from "./properties.js";
import { describeResult, runProperty, settingsFromEnv } from "./run.js";
import { replayInTest } from "./replay.js";

const settings = settingsFromEnv();
const TEST_TIMEOUT_MS = settings.seconds * 1000 + 120_000; // the budget, shrinking a failure, a loaded machine

test(
  "fuzz: the engine answers every request or closes, throws nothing, and keeps its store accounting",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const result = await runProperty(
      "engine",
      engineProperty(),
      settings,
      replayInTest("engine.test.js", "engine"),
    );
    console.log(describeResult(result));
    assert.equal(result.report, undefined, result.report);
    assert.ok(result.executions > 0, "the property never ran");
  },
);
