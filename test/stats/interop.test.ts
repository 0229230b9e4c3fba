// Counting from another language: the Python (pymemcache) example of docs/PROTOCOL.md, run as printed there
// (with 1 s buckets), counts from two processes while memipc's own writer counts the same names; the
// collector stores exactly the sum, and the index lists each name once. Run against the embedded server and
// real memcached.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { Collector } from "../../src/stats/collector.js";
import { bucketStart, indexKey } from "../../src/stats/layout.js";
import { StatsWriter } from "../../src/stats/writer.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { requirePymemcache, runProgram } from "../helpers/run-program.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const PROTOCOL_DOC = join(ROOT, "docs", "PROTOCOL.md");
const ROUNDS = 300; // each Python process counts accounts.created ROUNDS times and posts.published 2 × ROUNDS
const SCRIPT_TIMEOUT_MS = 60_000;

/** The Python counting example of docs/PROTOCOL.md, pointed at `server`, with 1 s buckets and a loop. */
function documentedExample(server: RunningServer, namespace: string): string {
  const doc = readFileSync(PROTOCOL_DOC, "utf8");
  const at = doc.indexOf("Python (pymemcache), counting one new account:");
  const block = /```python\n([\s\S]*?)```/.exec(doc.slice(at))?.[1];
  assert.ok(at >= 0 && block !== undefined, "docs/PROTOCOL.md has no Python counting example");
  const replacements: Array<[string, string]> = [
    ['("127.0.0.1", 11211)', `(${JSON.stringify(server.host)}, ${server.port})`],
    ["SIZE, TTL = 60,", "SIZE, TTL = 1,"],
    ['f"memipc:st:', `f"${namespace}:st:`],
    [
      'count("accounts.created")\n',
      `for i in range(${ROUNDS}):\n    count("accounts.created")\n    count("posts.published", 2)\n`,
    ],
  ];
  let code = block;
  for (const [from, to] of replacements) {
    assert.ok(code.includes(from), `the Python counting example in docs/PROTOCOL.md no longer has ${from}`);
    code = code.replace(from, () => to);
  }
  return code;
}

for (const target of TARGETS) {
  describe(`stats from Python and memipc at once (${target.name})`, () => {
    let server: RunningServer | undefined;
    let client: Client;
    let dir: string;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "memipc-stats-interop-"));
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
      if (server) client = new Client({ servers: `127.0.0.1:${server.port}` });
    });
    after(async () => {
      client?.close();
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("stats: counts from the documented Python example and memipc's writer are collected exactly, each name listed once", async (t) => {
      if (!server) return void requireMemcached(t);
      const python = requirePymemcache(t);
      if (python === undefined) return;
      const namespace = `si${Date.now().toString(36)}`;
      const script = join(dir, "count.py");
      writeFileSync(script, documentedExample(server, namespace));
      const began = Date.now();
      const writer = new StatsWriter(client, { namespace, bucketSeconds: 1 });
      const ours = (async () => {
        for (let i = 0; i < ROUNDS; i++) {
          await Promise.all([writer.incr("accounts.created"), writer.incr("posts.published", 2)]);
          await sleep(1);
        }
      })();
      const run = () => runProgram(python, [script], { timeoutMs: SCRIPT_TIMEOUT_MS, what: "count.py" });
      await Promise.all([run(), run(), ours]);
      const ended = Date.now();
      await sleep(2100); // the last bucket closes, its grace (1 s) passes
      const db = StatsDb.open(join(dir, `${namespace}.db`));
      const collector = new Collector(client, db, {
        namespace,
        bucketSeconds: 1,
        grace: 1,
        lookback: 600,
        lease: false,
      });
      await collector.collectOnce();
      const totals = new Map<string, number>();
      for (const row of db.counters(0, 2 ** 40))
        totals.set(row.name, (totals.get(row.name) ?? 0) + row.value);
      assert.deepEqual(Object.fromEntries(totals), {
        "accounts.created": 3 * ROUNDS,
        "posts.published": 3 * 2 * ROUNDS,
      });
      // Each bucket's index lists each name about once (racing first writers may both list it).
      const address = { namespace, bucketSeconds: 1 };
      let buckets = 0;
      for (let s = bucketStart(address, began); s <= bucketStart(address, ended); s++) {
        const index = (await client.get(indexKey(address, s)))?.value.toString();
        if (index === undefined) continue;
        buckets++;
        const entries = index.split(" ").filter((e) => e !== "");
        for (const name of ["c:accounts.created", "c:posts.published"]) {
          const n = entries.filter((e) => e === name).length;
          assert.ok(n >= 1 && n <= 3, `${name} listed ${n} times in bucket ${s}`);
        }
      }
      assert.ok(buckets >= 1);
      db.close();
    });
  });
}
