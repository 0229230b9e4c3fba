// A job process for the HTTP tests: runs a job of `steps` steps `stepMs` apart through Progress, a message per
// step, then ends it as done with `finalMessage`; when a reader asks to cancel, it stops at its next step and
// ends the job as cancelled. Prints a JSON line per step and one at the end. Settings come in MEMIPC_HTTP_JOB;
// without them (as when the test runner loads every file) it does nothing.
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "../../../src/client/index.js";
import { Progress } from "../../../src/progress/index.js";

export const JOB_ENV = "MEMIPC_HTTP_JOB";
const GATE_POLL_MS = 20; // how often a gated job looks for its gate file
const GATE_TIMEOUT_MS = 60_000; // a gate never opened ends the job as failed

export interface JobSettings {
  /** memcached's port on 127.0.0.1. */
  port: number;
  namespace: string;
  id: string;
  label: string;
  steps: number;
  stepMs: number;
  finalMessage: string;
  /** When set, the job starts, then waits for this file to exist before its first step (the test opens it). */
  gate?: string;
  /** Progress options; the defaults when absent. */
  heartbeat?: number;
  stallAfter?: number;
}

export interface JobLine {
  event: "started" | "step" | "done" | "cancelled";
  step: number;
}

const raw = process.env[JOB_ENV];
if (raw !== undefined) await run(JSON.parse(raw) as JobSettings);

function say(line: JobLine): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function run(settings: JobSettings): Promise<void> {
  const client = new Client({ servers: `127.0.0.1:${settings.port}` });
  const progress = new Progress(client, {
    namespace: settings.namespace,
    ...(settings.heartbeat === undefined ? {} : { heartbeat: settings.heartbeat }),
    ...(settings.stallAfter === undefined ? {} : { stallAfter: settings.stallAfter }),
  });
  const job = await progress.start(settings.label, { id: settings.id, total: settings.steps });
  say({ event: "started", step: 0 });
  if (settings.gate !== undefined) {
    const deadline = Date.now() + GATE_TIMEOUT_MS;
    while (!existsSync(settings.gate)) {
      if (Date.now() > deadline) {
        await job.fail(`the gate ${settings.gate} was not opened within ${GATE_TIMEOUT_MS} ms`);
        client.close();
        process.exitCode = 1;
        return;
      }
      await sleep(GATE_POLL_MS);
    }
  }
  for (let step = 1; step <= settings.steps; step++) {
    if (job.cancelled) {
      await job.cancel(`cancelled at step ${step} of ${settings.steps}`);
      say({ event: "cancelled", step });
      client.close();
      return;
    }
    await sleep(settings.stepMs);
    job.update({ done: step, message: `step ${step} of ${settings.steps}` });
    say({ event: "step", step });
  }
  job.update({ message: settings.finalMessage });
  await job.done({ steps: settings.steps });
  say({ event: "done", step: settings.steps });
  client.close();
}
