// Authentication from the command line: `memipc server -Y FILE` refuses unauthenticated commands, reads the
// file again on SIGHUP and refuses a missing or malformed file at start-up; `memipc serve --auth-file`
// runs its own drainer, collector and dashboard logged in; `memipc log` logs in with MEMIPC_MEMCACHED_AUTH
// or --memcached-auth-file and fails with a clear message without them.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { RawSession } from "../helpers/raw-session.js";
import { Cli, run, startServe, waitFor } from "./run-cli.js";

const TEST_TIMEOUT_MS = 60_000;
const dir = mkdtempSync(join(tmpdir(), "memipc-auth-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Sends `bytes` on a new connection and returns the reply once it holds `lines` lines. */
async function exchange(port: number, bytes: string, lines = 1): Promise<string> {
  const session = await RawSession.open("127.0.0.1", port);
  try {
    await session.send(bytes);
    let reply = "";
    await waitFor(
      () => {
        reply += session.take().toString("latin1");
        return reply.split("\r\n").length > lines;
      },
      `${lines} reply lines to ${JSON.stringify(bytes)}`,
    );
    return reply;
  } finally {
    session.close();
  }
}

const login = (user: string, password: string) =>
  `set a 0 0 ${user.length + 1 + password.length}\r\n${user} ${password}\r\n`;

test(
  "memipc server -Y: unauthenticated commands are refused, SIGHUP reads the file again",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const file = join(dir, "server-auth");
    writeFileSync(file, "alice:secret\n");
    const cli = new Cli(t, ["server", "--port", "0", "-Y", file]);
    await cli.waitForOutput(
      (out) => /listening on \S+:\d+ .*authentication: 1 users/.test(out),
      "the server to listen",
    );
    const port = Number(/listening on \S+:(\d+)/.exec(cli.stdout)![1]);
    assert.equal(await exchange(port, "get a\r\n"), "CLIENT_ERROR unauthenticated\r\n");
    assert.equal(
      await exchange(port, login("alice", "secret") + "version\r\n", 2),
      "STORED\r\nVERSION 1.6.18\r\n",
    );
    writeFileSync(file, "bob:other\n");
    cli.child.kill("SIGHUP");
    await cli.waitForOutput((out) => out.includes("auth file reloaded"), "the reload");
    assert.equal(await exchange(port, login("bob", "other")), "STORED\r\n");
    assert.equal(await exchange(port, login("alice", "secret")), "CLIENT_ERROR authentication failure\r\n");
    // A broken file on reload keeps the users loaded before.
    writeFileSync(file, "bob:other\n\n");
    cli.child.kill("SIGHUP");
    await waitFor(() => cli.stderr.includes("the users loaded before stay"), "the reload error");
    assert.equal(await exchange(port, login("bob", "other")), "STORED\r\n");
    cli.child.kill("SIGTERM");
    assert.equal((await cli.finished()).code, 0);
  },
);

test(
  "memipc server -Y: a missing or malformed auth file stops start-up with a message",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const blank = join(dir, "blank-line");
    writeFileSync(blank, "alice:secret\n\nbob:x\n");
    const cases: Array<[string, RegExp]> = [
      [join(dir, "missing"), /auth file .*missing cannot be read \(ENOENT\)/],
      [blank, /line 2 is not user:password/],
    ];
    for (const [file, message] of cases) {
      const finished = await run(t, ["server", "--port", "0", "--auth-file", file]);
      assert.equal(finished.code, 2, finished.stderr);
      assert.match(finished.stderr, message);
    }
  },
);

test(
  "memipc serve --auth-file: its drainer, collector and dashboard log in; memipc log needs credentials",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const file = join(dir, "serve-auth");
    writeFileSync(file, "daemon:d43m0n\nweb:w3b-node\n");
    const data = join(dir, "data");
    const serve = await startServe(t, ["--data-dir", data, "--auth-file", file, "--tz", "UTC"]);
    const refused = await run(t, ["log", "--memcached", serve.memcached, "no credentials"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /requires authentication/);
    const wrong = await run(t, ["log", "--memcached", serve.memcached, "wrong"], {
      MEMIPC_MEMCACHED_AUTH: "web:nope",
    });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /refused the credentials of user "web"/);
    assert.ok(!wrong.stderr.includes("nope"), "the password is shown");
    const credentials = join(dir, "web-credentials");
    writeFileSync(credentials, "web:w3b-node\n");
    for (const [i, env, args] of [
      [0, { MEMIPC_MEMCACHED_AUTH: "web:w3b-node" }, []],
      [1, {}, ["--memcached-auth-file", credentials]],
      [2, { MEMIPC_MEMCACHED_AUTH_FILE: credentials }, []],
    ] as const) {
      const logged = await run(t, ["log", "--memcached", serve.memcached, ...args, `entry ${i}`], env);
      assert.equal(logged.code, 0, logged.stderr);
    }
    const logs = join(data, "logs");
    const lines = (): string[] =>
      existsSync(logs)
        ? readdirSync(logs)
            .filter((f) => f.startsWith("log-"))
            .flatMap((f) => readFileSync(join(logs, f), "utf8").split("\n").filter(Boolean))
        : [];
    await waitFor(() => lines().length === 3, "the three entries drained to the log files");
    const metrics = await (await fetch(`${serve.dashboard}/metrics`)).text();
    assert.match(metrics, /^memipc_memcached_up\{[^}]*\} 1$/m, metrics);
    serve.cli.child.kill("SIGTERM");
    const finished = await serve.cli.finished();
    assert.equal(finished.code, 0, finished.stderr);
    assert.ok(
      !/EAUTH|authentication/i.test(finished.stderr.replace(/embedded server on .*\n/, "")),
      finished.stderr,
    );
    assert.ok(existsSync(join(data, "stats.db")), "the collector made its database");
  },
);
