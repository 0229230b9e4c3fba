// Starts and stops a real memcached process for differential tests, and decides what a test does
// when the binary is not installed (skip on a developer's machine, fail in CI).
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { createConnection, createServer } from "node:net";
import { delimiter, join } from "node:path";
import type { TestContext } from "node:test";

export const MEMCACHED_INSTALL_HINT = "install Debian's memcached: apt-get install -y memcached";
const START_TIMEOUT_MS = 5000; // how long memcached may take to accept its first connection
const STOP_TIMEOUT_MS = 3000; // how long a SIGTERM may take before SIGKILL
const PORT_ATTEMPTS = 5; // a free port can be taken by someone else between probe and bind
const FIXED_PORT_WAIT_MS = 10_000; // how long a given port may stay taken (by a memcached just killed)

export interface RealMemcachedOptions {
  /**
   * The port to listen on (e.g. where one was just killed), waited for while it is still taken; a free one
   * when absent.
   */
  port?: number;
  /** Item memory in megabytes (memcached's -m); memcached's default 64 when absent. */
  memoryMb?: number;
  /** Largest item, as memcached's -I takes it ("1m", "512k"); memcached's default 1m when absent. */
  maxItemSize?: string;
  /** More command-line arguments, passed as they are. */
  extraArgs?: string[];
}

export interface RealMemcached {
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  /** Sends SIGTERM to this process only and waits for it to exit. */
  stop(): Promise<void>;
  /** Sends `signal` (SIGKILL: a crash) to this process only and waits for it to exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

/** The memcached binary: $MEMCACHED_BIN, else the first `memcached` on PATH, else undefined. */
export function memcachedBinary(): string | undefined {
  const candidates = process.env.MEMCACHED_BIN
    ? [process.env.MEMCACHED_BIN]
    : [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), "/usr/bin", "/usr/local/bin"].map(
        (dir) => join(dir, "memcached"),
      );
  return candidates.find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function memcachedAvailable(): boolean {
  return memcachedBinary() !== undefined;
}

/**
 * Call first in a test that needs real memcached. Returns true when it is installed. When it is
 * missing, a CI run (CI=true) fails with the install hint, and any other run skips the test.
 */
export function requireMemcached(t: TestContext): boolean {
  if (memcachedAvailable()) return true;
  const message = `memcached binary not found on PATH (or $MEMCACHED_BIN): ${MEMCACHED_INSTALL_HINT}`;
  if (process.env.CI === "true") throw new Error(message);
  t.skip(message);
  return false;
}

export async function startRealMemcached(options: RealMemcachedOptions = {}): Promise<RealMemcached> {
  const binary = memcachedBinary();
  if (binary === undefined) throw new Error(`memcached binary not found: ${MEMCACHED_INSTALL_HINT}`);
  if (options.port !== undefined) return startOnFixedPort(binary, options.port, options);
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = await freePort();
    try {
      return await startOn(binary, port, options);
    } catch (error) {
      if (!(error instanceof PortTakenError)) throw error;
      lastError = error;
    }
  }
  throw new Error(`memcached could not bind a free port in ${PORT_ATTEMPTS} attempts`, { cause: lastError });
}

async function startOnFixedPort(
  binary: string,
  port: number,
  options: RealMemcachedOptions,
): Promise<RealMemcached> {
  const deadline = Date.now() + FIXED_PORT_WAIT_MS;
  for (;;) {
    try {
      return await startOn(binary, port, options);
    } catch (error) {
      if (!(error instanceof PortTakenError) || Date.now() > deadline) {
        throw new Error(`memcached could not start on port ${port}`, { cause: error });
      }
    }
    await sleep(100);
  }
}

class PortTakenError extends Error {}

// Processes started here and not yet stopped: killed (each by its own PID) if the test process exits
// without stopping them, so a crashed test run leaves no memcached behind.
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

function memcachedArgs(port: number, options: RealMemcachedOptions): string[] {
  const args = ["-l", "127.0.0.1", "-p", String(port), "-U", "0"];
  if (options.memoryMb !== undefined) args.push("-m", String(options.memoryMb));
  if (options.maxItemSize !== undefined) args.push("-I", options.maxItemSize);
  const extra = options.extraArgs ?? [];
  // memcached refuses to run as root unless told which user to become.
  if (process.getuid?.() === 0 && !extra.includes("-u")) args.push("-u", "root");
  return [...args, ...extra];
}

async function startOn(binary: string, port: number, options: RealMemcachedOptions): Promise<RealMemcached> {
  const child = spawn(binary, memcachedArgs(port, options), { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    if (stderr.length < 4096) stderr += chunk;
  });
  running.add(child);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      running.delete(child);
      resolve();
    }),
  );
  const spawnError = new Promise<never>((_, reject) => child.once("error", reject));
  spawnError.catch(() => undefined);
  const pid = child.pid;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      // Its last words may still be in the pipe.
      const pipe = child.stderr;
      if (pipe && !pipe.closed)
        await Promise.race([new Promise((resolve) => pipe.once("close", resolve)), sleep(200)]);
      if (/address already in use/i.test(stderr)) throw new PortTakenError(stderr.trim());
      throw new Error(
        `memcached exited at start-up (${child.exitCode ?? child.signalCode}): ${stderr.trim()}`,
      );
    }
    if (pid !== undefined && (await accepts(port))) break;
    if (Date.now() > deadline) {
      await stopChild(child, exited);
      throw new Error(`memcached on port ${port} did not accept a connection within ${START_TIMEOUT_MS} ms`);
    }
    await Promise.race([sleep(20), spawnError]);
  }
  return {
    host: "127.0.0.1",
    port,
    pid: pid!,
    stop: () => stopChild(child, exited),
    kill: async (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** A port that was free a moment ago: bind port 0 on loopback, read it, close. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
