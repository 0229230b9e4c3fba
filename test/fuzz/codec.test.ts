// Bounded property-based fuzzing of the codec (a few seconds per property; MEMIPC_FUZZ_PROPERTY_SECONDS
// changes it, MEMIPC_FUZZ_PROPERTY_SEED and MEMIPC_FUZZ_PROPERTY_PATH replay a reported failure).
import { test } from "node:test";
import assert from "node:assert/strict";
import { replyParserProperty, requestParserProperty } from "./properties.js";
import { describeResult, runProperty, settingsFromEnv } from "./run.js";
import { replayInTest } from "./replay.js";

const settings = settingsFromEnv();
const TEST_TIMEOUT_MS = settings.seconds * 1000 + 120_000; // the budget, shrinking a failure, a loaded machine

test(
  "fuzz: the request parser yields typed frames only, the same under any split, with bounded buffering",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const result = await runProperty(
      "request-parser",
      requestParserProperty(),
      settings,
      replayInTest("codec.test.js", "request parser"),
    );
    console.log(describeResult(result));
    assert.equal(result.report, undefined, result.report);
    assert.ok(result.executions > 0, "the property never ran");
  },
);

test(
  "fuzz: the reply parser yields frames or a ProtocolError, the same under any split, with a bounded line buffer",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const result = await runProperty(
      "reply-parser",
      replyParserProperty(),
      settings,
      replayInTest("codec.test.js", "reply parser"),
    );
    console.log(describeResult(result));
    assert.equal(result.report, undefined, result.report);
    assert.ok(result.executions > 0, "the property never ran");
  },
);
