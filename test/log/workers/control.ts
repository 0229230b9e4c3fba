// Starting, watching and stopping the drainer tests' worker processes: each is this Node running a worker
// file with its settings in an environment variable, printing JSON lines that the test reads.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Client } from "../../../src/client/index.js";
import { readResults, type ProducerResultsFile } from "../../helpers/log-files.js";
import { DRAINER_ENV, type DrainerLine, type DrainerSettings } from "./drainer.js";
import { PRODUCER_ENV, type ProducerSettings } from "./producer.js";

const STDERR_TAIL = 8192; // characters of a worker's stderr kept for failure messages
const STOP_TIMEOUT_MS = 5000; // how long a SIGTERM may take before SIGKILL

export interface ProducerLine {
  event: "start" | "progress" | "done";
  id: number;
  ok: number;
  failed: number;
}

export class WorkerProcess<Line> {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: Line[] = [];
  readonly exited: Promise<void>;
  #stderr = "";
  #listeners = new Set<() => void>();

  constructor(name: string, file: string, env: Record<string, string>) {
    this.name = name;
    this.child = spawn(process.execPath, [file], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (this.child.pid === undefined) throw new Error(`${name}: could not start ${file}`);
    this.pid = this.child.pid;
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (chunk: string) => {
      this.#stderr = (this.#stderr + chunk).slice(-STDERR_TAIL);
    });
    createInterface({ input: this.child.stdout! }).on("line", (text) => {
      try {
        this.lines.push(JSON.parse(text) as Line);
      } catch {
        this.#stderr = (this.#stderr + `[stdout] ${text}\n`).slice(-STDERR_TAIL);
        return;
      }
      this.#notify();
    });
    this.exited = new Promise((resolve) =>
      this.child.once("exit", () => {
        this.#notify();
        resolve();
      }),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get last(): Line | undefined {
    return this.lines[this.lines.length - 1];
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** How it ended, for messages: "exit 0", "SIGKILL", "running". */
  get status(): string {
    if (this.child.signalCode !== null) return this.child.signalCode;
    return this.child.exitCode === null ? "running" : `exit ${this.child.exitCode}`;
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  /** The first line (already printed or to come) that matches; fails on exit or after timeoutMs. */
  waitFor(match: (line: Line) => boolean, timeoutMs: number, what: string): Promise<Line> {
    return new Promise((resolve, reject) => {
      let checked = 0;
      const done = (): void => {
        this.#listeners.delete(check);
        clearTimeout(timer);
      };
      const check = (): void => {
        for (; checked < this.lines.length; checked++) {
          if (match(this.lines[checked]!)) {
            done();
            resolve(this.lines[checked]!);
            return;
          }
        }
        if (!this.running) {
          done();
          reject(new Error(`${this.name} ended (${this.status}) before ${what}; stderr:\n${this.#stderr}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `${this.name}: no ${what} within ${timeoutMs} ms; last line ${JSON.stringify(this.last)}; ` +
              `stderr:\n${this.#stderr}`,
          ),
        );
      }, timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }

  /** Sends a signal to this process (by its PID) if it still runs. */
  kill(signal: NodeJS.Signals): void {
    if (this.running) process.kill(this.pid, signal);
  }

  /** SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

const here = fileURLToPath(new URL(".", import.meta.url));

export function startProducer(settings: ProducerSettings): WorkerProcess<ProducerLine> {
  return new WorkerProcess(`producer ${settings.id}`, `${here}producer.js`, {
    [PRODUCER_ENV]: JSON.stringify(settings),
  });
}

export function startDrainer(settings: DrainerSettings): WorkerProcess<DrainerLine> {
  return new WorkerProcess(`drainer ${settings.owner}`, `${here}drainer.js`, {
    [DRAINER_ENV]: JSON.stringify(settings),
  });
}

/** Stops every worker still running (each by its own PID), in parallel. For `finally` blocks. */
export async function stopAll(workers: Iterable<WorkerProcess<unknown>>): Promise<void> {
  await Promise.all([...workers].map((worker) => worker.stop()));
}

/** Polls `condition` every `everyMs` until it holds; fails with `what` after timeoutMs. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A seeded generator of numbers in [0, 1) (mulberry32), so a failing schedule can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed for this run: $MEMIPC_TEST_SEED when set (to replay a failure), else a random one. */
export function testSeed(): number {
  const fromEnv = process.env.MEMIPC_TEST_SEED;
  return fromEnv !== undefined ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 31);
}

/**
 * Waits until the drainer reports that it is caught up with `head` (the counter as the test read it after
 * every producer finished): active, nothing pending, its durable cursor at the head.
 */
export function caughtUpWith(
  drainer: WorkerProcess<DrainerLine>,
  head: { epoch: number; seq: number },
  timeoutMs: number,
): Promise<DrainerLine> {
  return drainer.waitFor(
    (line) =>
      line.event === "metrics" &&
      line.caughtUp === true &&
      line.metrics?.cursor?.epoch === head.epoch &&
      line.metrics.cursor.seq === head.seq,
    timeoutMs,
    `caught up with head ${head.epoch}:${head.seq}`,
  );
}

/** The drainer's last metrics line, if it printed one. */
export function lastMetrics(drainer: WorkerProcess<DrainerLine>): DrainerLine | undefined {
  for (let i = drainer.lines.length - 1; i >= 0; i--) {
    if (drainer.lines[i]!.event === "metrics") return drainer.lines[i];
  }
  return undefined;
}

/** A drainer for a failure message: name, how it ended, last metrics line, last warnings, stderr. */
export function describeDrainer(drainer: WorkerProcess<DrainerLine>): string {
  const warnings = drainer.lines.filter((line) => line.event === "warning").slice(-5);
  const said = warnings.map((line) => `  warning at ${line.at}: ${line.message}`).join("\n");
  return `${drainer.name} (${drainer.status}) last ${JSON.stringify(lastMetrics(drainer))}\n${said}\n${drainer.stderr}`;
}

/**
 * Waits for every producer to exit, checks that each exited 0 and had no failed append, and returns their
 * results (read from `resultsOf(id)`, the file given as its `results` setting).
 */
export async function finishedProducers(
  producers: readonly WorkerProcess<ProducerLine>[],
  resultsOf: (id: number) => string,
): Promise<ProducerResultsFile[]> {
  for (const producer of producers) {
    await producer.exited;
    assert.equal(producer.status, "exit 0", `${producer.name}: ${producer.stderr}`);
  }
  const results = producers.map((_, id) => readResults(resultsOf(id)));
  for (const r of results) {
    assert.equal(r.failed.length, 0, `producer ${r.id} had failed appends: ${JSON.stringify(r.errors)}`);
  }
  return results;
}

/**
 * The client a worker process uses: memcached on loopback at `port` (or a pool of them). A long timeout: on a loaded test machine a
 * slow reply must not turn into a failed (and ambiguous) append.
 */
export function workerClient(port: number | readonly number[], options: { failover?: boolean } = {}): Client {
  const ports = typeof port === "number" ? [port] : port;
  return new Client({
    servers: ports.map((p) => `127.0.0.1:${p}`).join(","),
    timeout: 5000,
    retryDelay: 20,
    maxRetryDelay: 200,
    deadTime: 200,
    failover: options.failover === true,
  });
}
