// One property of the bounded fuzzing run as a test: run for the configured time, print what ran, fail with
// fast-check's counterexample and the command that replays it.
import assert from "node:assert/strict";
import { test } from "node:test";
import type fc from "fast-check";
import { replayInTest } from "./replay.js";
import { describeResult, runProperty, settingsFromEnv, type PropertyResult } from "./run.js";

const settings = settingsFromEnv();
/** The budget, time to shrink a failure, and a loaded machine. */
export const FUZZ_TEST_TIMEOUT_MS = settings.seconds * 1000 + 120_000;

/**
 * A test named `title` running `property` (`name` in reports); `file` and `pattern` replay it. `also` runs
 * further checks after the property passed.
 */
export function propertyTest<Ts>(
  title: string,
  name: string,
  property: () => fc.IRawProperty<Ts>,
  replay: { file: string; pattern: string; batch?: number },
  also?: (result: PropertyResult) => void,
): void {
  test(title, { timeout: FUZZ_TEST_TIMEOUT_MS }, async () => {
    const result = await runProperty(
      name,
      property(),
      settings,
      replayInTest(replay.file, replay.pattern),
      replay.batch,
    );
    console.log(describeResult(result));
    assert.equal(result.report, undefined, result.report);
    assert.ok(result.executions > 0, "the property never ran");
    also?.(result);
  });
}
