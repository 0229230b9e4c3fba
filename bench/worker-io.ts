// What the benchmark's worker processes share: JSON lines to the parent on stdout, and an entry point that
// reports a failure as an `error` message before exiting.

/** One message to the parent, as a JSON line on stdout. */
export function send(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** Runs the worker's `main`, then exits: 0 when it resolves, 1 after an `error` message when it fails. */
export function runWorker(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      send({
        type: "error",
        message: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
      process.exit(1);
    },
  );
}
