// A job published from Python: the pymemcache example of docs/PROTOCOL.md, run as printed there (shorter
// steps), is read, listed, watched and cancelled through memipc's reader. Embedded server and real memcached.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { Progress, type JobView } from "../../src/progress/progress.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { requirePymemcache, runProgram } from "../helpers/run-program.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const PROTOCOL_DOC = join(ROOT, "docs", "PROTOCOL.md");

/** The Python job example of docs/PROTOCOL.md, pointed at `server`, in `namespace`, as job `id`. */
function documentedExample(server: RunningServer, namespace: string, id: string): string {
  const doc = readFileSync(PROTOCOL_DOC, "utf8");
  const at = doc.indexOf("Python (pymemcache), a job of 100 steps:");
  const block = /```python\n([\s\S]*?)```/.exec(doc.slice(at))?.[1];
  assert.ok(at >= 0 && block !== undefined, "docs/PROTOCOL.md has no Python job example");
  let code = block;
  for (const [from, to] of [
    ['("127.0.0.1", 11211)', `(${JSON.stringify(server.host)}, ${server.port})`],
    ['NS, TTL, JOB = "memipc", 24 * 3600, "export-42"', `NS, TTL, JOB = "${namespace}", 24 * 3600, "${id}"`],
    ["time.sleep(0.05)", "time.sleep(0.02)"],
  ] as const) {
    assert.ok(code.includes(from), `the Python job example in docs/PROTOCOL.md no longer has ${from}`);
    code = code.replace(from, () => to);
  }
  return code;
}

for (const target of TARGETS) {
  describe(`progress from Python (${target.name})`, () => {
    let server: RunningServer | undefined;
    let client: Client;
    let dir: string;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "memipc-progress-interop-"));
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
      if (server) client = new Client({ servers: `127.0.0.1:${server.port}` });
    });
    after(async () => {
      client?.close();
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("progress: the documented Python job is watched to done and listed; a second one stops when cancelled", async (t) => {
      if (!server) return void requireMemcached(t);
      const python = requirePymemcache(t);
      if (python === undefined) return;
      const namespace = `pi${Date.now().toString(36)}`;
      const progress = new Progress(client, { namespace });
      const run = (id: string) => {
        const script = join(dir, `${id}.py`);
        writeFileSync(script, documentedExample(server!, namespace, id));
        return runProgram(python, [script], { timeoutMs: 60_000, what: `${id}.py` });
      };
      const watchUntilEnd = async (id: string, onRunning?: () => Promise<void>): Promise<JobView[]> => {
        // The job may not exist for a moment after the script starts.
        const deadline = Date.now() + 10_000;
        while ((await progress.get(id)) === undefined && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
        const seen: JobView[] = [];
        for await (const job of progress.watch(id, { interval: 50 })) {
          seen.push(job);
          if (job.state === "running" && job.done >= 5 && onRunning) {
            const act = onRunning;
            onRunning = undefined;
            await act();
          }
        }
        return seen;
      };
      const [, seen] = await Promise.all([run("py-done"), watchUntilEnd("py-done")]);
      const last = seen[seen.length - 1]!;
      assert.equal(last.state, "done");
      assert.equal(last.done, 100);
      assert.deepEqual(last.result, { steps: 100 });
      assert.ok(
        seen.some((j) => j.state === "running" && j.done < 100),
        "seen while running",
      );
      assert.ok(seen.every((j, i) => i === 0 || j.version > seen[i - 1]!.version));

      const [, cancelled] = await Promise.all([
        run("py-cancel"),
        watchUntilEnd("py-cancel", async () => assert.equal(await progress.cancel("py-cancel"), true)),
      ]);
      const end = cancelled[cancelled.length - 1]!;
      assert.equal(end.state, "cancelled");
      assert.ok(end.done < 100);
      assert.deepEqual(
        (await progress.list()).map((j) => [j.id, j.state]),
        [
          ["py-cancel", "cancelled"],
          ["py-done", "done"],
        ],
      );
    });
  });
}
