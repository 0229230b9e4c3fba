// What the benchmark scenarios share: starting servers on free loopback ports and stopping them by PID,
// finding tools, option parsing, CPU accounting, medians and table formatting, worker processes, and a
// scenario's folder and sequence of runs.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs, type ParseArgsConfig } from "node:util";

type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig["options"]>;

export const HOST = "127.0.0.1"; // loopback only: the benchmark never listens anywhere else
const START_TIMEOUT_MS = 10_000; // how long a server may take to answer `version`
export const STOP_TIMEOUT_MS = 5_000; // how long a SIGTERM may take before SIGKILL
const PORT_ATTEMPTS = 5; // a free port can be taken by someone else between probe and bind
const CLOCK_TICKS_PER_SECOND = 100; // Linux's USER_HZ, the unit of /proc/<pid>/stat times
const LOAD_WARNING = 0.5; // 1-minute load average above which a scenario warns that the machine is busy

/** A server to measure: how to start it on a port. */
export interface Target {
  /** Prefix of its JSON keys. */
  readonly id: string;
  /** Column heading. */
  readonly label: string;
  command(port: number): { file: string; args: string[] };
  /** True once it serves on the port (default: it answers memcached's `version`). */
  answers?(port: number): Promise<boolean>;
}

export interface RunningServer {
  readonly pid: number;
  readonly port: number;
  readonly label: string;
  exited(): boolean;
  stderr(): string;
  stop(): Promise<void>;
}

/** Real memcached on the loopback interface with `memoryMb` of item memory and `threads` worker threads. */
export function memcachedTarget(
  id: string,
  label: string,
  binary: string,
  threads: number,
  memoryMb: number,
): Target {
  return {
    id,
    label,
    command: (port) => {
      const args = ["-l", HOST, "-p", String(port), "-U", "0", "-m", String(memoryMb), "-t", String(threads)];
      // memcached refuses to run as root unless told which user to become.
      if (process.getuid?.() === 0) args.push("-u", "root");
      return { file: binary, args };
    },
  };
}

/**
 * memipc's embedded server (`memipc server` of the built CLI) on the loopback interface with `memoryMb` of item
 * memory; with `profileDir`, CPU-profiled as "<id> server".
 */
export function embeddedTarget(profileDir: string | undefined, id: string, memoryMb: number): Target {
  // The bench files run from dist/bench/; the CLI is built to dist/src/cli/main.js.
  const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  if (!existsSync(cli)) {
    throw new Error(`the embedded server's CLI is not built (${cli}): run \`npm run build\``);
  }
  const flags = profileFlags(profileDir, `${id} server`);
  return {
    id: "embedded",
    label: "memipc server",
    command: (port) => ({
      file: process.execPath,
      args: [...flags, cli, "server", "--port", String(port), "--listen", HOST, "--memory", `${memoryMb}m`],
    }),
  };
}

// Every process a scenario started and has not yet seen exit, with a promise of its exit;
// killed by PID on any way out.
const running = new Map<ChildProcess, Promise<void>>();

/** SIGKILLs every process still running; the promise settles when all have exited. */
export function killAll(): Promise<void> {
  const exits = [...running.values()];
  for (const child of running.keys()) child.kill("SIGKILL");
  return Promise.all(exits).then(() => undefined);
}

export function track(child: ChildProcess): Promise<void> {
  const closed = new Promise<void>((resolve) => {
    child.once("close", () => {
      running.delete(child);
      resolve();
    });
  });
  running.set(child, closed);
  return closed;
}

/**
 * On SIGINT or SIGTERM, kills the started processes (by PID), runs `cleanup` and exits; on any exit, kills
 * them. Returns a function that removes the signal handlers again.
 */
export function stopChildrenOnSignal(cleanup: () => void = () => {}): () => void {
  const stopOnSignal = (signal: NodeJS.Signals): void => {
    // Wait (briefly) for the killed children, so they are reaped and not left as zombies.
    void Promise.race([killAll(), sleep(STOP_TIMEOUT_MS)]).finally(() => {
      cleanup();
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  };
  process.once("SIGINT", stopOnSignal);
  process.once("SIGTERM", stopOnSignal);
  process.once("exit", () => void killAll());
  return () => {
    process.off("SIGINT", stopOnSignal);
    process.off("SIGTERM", stopOnSignal);
  };
}

/** Starts the target on a free loopback port and waits until it answers `version`. */
export async function startTarget(target: Target): Promise<RunningServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = await freePort();
    try {
      return await startOn(target, port);
    } catch (error) {
      if (!(error instanceof PortTakenError)) throw error;
      lastError = error;
    }
  }
  throw new Error(`${target.label} could not bind a free port in ${PORT_ATTEMPTS} attempts`, {
    cause: lastError,
  });
}

class PortTakenError extends Error {}

async function startOn(target: Target, port: number): Promise<RunningServer> {
  const { file, args } = target.command(port);
  // MEMIPC_* variables would change the embedded server's settings behind the benchmark's back.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("MEMIPC_")));
  const child = spawn(file, args, { stdio: ["ignore", "ignore", "pipe"], env });
  const closed = track(child);
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-4096);
  });
  let spawnError: Error | undefined;
  child.once("error", (error) => {
    spawnError = error;
  });
  const exited = (): boolean =>
    child.exitCode !== null || child.signalCode !== null || spawnError !== undefined;
  const stop = async (): Promise<void> => {
    if (!exited()) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await closed;
      clearTimeout(timer);
    }
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited()) {
      await closed;
      if (/already in use/i.test(stderr)) throw new PortTakenError(stderr.trim());
      const how = spawnError?.message ?? `exit ${child.exitCode ?? child.signalCode}`;
      throw new Error(`${target.label} stopped at start-up (${how}): ${stderr.trim() || "no output"}`);
    }
    if (await (target.answers ?? answersVersion)(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${target.label} on port ${port} did not answer within ${START_TIMEOUT_MS} ms`);
    }
    await sleep(50);
  }
  return { pid: child.pid!, port, label: target.label, exited, stderr: () => stderr, stop };
}

/** Throws if the server has exited (during a run), with what it wrote to stderr. */
export function checkAlive(server: RunningServer): void {
  if (server.exited()) throw new Error(`${server.label} exited during the run: ${server.stderr().trim()}`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** True when something on the port answers memcached's `version` command. */
function answersVersion(port: number): Promise<boolean> {
  return answersLine(port, "version\r\n", "VERSION ");
}

/** True when something on the port answers `request` with a line starting with `prefix`. */
export function answersLine(port: number, request: string, prefix: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port });
    let reply = "";
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("connect", () => socket.write(request));
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      reply += chunk;
      if (reply.includes("\r\n")) done(reply.startsWith(prefix));
    });
    socket.once("error", () => done(false));
    socket.once("close", () => done(false));
  });
}

/** $VARIABLE if set, else the first of `names` found executable on PATH. */
export function findExecutable(variable: string, names: string[]): string | undefined {
  const given = process.env[variable];
  const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  const candidates = given ? [given] : names.flatMap((name) => dirs.map((dir) => join(dir, name)));
  return candidates.find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The first line a tool prints for its version flag; both tools print one line and exit at once. */
export function versionOf(file: string, flag: string): string {
  const result = spawnSync(file, [flag], {
    encoding: "utf8",
    timeout: 5000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return `${result.stdout ?? ""}${result.stderr ?? ""}`.split("\n")[0]!.trim() || file;
}

/** utime + stime of a process in seconds, from /proc; undefined where /proc is not available. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may itself hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / CLOCK_TICKS_PER_SECOND : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads a process's CPU seconds now; the function returned reads them again and gives the seconds used in
 * between (undefined where /proc is not available).
 */
export function cpuSince(pid: number): () => number | undefined {
  const before = cpuSeconds(pid);
  return () => {
    const after = cpuSeconds(pid);
    return after === undefined || before === undefined ? undefined : after - before;
  };
}

/** CPU seconds over `wall` seconds as a whole percentage (100 = one core) for a table; "-" where unknown. */
export function cpuPercent(seconds: number | undefined, wall: number): string {
  return seconds === undefined ? "-" : String(Math.round((seconds / wall) * 100));
}

/** The same percentage to 0.1 for the JSON; null where unknown. */
export function cpuPercentJson(seconds: number | undefined, wall: number): number | null {
  return seconds === undefined ? null : round((seconds / wall) * 100, 1);
}

export function wholeNumber(text: string, flag: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${flag} ${text} is not a whole number from ${min} to ${max}`);
  }
  return value;
}

export function median(values: (number | undefined)[]): number | undefined {
  const known = values.filter((v): v is number => v !== undefined).sort((a, b) => a - b);
  if (known.length === 0) return undefined;
  const middle = Math.floor(known.length / 2);
  return known.length % 2 === 1 ? known[middle]! : (known[middle - 1]! + known[middle]!) / 2;
}

export function ratio(ours: number, baseline: number): number {
  return baseline === 0 ? 0 : ours / baseline;
}

export function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

export function formatRate(rate: number): string {
  return Math.round(rate).toLocaleString("en-US");
}

export function formatPercent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`;
}

/** A latency in µs: to 0.1 below 10, else whole with thousands separators. */
export function formatUs(us: number): string {
  return us < 10 ? us.toFixed(1) : Math.round(us).toLocaleString("en-US");
}

/**
 * A header, a rule and the body, columns separated by two spaces; the first `leftColumns` columns are
 * left-aligned, the others right-aligned.
 */
export function alignColumns(header: string[], body: string[][], leftColumns: number): string[] {
  const table = [header, ...body];
  const widths = header.map((_, column) => Math.max(...table.map((cells) => cells[column]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (i < leftColumns ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join("  ");
  return [line(header), line(widths.map((width) => "-".repeat(width))), ...body.map(line)];
}

/** Adds a table (first column left-aligned) and a blank line to `lines`, unless it has no rows. */
export function pushTable(lines: string[], header: string[], body: string[][]): void {
  if (body.length > 0) lines.push(...alignColumns(header, body, 1), "");
}

export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A scenario's flags, strictly parsed; a bad flag points to that scenario's --help. */
export function parseScenarioArgs<T extends ParseArgsOptionsConfig>(
  args: readonly string[],
  options: T,
  scenario: string,
): ReturnType<
  typeof parseArgs<{ args: string[]; options: T; allowPositionals: false; strict: true }>
>["values"] {
  try {
    return parseArgs({ args: [...args], options, allowPositionals: false, strict: true }).values;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${reason}; see \`npm run bench -- ${scenario} --help\``, { cause: error });
  }
}

/** The options of the scenarios that run worker processes (log, stats) have in common. */
export interface WorkerScenarioOptions<Id extends string> {
  json: boolean;
  seconds: number;
  procs: number;
  inflight: number;
  memcachedThreads: number;
  only: Set<Id> | undefined;
  cpuProf: string | undefined;
}

/** The flags for WorkerScenarioOptions, with the scenario's defaults, for parseScenarioArgs. */
export function workerScenarioFlags(defaults: {
  seconds: number;
  procs: number;
  inflight: number;
  memcachedThreads: number;
}) {
  return {
    json: { type: "boolean", default: false },
    seconds: { type: "string", default: String(defaults.seconds) },
    procs: { type: "string", default: String(defaults.procs) },
    inflight: { type: "string", default: String(defaults.inflight) },
    "memcached-threads": { type: "string", default: String(defaults.memcachedThreads) },
    only: { type: "string" },
    "cpu-prof": { type: "string" },
  } as const;
}

/** WorkerScenarioOptions from the values of its flags, checked; `--only` against `ids`. */
export function workerScenarioOptions<Id extends string>(
  values: {
    json: boolean;
    seconds: string;
    procs: string;
    inflight: string;
    "memcached-threads": string;
    only?: string;
    "cpu-prof"?: string;
  },
  ids: readonly Id[],
): WorkerScenarioOptions<Id> {
  const only = parseOnly(values.only, ids);
  return {
    json: values.json,
    seconds: wholeNumber(values.seconds, "--seconds", 1, 3600),
    procs: wholeNumber(values.procs, "--procs", 1, 256),
    inflight: wholeNumber(values.inflight, "--inflight", 1, 100_000),
    memcachedThreads: wholeNumber(values["memcached-threads"], "--memcached-threads", 1, 64),
    only,
    cpuProf: values["cpu-prof"],
  };
}

/** What every worker message has: its type, and for an `error` message why. */
export interface MBase {
  type: string;
  message?: string;
}

/**
 * A benchmark's child process speaking JSON lines: commands go to its stdin, one message per line comes back
 * on its stdout (a line that is not JSON is shown as progress); a message of type `error` ends it.
 */
export class WorkerProcess<M extends MBase> {
  readonly label: string;
  readonly child: ChildProcess;
  readonly closed: Promise<void>;
  readonly #queue: M[] = [];
  readonly #waiting: { resolve(message: M): void; reject(error: Error): void }[] = [];
  #ended: Error | undefined;

  constructor(label: string, file: string, args: string[]) {
    this.label = label;
    this.child = spawn(file, args, { stdio: ["pipe", "pipe", "inherit"] });
    this.closed = track(this.child);
    this.child.once("error", (error) => this.#end(new Error(`${label}: ${error.message}`)));
    this.child.stdin!.on("error", () => undefined); // a worker that exited is reported by #end
    const lines = createInterface({ input: this.child.stdout! });
    lines.on("line", (line: string) => {
      let message: M;
      try {
        message = JSON.parse(line) as M;
      } catch {
        progress(`${label}: ${line}`);
        return;
      }
      if (message.type === "error") {
        this.#end(new Error(`${label} failed: ${message.message ?? "no reason given"}`));
        return;
      }
      const next = this.#waiting.shift();
      if (next) next.resolve(message);
      else this.#queue.push(message);
    });
    void this.closed.then(() =>
      this.#end(new Error(`${label} exited (${this.child.exitCode ?? this.child.signalCode})`)),
    );
  }

  #end(error: Error): void {
    this.#ended ??= error;
    for (const waiting of this.#waiting.splice(0)) waiting.reject(this.#ended);
  }

  send(message: Record<string, unknown>): void {
    this.child.stdin!.write(`${JSON.stringify(message)}\n`);
  }

  /** The next message, which must be of `type`, within `timeoutMs`. */
  async expect<T = M>(type: string, timeoutMs: number): Promise<T> {
    const message =
      this.#queue.shift() ??
      (await new Promise<M>((resolve, reject) => {
        if (this.#ended) {
          reject(this.#ended);
          return;
        }
        const timer = setTimeout(() => {
          reject(new Error(`${this.label} sent no "${type}" within ${timeoutMs} ms`));
        }, timeoutMs);
        this.#waiting.push({
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
      }));
    if (message.type !== type) throw new Error(`${this.label} sent "${message.type}" instead of "${type}"`);
    return message as unknown as T;
  }

  /** Closes its stdin (it exits on that), then kills it if it has not exited in time. */
  async stop(): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await this.closed;
    clearTimeout(timer);
  }
}

/** A worker script built next to the bench files (dist/bench/<name>.js); fails early if it is missing. */
export function workerScript(name: string): string {
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  if (!existsSync(script)) throw new Error(`${script} is missing: run \`npm run build\``);
  return script;
}

/** node's flags for a CPU profile named after the process's label, or none. */
export function profileFlags(profileDir: string | undefined, label: string): string[] {
  if (profileDir === undefined) return [];
  const name = `${label.replace(/[^A-Za-z0-9_-]+/g, "-")}.cpuprofile`;
  return ["--cpu-prof", "--cpu-prof-dir", profileDir, "--cpu-prof-name", name];
}

/**
 * A node process running the worker script `script` (see workerScript) with `config` as its one argument;
 * with `profileDir`, CPU-profiled under its label.
 */
export function nodeWorker<M extends MBase>(
  script: string,
  label: string,
  config: object,
  profileDir: string | undefined,
): WorkerProcess<M> {
  return new WorkerProcess<M>(label, process.execPath, [
    ...profileFlags(profileDir, label),
    workerScript(script),
    JSON.stringify(config),
  ]);
}

/**
 * Starts `count` processes of run `id` into `workers` (so that the caller can stop those started whatever
 * happens), each with its own latency file in `dir`; returns the files, in the processes' order.
 */
export function startWorkers<W>(
  workers: W[],
  count: number,
  dir: string,
  id: string,
  start: (i: number, latencies: string) => W,
): string[] {
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const latencies = join(dir, `${id}-${i}.f64`);
    files.push(latencies);
    workers.push(start(i, latencies));
  }
  return files;
}

/**
 * Waits until every worker is "ready", says "go" to all and collects each one's "done", then stops them.
 * `startedAt` is when "go" went out and `finishedAt` when the last "done" came in (performance.now()).
 */
export async function goAndCollect<M extends MBase, D = M>(
  workers: WorkerProcess<M>[],
  readyTimeoutMs: number,
  doneTimeoutMs: number,
): Promise<{ startedAt: number; finishedAt: number; dones: D[] }> {
  await Promise.all(workers.map((worker) => worker.expect("ready", readyTimeoutMs)));
  const startedAt = performance.now();
  for (const worker of workers) worker.send({ type: "go" });
  let finishedAt = startedAt;
  const dones = await Promise.all(
    workers.map(async (worker) => {
      const done = await worker.expect<D>("done", doneTimeoutMs);
      finishedAt = Math.max(finishedAt, performance.now());
      return done;
    }),
  );
  await Promise.all(workers.map((worker) => worker.stop()));
  return { startedAt, finishedAt, dones };
}

/** `--only a,b`: the runs named, each checked against `ids`; undefined (all runs) without the flag. */
export function parseOnly<Id extends string>(
  text: string | undefined,
  ids: readonly Id[],
): Set<Id> | undefined {
  if (text === undefined) return undefined;
  const names = text.split(",").filter(Boolean);
  const unknown = names.filter((name) => !(ids as readonly string[]).includes(name));
  if (unknown.length > 0 || names.length === 0)
    throw new Error(`--only ${text}: runs are named ${ids.join(", ")}`);
  return new Set(names as Id[]);
}

/**
 * Runs a scenario's `body` with a fresh folder for its files (memipc-bench-<scenario>-… in the temporary
 * folder), removed afterwards; on SIGINT or SIGTERM the started processes are killed and the folder removed.
 * Warns first when the machine is busy; `body` is given the folder and the 1-minute load average at the start.
 */
export async function withScenarioDir(
  scenario: string,
  body: (dir: string, loadAtStart: number) => Promise<void>,
): Promise<void> {
  const loadAtStart = loadavg()[0]!;
  const dir = await mkdtemp(join(tmpdir(), `memipc-bench-${scenario}-`));
  // On a signal the process exits right after this, so the clean-up is synchronous.
  const removeSignalHandlers = stopChildrenOnSignal(() => rmSync(dir, { recursive: true, force: true }));
  try {
    if (loadAtStart > LOAD_WARNING) {
      progress(
        `warning: the load average is ${loadAtStart.toFixed(1)} on ${availableParallelism()} cores: other work is ` +
          "running, and the figures will show it",
      );
    }
    await body(dir, loadAtStart);
  } finally {
    removeSignalHandlers();
    await rm(dir, { recursive: true, force: true });
  }
}

/** One of a scenario's runs: what it measures (for the progress line) and how. */
export interface ScenarioRun<Context, Result> {
  label: string;
  run(context: Context): Promise<Result>;
}

/**
 * Runs each of `ids` in turn, saying on stderr which and what it measured; returns the results by id. With
 * `failures`, a run that throws is noted there (the first line of its message) and the others go on;
 * without, the error ends them all.
 */
export async function runEach<Id extends string, Context, Result>(
  ids: readonly Id[],
  runs: Record<Id, ScenarioRun<Context, Result>>,
  context: Context,
  describe: (result: Result) => string,
  failures?: Map<Id, string>,
): Promise<Map<Id, Result>> {
  const results = new Map<Id, Result>();
  for (const id of ids) {
    progress(`${id}: ${runs[id].label}…`);
    try {
      const result = await runs[id].run(context);
      results.set(id, result);
      progress(`  ${describe(result)}`);
    } catch (error) {
      if (failures === undefined) throw error;
      const message = error instanceof Error ? error.message : String(error);
      failures.set(id, message.split("\n")[0]!);
      progress(`  failed: ${message}`);
    }
  }
  return results;
}
