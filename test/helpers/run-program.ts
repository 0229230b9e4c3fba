// Runs another program (a Python or Perl script) to its end, for tests that check memipc against clients in
// other languages.
import { spawn, spawnSync } from "node:child_process";
import type { TestContext } from "node:test";

/** Resolves with what the program printed; rejects, with its stderr, if it fails or outlives `timeoutMs`. */
export function runProgram(
  command: string,
  args: readonly string[],
  options: { input?: string; timeoutMs: number; what: string },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      timeout: options.timeoutMs,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr!.on("data", (chunk: Buffer) => err.push(chunk));
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code !== 0) {
        const why = signal ?? `exit ${code}`;
        reject(new Error(`${options.what} failed (${why}): ${Buffer.concat(err).toString("utf8").trim()}`));
        return;
      }
      resolve(Buffer.concat(out).toString("utf8"));
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

/** True when `command args…` runs and exits 0 within 10 s. */
export const works = (command: string, args: string[]): boolean =>
  spawnSync(command, args, { stdio: "ignore", timeout: 10_000 }).status === 0;

/** A Python 3 that can import pymemcache: $PYMEMCACHE_PYTHON, Debian's /usr/bin/python3, or python3 on PATH. */
export function pymemcachePython(): string | undefined {
  const candidates = [process.env.PYMEMCACHE_PYTHON, "/usr/bin/python3", "python3"];
  return candidates.find((python) => python && works(python, ["-c", "import pymemcache"]));
}

/** pymemcachePython(), or undefined after failing the test under CI=true or skipping it elsewhere. */
export function requirePymemcache(t: TestContext): string | undefined {
  const python = pymemcachePython();
  if (python !== undefined) return python;
  const message = "Python's pymemcache is not installed: apt-get install -y python3-pymemcache";
  if (process.env.CI === "true") throw new Error(message);
  t.skip(message);
  return undefined;
}
