// What the benchmark's worker processes share: JSON lines to the parent on stdout and from it on stdin, the
// ready/go/done hand-shake of a measured run, callers looping until a deadline, and an entry point that
// reports a failure as an `error` message before exiting.
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { Latencies } from "./latencies.js";

/** One message to the parent, as a JSON line on stdout. */
export function send(message: object): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/**
 * Messages from the parent (JSON lines on stdin), one at a time, in order; exits when the parent closes stdin
 * (nothing is left to report to).
 */
export function parentMessages<M extends { type: string }>(): () => Promise<M> {
  const queue: M[] = [];
  const waiting: ((message: M) => void)[] = [];
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const message = JSON.parse(line) as M;
    const next = waiting.shift();
    if (next) next(message);
    else queue.push(message);
  });
  lines.on("close", () => process.exit(0));
  return () => {
    const next = queue.shift();
    return next ? Promise.resolve(next) : new Promise((resolve) => waiting.push(resolve));
  };
}

/** The parent's next message, which must be of `type`. */
export async function expectMessage<M extends { type: string }>(
  next: () => Promise<M>,
  type: M["type"],
): Promise<M> {
  const message = await next();
  if (message.type !== type) throw new Error(`expected "${type}" from the parent, got "${message.type}"`);
  return message;
}

/** CPU seconds (user + system) of a `process.cpuUsage()` reading. */
export function cpuOf(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1e6;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Reports "ready", waits for the parent's "go", then runs `run`; returns the "done" message: what `run`
 * returned and the CPU seconds it took.
 */
export async function onGo<D extends object>(
  next: () => Promise<{ type: string }>,
  run: () => Promise<D>,
): Promise<D & { type: "done"; cpuSeconds: number }> {
  send({ type: "ready" });
  await expectMessage(next, "go");
  const cpu = process.cpuUsage();
  const result = await run();
  return { type: "done", ...result, cpuSeconds: cpuOf(process.cpuUsage(cpu)) };
}

/** As `onGo`, with fresh latencies for `run`, saved to `latenciesPath` once it is done. */
export async function measureOnGo<D extends object>(
  next: () => Promise<{ type: string }>,
  latenciesPath: string,
  run: (latencies: Latencies) => Promise<D>,
): Promise<D & { type: "done"; cpuSeconds: number }> {
  const latencies = new Latencies();
  const done = await onGo(next, () => run(latencies));
  latencies.save(latenciesPath);
  return done;
}

/** What a saturated run reports: calls that succeeded, failed calls, and its own elapsed time. */
export interface Done {
  count: number;
  errors: number;
  firstError?: string;
  seconds: number;
}

/**
 * `inflight` callers, each making a call and awaiting it in a loop until the deadline (or the shared count
 * runs out): as a web process with that many requests at once, each doing one thing. A call that returns no
 * promise (a synchronous store) is not awaited, so one caller then runs without a pause between calls.
 */
export async function saturated(
  call: () => Promise<unknown> | undefined,
  limits: { inflight: number; seconds?: number; count?: number },
  latencies: Latencies,
): Promise<Done> {
  const started = performance.now();
  const deadline = limits.seconds === undefined ? Infinity : started + limits.seconds * 1000;
  let left = limits.count ?? Infinity;
  const done: Done = { count: 0, errors: 0, seconds: 0 };
  const caller = async (): Promise<void> => {
    while (left > 0) {
      left--;
      const t = performance.now();
      try {
        const pending = call();
        if (pending !== undefined) await pending;
        done.count++;
      } catch (error) {
        done.errors++;
        done.firstError ??= messageOf(error);
      }
      const end = performance.now();
      latencies.record((end - t) * 1000);
      if (end >= deadline) return;
    }
  };
  await Promise.all(Array.from({ length: limits.inflight }, caller));
  done.seconds = (performance.now() - started) / 1000;
  return done;
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
