// Malformed, hostile and abusive clients: the embedded server answers with an error line or closes the
// connection, never crashes, keeps serving everyone else and keeps its memory bounded. Where memcached
// defines the behaviour, the same scenario runs against real memcached and must give the same bytes.
import { after, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createConnection, type Socket } from "node:net";
import v8 from "node:v8";
import vm from "node:vm";
import { startServer, type MemcachedServer, type ServerOptions } from "../../src/server/index.js";
import { requireMemcached, startRealMemcached, type RealMemcached } from "../helpers/real-memcached.js";

const HOST = "127.0.0.1";
const READ_TIMEOUT_MS = 5000; // a reply that has not arrived by then fails the test
const POLL_MS = 20; // between looks at a counter that should change
const TEST_TIMEOUT_MS = 30_000; // hard stop for any single test
const PREFIX = `bi${randomBytes(4).toString("hex")}`; // keys of this run

v8.setFlagsFromString("--expose-gc");
/** A full garbage collection, so memory figures count what is kept, not what is waiting to be freed. */
const gc = vm.runInNewContext("gc") as () => void;

// ---- a raw client ----

/** One client socket that collects every byte the server sends and notices when it closes. */
class Peer {
  readonly socket: Socket;
  #chunks: Buffer[] = [];
  #size = 0;
  #closed = false;
  readonly #waiters = new Set<() => void>();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#size += chunk.length;
      this.#notify();
    });
    // A reset (the server closed with bytes of ours unread) ends the session like a close.
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.#closed = true;
      this.#notify();
    });
  }

  static open(port: number): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: HOST, port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection to port ${port} within ${READ_TIMEOUT_MS} ms`));
      }, READ_TIMEOUT_MS);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(new Peer(socket));
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Everything received and not taken yet. */
  get received(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks, this.#size)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  take(): Buffer {
    const bytes = this.received;
    this.#chunks = [];
    this.#size = 0;
    return bytes;
  }

  /** Writes bytes and waits until they are handed to the kernel; a no-op once closed. */
  send(data: Buffer | string): Promise<void> {
    if (this.#closed || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.socket.write(data, () => resolve()));
  }

  /** Waits until the received bytes satisfy `done`, then takes them. Fails on timeout or close. */
  async until(
    done: (received: Buffer) => boolean,
    what: string,
    timeoutMs = READ_TIMEOUT_MS,
  ): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.received)) {
      const shown = JSON.stringify(this.received.toString("latin1").slice(0, 300));
      if (this.#closed) throw new Error(`connection closed while waiting for ${what}; got ${shown}`);
      if (Date.now() >= deadline) throw new Error(`no ${what} within ${timeoutMs} ms; got ${shown}`);
      await this.#wait(deadline - Date.now());
    }
    return this.take();
  }

  /** Waits until the received bytes end with `suffix`. */
  untilEndsWith(suffix: string, timeoutMs = READ_TIMEOUT_MS): Promise<Buffer> {
    const tail = Buffer.from(suffix, "latin1");
    return this.until(
      (b) => b.length >= tail.length && b.subarray(-tail.length).equals(tail),
      JSON.stringify(suffix),
      timeoutMs,
    );
  }

  /** Sends one request and returns the reply, known complete when it ends with `suffix`. */
  async ask(request: string, suffix: string, timeoutMs = READ_TIMEOUT_MS): Promise<string> {
    await this.send(request);
    return (await this.untilEndsWith(suffix, timeoutMs)).toString("latin1");
  }

  /** Waits for the server to close the connection; returns what arrived before. */
  async closedByServer(timeoutMs = READ_TIMEOUT_MS): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      if (Date.now() >= deadline)
        throw new Error(`the server did not close the connection within ${timeoutMs} ms`);
      await this.#wait(deadline - Date.now());
    }
    return this.take();
  }

  /** True when the connection is still open after `ms` of waiting. */
  async staysOpen(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.#closed && Date.now() < deadline) await this.#wait(deadline - Date.now());
    return !this.#closed;
  }

  close(): void {
    this.socket.destroy();
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(1, ms));
      this.#waiters.add(wake);
    });
  }

  #notify(): void {
    for (const wake of [...this.#waiters]) wake();
  }
}

/** Everything a test opened, closed when the test ends (also when it fails). */
function track(t: TestContext): { peer(port: number): Promise<Peer> } {
  const peers: Peer[] = [];
  t.after(() => {
    for (const peer of peers) peer.close();
  });
  return {
    async peer(port: number) {
      const peer = await Peer.open(port);
      peers.push(peer);
      return peer;
    },
  };
}

async function statsOf(peer: Peer): Promise<Map<string, string>> {
  const reply = await peer.ask("stats\r\n", "END\r\n");
  const stats = new Map<string, string>();
  for (const row of reply.split("\r\n")) {
    const match = /^STAT (\S+) (.*)$/.exec(row);
    if (match) stats.set(match[1]!, match[2]!);
  }
  return stats;
}

async function stat(peer: Peer, name: string): Promise<number> {
  const value = (await statsOf(peer)).get(name);
  assert.ok(value !== undefined, `stats has no ${name}`);
  return Number(value);
}

/** Polls until `check` holds, failing with `what` after the timeout. */
async function eventually(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = READ_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() >= deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A deterministic byte source (xorshift32), so a failing garbage run can be replayed. */
function garbage(seed: number, length: number, alphabet?: readonly number[]): Buffer {
  let x = seed >>> 0 || 1;
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = alphabet ? alphabet[x % alphabet.length]! : x & 0xff;
  }
  return out;
}

/**
 * Memory the process keeps after full collections, in bytes. Buffers are swept concurrently, so the
 * collection runs twice with a pause between for the figures to settle.
 */
async function retained(): Promise<NodeJS.MemoryUsage> {
  gc();
  await sleep(20);
  gc();
  return process.memoryUsage();
}

const MiB = 1024 * 1024;

// ---- the servers under test ----

interface Target {
  port: number;
  /** The embedded server, when that is what runs. */
  embedded: MemcachedServer | undefined;
}

async function embeddedTarget(t: TestContext, options: Partial<ServerOptions> = {}): Promise<Target> {
  const server = await startServer({ host: HOST, port: 0, ...options });
  t.after(() => server.close());
  return { port: server.port, embedded: server };
}

/** One real memcached for the whole file (it takes a second to stop); tests use fresh keys and deltas. */
let sharedMemcached: Promise<RealMemcached> | undefined;
after(async () => {
  if (sharedMemcached) await (await sharedMemcached).stop();
});

async function realTarget(): Promise<Target> {
  sharedMemcached ??= startRealMemcached();
  const real = await sharedMemcached;
  return { port: real.port, embedded: undefined };
}

/** Registers the scenario twice: against the embedded server and against real memcached. */
function onBoth(name: string, scenario: (t: TestContext, target: Target) => Promise<void>): void {
  test(`${name} (embedded server)`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await scenario(t, await embeddedTarget(t));
  });
  test(`${name} (real memcached)`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    if (!requireMemcached(t)) return;
    await scenario(t, await realTarget());
  });
}

let keyCounter = 0;
function freshKey(): string {
  return `${PREFIX}-${++keyCounter}`;
}

// ---- over-long lines ----

onBoth(
  "a line over 2048 bytes without a newline makes the server close the connection",
  async (t, target) => {
    const peers = track(t);
    const peer = await peers.peer(target.port);
    await peer.send(`set ${"x".repeat(3000)}`);
    const before = await peer.closedByServer();
    assert.equal(before.toString("latin1"), "", "nothing is answered before the close");
    const other = await peers.peer(target.port);
    assert.match(await other.ask("version\r\n", "\r\n"), /^VERSION \S+\r\n$/);
  },
);

onBoth("a non-get line of 20 KiB with its newline closes the connection too", async (t, target) => {
  const peers = track(t);
  const peer = await peers.peer(target.port);
  await peer.send(`${"x".repeat(20000)}\r\nversion\r\n`);
  assert.equal((await peer.closedByServer()).toString("latin1"), "");
});

onBoth("a long multi-get line is waited for and answered, not closed", async (t, target) => {
  const peers = track(t);
  const peer = await peers.peer(target.port);
  const key = freshKey();
  assert.equal(await peer.ask(`set ${key} 0 0 2\r\nhi\r\n`, "\r\n"), "STORED\r\n");
  const keys = Array.from({ length: 600 }, (_, i) => `${key}-${i}`).join(" ");
  await peer.send(`get ${keys}`);
  assert.ok(await peer.staysOpen(200), "a get line over 2048 bytes keeps the connection open");
  assert.equal(await peer.ask(` ${key}\r\n`, "END\r\n"), `VALUE ${key} 0 2\r\nhi\r\nEND\r\n`);
});

// ---- data blocks of the wrong length ----

/** A script of data blocks that do not match their declared length, and memcached's exact answer. */
function badChunkScript(key: string): { request: string; reply: string } {
  return {
    request:
      `set ${key} 0 0 5\r\nabc\r\nget ${key}\r\n` + // too short: "abc\r\nge" taken, "t KEY" left over
      `set ${key} 0 0 3\r\nabcdef\r\nget ${key}\r\n` + // too long: "abcde" taken, "f" left over
      `set ${key} 0 0 3 noreply\r\nabcdef\r\n` + // the error is silent, the leftover is not
      `ms ${key} 3 q\r\nabcdef\r\n` + // ms always reports it, q or not
      `set ${key} 0 0 2\r\nok\r\nget ${key}\r\n` + // and the connection still works
      "mn\r\n",
    reply:
      "CLIENT_ERROR bad data chunk\r\nERROR\r\n" +
      "CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n" +
      "ERROR\r\n" +
      "CLIENT_ERROR bad data chunk\r\nERROR\r\n" +
      `STORED\r\nVALUE ${key} 0 2\r\nok\r\nEND\r\n` +
      "MN\r\n",
  };
}

onBoth(
  "a data block of the wrong length: CLIENT_ERROR bad data chunk, and the connection goes on",
  async (t, target) => {
    const peers = track(t);
    const peer = await peers.peer(target.port);
    const whole = badChunkScript(freshKey());
    assert.equal(await peer.ask(whole.request, "MN\r\n"), whole.reply, "sent in one write");

    const pieces = badChunkScript(freshKey());
    for (let i = 0; i < pieces.request.length; i += 5) {
      await peer.send(pieces.request.slice(i, i + 5));
      await sleep(1);
    }
    assert.equal(
      (await peer.untilEndsWith("MN\r\n")).toString("latin1"),
      pieces.reply,
      "sent 5 bytes at a time",
    );
  },
);

// ---- binary garbage ----

const ERROR_LINE = /^(ERROR|CLIENT_ERROR [^\r\n]*|SERVER_ERROR [^\r\n]*)$/;
const UPPERCASE_JUNK = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&*"]
  .map((c) => c.charCodeAt(0))
  .concat(13, 10);
const GARBAGE = [
  { name: "uniform random bytes", seed: 0x5eed0001, alphabet: undefined },
  {
    name: "mostly NUL, 0xff, CR, LF and spaces",
    seed: 0x5eed0002,
    alphabet: [0, 0, 0xff, 0xff, 13, 10, 32, 0x80, 0x7f],
  },
  { name: "uppercase junk lines", seed: 0x5eed0003, alphabet: UPPERCASE_JUNK },
] as const;
const GARBAGE_BYTES = 128 * 1024; // per kind
const GARBAGE_CHUNK = 4096; // bytes per write, each followed by a bystander's round trip

onBoth(
  "binary garbage gets error lines or a close, and a second client is served throughout",
  async (t, target) => {
    const peers = track(t);
    const bystander = await peers.peer(target.port);
    const key = freshKey();
    for (const kind of GARBAGE) {
      const victim = await peers.peer(target.port);
      const bytes = garbage(kind.seed, GARBAGE_BYTES, kind.alphabet);
      for (let i = 0; i < bytes.length && !victim.closed; i += GARBAGE_CHUNK) {
        await victim.send(bytes.subarray(i, i + GARBAGE_CHUNK));
        const value = `v${i}`;
        const reply = await bystander.ask(
          `set ${key} 0 0 ${value.length}\r\n${value}\r\nget ${key}\r\n`,
          "END\r\n",
        );
        assert.equal(
          reply,
          `STORED\r\nVALUE ${key} 0 ${value.length}\r\n${value}\r\nEND\r\n`,
          `${kind.name}: bystander`,
        );
      }
      // Whatever was answered is whole error lines, however the garbage happened to be cut into lines.
      let seen = -1;
      await eventually(() => {
        const settled = victim.received.length === seen;
        seen = victim.received.length;
        return settled || victim.closed;
      }, `${kind.name}: replies to the garbage stop coming`);
      const answered = victim.take().toString("latin1");
      const lines = answered.split("\r\n");
      assert.equal(lines.pop(), "", `${kind.name}: replies end with a whole line`);
      for (const reply of lines) assert.match(reply, ERROR_LINE, `${kind.name}: only error lines`);
      assert.ok(
        lines.length > 0 || victim.closed,
        `${kind.name}: the server reacted (error lines or a close)`,
      );
      t.diagnostic(`${kind.name}: ${lines.length} error lines, ${victim.closed ? "closed" : "still open"}`);
      victim.close();
    }
    if (target.embedded) {
      const server = target.embedded;
      await eventually(() => server.connectionCount === 1, "only the bystander is left connected");
    }
    const late = await peers.peer(target.port);
    assert.match(
      await late.ask("version\r\n", "\r\n"),
      /^VERSION \S+\r\n$/,
      "a new client is served afterwards",
    );
  },
);

// ---- half a command, then gone ----

const HALF_COMMANDS: { name: string; bytes(key: string): string }[] = [
  { name: "a data block cut short", bytes: (key) => `set ${key} 0 0 10\r\nabc` },
  { name: "a command line cut short", bytes: () => "get fo" },
  { name: "an ms data block cut short", bytes: (key) => `ms ${key} 10 T0\r\nab` },
  { name: "a storage line without its newline", bytes: (key) => `cas ${key} 0 0 1 5` },
  {
    name: "a too-large item mid-swallow",
    bytes: (key) => `set ${key} 0 0 2000000\r\n${"z".repeat(100_000)}`,
  },
  { name: "a long multi-get line without its newline", bytes: (key) => `get ${`${key} `.repeat(200)}` },
];

onBoth(
  "a client that sends half a command and disconnects leaves the server unaffected",
  async (t, target) => {
    const peers = track(t);
    const control = await peers.peer(target.port);
    const baseline = await stat(control, "curr_connections");
    for (const half of HALF_COMMANDS) {
      for (const ending of ["end", "reset"] as const) {
        const key = freshKey();
        const readBefore = await stat(control, "bytes_read");
        const victim = await peers.peer(target.port);
        const bytes = half.bytes(key);
        await victim.send(bytes);
        // Wait until the server has read the half command (each stats request adds its own 7 bytes).
        let polls = 1;
        await eventually(
          async () => (await stat(control, "bytes_read")) - readBefore - 7 * polls++ >= bytes.length,
          `${half.name}: the server reads the bytes`,
        );
        if (ending === "end") victim.socket.end();
        else victim.socket.resetAndDestroy();
        await eventually(
          async () => (await stat(control, "curr_connections")) === baseline,
          `${half.name} (${ending}): the connection count returns to ${baseline}`,
        );
        if (target.embedded)
          assert.equal(target.embedded.connectionCount, 1, "only the control client is counted");
        assert.equal(
          await control.ask(`get ${key}\r\n`, "END\r\n"),
          "END\r\n",
          `${half.name}: nothing half-stored`,
        );
      }
    }
    assert.match(await control.ask("version\r\n", "\r\n"), /^VERSION \S+\r\n$/);
  },
);

// ---- many idle connections ----

const IDLE_CONNECTIONS = 1000;

test(
  "1,000 idle connections at once stay open, cost bounded memory, and do not slow a new client",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const target = await embeddedTarget(t, { maxConnections: IDLE_CONNECTIONS + 100 });
    const server = target.embedded!;
    const sockets: Socket[] = [];
    t.after(() => {
      for (const socket of sockets) socket.destroy();
    });
    const before = await retained();
    let closedEarly = 0;
    await Promise.all(
      Array.from(
        { length: IDLE_CONNECTIONS },
        () =>
          new Promise<void>((resolve, reject) => {
            const socket = createConnection({ host: HOST, port: target.port });
            sockets.push(socket);
            socket.once("connect", () => resolve());
            socket.once("error", reject);
            socket.once("close", () => closedEarly++);
          }),
      ),
    );
    await eventually(
      () => server.connectionCount === IDLE_CONNECTIONS,
      `the server counts ${IDLE_CONNECTIONS} connections`,
    );
    assert.equal(server.engine.stats.currConnections, IDLE_CONNECTIONS);

    const peers = track(t);
    const started = Date.now();
    const fresh = await peers.peer(target.port);
    assert.match(await fresh.ask("version\r\n", "\r\n", 2000), /^VERSION \S+\r\n$/);
    assert.ok(Date.now() - started < 2000, "a new client is answered within two seconds");
    fresh.close();

    await sleep(300);
    assert.equal(closedEarly, 0, "no idle connection was closed");
    assert.equal(server.connectionCount, IDLE_CONNECTIONS);
    const during = await retained();
    const heapGrowth = during.heapUsed - before.heapUsed;
    const rssGrowth = during.rss - before.rss;
    t.diagnostic(
      `${IDLE_CONNECTIONS} connections: heap +${(heapGrowth / MiB).toFixed(1)} MiB, rss +${(rssGrowth / MiB).toFixed(1)} MiB`,
    );
    assert.ok(
      heapGrowth < 200 * MiB,
      `heap grew ${Math.round(heapGrowth / MiB)} MiB for ${IDLE_CONNECTIONS} connections`,
    );
    assert.ok(
      rssGrowth < 200 * MiB,
      `rss grew ${Math.round(rssGrowth / MiB)} MiB for ${IDLE_CONNECTIONS} connections`,
    );

    for (const socket of sockets) socket.destroy();
    await eventually(() => server.connectionCount === 0, "the connection count goes back to 0");
    assert.equal(server.engine.stats.currConnections, 0);
  },
);

// ---- huge declared items ----

onBoth(
  "a too-large item is refused, its bytes swallowed unrun, and the next command read",
  async (t, target) => {
    const peers = track(t);
    const peer = await peers.peer(target.port);
    const key = freshKey();
    const length = 5 * MiB;
    await peer.send(`set ${key} 0 0 ${length}\r\n`);
    // Command lines inside the block must not be run: they are data being thrown away.
    await peer.send(Buffer.alloc(length, "get x\r\nversion\r\n"));
    assert.equal(
      await peer.ask(`\r\nget ${key}\r\n`, "END\r\n"),
      "SERVER_ERROR object too large for cache\r\nEND\r\n",
      "one error for the item, nothing for the lines inside its block, then the next command",
    );
  },
);

const SWALLOW_TOTAL = 48 * MiB; // bytes sent after a 2 GB declaration
const SWALLOW_CHUNK = 64 * 1024;

onBoth("a 2 GB declared item is swallowed as it arrives, not buffered", async (t, target) => {
  const peers = track(t);
  const peer = await peers.peer(target.port);
  const control = await peers.peer(target.port);
  const key = freshKey();
  await peer.send(`set ${key} 0 0 2000000000\r\n`);
  const readBefore = await stat(control, "bytes_read");
  const before = await retained();
  // Command lines inside the block must not be run: they are data being thrown away.
  const chunk = Buffer.alloc(SWALLOW_CHUNK, "version\r\nget x\r\n");
  for (let sent = 0; sent < SWALLOW_TOTAL; sent += chunk.length) {
    if (!peer.socket.write(chunk)) await new Promise((resolve) => peer.socket.once("drain", resolve));
  }
  let polls = 1;
  await eventually(
    async () => (await stat(control, "bytes_read")) - readBefore - 7 * polls++ >= SWALLOW_TOTAL,
    "the server reads every byte sent",
  );
  const during = await retained();
  // The embedded server refuses the item at once; memcached sends the same line once the block is over.
  const answered = peer.received.toString("latin1");
  const refusal = "SERVER_ERROR object too large for cache\r\n";
  assert.equal(answered, target.embedded ? refusal : "", "nothing in the block was answered");
  assert.ok(!peer.closed, "the connection stays open, waiting for the rest of the block");
  if (target.embedded) {
    const growth = during.arrayBuffers - before.arrayBuffers;
    t.diagnostic(
      `buffers grew ${(growth / MiB).toFixed(1)} MiB while ${SWALLOW_TOTAL / MiB} MiB were swallowed`,
    );
    assert.ok(
      growth < 8 * MiB,
      `buffers grew ${Math.round(growth / MiB)} MiB while ${SWALLOW_TOTAL / MiB} MiB were swallowed`,
    );
    assert.equal(target.embedded.engine.store.bytes, 0, "nothing was stored");
  }
});

// ---- a client that does not read its replies ----

const BIG_VALUE = 512 * 1024; // bytes
const SLOW_GETS = 400; // 200 MiB of replies in all

onBoth(
  "a slow reader: the server stops serving it, keeps memory bounded, and delivers everything later",
  async (t, target) => {
    const peers = track(t);
    const control = await peers.peer(target.port);
    const key = freshKey();
    const value = garbage(0x51c0, BIG_VALUE);
    await control.send(
      Buffer.concat([Buffer.from(`set ${key} 0 0 ${BIG_VALUE}\r\n`), value, Buffer.from("\r\n")]),
    );
    assert.equal((await control.untilEndsWith("\r\n")).toString("latin1"), "STORED\r\n");

    const one = Buffer.concat([
      Buffer.from(`VALUE ${key} 0 ${BIG_VALUE}\r\n`),
      value,
      Buffer.from("\r\nEND\r\n"),
    ]);
    const expectedBytes = one.length * SLOW_GETS;
    const hitsBefore = await stat(control, "get_hits");
    const before = await retained();

    const reader = createConnection({ host: HOST, port: target.port });
    t.after(() => reader.destroy());
    reader.pause(); // the client reads nothing for now
    await new Promise<void>((resolve, reject) => {
      reader.once("connect", resolve);
      reader.once("error", reject);
    });
    reader.write(`get ${key}\r\n`.repeat(SLOW_GETS));

    // The server answers until the socket buffers fill, then stops working for this client.
    let hits = -1;
    let steady = 0;
    await eventually(async () => {
      const now = (await stat(control, "get_hits")) - hitsBefore;
      steady = now === hits ? steady + 1 : 0;
      hits = now;
      return steady >= 5;
    }, "the get count settles while the client does not read");
    t.diagnostic(`${hits} of ${SLOW_GETS} gets ran while the client read nothing`);
    assert.ok(hits > 0, "some replies were produced");
    assert.ok(
      hits < SLOW_GETS / 2,
      `the server paused: ${hits} of ${SLOW_GETS} gets run while nothing was read`,
    );
    assert.match(
      await control.ask("version\r\n", "\r\n"),
      /^VERSION \S+\r\n$/,
      "other clients are served meanwhile",
    );
    if (target.embedded) {
      const during = await retained();
      const growth = during.arrayBuffers - before.arrayBuffers + (during.heapUsed - before.heapUsed);
      assert.ok(growth < 64 * MiB, `memory grew ${Math.round(growth / MiB)} MiB for a stalled reader`);
    }

    // Now read: every reply arrives, byte for byte.
    let received = 0;
    let mismatch: number | undefined;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${received} of ${expectedBytes} reply bytes within 20 s`)),
        20_000,
      );
      reader.on("data", (chunk: Buffer) => {
        for (let i = 0; i < chunk.length && mismatch === undefined;) {
          const at = received % one.length;
          const n = Math.min(chunk.length - i, one.length - at);
          if (!chunk.subarray(i, i + n).equals(one.subarray(at, at + n))) mismatch = received;
          i += n;
          received += n;
        }
        if (received >= expectedBytes || mismatch !== undefined) {
          clearTimeout(timer);
          resolve();
        }
      });
      reader.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      reader.resume();
    });
    assert.equal(mismatch, undefined, `reply bytes differ from offset ${mismatch}`);
    assert.equal(received, expectedBytes, "every reply arrived");
    assert.equal((await stat(control, "get_hits")) - hitsBefore, SLOW_GETS);
  },
);

const FLOOD_LIMIT = 64 * MiB; // most bytes of small requests a non-reading client tries to send
const FLOOD_STALL_MS = 500; // a write that does not drain for this long means the server stopped reading
const FLOOD_ACCEPTED_MAX = 16 * MiB; // socket buffers hold a few MiB; more read means nothing stopped it

onBoth(
  "a non-reading client pipelining small requests: the server stops reading, then answers them all",
  async (t, target) => {
    // Each read of small requests makes less than a flush's worth of replies; the pause must still come.
    const peers = track(t);
    const control = await peers.peer(target.port);
    const readBefore = await stat(control, "bytes_read");
    const before = await retained();
    const reader = createConnection({ host: HOST, port: target.port });
    t.after(() => reader.destroy());
    reader.pause();
    await new Promise<void>((resolve, reject) => {
      reader.once("connect", resolve);
      reader.once("error", reject);
    });
    const request = "version\r\n";
    const chunk = Buffer.from(request.repeat(7000));
    let sent = 0;
    while (sent < FLOOD_LIMIT) {
      sent += chunk.length;
      if (reader.write(chunk)) continue;
      const drained = await Promise.race([
        new Promise<boolean>((resolve) => reader.once("drain", () => resolve(true))),
        sleep(FLOOD_STALL_MS).then(() => false),
      ]);
      if (!drained) break;
    }
    let polls = 1;
    let accepted = 0;
    await eventually(async () => {
      const now = (await stat(control, "bytes_read")) - readBefore - 7 * polls++;
      const settled = now === accepted;
      accepted = now;
      return settled;
    }, "the server's bytes_read settles");
    t.diagnostic(`the server read ${(accepted / MiB).toFixed(1)} of ${(sent / MiB).toFixed(1)} MiB sent`);
    if (target.embedded) {
      const during = await retained();
      const growth = during.arrayBuffers - before.arrayBuffers;
      t.diagnostic(`buffers grew ${(growth / MiB).toFixed(1)} MiB`);
      assert.ok(
        growth < 32 * MiB,
        `buffers grew ${Math.round(growth / MiB)} MiB for a client that reads nothing`,
      );
    }
    assert.ok(
      accepted < FLOOD_ACCEPTED_MAX,
      `the server read ${Math.round(accepted / MiB)} MiB from a client that reads nothing; it should stop reading`,
    );

    // Reading again: one VERSION line per request sent.
    const version = (await control.ask("version\r\n", "\r\n")).length;
    const expected = (sent / request.length) * version;
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${received} of ${expected} reply bytes within 20 s`)),
        20_000,
      );
      reader.on("data", (data: Buffer) => {
        received += data.length;
        if (received >= expected) {
          clearTimeout(timer);
          resolve();
        }
      });
      reader.resume();
    });
    assert.equal(received, expected);
  },
);

// ---- limits ----

test(
  "connection limit: with maxConnections 5 the 6th gets ERROR Too many open connections and is closed",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const target = await embeddedTarget(t, { maxConnections: 5 });
    const server = target.embedded!;
    const peers = track(t);
    const open: Peer[] = [];
    for (let i = 0; i < 5; i++) {
      const peer = await peers.peer(target.port);
      assert.match(await peer.ask("version\r\n", "\r\n"), /^VERSION /);
      open.push(peer);
    }
    assert.equal(server.connectionCount, 5);
    const sixth = await peers.peer(target.port);
    assert.equal((await sixth.closedByServer()).toString("latin1"), "ERROR Too many open connections\r\n");
    assert.equal(server.connectionCount, 5);

    open[0]!.close();
    await eventually(() => server.connectionCount === 4, "a slot is freed");
    const next = await peers.peer(target.port);
    const stats = await statsOf(next);
    assert.equal(stats.get("rejected_connections"), "1");
    assert.equal(stats.get("curr_connections"), "5");
  },
);

test(
  "idle timeout: a silent connection is closed by the server; a talking one is not",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const target = await embeddedTarget(t, { idleTimeout: 1 });
    const server = target.embedded!;
    const peers = track(t);
    const idle = await peers.peer(target.port);
    const talker = await peers.peer(target.port);
    const started = Date.now();
    let idleClosedAt: number | undefined;
    idle.socket.once("close", () => (idleClosedAt = Date.now() - started));
    for (let i = 0; i < 9; i++) {
      await sleep(200);
      assert.match(await talker.ask("version\r\n", "\r\n"), /^VERSION /, "the talking client is served");
    }
    assert.ok(!talker.closed, "a connection that keeps talking stays open past the timeout");
    await idle.closedByServer(3000);
    assert.ok(
      idleClosedAt !== undefined && idleClosedAt >= 900 && idleClosedAt < 3000,
      `closed after ${idleClosedAt} ms`,
    );
    await talker.closedByServer(3000);
    await eventually(() => server.connectionCount === 0, "both connections are gone");
  },
);

test(
  "memory limit: LRU eviction keeps memory bounded, counts evictions, and spares recently used keys",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const memoryLimit = 2 * MiB;
    const target = await embeddedTarget(t, { memoryLimit, maxItemSize: MiB });
    const peers = track(t);
    const peer = await peers.peer(target.port);
    const size = 32 * 1024;
    const value = "v".repeat(size);
    const set = (key: string) => `set ${key} 0 0 ${size}\r\n${value}\r\n`;
    const hot = Array.from({ length: 10 }, (_, i) => `${PREFIX}-hot-${i}`);
    const cold = Array.from({ length: 10 }, (_, i) => `${PREFIX}-cold-${i}`);
    const touchHot = `get ${hot.join(" ")}\r\n`;

    await peer.ask(hot.concat(cold).map(set).join(""), `STORED\r\n`.repeat(20));
    await peer.ask(touchHot, "END\r\n");
    for (let batch = 0; batch < 20; batch++) {
      const fillers = Array.from({ length: 10 }, (_, i) => set(`${PREFIX}-fill-${batch}-${i}`)).join("");
      await peer.ask(fillers, "STORED\r\n".repeat(10));
      await peer.ask(touchHot, "END\r\n");
    }

    const stats = await statsOf(peer);
    const evictions = Number(stats.get("evictions"));
    const items = Number(stats.get("curr_items"));
    const bytes = Number(stats.get("bytes"));
    t.diagnostic(`evictions ${evictions}, curr_items ${items}, bytes ${bytes}`);
    assert.ok(evictions > 0, `evictions ${evictions}`);
    assert.ok(items > 0 && items <= memoryLimit / size, `curr_items ${items} fits ${memoryLimit} bytes`);
    assert.ok(
      bytes <= memoryLimit,
      `bytes ${bytes} stay under limit_maxbytes ${stats.get("limit_maxbytes")}`,
    );
    assert.equal(evictions + items, 220, "every item stored is either still there or counted as evicted");

    const present = async (keys: string[]) => {
      const reply = await peer.ask(keys.map((key) => `mg ${key}\r\n`).join("") + "mn\r\n", "MN\r\n");
      return reply.split("\r\n").filter((row) => row === "HD").length;
    };
    const hotLeft = await present(hot);
    const coldLeft = await present(cold);
    assert.ok(hotLeft >= 8, `${hotLeft} of 10 recently used keys survived`);
    assert.ok(coldLeft <= 2, `${coldLeft} of 10 untouched keys of the same age survived`);
  },
);
