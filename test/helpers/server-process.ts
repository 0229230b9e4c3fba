// `memipc server` as a child process, for tests that measure it from outside: resident memory and open file
// descriptors from /proc, replies over real sockets, and a pipelining writer that respects backpressure.
import { spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import type { TestContext } from "node:test";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const LISTENING = /memipc server listening on (\S+):(\d+) /;
const START_TIMEOUT_MS = 10_000; // the child prints its address within this
const STOP_TIMEOUT_MS = 5_000; // a SIGTERM that has not ended it by then is followed by SIGKILL
const REPLY_TIMEOUT_MS = 30_000; // a pipelined batch on a loaded machine has been answered by then

export const MiB = 1024 * 1024;

export interface ServerProcess {
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  /** Resident memory now (VmRSS), in bytes. */
  rss(): number;
  /** The most resident memory so far (VmHWM), in bytes. */
  peakRss(): number;
  /** File descriptors the process holds open. */
  openFds(): number;
  /** True while the process runs. */
  readonly running: boolean;
  /** Sends SIGTERM to this process only and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts `memipc server --port 0 ARGS…` on loopback; killed (this PID only) when the test ends. */
export async function startServerProcess(t: TestContext, args: readonly string[]): Promise<ServerProcess> {
  // MEMIPC_* variables of the caller must not change what the test runs.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("MEMIPC_")));
  const child = spawn(process.execPath, [MAIN, "server", "--listen", "127.0.0.1", "--port", "0", ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const running = () => child.exitCode === null && child.signalCode === null;
  t.after(async () => {
    if (running()) child.kill("SIGKILL");
    await exited;
  });
  const deadline = Date.now() + START_TIMEOUT_MS;
  let match: RegExpExecArray | null;
  while ((match = LISTENING.exec(stdout)) === null) {
    if (!running()) throw new Error(`memipc server exited at start-up: ${stderr.trim()}`);
    if (Date.now() > deadline)
      throw new Error(`memipc server printed no address within ${START_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const pid = child.pid!;
  return {
    host: match[1]!,
    port: Number(match[2]),
    pid,
    rss: () => statusField(pid, "VmRSS"),
    peakRss: () => statusField(pid, "VmHWM"),
    openFds: () => readdirSync(`/proc/${pid}/fd`).length,
    get running() {
      return running();
    },
    async stop() {
      if (!running()) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A memory figure of /proc/PID/status, in bytes. */
function statusField(pid: number, name: string): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
  if (!match) throw new Error(`/proc/${pid}/status has no ${name}`);
  return Number(match[1]) * 1024;
}

/**
 * A client connection that writes batches of requests as fast as the server takes them and collects the
 * replies; `sync` ends a batch with `mn` and waits for its `MN`.
 */
export class Pipe {
  readonly socket: Socket;
  #received: Buffer[] = [];
  #size = 0;
  #closed = false;
  #wake: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#received.push(chunk);
      this.#size += chunk.length;
      this.#wake?.();
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  static open(port: number, host = "127.0.0.1"): Promise<Pipe> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host, port });
      socket.setNoDelay(true);
      socket.once("connect", () => resolve(new Pipe(socket)));
      socket.once("error", reject);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Writes, waiting for drain when the socket's buffer is full. */
  async write(bytes: Buffer | string): Promise<void> {
    if (this.#closed) throw new Error("the server closed the connection");
    if (!this.socket.write(bytes)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.socket.off("drain", done);
          this.socket.off("close", done);
          resolve();
        };
        this.socket.once("drain", done);
        this.socket.once("close", done);
      });
    }
  }

  /** Everything received since the last take. */
  take(): Buffer {
    const bytes = Buffer.concat(this.#received, this.#size);
    this.#received = [];
    this.#size = 0;
    return bytes;
  }

  /** Waits until the received bytes end with `suffix` and returns them (taken). */
  async until(suffix: string, timeoutMs = REPLY_TIMEOUT_MS): Promise<string> {
    const tail = Buffer.from(suffix, "latin1");
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#received.length > 1) this.#received = [Buffer.concat(this.#received, this.#size)];
      const got = this.#received[0] ?? Buffer.alloc(0);
      if (got.length >= tail.length && got.subarray(-tail.length).equals(tail))
        return this.take().toString("latin1");
      if (this.#closed) throw new Error(`closed while waiting for ${JSON.stringify(suffix)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${JSON.stringify(suffix)} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** Sends `mn` and waits for every reply before its `MN`; returns them (without the `MN`). */
  async sync(timeoutMs = REPLY_TIMEOUT_MS): Promise<string> {
    await this.write("mn\r\n");
    const text = await this.until("MN\r\n", timeoutMs);
    return text.slice(0, -4);
  }

  /** `stats` as a map of name to value. */
  async stats(): Promise<Map<string, string>> {
    await this.write("stats\r\n");
    const stats = new Map<string, string>();
    for (const row of (await this.until("END\r\n")).split("\r\n")) {
      const match = /^STAT (\S+) (.*)$/.exec(row);
      if (match) stats.set(match[1]!, match[2]!);
    }
    return stats;
  }

  close(): void {
    this.socket.destroy();
  }
}
