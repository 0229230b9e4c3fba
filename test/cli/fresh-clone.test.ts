// A newcomer's first minutes: a fresh clone of the repository, `npm install`, then `npm start`: the daemon
// comes up and answers on both ports (memcached and the dashboard), and stops on SIGTERM.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { waitFor } from "./run-cli.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const INSTALL_TIMEOUT_MS = 5 * 60_000;
const START_TIMEOUT_MS = 90_000; // npm start builds first
const dir = mkdtempSync(join(tmpdir(), "memipc-clone-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test(
  "fresh clone: npm install then npm start serves memcached and the dashboard, and stops on SIGTERM",
  { timeout: INSTALL_TIMEOUT_MS + START_TIMEOUT_MS + 30_000 },
  async (t) => {
    const clone = join(dir, "memipc");
    await run("git", ["clone", "--quiet", "--no-hardlinks", ROOT, clone]);
    await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], {
      cwd: clone,
      timeout: INSTALL_TIMEOUT_MS,
      maxBuffer: 64 * 1024 * 1024,
    });
    // Free ports instead of 11211 and 8080 (which may be in use here), through the documented variables.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("MEMIPC_")));
    // npm runs the daemon under a shell of its own: a process group lets the test signal all three.
    const start = spawn("npm", ["start"], {
      cwd: clone,
      env: { ...env, MEMIPC_PORT: "0", MEMIPC_HTTP_PORT: "0" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let output = "";
    start.stdout.setEncoding("utf8").on("data", (c: string) => (output += c));
    start.stderr.setEncoding("utf8").on("data", (c: string) => (output += c));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      start.once("close", (code, signal) => resolve({ code, signal })),
    );
    t.after(() => {
      if (start.exitCode === null) process.kill(-start.pid!, "SIGKILL");
    });
    await waitFor(() => output.includes("ready"), "npm start to report ready", START_TIMEOUT_MS);
    const port = Number(/embedded server on 127\.0\.0\.1:(\d+)/.exec(output)?.[1]);
    const url = /dashboard on (http:\/\/\S+)/.exec(output)?.[1];
    assert.ok(port > 0 && url !== undefined, output);

    assert.match(await memcachedCommand(port, "version\r\n"), /^VERSION \S+\r\n$/);
    const page = await fetch(`${url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>Overview · memipc<\/title>/);
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);

    process.kill(-start.pid!, "SIGTERM");
    const { code, signal } = await exited;
    // npm itself may end by the signal; the daemon under it must have stopped cleanly.
    assert.ok(code === 0 || signal === "SIGTERM", `npm start ended with ${code ?? signal}: ${output}`);
    assert.match(output, /memipc serve: stopped/);
  },
);

/** Sends one command over a raw socket and resolves with the first reply line. */
function memcachedCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(command));
    let reply = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      reply += chunk;
      if (reply.endsWith("\r\n")) {
        socket.end();
        resolve(reply);
      }
    });
    socket.on("error", reject);
  });
}
