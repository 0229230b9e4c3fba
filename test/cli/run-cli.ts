// Runs the built `memipc` command as a child process, as a user would, and cleans it up (this PID only).
import type { TestContext } from "node:test";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { WAIT_TIMEOUT_MS, waitFor } from "../helpers/wait.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
export const EXIT_TIMEOUT_MS = 15_000; // a command that should end has ended by then

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A stream name no other test uses. */
export function randomName(prefix = "t"): string {
  return `${prefix}${randomBytes(5).toString("hex")}`;
}

/** A running `memipc` child whose output is collected; SIGKILLed when the test ends if still running. */
export class Cli {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<Finished>;

  constructor(t: TestContext, args: string[], options: { env?: NodeJS.ProcessEnv; stdin?: "pipe" } = {}) {
    // The environment is given in full: MEMIPC_* variables of the caller must not leak into the test.
    const base = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith("MEMIPC_")),
    );
    this.child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...base, ...options.env },
      stdio: [options.stdin ?? "ignore", "pipe", "pipe"],
    });
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (this.stdout += chunk));
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.stderr += chunk));
    this.child.stdin?.on("error", () => undefined); // the child may exit before reading everything
    this.exited = new Promise((resolve) => {
      this.child.once("close", (code, signal) =>
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr }),
      );
    });
    t.after(() => this.kill());
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(): void {
    if (this.running) this.child.kill("SIGKILL");
  }

  /** Waits for the child to exit by itself (SIGKILLs it and fails after EXIT_TIMEOUT_MS). */
  async finished(): Promise<Finished> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill();
        reject(
          new Error(
            `memipc did not exit within ${EXIT_TIMEOUT_MS} ms; stdout ${this.stdout} stderr ${this.stderr}`,
          ),
        );
      }, EXIT_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits until stdout satisfies `test` (fails after WAIT_TIMEOUT_MS, or if the child exits first). */
  async waitForOutput(test: (stdout: string) => boolean, what: string): Promise<void> {
    await waitFor(() => {
      if (test(this.stdout)) return true;
      if (!this.running) throw new Error(`memipc exited before ${what}: ${this.stderr}`);
      return false;
    }, what);
  }
}

/** Runs `memipc args…` to its end. */
export function run(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Finished> {
  return new Cli(t, args, { env }).finished();
}

export { waitFor, WAIT_TIMEOUT_MS };

/** A running `memipc serve` on free ports, with where its embedded server and dashboard listen. */
export interface RunningServe {
  cli: Cli;
  /** host:port of the embedded server. */
  memcached: string;
  /** The dashboard's base URL. */
  dashboard: string;
}

/** Starts `memipc serve --port 0 --http-port 0 ARGS…` and waits until it is ready. */
export async function startServe(t: TestContext, args: string[]): Promise<RunningServe> {
  const cli = new Cli(t, ["serve", "--port", "0", "--http-port", "0", ...args]);
  await waitFor(() => cli.stderr.includes("ready"), "memipc serve to be ready");
  return {
    cli,
    memcached: `127.0.0.1:${/embedded server on 127\.0\.0\.1:(\d+)/.exec(cli.stderr)![1]!}`,
    dashboard: /dashboard on (http:\/\/\S+)/.exec(cli.stderr)![1]!,
  };
}

/** A running `memipc demo`, with the URLs it printed. */
export interface RunningDemo {
  cli: Cli;
  proxy: string;
  jobPage: string;
}

/** Starts `memipc demo --memcached M --namespace NS --port 0 ARGS…` and waits for its URLs. */
export async function startDemo(
  t: TestContext,
  serve: RunningServe,
  namespace: string,
  args: string[],
): Promise<RunningDemo> {
  const cli = new Cli(t, [
    "demo",
    "--memcached",
    serve.memcached,
    "--namespace",
    namespace,
    "--http",
    serve.dashboard,
    "--port",
    "0",
    ...args,
  ]);
  await cli.waitForOutput((out) => out.includes("Ctrl-C stops it."), "the demo's URLs");
  return {
    cli,
    proxy: /proxy\s+(http:\/\/\S+)/.exec(cli.stdout)![1]!,
    jobPage: /report job\s+(http:\/\/\S+)/.exec(cli.stdout)![1]!,
  };
}
