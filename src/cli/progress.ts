// `memipc progress list|watch ID|cancel ID|demo`: jobs from the command line.
import { setTimeout as sleep } from "node:timers/promises";
import { ConfigError } from "../errors.js";
import { FINAL_STATES, JobState, validateJobId } from "../progress/layout.js";
import { DEFAULT_WATCH_INTERVAL, Progress, type JobView } from "../progress/progress.js";
import {
  COMMON_ROWS,
  connect,
  connectionFrom,
  optionTable,
  parseFlags,
  stopSignal,
  wholeNumber,
  writeOut,
} from "./common.js";

const DEFAULT_STEPS = 20;
const DEFAULT_DELAY = 250; // ms per demo step
const BAR_WIDTH = 30; // characters of the terminal progress bar

export const PROGRESS_HELP = `Usage: memipc progress list
       memipc progress watch ID
       memipc progress cancel ID
       memipc progress demo [--id ID] [--steps N] [--delay MS]

Jobs on any node publish their progress in memcached; these commands read it from anywhere.
  list          the jobs started in the last 24 hours, newest first (state, done/total, message)
  watch ID      a live progress bar until the job ends; exit status 0 when it is done, 1 otherwise
  cancel ID     asks the job to stop (it sees the request at its next write or heartbeat)
  demo          runs a sample job of --steps steps, --delay ms each, that stops when cancelled

${optionTable([
  ...COMMON_ROWS,
  ["--id ID", "demo: the job's id (letters, digits, _ . -)", "a new one"],
  ["--steps N", "demo: steps of work", String(DEFAULT_STEPS)],
  ["--delay MS", "demo: ms per step", String(DEFAULT_DELAY)],
  ["--interval MS", "watch: ms between reads", String(DEFAULT_WATCH_INTERVAL)],
  ["--json", "list, watch: JSON (one object per line for watch)", "off"],
])}`;

export async function runProgress(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    "progress",
    args,
    {
      id: { type: "string" },
      steps: { type: "string" },
      delay: { type: "string" },
      interval: { type: "string" },
      json: { type: "boolean" },
    },
    true,
  );
  const [action, id, ...rest] = positionals;
  const needsId = action === "watch" || action === "cancel";
  if (action === undefined || !["list", "watch", "cancel", "demo"].includes(action)) {
    throw new ConfigError('give one of list, watch ID, cancel ID or demo: see "memipc progress --help"');
  }
  if ((needsId && id === undefined) || rest.length > 0 || (!needsId && id !== undefined)) {
    throw new ConfigError(`progress ${action}: wrong arguments: see "memipc progress --help"`);
  }
  if (id !== undefined) validateJobId(id);
  if (values.id !== undefined) validateJobId(values.id);
  const connection = connectionFrom(values, process.env);
  const steps =
    values.steps === undefined ? DEFAULT_STEPS : wholeNumber(values.steps, "--steps", 1, 1_000_000);
  const delay =
    values.delay === undefined ? DEFAULT_DELAY : wholeNumber(values.delay, "--delay", 0, 3_600_000);
  const interval =
    values.interval === undefined
      ? DEFAULT_WATCH_INTERVAL
      : wholeNumber(values.interval, "--interval", 10, 60_000);
  const client = connect(connection);
  const progress = new Progress(client, { namespace: connection.namespace });
  const stop = stopSignal();
  try {
    switch (action) {
      case "list":
        return await list(progress, values.json === true);
      case "watch":
        return await watch(progress, id!, interval, values.json === true, stop.signal);
      case "cancel":
        if (!(await progress.cancel(id!))) {
          throw new ConfigError(`job ${id} does not exist or has ended already: nothing to cancel`);
        }
        await writeOut(`asked job ${id} to stop\n`);
        return;
      case "demo":
        return await demo(progress, values.id, steps, delay, stop.signal);
    }
  } finally {
    stop.dispose();
    client.close();
  }
}

async function list(progress: Progress, json: boolean): Promise<void> {
  const jobs = await progress.list();
  if (json) return writeOut(JSON.stringify(jobs) + "\n");
  if (jobs.length === 0) return writeOut("no jobs in the last 24 hours\n");
  const rows = [
    ["ID", "STATE", "DONE", "STARTED", "LABEL", "MESSAGE"],
    ...jobs.map((j) => [
      j.id,
      j.state,
      j.total === null ? String(j.done) : `${j.done}/${j.total}`,
      new Date(j.startedAt).toISOString().slice(0, 19).replace("T", " "),
      j.label,
      j.error ?? j.message,
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) =>
    r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  "),
  );
  return writeOut(lines.join("\n") + "\n");
}

async function watch(
  progress: Progress,
  id: string,
  interval: number,
  json: boolean,
  signal: AbortSignal,
): Promise<void> {
  const tty = process.stdout.isTTY === true && !json;
  let last: JobView | undefined;
  for await (const job of progress.watch(id, { interval, signal })) {
    last = job;
    if (json) await writeOut(JSON.stringify(job) + "\n");
    else if (tty) process.stdout.write(`\r${barLine(job)}\x1b[K`);
    else await writeOut(barLine(job) + "\n");
  }
  if (tty) process.stdout.write("\n");
  if (signal.aborted) return;
  if (last === undefined) throw new ConfigError(`there is no job ${id} (or it has expired)`);
  if (last.state !== JobState.done) {
    process.exitCode = 1;
    if (!FINAL_STATES.has(last.state))
      process.stderr.write(`memipc progress: job ${id} disappeared while ${last.state}\n`);
  }
}

/** `[██████░░░░]  60%  12/20  label: message  ETA 2s` */
export function barLine(job: JobView): string {
  const parts: string[] = [];
  if (job.total !== null && job.total > 0) {
    const fraction = Math.min(1, job.done / job.total);
    const filled = Math.round(fraction * BAR_WIDTH);
    parts.push(
      `[${"█".repeat(filled)}${"░".repeat(BAR_WIDTH - filled)}]`,
      `${Math.floor(fraction * 100)}%`.padStart(4),
    );
    parts.push(`${job.done}/${job.total}`);
  } else {
    parts.push(String(job.done));
  }
  parts.push(job.state);
  const text = job.error ?? job.message;
  parts.push(text === "" ? job.label : `${job.label}: ${text}`);
  if (job.state === JobState.running && job.eta !== null) parts.push(`ETA ${Math.ceil(job.eta / 1000)}s`);
  return parts.join("  ");
}

async function demo(
  progress: Progress,
  id: string | undefined,
  steps: number,
  delay: number,
  signal: AbortSignal,
): Promise<void> {
  const job = await progress.start("demo job", { total: steps, ...(id === undefined ? {} : { id }) });
  process.stderr.write(
    `memipc progress: demo job ${job.id} started (${steps} steps of ${delay} ms); ` +
      `watch it with "memipc progress watch ${job.id}"\n`,
  );
  for (let step = 1; step <= steps; step++) {
    if (job.cancelled || signal.aborted) {
      await job.cancel(`cancelled after ${step - 1} of ${steps} steps`);
      process.stderr.write(`memipc progress: demo job ${job.id} cancelled\n`);
      return;
    }
    await sleep(delay);
    job.update({ done: step, message: `step ${step} of ${steps}` });
  }
  await job.done({ steps });
  await writeOut(`${job.id}\n`);
}
