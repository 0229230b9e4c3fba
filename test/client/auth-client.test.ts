// The client's side of memcached's `-Y` authentication, against the embedded server with an auth file and
// real memcached with the same file: producers, the drainer and the collector log in and work; wrong or
// missing credentials fail with AuthenticationError (EAUTH) at once, without the password in any message; a
// new connection after a drop logs in again; Python's pymemcache logs in with a plain set.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { AuthenticationError, ConfigError } from "../../src/errors.js";
import { LogProducer } from "../../src/log/producer.js";
import { StatsDb } from "../../src/sinks/stats-db.js";
import { Collector } from "../../src/stats/collector.js";
import { StatsWriter } from "../../src/stats/writer.js";
import { startServer } from "../../src/server/index.js";
import { drainToFiles } from "../helpers/log-files.js";
import { memcachedAvailable, requireMemcached, startRealMemcached } from "../helpers/real-memcached.js";
import { requirePymemcache, runProgram } from "../helpers/run-program.js";
import { waitFor } from "../helpers/wait.js";

const PASSWORD = "s3cret-" + randomBytes(6).toString("hex");
const ALICE = { username: "alice", password: PASSWORD };
const ENTRIES = 200;
const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);

interface Backend {
  name: string;
  real: boolean;
  start(file: string): Promise<{ servers: string; stop(): Promise<void> }>;
}

const BACKENDS: Backend[] = [
  {
    name: "embedded server --auth-file",
    real: false,
    async start(file) {
      const server = await startServer({ port: 0, authFile: file });
      return { servers: `127.0.0.1:${server.port}`, stop: () => server.close() };
    },
  },
  {
    name: "real memcached -Y",
    real: true,
    async start(file) {
      const memcached = await startRealMemcached({ extraArgs: ["-Y", file] });
      return { servers: `127.0.0.1:${memcached.port}`, stop: () => memcached.stop() };
    },
  },
];

const random = (prefix: string) => prefix + randomBytes(4).toString("hex");

for (const backend of BACKENDS) {
  describe(`client authentication (${backend.name})`, () => {
    const dir = mkdtempSync(join(tmpdir(), "memipc-auth-client-"));
    const file = join(dir, "auth");
    writeFileSync(file, `alice:${PASSWORD}\nbob:other\n`);
    let running: { servers: string; stop(): Promise<void> } | undefined;
    const clients: Client[] = [];
    const client = (options: ConstructorParameters<typeof Client>[0] = {}) => {
      const made = new Client({ servers: running!.servers, retryDelay: 10, ...options });
      clients.push(made);
      return made;
    };

    before(async () => {
      if (backend.real && !memcachedAvailable()) return;
      running = await backend.start(file);
    });
    after(async () => {
      for (const c of clients) c.close();
      await running?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("producers, the drainer and the collector log in and work", async (t) => {
      if (!running) return void requireMemcached(t);
      const c = client({ auth: ALICE });
      const stream = random("s");
      const producer = new LogProducer(c, { stream, node: "web-1" });
      await Promise.all(Array.from({ length: ENTRIES }, (_, i) => producer.append({ i })));
      const out = join(dir, stream);
      const lines = await drainToFiles(c, stream, out);
      assert.deepEqual(
        lines.map((line) => (line.kind === "entry" ? (line.data as { i: number }).i : line.kind)),
        Array.from({ length: ENTRIES }, (_, i) => i),
      );

      const namespace = random("n");
      let now = T0 + 1000;
      const writer = new StatsWriter(c, { namespace, clock: () => now });
      await Promise.all([writer.incr("accounts.created", 3), writer.incr("accounts.created")]);
      const db = StatsDb.open(join(dir, `${namespace}.db`));
      try {
        const collector = new Collector(c, db, { namespace, clock: () => now, grace: 30, lease: false });
        now = T0 + 120_000;
        assert.equal((await collector.collectOnce()).buckets, 1);
        const start = Math.floor(T0 / 60_000) * 60;
        assert.deepEqual(
          db.counters(start, start + 60).map((r) => [r.name, r.value]),
          [["accounts.created", 4]],
        );
      } finally {
        db.close();
      }
    });

    it("a wrong password fails every waiting request with EAUTH, naming the user, not the password", async (t) => {
      if (!running) return void requireMemcached(t);
      const c = client({ auth: { username: "alice", password: "not-" + PASSWORD } });
      const results = await Promise.allSettled([c.set(random("k"), "v"), c.get("a"), c.get("b")]);
      for (const result of results) {
        assert.equal(result.status, "rejected");
        const error = (result as PromiseRejectedResult).reason as Error;
        assert.ok(error instanceof AuthenticationError, `${error.name}: ${error.message}`);
        assert.equal((error as AuthenticationError).code, "EAUTH");
        assert.match(error.message, /"alice"/);
        assert.ok(!error.message.includes(PASSWORD), "the message holds the password");
        assert.ok(!JSON.stringify(error, Object.getOwnPropertyNames(error)).includes(PASSWORD));
      }
    });

    it("a client without credentials is refused with memcached's error, every request at once", async (t) => {
      if (!running) return void requireMemcached(t);
      // memcached answers the three with one line: without failing them all at once, the other two would
      // wait for their timeout and fail with TimeoutError instead.
      const c = client({ timeout: 10_000 });
      const results = await Promise.allSettled([c.get("a"), c.get("b"), c.set(random("k"), "v")]);
      for (const result of results) {
        const error = (result as PromiseRejectedResult).reason as Error;
        assert.ok(error instanceof AuthenticationError, `${error?.name}: ${error?.message}`);
        assert.match(error.message, /requires authentication/);
      }
    });

    it("credentials that memcached's protocol cannot carry are refused before connecting", () => {
      assert.throws(() => new Client({ auth: { username: "al ice", password: "x" } }), ConfigError);
      assert.throws(
        () => new Client({ auth: { username: "alice", password: "a b" } }),
        (error: Error) => {
          assert.ok(error instanceof ConfigError);
          assert.ok(!error.message.includes("a b"));
          return true;
        },
      );
    });

    it("pymemcache logs in with a plain set of 'user password' and then works", async (t) => {
      if (!running) return void requireMemcached(t);
      const python = requirePymemcache(t);
      if (python === undefined) return;
      const [host, port] = running.servers.split(":");
      const key = random("py");
      const script = [
        "import sys",
        "from pymemcache.client.base import Client",
        "c = Client((sys.argv[1], int(sys.argv[2])))",
        // noreply=False: the server answers the login even to noreply, so the answer must be read.
        "assert c.set('login', sys.argv[3].encode(), noreply=False)",
        "c.set(sys.argv[4], b'from-python', noreply=False)",
        "print(c.get(sys.argv[4]).decode())",
      ].join("\n");
      const out = await runProgram(python, ["-c", script, host!, port!, `alice ${PASSWORD}`, key], {
        timeoutMs: 20_000,
        what: "pymemcache",
      });
      assert.equal(out.trim(), "from-python");
      const value = await client({ auth: ALICE }).get(key);
      assert.equal(value?.value.toString(), "from-python");
    });
  });
}

describe("client authentication: reconnects", () => {
  it("a connection dropped by the server logs in again before the next request", async () => {
    const dir = mkdtempSync(join(tmpdir(), "memipc-auth-client-"));
    const file = join(dir, "auth");
    writeFileSync(file, `alice:${PASSWORD}\n`);
    // An idle timeout of 1 s makes the server drop the connection between the two requests.
    const server = await startServer({ port: 0, authFile: file, idleTimeout: 1 });
    const c = new Client({ servers: `127.0.0.1:${server.port}`, auth: ALICE, retryDelay: 10 });
    try {
      await c.set("k", "1");
      assert.equal(server.engine.stats.authCmds, 1);
      await waitFor(() => server.connectionCount === 0, "the server to drop the idle connection");
      let value: string | undefined;
      await waitFor(async () => {
        value = await c.get("k").then(
          (r) => r?.value.toString(),
          () => undefined, // the first request may meet the closed socket
        );
        return value !== undefined;
      }, "a request on a new connection");
      assert.equal(value, "1");
      assert.equal(server.engine.stats.authCmds, 2);
      assert.equal(server.engine.stats.authErrors, 0);
    } finally {
      c.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
