// How a reported failure is replayed: the seed and fast-check path of the failing case, and the one test
// or property to run.

/** Replay instructions for a failure in a test file of the bounded run (as built, under dist/test/fuzz/). */
export function replayInTest(file: string, testName: string): (seed: number, path: string) => string {
  return (seed, path) =>
    `MEMIPC_FUZZ_PROPERTY_SEED=${seed} MEMIPC_FUZZ_PROPERTY_PATH=${path} node --test --test-name-pattern=${JSON.stringify(testName)} dist/test/fuzz/${file}`;
}

/** Replay instructions for a failure in the long run. */
export function replayInMain(property: string): (seed: number, path: string) => string {
  return (seed, path) => `node dist/test/fuzz/main.js --only ${property} --seed ${seed} --path ${path}`;
}
