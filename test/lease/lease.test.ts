// The lease suite: exactly one holder, renew, take-over only after expiry, release, theft, and two real
// processes of which the holder is killed with SIGKILL. Run once against the embedded server and once
// against real memcached (one suite, parameterised by how the server starts).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it, type TestContext } from "node:test";
import { Client } from "../../src/client/index.js";
import { ConfigError, LeaseLostError } from "../../src/errors.js";
import { Lease, type LeaseOptions } from "../../src/lease/index.js";
import { startServer } from "../../src/server/index.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer, type Target } from "../helpers/targets.js";

const TEST_TIMEOUT_MS = 30_000; // a test that hangs fails instead of stalling the run
const TTL = 2; // s: the shortest lease allowed (memcached's 1 s granularity)
const TAKEOVER_SLACK_MS = 2500; // ms beyond the TTL a standby may need (TTL ticks, polling, load)
const WORKER = join(fileURLToPath(new URL(".", import.meta.url)), "lease-worker.js");

describe("lease: options", () => {
  const client = new Client({ servers: "127.0.0.1:1" }); // never connected: options are checked first
  after(() => client.close());

  it("lease: rejects a TTL below 2 s, an empty name and a renew slower than the safe window", () => {
    assert.throws(() => new Lease(client, { name: "x", ttlSeconds: 1 }), ConfigError);
    assert.throws(() => new Lease(client, { name: "x", ttlSeconds: 2.5 }), ConfigError);
    assert.throws(() => new Lease(client, { name: "" }), ConfigError);
    assert.throws(
      () => new Lease(client, { name: "x", ttlSeconds: 3, renewEvery: 2000 }),
      /renew more often/,
    );
    assert.throws(() => new Lease(client, { name: "x", ttlSeconds: 2, margin: 1000 }), ConfigError);
  });

  it("lease: key, owner and defaults", () => {
    const lease = new Lease(client, { name: "drain:site" });
    assert.equal(lease.key, "memipc:lease:drain:site");
    assert.match(lease.owner, /^.+:\d+:[0-9a-f]{8}$/);
    assert.equal(lease.ttlSeconds, 10);
    assert.ok(lease.renewEvery <= 10_000 / 3 && lease.renewEvery < lease.safeWindow);
    assert.equal(lease.safeWindow, 10_000 - 1000 - 200);
    assert.equal(new Lease(client, { name: "n", namespace: "app" }).key, "app:lease:n");
    assert.equal(lease.held, false);
  });
});

for (const target of TARGETS) leaseSuite(target);

function leaseSuite(target: Target): void {
  describe(`lease against the ${target.name}`, () => {
    let server: RunningServer | undefined;
    const clients: Client[] = [];
    const namespace = `lt-${randomBytes(4).toString("hex")}`;
    let counter = 0;

    const client = (): Client => {
      const c = new Client({ servers: `127.0.0.1:${server!.port}` });
      clients.push(c);
      return c;
    };
    /** Two leases on the same name, each with its own connection, as two processes would have. */
    const pair = (options: Partial<LeaseOptions> = {}): [Lease, Lease] => {
      const name = `l${++counter}`;
      const common = { name, namespace, ttlSeconds: TTL, pollEvery: 100, ...options };
      return [new Lease(client(), { ...common, owner: "A" }), new Lease(client(), { ...common, owner: "B" })];
    };
    const skip = (t: TestContext): boolean => target.real && !requireMemcached(t);

    before(async () => {
      if (target.real && !memcachedAvailable()) return;
      server = await target.start();
    });
    after(async () => {
      for (const c of clients) c.close();
      await server?.stop();
    });

    it("lease: two leases compete, exactly one wins", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      if (skip(t)) return;
      for (let round = 0; round < 10; round++) {
        const [a, b] = pair();
        const results = await Promise.all([a.tryAcquire(), b.tryAcquire()]);
        assert.equal(results.filter(Boolean).length, 1, `round ${round}: ${results}`);
        const winner = results[0] ? a : b;
        assert.equal(winner.held, true);
        assert.equal((results[0] ? b : a).held, false);
        await winner.release();
      }
    });

    it(
      "lease: renewing keeps it; the other cannot take it meanwhile",
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        if (skip(t)) return;
        const [a, b] = pair();
        const held = await a.hold();
        const until = Date.now() + TTL * 1000 + 1500; // past the TTL, so only renewing can explain it
        while (Date.now() < until) {
          assert.equal(await b.tryAcquire(), false);
          await sleep(200);
        }
        assert.equal(held.aborted, false);
        assert.equal(a.held, true);
        assert.equal(await a.renew(), true);
        const status = await b.status();
        assert.equal(status.owner, "A");
        assert.equal(status.held, false);
        assert.ok(status.expiresInSeconds !== undefined && status.expiresInSeconds <= TTL);
        assert.equal((await a.status()).held, true);
        await a.release();
        assert.deepEqual(await a.status(), { owner: undefined, held: false });
      },
    );

    it(
      "lease: the other takes over only after the holder stopped renewing and the TTL passed",
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        if (skip(t)) return;
        const [a, b] = pair();
        assert.equal(await a.tryAcquire(), true); // no hold(): nothing renews it
        const lost = a.signal!;
        const start = Date.now();
        await b.hold(AbortSignal.timeout(TTL * 1000 + TAKEOVER_SLACK_MS));
        const waited = Date.now() - start;
        // The holder's deadline comes before the key's earliest expiry: it stopped before B started.
        assert.equal(lost.aborted, true, "the holder's signal must fire before the standby gets the lease");
        assert.ok(lost.reason instanceof LeaseLostError);
        assert.equal(a.held, false);
        assert.ok(
          waited >= (TTL - 1) * 1000 - 100,
          `took over after ${waited} ms, before the key could expire`,
        );
        assert.equal(await a.renew(), false);
        assert.equal((await b.status()).owner, "B");
        await b.release();
      },
    );

    it("lease: release lets the other in at once", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      if (skip(t)) return;
      const [a, b] = pair();
      const held = await a.hold();
      assert.equal(await b.tryAcquire(), false);
      await a.release();
      assert.equal(held.aborted, true);
      assert.ok(!(held.reason instanceof LeaseLostError), "a release is not a loss");
      assert.equal(await b.tryAcquire(), true);
      await a.release(); // no longer ours: must not delete B's key
      assert.equal((await b.status()).owner, "B");
      await b.release();
    });

    it(
      "lease: a holder whose key was overwritten sees the loss on its next renew",
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        if (skip(t)) return;
        const [a, b] = pair();
        assert.equal(await a.tryAcquire(), true);
        const intruder = client();
        assert.equal(await intruder.set(a.key, "intruder", { ttl: 30 }), true);
        assert.equal(await a.renew(), false);
        assert.equal(a.held, false);
        assert.ok(a.signal!.aborted && a.signal!.reason instanceof LeaseLostError);
        assert.match((a.signal!.reason as Error).message, /held by "intruder"/);
        await a.release(); // must not delete the intruder's value
        assert.equal((await intruder.get(a.key))?.value.toString(), "intruder");
        assert.equal(await b.tryAcquire(), false);
        // The same with a lease that renews in the background: the signal fires by itself.
        assert.equal(await intruder.delete(a.key), true);
        const held = await b.hold();
        await intruder.set(b.key, "intruder", { ttl: 30 });
        await waitFor(() => held.aborted, b.renewEvery * 2 + 1000);
        assert.ok(held.reason instanceof LeaseLostError);
        await intruder.delete(b.key);
      },
    );

    it(
      "lease: run() holds while the task runs and releases after",
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        if (skip(t)) return;
        const [a, b] = pair();
        const result = await a.run(async (signal) => {
          assert.equal(signal.aborted, false);
          assert.equal(await b.tryAcquire(), false);
          await sleep(TTL * 1000 + 500); // longer than the TTL: kept by background renewing
          assert.equal(signal.aborted, false);
          assert.equal(await b.tryAcquire(), false);
          return 42;
        });
        assert.equal(result, 42);
        assert.equal(await b.tryAcquire(), true);
        // Aborting the caller's signal while waiting rejects with its reason.
        const stop = new AbortController();
        const waiting = a.run(() => assert.fail("must not run while B holds the lease"), stop.signal);
        stop.abort(new Error("shutting down"));
        await assert.rejects(waiting, /shutting down/);
        await b.release();
      },
    );

    it(
      "lease: two processes, holder killed with SIGKILL, the other takes over within ttl + margin, never overlapping",
      { timeout: TEST_TIMEOUT_MS + 15_000 },
      async (t) => {
        if (skip(t)) return;
        const dir = mkdtempSync(join(tmpdir(), "memipc-lease-"));
        const file = join(dir, "out.txt");
        const children = new Map<string, ChildProcess>();
        try {
          const name = `proc${++counter}`;
          for (const id of ["P1", "P2"]) {
            const settings = { port: server!.port, name, namespace, file, id, ttlSeconds: TTL };
            const child = spawn(process.execPath, [WORKER], {
              env: { ...process.env, MEMIPC_LEASE_WORKER: JSON.stringify(settings) },
              stdio: ["ignore", "ignore", "inherit"],
            });
            children.set(id, child);
          }
          await waitFor(() => readLines(file).length >= 5, 15_000);
          // Who holds it, as memcached says; kill that process by its PID.
          const observer = new Lease(client(), { name, namespace, ttlSeconds: TTL });
          const holder = (await observer.status()).owner!;
          assert.ok(children.has(holder), `unexpected holder ${holder}`);
          const standby = holder === "P1" ? "P2" : "P1";
          const killedAt = Date.now();
          process.kill(children.get(holder)!.pid!, "SIGKILL");
          const before = readLines(file).length;
          await waitFor(
            () => readLines(file).some((line, i) => i >= before && line.id === standby),
            TTL * 1000 + TAKEOVER_SLACK_MS,
          );
          const tookOverAt = Date.now();
          await sleep(500); // a few more lines from the new holder
          const lines = readLines(file);
          // A handover needs the old holder's deadline and then the key's expiry: at least ~200 ms with no
          // writes. Two holders at once would interleave their 100 ms writes with short gaps.
          for (let i = 1; i < lines.length; i++) {
            if (lines[i]!.id === lines[i - 1]!.id) continue;
            const gap = lines[i]!.at - lines[i - 1]!.at;
            assert.ok(gap >= 100, `ids interleave: ${lines[i - 1]!.id} then ${lines[i]!.id} ${gap} ms apart`);
          }
          const switches = lines.filter((line, i) => i > 0 && line.id !== lines[i - 1]!.id).length;
          assert.ok(switches <= 5, `${switches} handovers: ${lines.map((l) => l.id).join(" ")}`);
          const afterKill = lines.filter((line) => line.at > killedAt + 50);
          assert.ok(
            afterKill.length > 0 && afterKill.every((line) => line.id === standby),
            "the killed holder wrote",
          );
          assert.ok(
            tookOverAt - killedAt <= TTL * 1000 + TAKEOVER_SLACK_MS,
            `took ${tookOverAt - killedAt} ms`,
          );
        } finally {
          for (const child of children.values()) {
            if (child.exitCode === null && child.signalCode === null) {
              const exited = new Promise((resolve) => child.once("exit", resolve));
              child.kill("SIGTERM");
              await Promise.race([exited, sleep(3000)]);
              if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
            }
          }
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );
  });
}

describe("lease: injected clock", () => {
  it("lease: held turns false once the clock passes the safe window without a renew", async () => {
    const server = await startServer({ port: 0 });
    const c = new Client({ servers: `127.0.0.1:${server.port}` });
    try {
      let now = 1_000_000;
      const lease = new Lease(c, {
        name: `clock-${randomBytes(4).toString("hex")}`,
        ttlSeconds: 5,
        clock: () => now,
      });
      assert.equal(await lease.tryAcquire(), true);
      assert.equal(lease.held, true);
      now += lease.safeWindow - 1;
      assert.equal(lease.held, true);
      now += 1;
      assert.equal(lease.held, false, "past ttl - 1 s - margin the holder must stop");
      assert.equal(await lease.renew(), false, "a renew after the deadline is too late");
      assert.ok(lease.signal!.reason instanceof LeaseLostError);
    } finally {
      c.close();
      await server.close();
    }
  });
});

function readLines(file: string): { id: string; at: number }[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [id, at] = line.split(" ");
      return { id: id!, at: Number(at) };
    });
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(50);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
