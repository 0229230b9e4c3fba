// Runs one fuzz property for a time budget with fast-check and reports executions, the seed and, on a
// failure, the counterexample and how to replay it.
import fc from "fast-check";
import { randomInt } from "node:crypto";

export const DEFAULT_PROPERTY_SECONDS = 5; // seconds per property in the bounded run inside `npm test`
const REPORT_LIMIT = 2000; // characters of a counterexample shown in a report
const DEFAULT_BATCH = 100; // executions per fast-check run (one seed each)
const SHRINK_MS = 60_000; // how long shrinking a failure may take

export interface FuzzSettings {
  /** Seconds each property runs. */
  seconds: number;
  seed: number;
  /** fast-check's path to one failing case, to replay it alone. */
  path: string | undefined;
}

export interface PropertyResult {
  name: string;
  executions: number;
  seconds: number;
  failed: boolean;
  seed: number;
  /** Counterexample, error and replay instructions when the property failed. */
  report: string | undefined;
}

function envNumber(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name}=${text} is not a non-negative number`);
  return value;
}

/**
 * The bounded run's settings: MEMIPC_FUZZ_PROPERTY_SECONDS (seconds per property),
 * MEMIPC_FUZZ_PROPERTY_SEED and MEMIPC_FUZZ_PROPERTY_PATH (replay a reported failure).
 */
export function settingsFromEnv(): FuzzSettings {
  return {
    seconds: envNumber("MEMIPC_FUZZ_PROPERTY_SECONDS", DEFAULT_PROPERTY_SECONDS),
    seed: Math.floor(envNumber("MEMIPC_FUZZ_PROPERTY_SEED", randomInt(2 ** 31))),
    path: process.env.MEMIPC_FUZZ_PROPERTY_PATH || undefined,
  };
}

/** A value for a report: byte streams as latin1 text, long runs of one byte shortened to «c×n». */
function show(value: unknown): string {
  return fc.stringify(value).replace(/Buffer\.from\(\[([\d,]*)\]\)/g, (_, list: string) => {
    const text = list === "" ? "" : Buffer.from(list.split(",").map(Number)).toString("latin1");
    const shortened = JSON.stringify(text).replace(/(.)\1{15,}/g, (run, c: string) => `«${c}×${run.length}»`);
    return `bytes(${shortened})`;
  });
}

function clip(text: string): string {
  return text.length <= REPORT_LIMIT ? text : `${text.slice(0, REPORT_LIMIT)}… (${text.length} characters)`;
}

/**
 * Runs `property` in batches of `batch` executions, each batch with its own seed (the base seed plus the
 * batch's number), until the time budget is spent or it fails. A batch is never cut short, so an
 * execution that hangs is caught by the property's own deadline, not dropped as an interrupted run.
 * `replay` says how to rerun a failure: the failing batch's seed and fast-check's path to the case.
 */
export async function runProperty<Ts>(
  name: string,
  property: fc.IRawProperty<Ts>,
  settings: FuzzSettings,
  replay: (seed: number, path: string) => string,
  batch = DEFAULT_BATCH,
): Promise<PropertyResult> {
  const started = performance.now();
  const deadline = started + settings.seconds * 1000;
  let executions = 0;
  for (let round = 0; ; round++) {
    const seed = (settings.seed + round) | 0;
    const details = await fc.check(property, {
      seed,
      numRuns: batch,
      ...(settings.path === undefined ? {} : { path: settings.path }),
      // Shrinking a failure gets its own budget; a sync property is only interrupted between executions.
      plugins: [fc.interruptAfterTimeLimit(Math.max(deadline - performance.now(), 0) + SHRINK_MS)],
    });
    executions += details.numRuns;
    const seconds = (performance.now() - started) / 1000;
    if (details.failed) {
      const path = details.counterexamplePath ?? "";
      const error =
        details.errorInstance instanceof Error
          ? details.errorInstance.message
          : String(details.errorInstance);
      const report = [
        `property "${name}" failed after ${executions} executions (batch seed ${seed}, path ${path}, ${details.numShrinks} shrinks)`,
        `error: ${clip(error)}`,
        `counterexample: ${clip(show(details.counterexample))}`,
        `replay: ${replay(seed, path)}`,
      ].join("\n");
      return { name, executions, seconds, failed: true, seed: settings.seed, report };
    }
    if (settings.path !== undefined || performance.now() >= deadline) {
      return { name, executions, seconds, failed: false, seed: settings.seed, report: undefined };
    }
  }
}

/** One line for a log: executions, rate and seed. */
export function describeResult(result: PropertyResult): string {
  const rate = result.seconds > 0 ? Math.round(result.executions / result.seconds) : 0;
  return `${result.name}: ${result.executions} executions in ${result.seconds.toFixed(1)} s (${rate}/s), seed ${result.seed}${result.failed ? ", FAILED" : ""}`;
}
