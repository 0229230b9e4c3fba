// `memipc server` as a user runs it: a child process that says where it listens, serves, stops cleanly
// on SIGTERM, and refuses bad flags with a message (not a stack trace) and a non-zero exit code.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createConnection } from "node:net";
import { fileURLToPath } from "node:url";
import { startServer } from "../../src/server/index.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const START_TIMEOUT_MS = 10_000; // the child prints its address within this
const EXIT_TIMEOUT_MS = 10_000; // a command that should end has ended by then
const TEST_TIMEOUT_MS = 30_000;
const LISTENING = /memipc server listening on (\S+):(\d+) /;

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A running `memipc` child whose output is collected; killed (this PID only) when the test ends. */
class Cli {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<Finished>;

  constructor(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}) {
    // The environment is given in full: MEMIPC_* variables of the caller must not leak into the test.
    const base = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith("MEMIPC_")),
    );
    this.child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...base, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (this.stdout += chunk));
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => {
      this.child.once("close", (code, signal) =>
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr }),
      );
    });
    t.after(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    });
  }

  /** Waits for the child to exit by itself. */
  async finished(): Promise<Finished> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill("SIGKILL");
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

  /** Waits for the line that says where the server listens. */
  async listening(): Promise<{ host: string; port: number }> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const match = LISTENING.exec(this.stdout);
      if (match) return { host: match[1]!, port: Number(match[2]) };
      if (this.child.exitCode !== null) throw new Error(`memipc exited early: ${this.stderr}`);
      if (Date.now() > deadline)
        throw new Error(`memipc printed no address within ${START_TIMEOUT_MS} ms: ${this.stdout}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

async function run(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Finished> {
  return new Cli(t, args, env).finished();
}

/** Sends one request and reads until the reply ends with `suffix`, the server closes, or time runs out. */
function ask(port: number, request: string, suffix: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let reply = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no reply ending ${JSON.stringify(suffix)} within 5 s; got ${JSON.stringify(reply)}`));
    }, 5000);
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      reply += chunk;
      if (reply.endsWith(suffix)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(reply);
      }
    });
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.write(request);
  });
}

/** Resolves with the error code when nothing accepts connections on the port. */
function refused(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      reject(new Error(`port ${port} still accepts connections`));
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
  });
}

test(
  "memipc server prints where it listens, answers, and stops cleanly on SIGTERM",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const cli = new Cli(t, ["server", "--port", "0", "--listen", "127.0.0.1", "--memory", "8m"]);
    const { host, port } = await cli.listening();
    assert.equal(host, "127.0.0.1");
    assert.ok(port > 0 && port < 65536, `port ${port}`);
    assert.match(cli.stdout, /memory 8m, max item 1m/);

    assert.match(await ask(port, "version\r\n", "\r\n"), /^VERSION \S+\r\n$/);
    const settings = await ask(port, "stats settings\r\n", "END\r\n");
    assert.match(settings, /^STAT maxbytes 8388608\r$/m, "--memory 8m is the memory limit");
    assert.equal(
      await ask(port, "set k 0 0 2\r\nhi\r\nget k\r\n", "END\r\n"),
      "STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n",
    );

    // A client still connected must not keep the process alive.
    const client = createConnection({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => {
      client.once("connect", resolve);
      client.once("error", reject);
    });
    const clientClosed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    client.on("error", () => undefined);

    assert.ok(cli.child.kill("SIGTERM"), "SIGTERM delivered to this child");
    const finished = await cli.finished();
    assert.equal(finished.signal, null, "the process exits by itself, not by the signal");
    assert.equal(finished.code, 0);
    assert.match(finished.stdout, /memipc server stopping/);
    assert.equal(finished.stderr, "");
    await clientClosed;
    assert.equal(await refused(port), "ECONNREFUSED", "nothing listens on the port afterwards");
  },
);

test("memipc server: flags beat environment variables", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const cli = new Cli(t, ["server", "--port", "0", "--memory", "16m"], {
    MEMIPC_MEMORY: "lots",
    MEMIPC_LISTEN: "127.0.0.1",
  });
  const { host, port } = await cli.listening();
  assert.equal(host, "127.0.0.1");
  assert.match(await ask(port, "stats settings\r\n", "END\r\n"), /^STAT maxbytes 16777216\r$/m);
  cli.child.kill("SIGTERM");
  assert.equal((await cli.finished()).code, 0);
});

const BAD_FLAGS: { args: string[]; message: RegExp }[] = [
  { args: ["--memory", "lots"], message: /--memory "lots" is not a size/ },
  { args: ["--port", "70000"], message: /port 70000 is not a TCP port/ },
  { args: ["--port", "abc"], message: /--port "abc" is not a whole number/ },
  { args: ["--max-item-size", "2g", "--memory", "64m"], message: /max item size \d+ bytes is out of range/ },
  { args: ["--max-item-size", "128m", "--memory", "64m"], message: /smaller than the max item size/ },
  { args: ["--bogus"], message: /--bogus/ },
];

for (const { args, message } of BAD_FLAGS) {
  test(
    `memipc server ${args.join(" ")}: exits non-zero with a clear message`,
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const finished = await run(t, ["server", "--port", "0", ...args]);
      assert.notEqual(finished.code, 0);
      assert.match(finished.stderr, /^memipc: /, "the message names the program");
      assert.match(finished.stderr, message);
      assert.doesNotMatch(finished.stderr, /^\s+at /m, "no stack trace");
      assert.doesNotMatch(finished.stdout, /listening/, "nothing was started");
    },
  );
}

test(
  "memipc server on a port in use: exits non-zero and says so",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const taken = await startServer({ host: "127.0.0.1", port: 0 });
    t.after(() => taken.close());
    const finished = await run(t, ["server", "--listen", "127.0.0.1", "--port", String(taken.port)]);
    assert.notEqual(finished.code, 0);
    assert.match(finished.stderr, new RegExp(`127\\.0\\.0\\.1:${taken.port} is already in use`));
    assert.doesNotMatch(finished.stderr, /^\s+at /m);
  },
);

test("memipc --help lists the commands", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const finished = await run(t, ["--help"]);
  assert.equal(finished.code, 0);
  assert.match(finished.stdout, /^Usage: memipc <command>/);
  assert.match(finished.stdout, /^ {2}server +run the embedded memcached-compatible server$/m);
  assert.equal(finished.stderr, "");
});

test("memipc server --help shows the server's options", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const finished = await run(t, ["server", "--help"]);
  assert.equal(finished.code, 0);
  assert.match(finished.stdout, /^Usage: memipc server/);
  for (const flag of [
    "--listen",
    "--port",
    "--memory",
    "--max-item-size",
    "--max-connections",
    "--idle-timeout",
  ]) {
    assert.ok(finished.stdout.includes(flag), `help mentions ${flag}`);
  }
  assert.equal(finished.stderr, "");
});

test(
  "memipc without a command, or with an unknown one, shows usage and exits 2",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const bare = await run(t, []);
    assert.equal(bare.code, 2);
    assert.match(bare.stdout, /^Usage: memipc <command>/);
    const unknown = await run(t, ["frobnicate"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
  },
);
