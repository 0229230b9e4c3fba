// The client's fault paths: a real memcached killed mid-stream and restarted on its port, a scripted raw
// server that misbehaves (malformed, truncated, extra, dribbled and stalled replies), dead-server marking
// and failover, and backpressure against a server that never reads. Every request's value encodes its
// key, so a reply given to the wrong request shows.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { after, describe, it, type TestContext } from "node:test";
import v8 from "node:v8";
import vm from "node:vm";
import { Client, type ClientOptions, type GetResult } from "../../src/client/index.js";
import {
  ConnectionClosedError,
  MemipcError,
  OverloadError,
  ProtocolError,
  TimeoutError,
} from "../../src/errors.js";
import { startServer } from "../../src/server/index.js";
import { memcachedBinary, requireMemcached, startRealMemcached } from "../helpers/real-memcached.js";

const TEST_TIMEOUT_MS = 60_000; // a test that hangs fails instead of stalling the run
const RECOVERY_LIMIT_MS = 15_000; // how long a client may take to recover by itself
const MEMCACHED_START_MS = 5000;

const valueOf = (key: string): string => `value-of-${key}`;
const prefix = `ft-${randomBytes(4).toString("hex")}-`;
const key = (name: string): string => `${prefix}${name}`;

// Everything a test starts is stopped by that test; these catch what a failing test left behind.
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type ErrorClass = new (...args: never[]) => MemipcError;

/** A rejection of the expected kinds whose message names the server and the command. */
function assertFailure(error: unknown, kinds: readonly ErrorClass[], server: string, command: string): void {
  assert.ok(
    kinds.some((kind) => error instanceof kind),
    `expected ${kinds.map((k) => k.name).join(" or ")}, got ${explain(error)}`,
  );
  const message = (error as Error).message;
  assert.ok(message.includes(server), `message does not name ${server}: ${message}`);
  assert.ok(message.startsWith(command), `message does not start with the command ${command}: ${message}`);
}

function explain(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Stops a process with SIGSTOP and waits until every one of its threads is stopped: the signal is delivered
 * asynchronously, and a memcached thread can still answer a request sent right after kill() returns.
 */
async function freeze(pid: number): Promise<void> {
  process.kill(pid, "SIGSTOP");
  const deadline = Date.now() + 2000;
  for (;;) {
    const tasks = readdirSync(`/proc/${pid}/task`);
    const states = tasks.map((task) => {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    });
    if (states.every((state) => state === "T" || state === "t")) return;
    if (Date.now() > deadline)
      throw new Error(`process ${pid} did not stop: thread states ${states.join("")}`);
    await sleep(5);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Retries `attempt` every `everyMs` until it resolves, for at most `limitMs`; returns tries and result. */
async function retryUntil<T>(
  attempt: () => Promise<T>,
  limitMs = RECOVERY_LIMIT_MS,
  everyMs = 20,
): Promise<{ tries: number; result: T }> {
  const deadline = Date.now() + limitMs;
  let last: unknown;
  for (let tries = 1; Date.now() < deadline; tries++) {
    try {
      return { tries, result: await attempt() };
    } catch (error) {
      last = error;
      await sleep(everyMs);
    }
  }
  throw new Error(`no success within ${limitMs} ms; last error: ${explain(last)}`);
}

async function waitFor(condition: () => boolean, limitMs: number, what: string): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

function clientFor(ports: readonly number[], options: Partial<ClientOptions> = {}): Client {
  const client = new Client({
    servers: ports.map((port) => `127.0.0.1:${port}`).join(","),
    timeout: 5000,
    connectTimeout: 2000,
    retryDelay: 10,
    maxRetryDelay: 100,
    ...options,
  });
  cleanups.push(() => client.close());
  return client;
}

// ---- a real memcached on a port of our choosing (to restart it on the same port) ------------------

interface OwnMemcached {
  readonly pid: number;
  readonly child: ChildProcess;
  kill(signal: NodeJS.Signals): void;
  stop(): Promise<void>;
}

/** Starts memcached on exactly `port` (the helper picks its own port, so a restart needs this). */
async function memcachedOn(port: number, extraArgs: string[] = []): Promise<OwnMemcached> {
  const binary = memcachedBinary();
  assert.ok(binary, "memcached binary not found");
  const args = ["-l", "127.0.0.1", "-p", String(port), "-U", "0", ...extraArgs];
  if (process.getuid?.() === 0) args.push("-u", "root");
  const child = spawn(binary, args, { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const own: OwnMemcached = {
    pid: child.pid!,
    child,
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGCONT");
      child.kill("SIGKILL");
      await exited;
    },
  };
  cleanups.push(() => own.stop());
  const deadline = Date.now() + MEMCACHED_START_MS;
  while (!(await accepts(port))) {
    if (child.exitCode !== null) throw new Error(`memcached on port ${port} exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`memcached on port ${port} did not start`);
    await sleep(20);
  }
  return own;
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

// ---- a scripted memcached: honest by default, told per request how to misbehave -----------------------

interface ScriptRequest {
  /** 1 for the first connection the server accepted, 2 for the next… */
  readonly connection: number;
  /** 0 for the first request on its connection. */
  readonly index: number;
  readonly command: string;
  readonly args: readonly string[];
}

/** How the server answers one request: `honest` is the right reply; write it, something else, or nothing. */
type Responder = (request: ScriptRequest, honest: Buffer, socket: Socket) => void;

const STORE_COMMANDS = new Set(["set", "add", "replace", "append", "prepend"]);

class ScriptServer {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly store = new Map<string, Buffer>();
  readonly requests: ScriptRequest[] = [];
  connections = 0;
  respond: Responder = (_request, honest, socket) => socket.write(honest);

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(options: { pauseOnConnect?: boolean } = {}): Promise<ScriptServer> {
    const server = createServer({ noDelay: true, pauseOnConnect: options.pauseOnConnect ?? false });
    const script = new ScriptServer(server);
    server.on("connection", (socket) => script.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    cleanups.push(() => script.close());
    return script;
  }

  get port(): number {
    const address = this.#server.address();
    assert.ok(address !== null && typeof address === "object");
    return address.port;
  }

  get name(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Stores `value-of-<key>` under each key. */
  seed(keys: readonly string[]): void {
    for (const k of keys) this.store.set(k, Buffer.from(valueOf(k)));
  }

  #accept(socket: Socket): void {
    const connection = ++this.connections;
    this.#sockets.add(socket);
    socket.on("error", () => socket.destroy());
    socket.on("close", () => this.#sockets.delete(socket));
    let buffered = Buffer.alloc(0);
    let index = 0;
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const eol = buffered.indexOf("\r\n");
        if (eol === -1) return;
        const args = buffered.subarray(0, eol).toString("latin1").split(" ");
        const command = args[0]!;
        let data: Buffer | undefined;
        let end = eol + 2;
        if (STORE_COMMANDS.has(command)) {
          const size = Number(args[4]);
          if (buffered.length < end + size + 2) return;
          data = Buffer.from(buffered.subarray(end, end + size));
          end += size + 2;
        }
        buffered = buffered.subarray(end);
        const request: ScriptRequest = { connection, index: index++, command, args: args.slice(1) };
        this.requests.push(request);
        const honest = this.#honest(request, data);
        if (!socket.destroyed) this.respond(request, honest, socket);
      }
    });
  }

  #honest(request: ScriptRequest, data: Buffer | undefined): Buffer {
    switch (request.command) {
      case "get":
      case "gets": {
        const parts: Buffer[] = [];
        for (const k of request.args) {
          const value = this.store.get(k);
          if (value === undefined) continue;
          const cas = request.command === "gets" ? " 1" : "";
          parts.push(Buffer.from(`VALUE ${k} 0 ${value.length}${cas}\r\n`), value, Buffer.from("\r\n"));
        }
        parts.push(Buffer.from("END\r\n"));
        return Buffer.concat(parts);
      }
      case "set":
        this.store.set(request.args[0]!, data!);
        return Buffer.from("STORED\r\n");
      case "delete":
        return Buffer.from(this.store.delete(request.args[0]!) ? "DELETED\r\n" : "NOT_FOUND\r\n");
      case "version":
        return Buffer.from("VERSION 1.6.18-script\r\n");
      case "mn":
        return Buffer.from("MN\r\n");
      default:
        return Buffer.from("ERROR\r\n");
    }
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    if (this.#server.listening) await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A TCP proxy to `upstreamPort` that passes the server's replies on one byte at a time, ~1 ms apart. */
class DribbleProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  bytesDribbled = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(upstreamPort: number): Promise<DribbleProxy> {
    const server = createServer({ noDelay: true });
    const proxy = new DribbleProxy(server);
    server.on("connection", (socket) => proxy.#accept(socket, upstreamPort));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    cleanups.push(() => proxy.close());
    return proxy;
  }

  get port(): number {
    const address = this.#server.address();
    assert.ok(address !== null && typeof address === "object");
    return address.port;
  }

  #accept(socket: Socket, upstreamPort: number): void {
    const upstream = createConnection({ host: "127.0.0.1", port: upstreamPort, noDelay: true });
    this.#sockets.add(socket).add(upstream);
    const queue: number[] = [];
    let pumping = false;
    const pump = async (): Promise<void> => {
      pumping = true;
      while (queue.length > 0 && !socket.destroyed) {
        socket.write(Buffer.from([queue.shift()!]));
        this.bytesDribbled++;
        await sleep(1);
      }
      pumping = false;
    };
    socket.on("data", (chunk: Buffer) => upstream.write(chunk));
    upstream.on("data", (chunk: Buffer) => {
      queue.push(...chunk);
      if (!pumping) void pump();
    });
    for (const s of [socket, upstream]) {
      s.on("error", () => s.destroy());
      s.on("close", () => {
        socket.destroy();
        upstream.destroy();
      });
    }
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    if (this.#server.listening) await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

// ---- (a) real memcached killed mid-stream ------------------------------------------------------------

describe("client faults: real memcached killed with SIGKILL mid-stream", () => {
  it(
    "in-flight and new requests fail fast with typed errors; after a restart on the same port the client recovers by itself",
    { timeout: TEST_TIMEOUT_MS },
    async (t: TestContext) => {
      if (!requireMemcached(t)) return;
      const first = await startRealMemcached();
      cleanups.push(() => first.stop());
      const port = first.port;
      const server = `127.0.0.1:${port}`;
      // A request timeout far beyond the bounds below: a failure seen in time was not a timeout.
      const client = clientFor([port], {
        timeout: 30_000,
        connectTimeout: 2000,
        failuresBeforeDead: 3,
        deadTime: 500,
        maxRetryDelay: 200,
      });
      assert.equal(await client.set(key("warm"), valueOf(key("warm"))), true);

      // Waves of sets and gets, 4 KiB each, until well after the kill.
      const filler = "x".repeat(4096);
      const outcomes: Promise<{ command: string; ok: boolean; error?: unknown }>[] = [];
      let settled = 0;
      let stop = false;
      const track = (command: string, p: Promise<unknown>, check: (v: unknown) => void): void => {
        outcomes.push(
          p.then(
            (v) => {
              settled++;
              check(v);
              return { command, ok: true };
            },
            (error: unknown) => {
              settled++;
              return { command, ok: false, error };
            },
          ),
        );
      };
      const load = (async () => {
        for (let wave = 0; wave < 400 && !stop; wave++) {
          for (let i = 0; i < 50; i++) {
            const k = key(`kill-${wave}-${i}`);
            track("set", client.set(k, `${valueOf(k)}:${filler}`), (v) => assert.equal(v, true));
            const earlier = key(`kill-${Math.max(0, wave - 1)}-${i}`);
            track("get", client.get(earlier), (v) => {
              const value = (v as GetResult | undefined)?.value.toString();
              if (value !== undefined)
                assert.ok(value.startsWith(`${valueOf(earlier)}:`), `wrong value for ${earlier}`);
            });
          }
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();

      await waitFor(() => settled >= 1000, 10_000, "1,000 requests to complete before the kill");
      const inFlightAtKill = outcomes.length - settled;
      process.kill(first.pid, "SIGKILL");
      await sleep(100);
      stop = true;
      await load;

      // Everything settles long before the 30 s request timeout: nobody waits for a dead socket.
      const all = await Promise.race([Promise.all(outcomes), sleep(10_000).then(() => undefined)]);
      assert.ok(all, "requests in flight at the kill did not settle within 10 s (request timeout is 30 s)");
      const failed = all.filter((o) => !o.ok);
      t.diagnostic(
        `${inFlightAtKill} requests in flight at the kill; ${failed.length} of ${all.length} failed`,
      );
      assert.ok(inFlightAtKill > 0, "no request was in flight at the kill");
      assert.ok(failed.length > 0, "no request failed although memcached was killed");
      for (const outcome of failed) {
        assertFailure(outcome.error, [ConnectionClosedError, TimeoutError], server, outcome.command);
      }

      // New requests while it is down fail at once, with the same typed errors.
      for (let i = 0; i < 20; i++) {
        const started = Date.now();
        await assert.rejects(client.get(key("while-down")), (error: unknown) => {
          assertFailure(error, [ConnectionClosedError, TimeoutError], server, "get");
          return true;
        });
        assert.ok(Date.now() - started < 5000, "a request to a dead server waited");
        await sleep(5);
      }

      // memcached comes back on the same port; the same client finds it without help.
      const second = await memcachedOn(port);
      try {
        const { result } = await retryUntil(() => client.set(key("after"), valueOf(key("after"))));
        assert.equal(result, true);
        assert.equal((await client.get(key("after")))?.value.toString(), valueOf(key("after")));
        assert.equal(await client.get(key("warm")), undefined, "the restarted memcached is empty");
        const many = await Promise.all(
          Array.from({ length: 200 }, (_, i) => client.set(key(`again-${i}`), valueOf(key(`again-${i}`)))),
        );
        assert.ok(many.every(Boolean));
        const back = await Promise.all(Array.from({ length: 200 }, (_, i) => client.get(key(`again-${i}`))));
        back.forEach((r, i) => assert.equal(r?.value.toString(), valueOf(key(`again-${i}`))));
      } finally {
        client.close();
        await second.stop();
      }
    },
  );
});

// ---- (b) a scripted server that misbehaves -------------------------------------------------------------

describe("client faults: a scripted server sending bad replies", () => {
  const faultOptions: Partial<ClientOptions> = { timeout: 2000, failuresBeforeDead: 1000 };

  /** After a fault: the client reconnects by itself and pairs replies right on a new connection. */
  async function assertRecovers(
    script: ScriptServer,
    client: Client,
    keys: readonly string[],
  ): Promise<void> {
    script.respond = (_request, honest, socket) => socket.write(honest);
    await retryUntil(() => client.version());
    assert.ok(script.requests.at(-1)!.connection > 1, "the client kept using the broken connection");
    const got = await Promise.all(keys.map((k) => client.gets(k)));
    got.forEach((r, i) => assert.equal(r?.value.toString(), valueOf(keys[i]!)));
    const merged = await Promise.all(keys.map((k) => client.get(k)));
    merged.forEach((r, i) => assert.equal(r?.value.toString(), valueOf(keys[i]!)));
  }

  it("a malformed reply line fails the requests behind it with ProtocolError; earlier ones keep their replies", async () => {
    const script = await ScriptServer.start();
    const keys = Array.from({ length: 10 }, (_, i) => key(`mal${i}`));
    script.seed(keys);
    script.respond = (request, honest, socket) => {
      socket.write(request.connection === 1 && request.index === 5 ? Buffer.from("BOGUS 1 2 3\r\n") : honest);
    };
    const client = clientFor([script.port], faultOptions);
    const results = await Promise.allSettled(keys.map((k) => client.gets(k)));
    results.slice(0, 5).forEach((r, i) => {
      assert.equal(r.status, "fulfilled", `gets ${keys[i]} failed`);
      assert.equal(
        (r as PromiseFulfilledResult<GetResult | undefined>).value?.value.toString(),
        valueOf(keys[i]!),
      );
    });
    for (const r of results.slice(5)) {
      assert.equal(r.status, "rejected");
      assertFailure((r as PromiseRejectedResult).reason, [ProtocolError], script.name, "gets");
    }
    await assertRecovers(script, client, keys);
  });

  it("a data block longer than its VALUE line says is a ProtocolError", async () => {
    const script = await ScriptServer.start();
    const keys = [key("long-a"), key("long-b")];
    script.seed(keys);
    script.respond = (request, honest, socket) => {
      if (request.connection === 1)
        socket.write(`VALUE ${request.args[0]} 0 3\r\n${valueOf(request.args[0]!)}\r\nEND\r\n`);
      else socket.write(honest);
    };
    const client = clientFor([script.port], faultOptions);
    await assert.rejects(client.gets(keys[0]!), (error: unknown) => {
      assertFailure(error, [ProtocolError], script.name, "gets");
      return true;
    });
    await assertRecovers(script, client, keys);
  });

  it("a reply cut short by the server closing rejects with a typed error, never a partial value", async () => {
    const script = await ScriptServer.start();
    const keys = [key("cut-a"), key("cut-b"), key("cut-c")];
    script.seed(keys);
    script.respond = (request, honest, socket) => {
      if (request.connection === 1 && request.index === 1) {
        socket.end(honest.subarray(0, honest.indexOf("\r\n") + 6)); // the VALUE line and 4 bytes of data
      } else if (request.connection !== 1 || request.index === 0) {
        socket.write(honest);
      }
    };
    const client = clientFor([script.port], faultOptions);
    const results = await Promise.allSettled(keys.map((k) => client.gets(k)));
    assert.equal(results[0]!.status, "fulfilled");
    assert.equal(
      (results[0] as PromiseFulfilledResult<GetResult | undefined>).value?.value.toString(),
      valueOf(keys[0]!),
    );
    for (const r of results.slice(1)) {
      assert.equal(r.status, "rejected");
      assertFailure(
        (r as PromiseRejectedResult).reason,
        [ProtocolError, ConnectionClosedError],
        script.name,
        "gets",
      );
    }
    await assertRecovers(script, client, keys);
  });

  it("a reply cut short that then stalls rejects with TimeoutError", async () => {
    const script = await ScriptServer.start();
    const keys = [key("stall-cut-a"), key("stall-cut-b")];
    script.seed(keys);
    script.respond = (request, honest, socket) => {
      // The first reply stops two bytes short of its data block's end; nothing else is answered.
      if (request.connection > 1) socket.write(honest);
      else if (request.index === 0) socket.write(honest.subarray(0, honest.indexOf("\r\nEND") - 2));
    };
    const client = clientFor([script.port], { ...faultOptions, timeout: 300 });
    const results = await Promise.allSettled(keys.map((k) => client.gets(k)));
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assertFailure((r as PromiseRejectedResult).reason, [TimeoutError], script.name, "gets");
    }
    await assertRecovers(script, client, keys);
  });

  it("an unexpected reply with no request waiting resets the connection; later requests get their own replies", async () => {
    const script = await ScriptServer.start();
    const keys = [key("extra-a"), key("extra-b")];
    script.seed(keys);
    script.respond = (request, honest, socket) => {
      socket.write(honest);
      if (request.connection === 1 && request.index === 0) {
        setTimeout(() => socket.write(honest), 20); // the same reply again, unasked
      }
    };
    const client = clientFor([script.port], faultOptions);
    assert.equal((await client.gets(keys[0]!))?.value.toString(), valueOf(keys[0]!));
    await sleep(150); // the unasked reply has arrived
    const { result } = await retryUntil(() => client.gets(keys[1]!));
    assert.equal(result?.value.toString(), valueOf(keys[1]!));
    assert.equal(script.connections, 2, "the connection that sent an unasked reply was not reset");
    await assertRecovers(script, client, keys);
  });

  it("an extra reply ahead of the next request's reply is caught by its key, not handed to that request", async () => {
    const script = await ScriptServer.start();
    const keys = [key("dup-a"), key("dup-b"), key("dup-c")];
    script.seed(keys);
    script.respond = (request, honest, socket) => {
      // The first reply twice: the second copy lands where dup-b's reply belongs.
      socket.write(
        request.connection === 1 && request.index === 0 ? Buffer.concat([honest, honest]) : honest,
      );
    };
    const client = clientFor([script.port], faultOptions);
    const results = await Promise.allSettled(keys.map((k) => client.gets(k)));
    assert.equal(results[0]!.status, "fulfilled");
    assert.equal(
      (results[0] as PromiseFulfilledResult<GetResult | undefined>).value?.value.toString(),
      valueOf(keys[0]!),
    );
    results.slice(1).forEach((r, i) => {
      const k = keys[i + 1]!;
      if (r.status === "fulfilled") {
        // Every key exists on the server: only its own value is a right answer.
        assert.equal(
          r.value?.value.toString(),
          valueOf(k),
          `gets ${k} resolved with another request's reply`,
        );
      } else {
        assertFailure(r.reason, [ProtocolError], script.name, "gets");
      }
    });
    await assertRecovers(script, client, keys);
  });

  it("a merged get answered with a key it did not ask for is a ProtocolError, not a miss", async () => {
    const script = await ScriptServer.start();
    const keys = [key("other-a"), key("other-b")];
    script.seed([...keys, key("other-z")]);
    script.respond = (request, honest, socket) => {
      if (request.connection === 1) {
        const z = key("other-z");
        socket.write(`VALUE ${z} 0 ${valueOf(z).length}\r\n${valueOf(z)}\r\nEND\r\n`);
      } else {
        socket.write(honest);
      }
    };
    const client = clientFor([script.port], faultOptions);
    const results = await Promise.allSettled(keys.map((k) => client.get(k)));
    for (const r of results) {
      assert.equal(
        r.status,
        "rejected",
        `get resolved with ${JSON.stringify(r.status === "fulfilled" ? r.value : "")}`,
      );
      assertFailure((r as PromiseRejectedResult).reason, [ProtocolError], script.name, "get");
    }
    await assertRecovers(script, client, keys);
  });

  it("a getMulti answered with a key it did not ask for is a ProtocolError, not a result for that key", async () => {
    const script = await ScriptServer.start();
    const keys = [key("multi-a"), key("multi-b")];
    const z = key("multi-z");
    script.seed([...keys, z]);
    script.respond = (request, honest, socket) => {
      if (request.connection === 1)
        socket.write(`VALUE ${z} 0 ${valueOf(z).length}\r\n${valueOf(z)}\r\nEND\r\n`);
      else socket.write(honest);
    };
    const client = clientFor([script.port], faultOptions);
    let outcome: string;
    try {
      outcome = `resolved with keys ${JSON.stringify([...(await client.getMulti(keys)).keys()])}`;
    } catch (error) {
      assertFailure(error, [ProtocolError], script.name, "get");
      outcome = "rejected";
    }
    assert.equal(outcome, "rejected");
    await assertRecovers(script, client, keys);
    const found = await client.getMulti(keys);
    assert.deepEqual([...found.keys()].sort(), [...keys].sort());
  });

  it("replies dribbled one byte at a time pair up with their requests", async () => {
    const embedded = await startServer({ port: 0 });
    cleanups.push(() => embedded.close());
    const proxy = await DribbleProxy.start(embedded.port);
    const client = clientFor([proxy.port], { timeout: 20_000 });
    const keys = Array.from({ length: 5 }, (_, i) => key(`drip${i}`));
    const checks: Promise<void>[] = [];
    for (const [i, k] of keys.entries()) {
      checks.push(client.set(k, valueOf(k), { flags: i }).then((r) => assert.equal(r, true)));
    }
    for (const [i, k] of keys.entries()) {
      checks.push(
        client.get(k).then((r) => {
          assert.equal(r?.value.toString(), valueOf(k));
          assert.equal(r?.flags, i);
        }),
        client.gets(k).then((r) => assert.equal(r?.value.toString(), valueOf(k))),
        client.mg(k, ["v", "k"]).then((r) => assert.equal(r.value?.toString(), valueOf(k))),
      );
    }
    checks.push(
      client.set(key("drip-n"), "41").then((r) => assert.equal(r, true)),
      client.incr(key("drip-n"), 1).then((r) => assert.equal(r, 42n)),
      client.get(key("drip-missing")).then((r) => assert.equal(r, undefined)),
      client.mg(key("drip-missing"), ["v", "q"]).then((r) => assert.equal(r.code, "EN")),
      client.ms(key("drip-ms"), "meta", ["q"]).then((r) => assert.equal(r.code, "HD")),
      client.version().then((r) => assert.match([...r.values()][0]!, /^\d/)),
      client.delete(key("drip-missing")).then((r) => assert.equal(r, false)),
    );
    await Promise.all(checks);
    assert.ok(proxy.bytesDribbled > 300, `only ${proxy.bytesDribbled} bytes went through the proxy`);
  });

  it("a server that stalls: requests fail with TimeoutError, late replies never reach later requests", async () => {
    const script = await ScriptServer.start();
    const keys = Array.from({ length: 5 }, (_, i) => key(`stall${i}`));
    script.seed(keys);
    script.respond = (request, honest, socket) => {
      // The first connection answers far too late (after the client gave up), the rest on time.
      if (request.connection === 1) setTimeout(() => socket.destroyed || socket.write(honest), 600);
      else socket.write(honest);
    };
    const client = clientFor([script.port], { ...faultOptions, timeout: 300 });
    const results = await Promise.allSettled(keys.map((k) => client.gets(k)));
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assertFailure((r as PromiseRejectedResult).reason, [TimeoutError], script.name, "gets");
      assert.match((r as PromiseRejectedResult).reason.message, /300 ms/);
    }
    // Ask again at once, while the late replies are still on their way.
    const { result } = await retryUntil(() =>
      Promise.all(
        keys
          .slice()
          .reverse()
          .map((k) => client.gets(k)),
      ),
    );
    result.forEach((r, i) => assert.equal(r?.value.toString(), valueOf(keys[keys.length - 1 - i]!)));
    await sleep(700); // the late replies went out to the old connection
    const again = await Promise.all(keys.map((k) => client.gets(k)));
    again.forEach((r, i) => assert.equal(r?.value.toString(), valueOf(keys[i]!)));
    await assertRecovers(script, client, keys);
  });
});

// ---- (c) dead-server marking and failover -----------------------------------------------------------

describe("client faults: dead-server marking", () => {
  it(
    "after failuresBeforeDead refused connections requests fail at once, naming the server; it is retried after deadTime",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const server = await startServer({ port: 0 });
      const port = server.port;
      const name = `127.0.0.1:${port}`;
      const client = clientFor([port], {
        failuresBeforeDead: 3,
        deadTime: 1500,
        retryDelay: 5,
        maxRetryDelay: 5,
        connectTimeout: 10_000,
        timeout: 10_000,
      });
      assert.equal(await client.set(key("dead"), "x"), true);
      await server.close();

      // Keep asking until the server is marked dead; count the attempts that reached the network.
      let attempts = 0;
      let deadError: Error | undefined;
      for (let i = 0; i < 500 && deadError === undefined; i++) {
        try {
          await client.get(key("dead"));
          assert.fail("a get to a stopped server resolved");
        } catch (error) {
          assertFailure(error, [ConnectionClosedError], name, "get");
          const message = (error as Error).message;
          if (/marked dead/.test(message)) deadError = error as Error;
          else if (!/reconnecting/.test(message)) attempts++;
        }
        await sleep(2);
      }
      assert.ok(deadError, "the server was never marked dead");
      assert.equal(attempts, 3, "failures before the server was marked dead");
      assert.match(deadError.message, /3 failures/);

      // Marked dead: 100 requests of several kinds all fail before the event loop even polls for I/O.
      let settled = 0;
      const requests = Array.from({ length: 100 }, (_, i) => {
        const calls = [
          () => client.get(key(`d${i}`)),
          () => client.set(key(`d${i}`), "v"),
          () => client.mg(key(`d${i}`)),
        ];
        return calls[i % 3]!().then(
          () => assert.fail("a request to a dead server resolved"),
          (error: unknown) => {
            settled++;
            assertFailure(error, [ConnectionClosedError], name, ["get", "set", "mg"][i % 3]!);
          },
        );
      });
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(settled, 100, "requests to a dead server waited for I/O");
      await Promise.all(requests);

      // Back on the same port: after deadTime the client tries again by itself.
      const revived = await startServer({ port });
      cleanups.push(() => revived.close());
      const { result } = await retryUntil(() => client.set(key("revived"), "yes"));
      assert.equal(result, true);
      assert.equal((await client.get(key("revived")))?.value.toString(), "yes");
      client.close();
      await revived.close();
    },
  );

  it(
    "connections that hang (a stopped memcached with a full backlog): marked dead after failuresBeforeDead connect timeouts, then requests do not wait for connectTimeout",
    { timeout: TEST_TIMEOUT_MS },
    async (t: TestContext) => {
      if (!requireMemcached(t)) return;
      const probe = await startRealMemcached();
      const port = probe.port;
      await probe.stop();
      // Backlog 1: once two connections wait in the queue of a stopped memcached, new SYNs are dropped.
      const memcached = await memcachedOn(port, ["-b", "1"]);
      const name = `127.0.0.1:${port}`;
      const connectTimeout = 400;
      const client = clientFor([port], {
        connectTimeout,
        timeout: 60_000,
        failuresBeforeDead: 2,
        deadTime: 60_000,
        retryDelay: 5,
        maxRetryDelay: 5,
      });
      await sleep(200); // memcached has accepted the start-up probe's connection
      memcached.kill("SIGSTOP");
      // Fill the accept queue: open connections until one does not complete (its SYN was dropped).
      const fillers: Socket[] = [];
      cleanups.push(() => fillers.forEach((s) => s.destroy()));
      for (let i = 0; i < 10; i++) {
        const filler = createConnection({ host: "127.0.0.1", port });
        filler.on("error", () => undefined);
        fillers.push(filler);
        const connected = await Promise.race([
          new Promise<boolean>((resolve) => filler.once("connect", () => resolve(true))),
          sleep(300).then(() => false),
        ]);
        if (!connected) break;
      }
      assert.ok(fillers.length < 10, "the stopped memcached's accept queue never filled");
      try {
        // Each attempt waits connectTimeout and fails with a TimeoutError; count them until marked dead.
        let timeouts = 0;
        let dead = false;
        for (let i = 0; i < 50 && !dead; i++) {
          try {
            await client.set(key("hang"), "x");
            assert.fail("a set to a stopped memcached resolved");
          } catch (error) {
            assertFailure(error, [ConnectionClosedError, TimeoutError], name, "set");
            if (error instanceof TimeoutError) timeouts++;
            dead = /marked dead/.test((error as Error).message);
          }
          await sleep(10);
        }
        assert.ok(dead, "the server was never marked dead");
        assert.equal(timeouts, 2, "connect timeouts before the server was marked dead");

        // Now each request fails before a timer of connectTimeout could fire: none starts a connect.
        for (let i = 0; i < 10; i++) {
          const outcome = await Promise.race([
            client.get(key("hang")).then(
              () => "resolved",
              (error: unknown) => (error instanceof ConnectionClosedError ? "failed fast" : explain(error)),
            ),
            sleep(connectTimeout).then(() => "waited for connectTimeout"),
          ]);
          assert.equal(outcome, "failed fast");
        }
      } finally {
        client.close();
        for (const s of fillers) s.destroy();
        await memcached.stop();
      }
    },
  );

  it(
    "a frozen memcached (SIGSTOP: connections open but nothing answers) is marked dead after failuresBeforeDead timeouts",
    { timeout: TEST_TIMEOUT_MS },
    async (t: TestContext) => {
      if (!requireMemcached(t)) return;
      const memcached = await startRealMemcached();
      cleanups.push(() => memcached.stop());
      const name = `127.0.0.1:${memcached.port}`;
      const timeout = 300;
      const client = clientFor([memcached.port], {
        timeout,
        connectTimeout: 2000,
        failuresBeforeDead: 2,
        deadTime: 60_000,
        retryDelay: 5,
        maxRetryDelay: 5,
      });
      assert.equal(await client.set(key("frozen"), "x"), true);
      await freeze(memcached.pid);
      try {
        let timeouts = 0;
        let dead = false;
        for (let i = 0; i < 10 && !dead; i++) {
          try {
            await client.get(key("frozen"));
            assert.fail("a get to a frozen memcached resolved");
          } catch (error) {
            assertFailure(error, [ConnectionClosedError, TimeoutError], name, "get");
            if (error instanceof TimeoutError) timeouts++;
            dead = /marked dead/.test((error as Error).message);
          }
          await sleep(10);
        }
        assert.ok(dead, `after ${timeouts} timeouts in a row the server is still not marked dead`);
        assert.equal(timeouts, 2);
        const outcome = await Promise.race([
          client.get(key("frozen")).then(
            () => "resolved",
            (error: unknown) => (error instanceof ConnectionClosedError ? "failed fast" : explain(error)),
          ),
          sleep(timeout).then(() => "waited for the request timeout"),
        ]);
        assert.equal(outcome, "failed fast");
      } finally {
        client.close();
        process.kill(memcached.pid, "SIGCONT");
        await memcached.stop();
      }
    },
  );

  it(
    "with failover, keys of a dead server move to the other server of a 2-server pool and come back after deadTime",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const a = await startServer({ port: 0 });
      const b = await startServer({ port: 0 });
      cleanups.push(
        () => a.close(),
        () => b.close(),
      );
      const portA = a.port;
      const deadTime = 1500;
      const client = clientFor([portA, b.port], {
        failover: true,
        failuresBeforeDead: 2,
        deadTime,
        retryDelay: 5,
        maxRetryDelay: 5,
      });
      const keys = Array.from({ length: 200 }, (_, i) => key(`pool${i}`));
      const home = new Map(keys.map((k) => [k, client.serverIndex(k)]));
      const onA = keys.filter((k) => home.get(k) === 0);
      const onB = keys.filter((k) => home.get(k) === 1);
      assert.ok(onA.length > 40 && onB.length > 40, `keys split ${onA.length}/${onB.length}`);
      await Promise.all(keys.map((k) => client.set(k, valueOf(k))));
      assert.equal(
        (await holds(portA, onA)) + (await holds(b.port, onB)),
        keys.length,
        "keys not where serverIndex says",
      );
      assert.equal((await holds(portA, onB)) + (await holds(b.port, onA)), 0);

      await a.close();
      // Requests for A's keys fail until A is marked dead, then go to B.
      const { tries } = await retryUntil(() => client.set(onA[0]!, valueOf(onA[0]!)), 5000, 2);
      assert.ok(tries > 1, "a request to the stopped server succeeded at once");
      for (const k of onA) assert.equal(client.serverIndex(k), 1, `${k} did not move to the live server`);
      for (const k of onB) assert.equal(client.serverIndex(k), 1, `${k} moved although its server lives`);
      await Promise.all(onA.map((k) => client.set(k, `${valueOf(k)}:moved`)));
      assert.equal(await holds(b.port, onA, ":moved"), onA.length, "A's keys were not stored on B");
      const moved = await client.getMulti(onA);
      for (const k of onA) assert.equal(moved.get(k)?.value.toString(), `${valueOf(k)}:moved`);
      const stayed = await client.getMulti(onB);
      for (const k of onB) assert.equal(stayed.get(k)?.value.toString(), valueOf(k), `${k} lost its value`);

      // A comes back on its port; once deadTime is over its keys go home again.
      const revived = await startServer({ port: portA });
      cleanups.push(() => revived.close());
      await retryUntil(
        async () => {
          assert.equal(client.serverIndex(onA[0]!), 0);
          assert.equal(await client.set(onA[0]!, "home"), true);
        },
        deadTime + 5000,
        25,
      );
      for (const k of onA) assert.equal(client.serverIndex(k), 0);
      assert.equal(await holds(portA, [onA[0]!], "", "home"), 1);
      client.close();
      await Promise.all([revived.close(), b.close()]);
    },
  );
});

/** How many of `keys` one server holds (asked directly) with value `valueOf(key) + suffix`, or exactly `exact`. */
async function holds(port: number, keys: readonly string[], suffix = "", exact?: string): Promise<number> {
  const direct = clientFor([port]);
  try {
    const found = await direct.getMulti(keys);
    return keys.filter((k) => found.get(k)?.value.toString() === (exact ?? `${valueOf(k)}${suffix}`)).length;
  } finally {
    direct.close();
  }
}

// ---- (d) backpressure ---------------------------------------------------------------------------------

describe("client faults: backpressure", () => {
  it(
    "a server that never reads: requests beyond maxPending are refused with OverloadError and memory stays bounded",
    { timeout: TEST_TIMEOUT_MS },
    async (t: TestContext) => {
      const script = await ScriptServer.start({ pauseOnConnect: true });
      const maxPending = 100;
      const client = clientFor([script.port], { maxPending, timeout: 60_000 });
      const size = 64 * 1024;
      const accepted = Array.from({ length: maxPending }, (_, i) =>
        client.set(key(`bp${i}`), Buffer.alloc(size, i)).then(
          () => "resolved",
          (error: unknown) => explain(error),
        ),
      );
      await sleep(100); // connected, written into the socket, nothing read
      const gc = exposeGc();
      gc();
      const before = memory();

      // 20,000 more sets of 64 KiB each (1.3 GB if anything kept them), and merged gets: all refused.
      let refused = 0;
      const other: string[] = [];
      for (let round = 0; round < 20; round++) {
        const batch = Array.from({ length: 1000 }, (_, i) =>
          client.set(key(`over${round}-${i}`), Buffer.allocUnsafe(size)).then(
            () => other.push("resolved"),
            (error: unknown) => {
              if (error instanceof OverloadError) refused++;
              else other.push(explain(error));
            },
          ),
        );
        const gets = Array.from({ length: 100 }, (_, i) =>
          client.get(key(`over${round}-${i}`)).then(
            () => other.push("get resolved"),
            (error: unknown) => {
              if (error instanceof OverloadError) refused++;
              else other.push(explain(error));
            },
          ),
        );
        await Promise.all([...batch, ...gets]);
      }
      assert.deepEqual(other, []);
      assert.equal(refused, 20 * 1100);
      // Buffers' backing stores are freed after a collection, not during it: settle before measuring.
      for (let i = 0; i < 5; i++) {
        gc();
        await sleep(20);
      }
      const grown = memory() - before;
      t.diagnostic(
        `heap + buffers grew by ${(grown / 1024 / 1024).toFixed(1)} MiB over 22,000 refused requests`,
      );
      assert.ok(grown < 64 * 1024 * 1024, `memory grew by ${Math.round(grown / 1024 / 1024)} MiB`);

      await assert.rejects(client.set(key("over"), "x"), (error: unknown) => {
        assertFailure(error, [OverloadError], script.name, "set");
        assert.match((error as Error).message, /maxPending/);
        return true;
      });

      client.close();
      const settled = await Promise.all(accepted);
      assert.ok(
        settled.every((s) => s.startsWith("ConnectionClosedError")),
        `pending requests after close: ${[...new Set(settled)]}`,
      );
    },
  );

  it("backpressure lifts as replies arrive: once answered, the next requests are accepted", async () => {
    const script = await ScriptServer.start();
    const maxPending = 50;
    const keys = Array.from({ length: maxPending }, (_, i) => key(`gate${i}`));
    script.seed(keys);
    const held: (() => void)[] = [];
    script.respond = (_request, honest, socket) => held.push(() => socket.write(honest));
    const client = clientFor([script.port], { maxPending, timeout: 10_000 });
    const first = keys.map((k) => client.gets(k));
    await assert.rejects(client.gets(keys[0]!), OverloadError);
    await waitFor(() => held.length === maxPending, 5000, "the server to receive every request");
    for (const release of held.splice(0)) release();
    const got = await Promise.all(first);
    got.forEach((r, i) => assert.equal(r?.value.toString(), valueOf(keys[i]!)));
    script.respond = (_request, honest, socket) => socket.write(honest);
    const again = await Promise.all(keys.map((k) => client.gets(k)));
    again.forEach((r, i) => assert.equal(r?.value.toString(), valueOf(keys[i]!)));
  });
});

/** The garbage collector, so a memory measurement is not skewed by garbage not yet collected. */
function exposeGc(): () => void {
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
}

function memory(): number {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}
