// The client suite: every method, pipelining, get merging and checks made before sending, run once
// against the embedded server and once against real memcached (one suite, parameterised by how the server
// starts). Wire-level claims (merging, nothing sent) are measured on a TCP proxy that records what the
// client writes.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it, type TestContext } from "node:test";
import { Client, type ClientOptions, type MetaReply } from "../../src/client/index.js";
import { ClientError, ConnectionClosedError, MemipcError, ServerError } from "../../src/errors.js";
import { KeyError, toBase64Key } from "../../src/protocol/keys.js";
import { findMetaFlag } from "../../src/protocol/reply-parser.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { TARGETS, type RunningServer, type Target } from "../helpers/targets.js";

const MAX_UINT64 = 0xffffffffffffffffn;
const MAX_UINT32 = 0xffffffff;
const TEST_TIMEOUT_MS = 30_000; // a test that hangs fails instead of stalling the run

for (const target of TARGETS) clientSuite(target);

function clientSuite(target: Target): void {
  describe(`client against the ${target.name}`, () => {
    let server: RunningServer | undefined;
    let client: Client;
    const prefix = `ct-${randomBytes(4).toString("hex")}-`;
    const key = (name: string): string => `${prefix}${name}`;
    const address = (): string => `${server!.host}:${server!.port}`;
    const newClient = (options: Partial<ClientOptions> = {}, port = server!.port): Client =>
      new Client({ servers: `127.0.0.1:${port}`, timeout: 5000, connectTimeout: 2000, ...options });

    /** False (test skipped) when this target needs memcached and it is missing outside CI. */
    function ready(t: TestContext): boolean {
      if (target.real && !requireMemcached(t)) return false;
      assert.ok(server, `${target.name} did not start`);
      return true;
    }

    before(async () => {
      if (target.real && !memcachedAvailable()) return;
      server = await target.start();
      client = newClient();
    });

    after(async () => {
      client?.close();
      await server?.stop();
    });

    const test = (name: string, fn: (t: TestContext) => Promise<void>): void => {
      it(name, { timeout: TEST_TIMEOUT_MS }, async (t) => {
        if (!ready(t)) return;
        await fn(t);
      });
    };

    // ---- values, flags, TTL ------------------------------------------------------------------------

    test("set then get round-trips a Buffer holding every byte value, CR and LF included", async () => {
      const value = Buffer.alloc(512);
      for (let i = 0; i < value.length; i++) value[i] = i % 256;
      const withCrlf = Buffer.concat([Buffer.from("a\r\nEND\r\nb"), value]);
      assert.equal(await client.set(key("bytes"), withCrlf), true);
      const got = await client.get(key("bytes"));
      assert.ok(got);
      assert.deepEqual(got.value, withCrlf);
      assert.equal(got.flags, 0);
      assert.equal(got.cas, undefined, "plain get carries no cas unique");
    });

    test("string values go out as UTF-8 and come back as the same bytes", async () => {
      const text = "héllo wörld ✓ 🚀";
      assert.equal(await client.set(key("utf8"), text), true);
      const got = await client.get(key("utf8"));
      assert.equal(got?.value.toString("utf8"), text);
      assert.equal(got?.value.length, Buffer.byteLength(text));
      assert.equal(await client.set(key("empty"), ""), true);
      assert.deepEqual((await client.get(key("empty")))?.value, Buffer.alloc(0));
    });

    test("client flags 0, 1 and 2^32-1 are stored with the item", async () => {
      for (const flags of [0, 1, 0xdead, MAX_UINT32]) {
        await client.set(key(`flags-${flags}`), `f${flags}`, { flags });
        const got = await client.get(key(`flags-${flags}`));
        assert.equal(got?.flags, flags);
        assert.equal(got?.value.toString(), `f${flags}`);
      }
    });

    test("a value larger than the inline-copy limit (600 KiB) round-trips", async () => {
      const big = randomBytes(600 * 1024);
      assert.equal(await client.set(key("big"), big), true);
      assert.deepEqual((await client.get(key("big")))?.value, big);
    });

    test("a missing key resolves undefined; getMulti returns only the keys found", async () => {
      assert.equal(await client.get(key("never-set")), undefined);
      await client.set(key("m1"), "one");
      await client.set(key("m3"), "three");
      const found = await client.getMulti([key("m1"), key("m2"), key("m3"), key("m1")]);
      assert.deepEqual([...found.keys()].sort(), [key("m1"), key("m3")]);
      assert.equal(found.get(key("m1"))?.value.toString(), "one");
      assert.equal(found.get(key("m3"))?.value.toString(), "three");
      assert.equal((await client.getMulti([])).size, 0);
    });

    test("a non-ASCII key is sent as UTF-8 and found again by get, gets and getMulti", async () => {
      const k = key("clé-ünïcødé-✓");
      await client.set(k, "accented");
      assert.equal((await client.get(k))?.value.toString(), "accented");
      assert.equal((await client.gets(k))?.value.toString(), "accented");
      assert.equal((await client.getMulti([k])).get(k)?.value.toString(), "accented");
    });

    test("addMulti stores new keys with one round trip and reports the ones that existed", async () => {
      await client.set(key("am-old"), "old");
      const items = [
        { key: key("am-1"), value: "one" },
        { key: key("am-old"), value: "new" },
        { key: key("am-clé"), value: "accent ✓" },
        { key: key("am-2"), value: "" },
      ];
      assert.deepEqual(await client.addMulti(items), [true, false, true, true]);
      assert.equal((await client.get(key("am-old")))?.value.toString(), "old", "add never overwrites");
      assert.equal((await client.get(key("am-clé")))?.value.toString(), "accent ✓");
      assert.equal((await client.get(key("am-2")))?.value.length, 0);
      assert.deepEqual(await client.addMulti([{ key: key("am-ttl"), value: "x" }], { ttl: -1 }), [true]);
      assert.equal(await client.get(key("am-ttl")), undefined, "a negative ttl expires at once");
      assert.deepEqual(await client.addMulti([]), []);
      await assert.rejects(client.addMulti([{ key: "bad key", value: "x" }]), /key/);
    });

    test("getMany returns values in the order asked, undefined where missing", async () => {
      await client.set(key("gm1"), "one");
      await client.set(key("gm-é"), "two");
      const keys = [key("gm-none"), key("gm1"), key("gm-é"), key("gm1"), key("gm-none2")];
      const values = await client.getMany(keys);
      assert.deepEqual(
        values.map((v) => v?.toString()),
        [undefined, "one", "two", "one", undefined],
      );
      const many = Array.from({ length: 250 }, (_, i) => key(`gmm${i}`));
      await Promise.all(many.filter((_, i) => i % 3 === 0).map((k) => client.set(k, k)));
      const got = await client.getMany(many);
      assert.deepEqual(
        got.map((v) => v?.toString()),
        many.map((k, i) => (i % 3 === 0 ? k : undefined)),
      );
    });

    test("getManyRanges gives each value as a range of a reply buffer, in the order asked", async () => {
      await client.set(key("gr1"), "one");
      await client.set(key("gr-é"), "twö");
      await client.set(key("gr-empty"), "");
      const keys = [key("gr-none"), key("gr1"), key("gr-é"), key("gr-empty"), key("gr1")];
      const { buffers, starts, ends } = await client.getManyRanges(keys);
      const read = (i: number) => buffers[i]?.toString("utf8", starts[i], ends[i]);
      assert.deepEqual(
        keys.map((_, i) => read(i)),
        [undefined, "one", "twö", "", "one"],
      );
      const many = Array.from({ length: 250 }, (_, i) => key(`grm${i}`));
      await Promise.all(many.filter((_, i) => i % 4 === 0).map((k) => client.set(k, `v-${k}`)));
      const got = await client.getManyRanges(many);
      assert.deepEqual(
        many.map((_, i) => got.buffers[i]?.toString("utf8", got.starts[i], got.ends[i])),
        many.map((k, i) => (i % 4 === 0 ? `v-${k}` : undefined)),
      );
      assert.deepEqual(await client.getManyRanges([]), {
        buffers: [],
        starts: new Uint32Array(0),
        ends: new Uint32Array(0),
      });
      await assert.rejects(client.getManyRanges(["bad key"]), /key/);
    });

    test("deleteMulti removes many keys (ASCII or not) in one go; missing keys are no error", async () => {
      const keys = Array.from({ length: 250 }, (_, i) => key(`dm${i}`));
      const accented = key("dm-clé");
      await Promise.all([...keys, accented].map((k) => client.set(k, "x")));
      await client.deleteMulti([...keys, accented, key("dm-never-set")]);
      assert.equal((await client.getMulti([...keys, accented])).size, 0);
      await client.deleteMulti([]);
      await assert.rejects(client.deleteMulti(["bad key"]), /key/);
      // The connection still answers in order after the quiet deletes.
      assert.equal(await client.set(key("dm-after"), "y"), true);
      assert.equal((await client.get(key("dm-after")))?.value.toString(), "y");
    });

    test("TTL: a negative ttl expires at once; mg t reports what set, touch and gat set", async () => {
      assert.equal(await client.set(key("ttl-neg"), "x", { ttl: -1 }), true);
      assert.equal(await client.get(key("ttl-neg")), undefined);

      await client.set(key("ttl"), "x", { ttl: 100 });
      assertTtl(await client.mg(key("ttl"), ["t"]), 100);
      assert.equal(await client.touch(key("ttl"), 500), true);
      assertTtl(await client.mg(key("ttl"), ["t"]), 500);
      const viaGat = await client.gat(key("ttl"), 1000);
      assert.equal(viaGat?.value.toString(), "x");
      assertTtl(await client.mg(key("ttl"), ["t"]), 1000);
      await client.set(key("ttl-none"), "x");
      assert.equal(findMetaFlag((await client.mg(key("ttl-none"), ["t"])).flags, "t"), "-1");
    });

    test("TTL: an item set with ttl 1 is gone 2.5 seconds later", async () => {
      await client.set(key("ttl-1"), "short", { ttl: 1 });
      assert.equal((await client.get(key("ttl-1")))?.value.toString(), "short");
      await sleep(2500);
      assert.equal(await client.get(key("ttl-1")), undefined);
    });

    // ---- CAS and conditional stores ----------------------------------------------------------------

    test("gets + cas: stored with the current unique, exists with a stale one, not_found when missing", async () => {
      await client.set(key("cas"), "v1", { flags: 3 });
      const first = await client.gets(key("cas"));
      assert.ok(first?.cas !== undefined);
      assert.equal(first.value.toString(), "v1");
      assert.equal(first.flags, 3);
      assert.equal(await client.cas(key("cas"), "v2", first.cas, { flags: 4 }), "stored");
      const second = await client.gets(key("cas"));
      assert.ok(second?.cas !== undefined);
      assert.notEqual(second.cas, first.cas);
      assert.equal(second.value.toString(), "v2");
      assert.equal(second.flags, 4);
      assert.equal(await client.cas(key("cas"), "v3", first.cas), "exists");
      assert.equal((await client.get(key("cas")))?.value.toString(), "v2");
      assert.equal(await client.cas(key("cas-missing"), "v", first.cas), "not_found");
      assert.equal(await client.gets(key("cas-missing")), undefined);
    });

    test("gats returns the value with its cas unique and resets the TTL", async () => {
      await client.set(key("gats"), "g", { ttl: 50 });
      const plain = await client.gets(key("gats"));
      const touched = await client.gats(key("gats"), 700);
      assert.equal(touched?.value.toString(), "g");
      assert.equal(touched?.cas, plain?.cas);
      assertTtl(await client.mg(key("gats"), ["t"]), 700);
      assert.equal(await client.gats(key("gats-missing"), 10), undefined);
      assert.equal(await client.gat(key("gats-missing"), 10), undefined);
    });

    test("add, replace, append and prepend report stored or not stored as memcached decides", async () => {
      assert.equal(await client.add(key("cond"), "mid", { flags: 9 }), true);
      assert.equal(await client.add(key("cond"), "again"), false);
      assert.equal(await client.replace(key("cond-missing"), "x"), false);
      assert.equal(await client.append(key("cond-missing"), "x"), false);
      assert.equal(await client.prepend(key("cond-missing"), "x"), false);
      assert.equal(await client.append(key("cond"), Buffer.from("-end")), true);
      assert.equal(await client.prepend(key("cond"), "start-", { flags: 1 }), true);
      const got = await client.get(key("cond"));
      assert.equal(got?.value.toString(), "start-mid-end");
      assert.equal(got?.flags, 9, "append and prepend keep the item's flags");
      assert.equal(await client.replace(key("cond"), "replaced", { flags: 2 }), true);
      const replaced = await client.get(key("cond"));
      assert.equal(replaced?.value.toString(), "replaced");
      assert.equal(replaced?.flags, 2);
      assert.equal(await client.get(key("cond-missing")), undefined);
    });

    // ---- arithmetic -------------------------------------------------------------------------------

    test("incr and decr: new values, wrap at 2^64-1, floor at 0, undefined when missing", async () => {
      await client.set(key("n"), "10");
      assert.equal(await client.incr(key("n")), 11n);
      assert.equal(await client.incr(key("n"), 5), 16n);
      assert.equal(await client.decr(key("n"), 6n), 10n);
      assert.equal(await client.decr(key("n"), 100), 0n, "decr stops at 0");
      // memcached shrinks a decremented number in place, padding it with spaces: "10" becomes "0 ".
      assert.equal((await client.get(key("n")))?.value.toString(), "0 ");

      await client.set(key("wrap"), MAX_UINT64.toString());
      assert.equal(await client.incr(key("wrap"), 1), 0n, "2^64-1 + 1 wraps to 0");
      await client.set(key("wrap"), (MAX_UINT64 - 1n).toString());
      assert.equal(await client.incr(key("wrap"), 3n), 1n);
      await client.set(key("wrap"), "5");
      assert.equal(await client.incr(key("wrap"), MAX_UINT64), 4n, "a 2^64-1 delta wraps too");
      assert.equal(await client.decr(key("wrap"), MAX_UINT64), 0n);

      assert.equal(await client.incr(key("n-missing")), undefined);
      assert.equal(await client.decr(key("n-missing")), undefined);
    });

    test("incr on a non-number rejects with ClientError naming the command and the server", async () => {
      await client.set(key("nan"), "not a number");
      for (const call of [() => client.incr(key("nan")), () => client.decr(key("nan"), 2)]) {
        await assert.rejects(call(), (error: unknown) => {
          assert.ok(error instanceof ClientError, `expected ClientError, got ${String(error)}`);
          assert.match(error.message, /^(incr|decr) to /);
          assert.ok(error.message.includes(address()), error.message);
          return true;
        });
      }
      // The error line did not desynchronise the connection.
      assert.equal((await client.get(key("nan")))?.value.toString(), "not a number");
    });

    test("a delta outside 0..2^64-1 rejects with ClientError before sending", async () => {
      await client.set(key("delta"), "1");
      await assert.rejects(client.incr(key("delta"), MAX_UINT64 + 1n), ClientError);
      await assert.rejects(client.incr(key("delta"), -1), ClientError);
      await assert.rejects(client.decr(key("delta"), 1.5), ClientError);
      assert.equal(await client.incr(key("delta"), 1), 2n);
    });

    // ---- delete, touch, flush, stats, version --------------------------------------------------------

    test("delete is true when the key existed and false after", async () => {
      await client.set(key("del"), "x");
      assert.equal(await client.delete(key("del")), true);
      assert.equal(await client.delete(key("del")), false);
      assert.equal(await client.get(key("del")), undefined);
    });

    test("touch is true for an existing key and false for a missing one; touch -1 expires", async () => {
      await client.set(key("touch"), "x");
      assert.equal(await client.touch(key("touch"), 300), true);
      assert.equal(await client.touch(key("touch-missing"), 300), false);
      assert.equal(await client.touch(key("touch"), -1), true);
      assert.equal(await client.get(key("touch")), undefined);
    });

    test("stats and version come back as maps keyed by host:port", async () => {
      const stats = await client.stats();
      assert.deepEqual([...stats.keys()], [address()]);
      const own = stats.get(address())!;
      for (const name of ["pid", "uptime", "version", "cmd_get", "cmd_set", "get_hits", "curr_items"]) {
        assert.ok(own.has(name), `stats lacks ${name}`);
      }
      assert.match(own.get("cmd_get")!, /^\d+$/);
      const settings = (await client.stats("settings")).get(address())!;
      assert.equal(settings.get("item_size_max"), String(1024 * 1024));
      const version = await client.version();
      assert.deepEqual([...version.keys()], [address()]);
      assert.match(version.get(address())!, /^\d+\.\d+/);
      assert.equal(version.get(address()), own.get("version"));
    });

    test("flushAll empties the server", async () => {
      await client.set(key("flush-a"), "a");
      await client.set(key("flush-b"), "b");
      await client.flushAll();
      assert.equal((await client.getMulti([key("flush-a"), key("flush-b")])).size, 0);
      assert.equal(await client.add(key("flush-a"), "again"), true);
    });

    test("a noreply set resolves at once and stays ordered with the requests after it", async () => {
      assert.equal(await client.set(key("noreply"), "quiet", { noreply: true }), true);
      assert.equal((await client.get(key("noreply")))?.value.toString(), "quiet");
      for (let i = 0; i < 50; i++) void client.set(key("noreply"), `n${i}`, { noreply: true });
      assert.equal((await client.get(key("noreply")))?.value.toString(), "n49");
    });

    // ---- meta commands ---------------------------------------------------------------------------

    test("ms then mg return the flags asked for: v f t c k s O", async () => {
      const set = await client.ms(key("meta"), "meta-value", ["T120", "F77", "c", "Oms1"]);
      assert.equal(set.code, "HD");
      const cas = findMetaFlag(set.flags, "c");
      assert.match(cas ?? "", /^\d+$/);
      assert.equal(findMetaFlag(set.flags, "O"), "ms1");
      const got = await client.mg(key("meta"), ["v", "f", "t", "c", "k", "s", "Oabc"]);
      assert.equal(got.code, "VA");
      assert.equal(got.value?.toString(), "meta-value");
      assert.equal(findMetaFlag(got.flags, "f"), "77");
      assertTtl(got, 120);
      assert.equal(findMetaFlag(got.flags, "c"), cas);
      assert.equal(findMetaFlag(got.flags, "k"), key("meta"));
      assert.equal(findMetaFlag(got.flags, "s"), String("meta-value".length));
      assert.equal(findMetaFlag(got.flags, "O"), "abc");
      // Without v, a hit is HD; a miss is EN.
      assert.equal((await client.mg(key("meta"), ["f"])).code, "HD");
      assert.equal((await client.mg(key("meta-missing"), ["v"])).code, "EN");
      // The text protocol sees the same item.
      const text = await client.get(key("meta"));
      assert.equal(text?.value.toString(), "meta-value");
      assert.equal(text?.flags, 77);
    });

    test("ms modes and compare: ME on an existing key is NS, a stale C is EX, MR on a missing key is NS", async () => {
      const first = await client.ms(key("mode"), "one", ["c"]);
      const cas = findMetaFlag(first.flags, "c")!;
      assert.equal((await client.ms(key("mode"), "two", ["ME"])).code, "NS");
      assert.equal((await client.ms(key("mode-missing"), "x", ["MR"])).code, "NS");
      assert.equal((await client.ms(key("mode"), "-tail", ["MA"])).code, "HD");
      assert.equal((await client.ms(key("mode"), "three", [`C${BigInt(cas) + 1000n}`])).code, "EX");
      const now = await client.mg(key("mode"), ["c", "v"]);
      assert.equal(now.value?.toString(), "one-tail");
      assert.equal((await client.ms(key("mode"), "four", [`C${findMetaFlag(now.flags, "c")}`])).code, "HD");
      assert.equal((await client.get(key("mode")))?.value.toString(), "four");
    });

    test("md deletes (HD), then reports NF; a stale C is EX", async () => {
      await client.ms(key("md"), "x");
      const cas = findMetaFlag((await client.mg(key("md"), ["c"])).flags, "c")!;
      assert.equal((await client.md(key("md"), [`C${BigInt(cas) + 1n}`])).code, "EX");
      assert.equal((await client.md(key("md"))).code, "HD");
      assert.equal((await client.md(key("md"))).code, "NF");
      assert.equal(await client.get(key("md")), undefined);
    });

    test("ma: NF when missing, N/J creates, D adds, MD subtracts, v returns the value", async () => {
      assert.equal((await client.ma(key("ma"))).code, "NF");
      const created = await client.ma(key("ma"), ["N0", "J10", "v"]);
      assert.equal(created.code, "VA");
      assert.equal(created.value?.toString(), "10");
      const added = await client.ma(key("ma"), ["D5", "v"]);
      assert.equal(added.value?.toString(), "15");
      assert.equal((await client.ma(key("ma"), ["MD", "D20", "v"])).value?.toString(), "0");
      assert.equal((await client.ma(key("ma"))).code, "HD");
      assert.equal(
        (await client.get(key("ma")))?.value.toString(),
        "1 ",
        "rewritten in place, padded like decr",
      );
      await client.set(key("ma-wrap"), MAX_UINT64.toString());
      assert.equal((await client.ma(key("ma-wrap"), ["v"])).value?.toString(), "0");
    });

    test("quiet q: mg hides a miss (EN), shows a hit; ms/md/ma hide success and show failure", async () => {
      assert.deepEqual(await client.mg(key("q-missing"), ["v", "q"]), { code: "EN", flags: [] });
      assert.deepEqual(await client.ms(key("q"), "quiet", ["q"]), { code: "HD", flags: [] });
      const hit = await client.mg(key("q"), ["v", "q", "k"]);
      assert.equal(hit.code, "VA");
      assert.equal(hit.value?.toString(), "quiet");
      assert.equal(findMetaFlag(hit.flags, "k"), key("q"));
      assert.equal((await client.ms(key("q"), "again", ["q", "ME"])).code, "NS");
      assert.equal((await client.ma(key("q-missing"), ["q"])).code, "NF");
      assert.equal((await client.ma(key("q-n"), ["q", "N0", "J1"])).code, "HD");
      assert.equal((await client.md(key("q"), ["q"])).code, "HD");
      assert.equal((await client.md(key("q"), ["q"])).code, "NF");
      // Quiet and loud requests pipelined together still pair up.
      const mixed = await Promise.all([
        client.mg(key("q-missing"), ["v", "q"]),
        client.mg(key("q-n"), ["v"]),
        client.ms(key("q2"), "v2", ["q"]),
        client.mg(key("q2"), ["v", "q"]),
      ]);
      assert.deepEqual(
        mixed.map((r) => [r.code, r.value?.toString()]),
        [
          ["EN", undefined],
          ["VA", "1"],
          ["HD", undefined],
          ["VA", "v2"],
        ],
      );
    });

    test("meta error lines reject typed, quiet or not: a bad flag is ClientError, an oversized ms ServerError", async () => {
      const roomy = newClient({ maxValueSize: 4 * 1024 * 1024 });
      try {
        const cases: [string, () => Promise<MetaReply>, typeof ClientError | typeof ServerError][] = [
          ["mg with an unknown flag", () => roomy.mg(key("meta-err"), ["v", "X"]), ClientError],
          ["mg q with an unknown flag", () => roomy.mg(key("meta-err"), ["v", "q", "X"]), ClientError],
          [
            "ms over the item limit",
            () => roomy.ms(key("meta-err"), Buffer.alloc(2 * 1024 * 1024)),
            ServerError,
          ],
          [
            "ms q over the item limit",
            () => roomy.ms(key("meta-err"), Buffer.alloc(2 * 1024 * 1024), ["q"]),
            ServerError,
          ],
        ];
        const problems: string[] = [];
        for (const [name, call, kind] of cases) {
          try {
            problems.push(`${name} resolved ${JSON.stringify(await call())}`);
          } catch (error) {
            if (!(error instanceof kind))
              problems.push(`${name}: expected ${kind.name}, got ${explain(error)}`);
            else if (!error.message.includes(address())) problems.push(`${name}: message ${error.message}`);
          }
        }
        assert.deepEqual(problems, []);
        assert.equal(
          (await roomy.mg(key("meta-err"), ["v"])).code,
          "EN",
          "the connection still pairs replies",
        );
      } finally {
        roomy.close();
      }
    });

    test("base64 keys with b: a binary key with spaces and control bytes round-trips", async () => {
      const binary = Buffer.concat([Buffer.from(key("bin key\x01\n")), Buffer.from([0, 255, 32])]);
      const b64 = toBase64Key(binary);
      assert.equal((await client.ms(b64, "binary-keyed", ["b", "T0"])).code, "HD");
      const got = await client.mg(b64, ["b", "v", "k"]);
      assert.equal(got.code, "VA");
      assert.equal(got.value?.toString(), "binary-keyed");
      assert.equal(findMetaFlag(got.flags, "k"), b64);
      assert.equal((await client.ma(toBase64Key(key("b-n")), ["b", "N0", "J7", "v"])).value?.toString(), "7");
      assert.equal(
        (await client.get(key("b-n")))?.value.toString(),
        "7",
        "b decodes to the text key's bytes",
      );
      assert.equal((await client.md(b64, ["b"])).code, "HD");
      assert.equal((await client.mg(b64, ["b", "v"])).code, "EN");
      await assert.rejects(
        expectPromise(() => client.mg("not base64!", ["b", "v"])),
        KeyError,
      );
    });

    test("me describes a stored item and is undefined on a miss", async () => {
      await client.set(key("me"), "debug", { ttl: 100 });
      const fields = await client.me(key("me"));
      assert.ok(fields && fields.size > 0, "me gave no fields");
      assert.ok(fields.has("exp") && fields.has("size"), `me fields: ${[...(fields?.keys() ?? [])]}`);
      assert.equal(await client.me(key("me-missing")), undefined);
    });

    // ---- pipelining and merging -------------------------------------------------------------------

    test("pipelining: 1,000 concurrent sets then 1,000 concurrent gets each resolve with their own value", async () => {
      const n = 1000;
      const sets = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          client.set(key(`p${i}`), `value-of-${key(`p${i}`)}`, { flags: i }),
        ),
      );
      assert.deepEqual(sets, Array<boolean>(n).fill(true));
      const gets = await Promise.all(Array.from({ length: n }, (_, i) => client.get(key(`p${i}`))));
      gets.forEach((got, i) => {
        assert.equal(got?.value.toString(), `value-of-${key(`p${i}`)}`);
        assert.equal(got?.flags, i);
      });
    });

    test("pipelining: different commands in flight together each get their own reply", async () => {
      const n = 200;
      await Promise.all(Array.from({ length: n }, (_, i) => client.set(key(`mix${i}`), `${i}`)));
      await Promise.all(Array.from({ length: n }, (_, i) => client.set(key(`mix-ro${i}`), `ro-${i}`)));
      const tasks: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        const k = key(`mix${i}`);
        tasks.push(
          client.gets(k).then((r) => assert.equal(r?.value.toString(), `${i}`)),
          client.incr(k, i).then((r) => assert.equal(r, BigInt(2 * i))),
          client.mg(k, ["v", "k"]).then((r) => {
            assert.equal(findMetaFlag(r.flags, "k"), k);
            assert.equal(r.value?.toString(), `${2 * i}`);
          }),
          client.add(k, "no").then((r) => assert.equal(r, false)),
          client.touch(key(`mix-missing${i}`), 10).then((r) => assert.equal(r, false)),
          // A key nothing else in this tick writes: the check holds however the gets are merged.
          client.get(key(`mix-ro${i}`)).then((r) => assert.equal(r?.value.toString(), `ro-${i}`)),
          client.ma(key(`mix-missing${i}`), ["q"]).then((r) => assert.equal(r.code, "NF")),
          client.stats("settings").then((r) => assert.ok(r.get(address())?.has("maxbytes"))),
          client.delete(k).then((r) => assert.equal(r, true)),
          client.mg(k, ["v", "q"]).then((r) => assert.equal(r.code, "EN")),
        );
      }
      await Promise.all(tasks);
    });

    test("pipelining keeps program order: a get issued before a set or delete in the same tick sees the earlier state", async () => {
      await client.set(key("order-set"), "before");
      await client.set(key("order-del"), "before");
      // Not awaited in between: one tick, one connection, issued in this order.
      const beforeSet = client.get(key("order-set"));
      const set = client.set(key("order-set"), "after");
      const beforeDelete = client.get(key("order-del"));
      const deleted = client.delete(key("order-del"));
      const afterSet = client.get(key("order-set"));
      assert.equal(await set, true);
      assert.equal(await deleted, true);
      assert.equal(
        (await beforeSet)?.value.toString(),
        "before",
        "the get ran after the set issued after it",
      );
      assert.equal(
        (await beforeDelete)?.value.toString(),
        "before",
        "the get ran after the delete issued after it",
      );
      assert.equal((await afterSet)?.value.toString(), "after");
    });

    test("merging: concurrent gets in one tick go out as one get line per 100 keys (seen on a TCP proxy)", async () => {
      const proxy = await TapProxy.start(server!.port);
      const viaProxy = newClient({}, proxy.port);
      try {
        await Promise.all(Array.from({ length: 250 }, (_, i) => client.set(key(`merge${i}`), `v${i}`)));
        const cmdGetBefore = Number((await client.stats()).get(address())!.get("cmd_get"));

        // 50 distinct keys, one of them asked three times, in one tick.
        const keys = Array.from({ length: 50 }, (_, i) => key(`merge${i}`));
        const asked = [...keys, keys[7]!, keys[7]!, key("merge-missing")];
        const results = await Promise.all(asked.map((k) => viaProxy.get(k)));
        results.slice(0, 50).forEach((r, i) => assert.equal(r?.value.toString(), `v${i}`));
        assert.equal(results[50]?.value.toString(), "v7");
        assert.equal(results[51]?.value.toString(), "v7");
        assert.equal(results[52], undefined);
        let lines = proxy.takeLines();
        assert.equal(lines.length, 1, `expected one get line, saw: ${lines.map((l) => l.slice(0, 40))}`);
        assert.deepEqual(lines[0]!.split(" "), ["get", ...keys, key("merge-missing")]);

        // 250 keys in one tick: 100 + 100 + 50.
        const many = Array.from({ length: 250 }, (_, i) => key(`merge${i}`));
        const got = await Promise.all(many.map((k) => viaProxy.get(k)));
        got.forEach((r, i) => assert.equal(r?.value.toString(), `v${i}`));
        lines = proxy.takeLines();
        assert.deepEqual(
          lines.map((l) => l.split(" ").length - 1),
          [100, 100, 50],
        );
        assert.ok(lines.every((l) => l.startsWith("get ")));

        // Gets in different ticks are separate requests.
        await viaProxy.get(key("merge0"));
        await viaProxy.get(key("merge1"));
        assert.deepEqual(proxy.takeLines(), [`get ${key("merge0")}`, `get ${key("merge1")}`]);

        // The server counted keys, not requests: 51 + 250 + 2 distinct keys were looked up.
        const cmdGetAfter = Number((await client.stats()).get(address())!.get("cmd_get"));
        assert.equal(cmdGetAfter - cmdGetBefore, 51 + 250 + 2);
      } finally {
        viaProxy.close();
        await proxy.close();
      }
    });

    test("merging: 100 keys of 250 bytes in one get line (25 KB) are all answered", async () => {
      const keys = Array.from({ length: 100 }, (_, i) => `${key(`long${i}-`)}`.padEnd(250, "x"));
      await Promise.all(keys.map((k) => client.set(k, k.slice(0, 20))));
      const got = await Promise.all(keys.map((k) => client.get(k)));
      got.forEach((r, i) => assert.equal(r?.value.toString(), keys[i]!.slice(0, 20)));
    });

    // ---- checks before sending ---------------------------------------------------------------------

    test("invalid keys reject with KeyError from every method, and nothing is sent", async () => {
      const proxy = await TapProxy.start(server!.port);
      const viaProxy = newClient({}, proxy.port);
      try {
        const good = key("good");
        const bad: [string, string][] = [
          ["251 bytes", "k".repeat(251)],
          ["251 bytes of UTF-8", "é".repeat(125) + "k"],
          ["a space", "has space"],
          ["a tab", "has\ttab"],
          ["a newline", "line\nbreak"],
          ["a control character", "ctl\x01char"],
          ["DEL", "del\x7f"],
          ["empty", ""],
        ];
        const methods: [string, (k: string) => Promise<unknown>][] = [
          ["get", (k) => viaProxy.get(k)],
          ["getMulti", (k) => viaProxy.getMulti([k])],
          ["gets", (k) => viaProxy.gets(k)],
          ["gat", (k) => viaProxy.gat(k, 10)],
          ["gats", (k) => viaProxy.gats(k, 10)],
          ["set", (k) => viaProxy.set(k, "v")],
          ["set noreply", (k) => viaProxy.set(k, "v", { noreply: true })],
          ["add", (k) => viaProxy.add(k, "v")],
          ["replace", (k) => viaProxy.replace(k, "v")],
          ["append", (k) => viaProxy.append(k, "v")],
          ["prepend", (k) => viaProxy.prepend(k, "v")],
          ["cas", (k) => viaProxy.cas(k, "v", 1n)],
          ["delete", (k) => viaProxy.delete(k)],
          ["incr", (k) => viaProxy.incr(k, 1)],
          ["decr", (k) => viaProxy.decr(k, 1)],
          ["touch", (k) => viaProxy.touch(k, 10)],
          ["mg", (k) => viaProxy.mg(k, ["v"])],
          ["ms", (k) => viaProxy.ms(k, "v")],
          ["md", (k) => viaProxy.md(k)],
          ["ma", (k) => viaProxy.ma(k)],
          ["me", (k) => viaProxy.me(k)],
        ];
        const problems: string[] = [];
        for (const [method, call] of methods) {
          for (const [what, k] of bad) {
            let promise: Promise<unknown>;
            try {
              promise = call(k);
            } catch (error) {
              problems.push(
                `${method} with ${what} threw synchronously (${explain(error)}) instead of rejecting`,
              );
              continue;
            }
            try {
              await promise;
              problems.push(`${method} with ${what} resolved`);
            } catch (error) {
              if (!(error instanceof KeyError)) problems.push(`${method} with ${what}: ${explain(error)}`);
            }
          }
        }
        await sleep(50); // anything written would have reached the proxy by now
        assert.deepEqual(problems, []);
        assert.equal(proxy.received.length, 0, `sent: ${JSON.stringify(proxy.takeText().slice(0, 200))}`);
        // The connection is fine for good keys afterwards.
        assert.equal(await viaProxy.set(good, "ok"), true);
        assert.equal((await viaProxy.get(good))?.value.toString(), "ok");
      } finally {
        viaProxy.close();
        await proxy.close();
      }
    });

    test("getMulti with one invalid key among valid ones rejects with KeyError and sends nothing", async () => {
      const proxy = await TapProxy.start(server!.port);
      const viaProxy = newClient({}, proxy.port);
      try {
        await assert.rejects(
          expectPromise(() => viaProxy.getMulti([key("gm-a"), key("gm-b"), "bad key", key("gm-c")])),
          KeyError,
        );
        await sleep(50);
        assert.equal(proxy.connections, 0, "getMulti connected to the server");
        assert.equal(proxy.takeText(), "", "getMulti sent requests for the valid keys");
      } finally {
        viaProxy.close();
        await proxy.close();
      }
    });

    test("a value over maxValueSize rejects with ClientError before anything is sent", async () => {
      const proxy = await TapProxy.start(server!.port);
      const small = newClient({ maxValueSize: 1000 }, proxy.port);
      try {
        const tooBig = Buffer.alloc(1001, 0x61);
        const tooBigText = "é".repeat(501); // 1002 bytes of UTF-8, 501 characters
        const calls: [string, () => Promise<unknown>][] = [
          ["set", () => small.set(key("big"), tooBig)],
          ["set (string)", () => small.set(key("big"), tooBigText)],
          ["set noreply", () => small.set(key("big"), tooBig, { noreply: true })],
          ["add", () => small.add(key("big"), tooBig)],
          ["replace", () => small.replace(key("big"), tooBig)],
          ["append", () => small.append(key("big"), tooBig)],
          ["prepend", () => small.prepend(key("big"), tooBig)],
          ["cas", () => small.cas(key("big"), tooBig, 1n)],
          ["ms", () => small.ms(key("big"), tooBig)],
        ];
        const problems: string[] = [];
        for (const [name, call] of calls) {
          let promise: Promise<unknown>;
          try {
            promise = call();
          } catch (error) {
            problems.push(`${name} threw synchronously (${explain(error)}) instead of rejecting`);
            continue;
          }
          try {
            await promise;
            problems.push(`${name} resolved`);
          } catch (error) {
            if (!(error instanceof ClientError)) problems.push(`${name}: ${explain(error)}`);
            else if (!/1000-byte limit/.test(error.message))
              problems.push(`${name}: message ${error.message}`);
          }
        }
        await sleep(50);
        assert.deepEqual(problems, []);
        assert.equal(proxy.received.length, 0, `sent: ${JSON.stringify(proxy.takeText().slice(0, 200))}`);
        assert.equal(
          await small.set(key("big"), Buffer.alloc(1000, 0x62)),
          true,
          "exactly the limit is fine",
        );
      } finally {
        small.close();
        await proxy.close();
      }
    });

    test("a value under maxValueSize but over the server's item limit rejects with ServerError", async () => {
      const roomy = newClient({ maxValueSize: 4 * 1024 * 1024 });
      try {
        await assert.rejects(roomy.set(key("huge"), Buffer.alloc(2 * 1024 * 1024)), (error: unknown) => {
          assert.ok(error instanceof ServerError, `expected ServerError, got ${explain(error)}`);
          assert.ok(error.message.includes(address()), error.message);
          return true;
        });
        // The data block was swallowed, not read as commands.
        assert.equal(await roomy.set(key("after-huge"), "fine"), true);
        assert.equal((await roomy.get(key("after-huge")))?.value.toString(), "fine");
      } finally {
        roomy.close();
      }
    });

    test("after close() every method rejects with ConnectionClosedError", async () => {
      const closing = newClient();
      assert.equal(await closing.set(key("closing"), "x"), true);
      const inFlight = closing.get(key("closing"));
      closing.close();
      await assert.rejects(inFlight, ConnectionClosedError);
      await assert.rejects(closing.get(key("closing")), ConnectionClosedError);
      await assert.rejects(closing.set(key("closing"), "y"), ConnectionClosedError);
      await assert.rejects(closing.mg(key("closing")), ConnectionClosedError);
      await assert.rejects(closing.stats(), ConnectionClosedError);
    });
  });
}

// ---- helpers ---------------------------------------------------------------------------------------

function assertTtl(reply: MetaReply, expected: number): void {
  const ttl = Number(findMetaFlag(reply.flags, "t"));
  assert.ok(ttl <= expected && ttl >= expected - 2, `ttl ${ttl}, expected about ${expected}`);
}

/** Calls fn, turning a synchronous throw into a rejection (so a wrong throw style still shows its type). */
function expectPromise(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    return fn();
  } catch (error) {
    return Promise.reject(error);
  }
}

function explain(error: unknown): string {
  return error instanceof MemipcError ? `${error.name}: ${error.message}` : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A loopback TCP proxy that forwards both ways and records every byte the client sends, so a test can
 * see what went on the wire: how many request lines, and that nothing went out at all.
 */
class TapProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly received: Buffer[] = [];
  connections = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(upstreamPort: number): Promise<TapProxy> {
    const server = createServer();
    const proxy = new TapProxy(server);
    server.on("connection", (socket) => proxy.#accept(socket, upstreamPort));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return proxy;
  }

  get port(): number {
    const address = this.#server.address();
    assert.ok(address !== null && typeof address === "object");
    return address.port;
  }

  #accept(socket: Socket, upstreamPort: number): void {
    this.connections++;
    const upstream = createConnection({ host: "127.0.0.1", port: upstreamPort });
    this.#sockets.add(socket).add(upstream);
    socket.on("data", (chunk: Buffer) => {
      this.received.push(chunk);
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => socket.write(chunk));
    const end = (): void => {
      socket.destroy();
      upstream.destroy();
      this.#sockets.delete(socket);
      this.#sockets.delete(upstream);
    };
    for (const s of [socket, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
  }

  /** Everything received since the last take, as text (one character per byte). */
  takeText(): string {
    const text = Buffer.concat(this.received).toString("latin1");
    this.received.length = 0;
    return text;
  }

  /** The request lines received since the last take (for streams that hold no data blocks). */
  takeLines(): string[] {
    return this.takeText()
      .split("\r\n")
      .filter((line) => line !== "");
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
