// KetamaRing: how it spreads keys, and the proof that it places them as libmemcached does: compared with
// libmemcached itself through pylibmc (Debian's python3-pylibmc), offline and against three real memcached.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createConnection } from "node:net";
import { test, type TestContext } from "node:test";
import { ConfigError } from "../../src/errors.js";
import {
  KetamaBehavior,
  KetamaHash,
  KetamaRing,
  md5Hash,
  oneAtATimeHash,
  pointName,
  type KetamaOptions,
  type KetamaServer,
} from "../../src/client/ketama.js";
import { encodeGet, encodeStore, ReplyParser, type ReplyFrame } from "../../src/protocol/index.js";
import { requireMemcached, startRealMemcached, type RealMemcached } from "../helpers/real-memcached.js";
import { runProgram } from "../helpers/run-program.js";

const PYLIBMC_INSTALL_HINT = "apt-get install -y python3-pylibmc";
const EXCHANGE_TIMEOUT_MS = 10_000; // a probe or a batch of sets on loopback that has not finished by then failed
const PYTHON_TIMEOUT_MS = 60_000; // one pylibmc run

const three = (port = 11211): KetamaServer[] => [
  { host: "10.0.0.1", port },
  { host: "10.0.0.2", port },
  { host: "10.0.0.3", port },
];

function keys(count: number, prefix = "key"): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}:${i}`);
}

/** How many of `keyList` each server gets. */
function shares(ring: KetamaRing, keyList: readonly string[]): number[] {
  const counts = ring.servers.map(() => 0);
  for (const key of keyList) counts[ring.serverFor(key)]!++;
  return counts;
}

// ---------------------------------------------------------------------------------------------------------
// How the ring behaves

test("ketama: a key maps to the same server in every ring built from the same servers", () => {
  const first = new KetamaRing(three());
  const second = new KetamaRing(three());
  for (const key of keys(2000)) {
    assert.equal(first.serverFor(key), second.serverFor(key));
    assert.equal(first.serverFor(key), first.serverFor(Buffer.from(key, "utf8")));
  }
  assert.deepEqual(first.points(), second.points());
});

test("ketama: the key hash is libhashkit's MD5, the digest's first four bytes little-endian", () => {
  // RFC 1321's test suite: MD5("") = d41d8cd9..., MD5("a") = 0cc175b9...
  assert.equal(md5Hash(Buffer.alloc(0)), 0xd98c1dd4);
  assert.equal(md5Hash(Buffer.from("a")), 0xb975c10c);
  assert.equal(new KetamaRing(three()).hashKey("a"), 0xb975c10c);
  // The key hash is MD5 written out for speed: it must equal node:crypto's across block boundaries.
  for (let length = 0; length <= 300; length++) {
    for (const bytes of [randomBytes(length), Buffer.alloc(length, 0xff)]) {
      const expected = createHash("md5").update(bytes).digest().readUInt32LE(0);
      assert.equal(md5Hash(bytes), expected, `MD5 of ${length} bytes ${bytes.toString("hex")}`);
    }
  }
});

test("ketama: a string key hashes as its UTF-8 bytes, ASCII or not, short or long", () => {
  for (const behavior of [KetamaBehavior.weighted, KetamaBehavior.ketama]) {
    const ring = new KetamaRing(three(), { behavior });
    for (const key of [
      "a",
      "logentry-17",
      "clé",
      "ключ:🎉",
      "x".repeat(511),
      "y".repeat(600),
      "é".repeat(300),
    ]) {
      assert.equal(ring.hashKey(key), ring.hashKey(Buffer.from(key, "utf8")), `key ${key.slice(0, 20)}`);
    }
  }
  assert.equal(
    new KetamaRing(three(), { behavior: KetamaBehavior.ketama }).hashKey("a"),
    oneAtATimeHash(Buffer.from("a")),
  );
});

test("ketama: point names are host:port-i, and host-i on memcached's default port 11211", () => {
  assert.equal(pointName({ host: "10.0.0.1", port: 11211 }, 0), "10.0.0.1-0");
  assert.equal(pointName({ host: "cache.example", port: 11212 }, 39), "cache.example:11212-39");
  // A weighted continuum: 40 names per server of weight 1, each MD5 digest cut into four points.
  const server = { host: "10.0.0.1", port: 11211 };
  const ring = new KetamaRing([server, { host: "10.0.0.2", port: 11211 }]);
  const expected: number[] = [];
  for (let i = 0; i < 40; i++) {
    const digest = createHash("md5").update(pointName(server, i)).digest();
    for (let part = 0; part < 4; part++) expected.push(digest.readUInt32LE(part * 4));
  }
  const actual = ring
    .points()
    .filter((point) => point.server === 0)
    .map((point) => point.value);
  assert.deepEqual(
    actual,
    expected.sort((a, b) => a - b),
  );
});

test("ketama: 3 equal servers get 160 points each and share 30 000 keys roughly evenly", () => {
  const ring = new KetamaRing(three(11311));
  assert.deepEqual(
    [0, 1, 2].map((index) => ring.pointsOf(index)),
    [160, 160, 160],
  );
  assert.equal(ring.size, 480);
  const counts = shares(ring, keys(30_000));
  for (const count of counts) assert.ok(count > 7500 && count < 12_500, `uneven shares ${counts.join(", ")}`);
});

test("ketama: weights shift shares: weight 2 gets twice the points and about half of the keys", () => {
  const ring = new KetamaRing([
    { host: "10.0.0.1", port: 11211, weight: 1 },
    { host: "10.0.0.2", port: 11211, weight: 1 },
    { host: "10.0.0.3", port: 11211, weight: 2 },
  ]);
  // libmemcached's share: floor(weight / total * 160 / 4 * servers) digests of 4 points.
  assert.deepEqual(
    [0, 1, 2].map((index) => ring.pointsOf(index)),
    [120, 120, 240],
  );
  const counts = shares(ring, keys(30_000));
  assert.ok(counts[2]! > 12_000 && counts[2]! < 18_000, `weight 2 got ${counts[2]} of 30 000 keys`);
  // Weight 0 counts as 1, as in libmemcached.
  const zero = new KetamaRing([{ host: "10.0.0.1", port: 11211, weight: 0 }, ...three().slice(1)]);
  assert.deepEqual(zero.points(), new KetamaRing(three()).points());
});

test("ketama: 25 equal servers get 156 points each, as libmemcached's single-precision share gives", () => {
  const servers = Array.from({ length: 25 }, (_, i) => ({ host: "10.0.0.1", port: 20_000 + i }));
  const ring = new KetamaRing(servers);
  assert.deepEqual(new Set(servers.map((_, index) => ring.pointsOf(index))), new Set([156]));
});

test("ketama: a hash past the last point wraps around to the first point's server", () => {
  // A pool whose first and last points belong to different servers, so wrapping is visible.
  let port = 11311;
  while (new Set([0, -1].map((at) => new KetamaRing(three(port)).points().at(at)!.server)).size === 1) port++;
  const ring = new KetamaRing(three(port));
  const points = ring.points();
  const first = points[0]!;
  const last = points[points.length - 1]!;
  assert.notEqual(first.server, last.server);
  assert.ok(points.every((point, at) => at === 0 || points[at - 1]!.value <= point.value));
  let wrapped = 0;
  let low = 0;
  for (const key of keys(200_000)) {
    const hash = ring.hashKey(key);
    if (hash > last.value) {
      assert.equal(ring.serverFor(key), first.server, `key ${key} hashes past the last point`);
      wrapped++;
    } else if (hash <= first.value) {
      assert.equal(ring.serverFor(key), first.server, `key ${key} hashes before the first point`);
      low++;
    }
    if (wrapped >= 5 && low >= 5) break;
  }
  assert.ok(
    wrapped >= 5 && low >= 5,
    `found ${wrapped} keys past the last point and ${low} before the first`,
  );
});

test("ketama: leaving a server off moves only that server's keys, each to the next server clockwise", () => {
  const ring = new KetamaRing(three(11311));
  const without = ring.without([1]);
  assert.deepEqual(without.live, [0, 2]);
  assert.equal(without.pointsOf(1), 0);
  let moved = 0;
  for (const key of keys(20_000)) {
    const before = ring.serverFor(key);
    const after = without.serverFor(key);
    if (before === 1) {
      moved++;
      assert.equal(after, ring.serversFor(key, 2)[1], `key ${key} did not fall through to the next server`);
    } else {
      assert.equal(after, before, `key ${key} moved though its server stayed`);
    }
  }
  assert.ok(moved > 5000, `only ${moved} keys were on server 1`);
  // Leaving off again accumulates; the last live server gets everything.
  const alone = without.without([0]);
  assert.deepEqual(alone.live, [2]);
  assert.ok(keys(100).every((key) => alone.serverFor(key) === 2));
  assert.deepEqual(alone.serversFor("x", 3), [2]);
});

test("ketama: serversFor lists distinct servers, starting with the key's own, at most all live ones", () => {
  const servers = Array.from({ length: 5 }, (_, i) => ({ host: "10.0.0.1", port: 20_000 + i }));
  const ring = new KetamaRing(servers);
  for (const key of keys(500)) {
    const order = ring.serversFor(key, 10);
    assert.equal(order.length, 5);
    assert.equal(new Set(order).size, 5);
    assert.equal(order[0], ring.serverFor(key));
    assert.deepEqual(ring.serversFor(key, 2), order.slice(0, 2));
  }
  assert.deepEqual(ring.serversFor("key", 0), []);
  assert.deepEqual(ring.without([0, 1]).serversFor("key", 5).sort(), [2, 3, 4]);
});

test("ketama: the ketama behaviour has 100 one-at-a-time points per server; a weight above 1 makes it weighted", () => {
  const plain = new KetamaRing(three(11311), { behavior: KetamaBehavior.ketama });
  assert.equal(plain.weighted, false);
  assert.equal(plain.hash, "one_at_a_time");
  assert.deepEqual(
    [0, 1, 2].map((index) => plain.pointsOf(index)),
    [100, 100, 100],
  );
  const weighted = new KetamaRing(
    three(11311).map((server, index) => ({ ...server, weight: index + 1 })),
    { behavior: KetamaBehavior.ketama },
  );
  assert.equal(weighted.weighted, true);
  assert.equal(weighted.hash, "one_at_a_time");
  assert.deepEqual(
    [0, 1, 2].map((index) => weighted.pointsOf(index)),
    [80, 160, 240],
  );
  const md5 = new KetamaRing(three(11311), { behavior: KetamaBehavior.ketama, hash: "md5" });
  assert.equal(md5.hashKey("a"), 0xb975c10c);
});

test("ketama: a bad server list or exclusion is a ConfigError that says what to fix", () => {
  const rejects = (servers: KetamaServer[], options: KetamaOptions, pattern: RegExp) =>
    assert.throws(
      () => new KetamaRing(servers, options),
      (error: unknown) => error instanceof ConfigError && pattern.test(error.message),
    );
  rejects([], {}, /at least one server/);
  rejects([{ host: "", port: 11211 }], {}, /host must be a non-empty string/);
  rejects([{ host: "a", port: 0 }], {}, /port must be an integer from 1 to 65535/);
  rejects([{ host: "a", port: 70_000 }], {}, /port must be an integer/);
  rejects([{ host: "a", port: 11211, weight: 1.5 }], {}, /weight must be an integer/);
  rejects([{ host: "a", port: 11211, weight: -1 }], {}, /weight must be an integer/);
  rejects(three(), { exclude: [3] }, /cannot exclude server 3: the ring has servers 0 to 2/);
  rejects(three(), { exclude: [0, 1, 2] }, /every server of the ketama ring is excluded/);
  rejects(three(), { behavior: "modula" as KetamaBehavior }, /unknown ketama behavior/);
  assert.throws(() => new KetamaRing(three()).without([0, 1, 2]), ConfigError);
});

// ---------------------------------------------------------------------------------------------------------
// The cross-check with libmemcached, through pylibmc

/** A Python 3 that can import pylibmc: $PYLIBMC_PYTHON, Debian's /usr/bin/python3, or python3 on PATH. */
function pylibmcPython(): string | undefined {
  const candidates = [process.env.PYLIBMC_PYTHON, "/usr/bin/python3", "python3"].filter(
    (candidate): candidate is string => candidate !== undefined && candidate !== "",
  );
  return candidates.find(
    (python) =>
      spawnSync(python, ["-c", "import pylibmc"], { stdio: "ignore", timeout: 10_000 }).status === 0,
  );
}

/** The Python to run pylibmc with; when pylibmc is missing, fails in CI and skips elsewhere. */
function requirePylibmc(t: TestContext): string | undefined {
  const python = pylibmcPython();
  if (python !== undefined) return python;
  const message = `pylibmc (libmemcached for Python) is not installed: ${PYLIBMC_INSTALL_HINT}`;
  if (process.env.CI === "true") throw new Error(message);
  t.skip(message);
  return undefined;
}

/** A pool as pylibmc's clients are configured: "host:port:weight" strings and behaviours. */
interface PylibmcClient {
  servers: string[];
  behaviors: Record<string, boolean | string>;
}

const pylibmcSpec = (servers: readonly KetamaServer[]): string[] =>
  servers.map((server) => `${server.host}:${server.port}:${server.weight ?? 1}`);

// Client.hash(key) is libmemcached's memcached_generate_hash: the index of the server the key goes to.
const HASH_SCRIPT = `
import json, sys, pylibmc
request = json.load(sys.stdin)
answer = []
for spec in request["clients"]:
    mc = pylibmc.Client(spec["servers"], behaviors=spec["behaviors"])
    answer.append([mc.hash(key) for key in request["keys"]])
json.dump(answer, sys.stdout)
`;

// Writes and reads through libmemcached; reports its behaviours so a test can name what they amount to.
const STORE_SCRIPT = `
import json, sys, pylibmc
request = json.load(sys.stdin)
mc = pylibmc.Client(request["servers"], behaviors=request["behaviors"])
for key, value in request.get("set", {}).items():
    if not mc.set(key, value):
        sys.exit("pylibmc could not set %r" % key)
got = {}
for key in request.get("get", []):
    value = mc.get(key)
    if value is not None:
        got[key] = value.decode("utf-8") if isinstance(value, bytes) else value
behaviors = dict(mc.behaviors)
json.dump({"got": got, "behaviors": {name: behaviors[name] for name in ("hash", "distribution")}}, sys.stdout)
`;

async function runPython<T>(python: string, script: string, request: unknown): Promise<T> {
  const out = await runProgram(python, ["-c", script], {
    input: JSON.stringify(request),
    timeoutMs: PYTHON_TIMEOUT_MS,
    what: "pylibmc script",
  });
  try {
    return JSON.parse(out) as T;
  } catch (error) {
    throw new Error("pylibmc script printed no JSON", { cause: error });
  }
}

/** Keys as a web farm writes them, plus non-ASCII ones (the one-at-a-time hash reads bytes as signed chars). */
function mixedKeys(count: number, prefix: string): string[] {
  const words = ["clé", "ключ", "キー", "schlüssel", "🎉"];
  return Array.from({ length: count }, (_, i) =>
    i % 4 === 3 ? `${prefix}:${words[i % words.length]}:${i}` : `${prefix}:${i}`,
  );
}

/** A pool configuration to compare: how pylibmc is set up, and the ring that should agree with it. */
interface Comparison {
  name: string;
  servers: KetamaServer[];
  behaviors: Record<string, boolean | string>;
  options: KetamaOptions;
  /** Indexes (into `servers`) that pylibmc leaves out of its server list, as if ejected. */
  dead?: number[];
}

function comparisons(): Comparison[] {
  const list: Comparison[] = [];
  const weighted = { behaviors: { ketama_weighted: true }, options: {} };
  const ketama = { behaviors: { ketama: true }, options: { behavior: KetamaBehavior.ketama } };
  const ketamaMd5 = {
    behaviors: { ketama: true, hash: "md5" },
    options: { behavior: KetamaBehavior.ketama, hash: KetamaHash.md5 },
  };
  const pools: [string, KetamaServer[]][] = [
    ["1 server", [{ host: "127.0.0.1", port: 21_000 }]],
    ["3 servers on 11211 (host-i point names)", three()],
    ["3 servers on other ports", three(21_000)],
    [
      "named hosts, mixed ports",
      [
        { host: "cache-a.example", port: 11211 },
        { host: "cache-b.example", port: 11212 },
        { host: "cache-c.example", port: 22122 },
        { host: "10.0.0.4", port: 11211 },
      ],
    ],
    ["weights 1, 2, 3", three(21_000).map((server, i) => ({ ...server, weight: i + 1 }))],
    [
      "weights 5, 1, 1, 3, 0",
      [...three(), ...three(21_000).slice(0, 2)].map((server, i) => ({
        ...server,
        weight: [5, 1, 1, 3, 0][i],
      })),
    ],
    ["7 servers", Array.from({ length: 7 }, (_, i) => ({ host: `10.0.1.${i + 1}`, port: 11211 }))],
    ["12 servers", Array.from({ length: 12 }, (_, i) => ({ host: "10.0.2.1", port: 30_000 + i }))],
    [
      "25 servers (156 points each)",
      Array.from({ length: 25 }, (_, i) => ({ host: "10.0.3.1", port: 30_000 + i })),
    ],
  ];
  for (const [name, servers] of pools) {
    list.push({ name: `ketama_weighted, ${name}`, servers, ...weighted });
    list.push({ name: `ketama, ${name}`, servers, ...ketama });
  }
  list.push({ name: "ketama + md5 hash, 3 servers", servers: three(21_000), ...ketamaMd5 });
  const uneven = three(21_000).map((server, i) => ({ ...server, weight: i + 1 }));
  list.push({
    name: "ketama_weighted, weights 1, 2, 3, server 1 ejected",
    servers: uneven,
    ...weighted,
    dead: [1],
  });
  list.push({ name: "ketama, 7 servers, 2 ejected", servers: pools[6]![1], ...ketama, dead: [0, 4] });
  return list;
}

test("ketama: every key lands where libmemcached (pylibmc Client.hash) puts it, in many pool shapes", async (t) => {
  const python = requirePylibmc(t);
  if (python === undefined) return;
  const keyList = mixedKeys(3000, randomBytes(4).toString("hex"));
  const list = comparisons();
  const clients: PylibmcClient[] = list.map((comparison) => ({
    servers: pylibmcSpec(comparison.servers.filter((_, index) => !comparison.dead?.includes(index))),
    behaviors: comparison.behaviors,
  }));
  const answers = await runPython<number[][]>(python, HASH_SCRIPT, { clients, keys: keyList });
  for (const [at, comparison] of list.entries()) {
    const ring = new KetamaRing(comparison.servers, {
      ...comparison.options,
      exclude: comparison.dead ?? [],
    });
    // pylibmc numbers the servers it was given; map them back to indexes into the full list.
    const indexes = ring.live;
    const differing = keyList.filter((key, k) => ring.serverFor(key) !== indexes[answers[at]![k]!]);
    assert.deepEqual(differing.slice(0, 5), [], `${comparison.name}: ${differing.length} keys differ`);
  }
});

/** Sends the requests in one write and collects reply frames until `done` says the replies are complete. */
function exchange(
  server: RealMemcached,
  requests: readonly Buffer[],
  done: (frames: readonly ReplyFrame[]) => boolean,
): Promise<ReplyFrame[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: server.host, port: server.port });
    const parser = new ReplyParser();
    const frames: ReplyFrame[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`memcached on port ${server.port} did not answer within ${EXCHANGE_TIMEOUT_MS} ms`));
    }, EXCHANGE_TIMEOUT_MS);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(frames);
    };
    socket.once("connect", () => socket.write(Buffer.concat(requests)));
    socket.on("data", (chunk: Buffer) => {
      try {
        parser.parse(chunk, (frame) => frames.push(frame));
      } catch (error) {
        finish(error as Error);
        return;
      }
      if (done(frames)) finish();
    });
    socket.once("error", finish);
    socket.once("close", () =>
      finish(new Error(`memcached on port ${server.port} closed the connection early`)),
    );
  });
}

/** The keys (of `keyList`) that `server` holds, asked for one `get` at a time. */
async function keysHeldBy(server: RealMemcached, keyList: readonly string[]): Promise<Set<string>> {
  const ends = (frames: readonly ReplyFrame[]) =>
    frames.reduce((count, frame) => count + (frame.kind === "END" ? 1 : 0), 0) === keyList.length;
  const frames = await exchange(
    server,
    keyList.map((key) => encodeGet(key)),
    ends,
  );
  const held = new Set<string>();
  for (const frame of frames) {
    if (frame.kind === "VALUE") held.add(Buffer.from(frame.key, "latin1").toString("utf8"));
    else if (frame.kind !== "END") throw new Error(`unexpected ${frame.kind} reply to get`);
  }
  return held;
}

/** Raw `set`s of `key` → "v:<key>" straight to one server. */
async function rawSet(server: RealMemcached, keyList: readonly string[]): Promise<void> {
  if (keyList.length === 0) return;
  const requests = keyList.map((key) => {
    const encoded = encodeStore("set", key, `v:${key}`);
    return Array.isArray(encoded) ? Buffer.concat(encoded) : encoded;
  });
  const frames = await exchange(server, requests, (replies) => replies.length === keyList.length);
  const refused = frames.filter((frame) => frame.kind !== "STORED");
  assert.deepEqual(refused, [], `memcached on port ${server.port} refused sets`);
}

test("ketama: keys written through libmemcached sit where the ring says, and the reverse, on 3 real memcached", async (t) => {
  if (!requireMemcached(t)) return;
  const python = requirePylibmc(t);
  if (python === undefined) return;
  const pool: RealMemcached[] = [];
  try {
    for (let i = 0; i < 3; i++) pool.push(await startRealMemcached());
    const cases: {
      name: string;
      weights: number[];
      behaviors: Record<string, boolean>;
      options: KetamaOptions;
      names: Record<string, string>;
    }[] = [
      {
        // PHP's Memcached::OPT_LIBKETAMA_COMPATIBLE sets the same two: MD5 keys, consistent weighted distribution.
        name: "ketama_weighted (libketama-compatible)",
        weights: [1, 1, 1],
        behaviors: { ketama_weighted: true },
        options: {},
        names: { hash: "md5", distribution: "consistent weighted" },
      },
      {
        name: "ketama",
        weights: [1, 1, 1],
        behaviors: { ketama: true },
        options: { behavior: KetamaBehavior.ketama },
        names: { hash: "default", distribution: "consistent ketama" },
      },
      {
        name: "ketama_weighted, weights 1, 2, 3",
        weights: [1, 2, 3],
        behaviors: { ketama_weighted: true },
        options: {},
        names: { hash: "md5", distribution: "consistent weighted" },
      },
    ];
    for (const each of cases) {
      await t.test(each.name, async () => {
        const servers = pool.map((server, i) => ({
          host: server.host,
          port: server.port,
          weight: each.weights[i]!,
        }));
        const ring = new KetamaRing(servers, each.options);
        const prefix = randomBytes(4).toString("hex");

        // libmemcached writes; each server is asked which keys it holds.
        const written = mixedKeys(300, `${prefix}:py`);
        const stored = await runPython<{ behaviors: Record<string, string> }>(python, STORE_SCRIPT, {
          servers: pylibmcSpec(servers),
          behaviors: each.behaviors,
          set: Object.fromEntries(written.map((key) => [key, `v:${key}`])),
        });
        assert.deepEqual(stored.behaviors, each.names);
        const held = await Promise.all(pool.map((server) => keysHeldBy(server, written)));
        const misplaced: string[] = [];
        for (const key of written) {
          const holders = held.flatMap((set, index) => (set.has(key) ? [index] : []));
          if (holders.length !== 1 || holders[0] !== ring.serverFor(key)) {
            misplaced.push(`${key} on [${holders.join(",")}], ring says ${ring.serverFor(key)}`);
          }
        }
        assert.deepEqual(misplaced, []);
        const counts = held.map((set) => set.size);
        assert.ok(
          counts.every((count) => count > 0),
          `a server got no key: ${counts.join(", ")}`,
        );

        // We write where the ring says; libmemcached finds every key.
        const placed = mixedKeys(300, `${prefix}:ts`);
        await Promise.all(
          pool.map((server, index) =>
            rawSet(
              server,
              placed.filter((key) => ring.serverFor(key) === index),
            ),
          ),
        );
        const read = await runPython<{ got: Record<string, string> }>(python, STORE_SCRIPT, {
          servers: pylibmcSpec(servers),
          behaviors: each.behaviors,
          get: placed,
        });
        const missing = placed.filter((key) => read.got[key] !== `v:${key}`);
        assert.deepEqual(missing, [], `libmemcached did not find ${missing.length} of ${placed.length} keys`);
      });
    }
  } finally {
    await Promise.all(pool.map((server) => server.stop()));
  }
});
