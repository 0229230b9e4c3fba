// `memipc log` and `memipc tail` (from memcached) as a user runs them, against an embedded server started
// here: what lands under which key, stdin streaming, flag precedence, and clear refusals of bad flags.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "../../src/client/index.js";
import { decodeEntry, entryKey, headKey, splitHead, streamAddress } from "../../src/log/layout.js";
import { startServer } from "../../src/server/index.js";
import { Cli, randomName, run } from "./run-cli.js";

const TEST_TIMEOUT_MS = 60_000;

const server = await startServer({ port: 0 });
const MEMCACHED = `127.0.0.1:${server.port}`;
const client = new Client({ servers: MEMCACHED });
after(async () => {
  client.close();
  await server.close();
});

/** The head of a default-layout stream, as epoch and sequence. */
async function head(namespace: string, stream: string): Promise<{ epoch: number; seq: number }> {
  const hit = await client.get(headKey(streamAddress({ namespace, stream })));
  assert.ok(hit, "the stream's counter exists");
  return splitHead(BigInt(hit.value.toString("latin1")));
}

test(
  "memipc log TEXT…: the words, joined, are one entry under the stream's next key",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const namespace = randomName("ns");
    const stream = randomName();
    const args = ["log", "--memcached", MEMCACHED, "--namespace", namespace, "--stream", stream];
    const first = await run(t, [...args, "--node", "web-7", "order", "1234", "paid"]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, "", "nothing printed on success");
    assert.equal(first.stderr, "");

    const { epoch, seq } = await head(namespace, stream);
    assert.equal(seq, 1);
    const stored = await client.get(entryKey(streamAddress({ namespace, stream }), epoch, 1));
    assert.ok(stored, "the entry is under <ns>:log:<stream>:<epoch>:1");
    const entry = decodeEntry(stored.value);
    assert.equal(entry.d, "order 1234 paid");
    assert.equal(entry.n, "web-7");
    assert.ok(Math.abs(entry.t! - Date.now()) < 60_000, "stamped with the time");

    const second = await run(t, [...args, "-v", "second"]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, `seq=2 epoch=${epoch}\n`, "--verbose prints where the entry went");
  },
);

test(
  "memipc log -: 10,000 stdin lines are 10,000 consecutive entries, in order",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const namespace = randomName("ns");
    const stream = randomName();
    const cli = new Cli(
      t,
      ["log", "--memcached", MEMCACHED, "--namespace", namespace, "--stream", stream, "-"],
      {
        stdin: "pipe",
      },
    );
    const lines = Array.from({ length: 10_000 }, (_, i) => `line ${i + 1} ${"x".repeat(i % 50)}`);
    cli.child.stdin!.end(`${lines.join("\n")}\n`); // the final line break adds no empty entry
    const finished = await cli.finished();
    assert.equal(finished.code, 0, finished.stderr);
    assert.equal(finished.stdout, "");

    const { epoch, seq } = await head(namespace, stream);
    assert.equal(seq, 10_000, "one number per line, none for the trailing line break");
    const address = streamAddress({ namespace, stream });
    const keys = lines.map((_, i) => entryKey(address, epoch, i + 1));
    const found = await client.getMulti(keys);
    assert.equal(found.size, 10_000);
    for (let i = 0; i < lines.length; i++) {
      assert.equal(decodeEntry(found.get(keys[i]!)!.value).d, lines[i], `entry ${i + 1}`);
    }
  },
);

test(
  "memipc log --layout seed: writes the original idiom's keys and plain values",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const counter = randomName("Counter");
    const prefix = `${randomName("logentry")}-`;
    const finished = await run(t, [
      "log",
      "--memcached",
      MEMCACHED,
      "--layout",
      "seed",
      "--seed-counter",
      counter,
      "--seed-prefix",
      prefix,
      "plain",
      "line",
    ]);
    assert.equal(finished.code, 0, finished.stderr);
    assert.equal((await client.get(counter))?.value.toString(), "1");
    assert.equal((await client.get(`${prefix}1`))?.value.toString(), "plain line");
  },
);

test(
  "memipc log: flags beat the environment, which beats the defaults",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const namespace = randomName("ns");
    const stream = randomName();
    // MEMIPC_MEMCACHED is wrong but the flag wins; MEMIPC_NAMESPACE applies since no flag is given.
    const finished = await run(t, ["log", "--memcached", MEMCACHED, "--stream", stream, "from env"], {
      MEMIPC_MEMCACHED: "127.0.0.1:1",
      MEMIPC_NAMESPACE: namespace,
    });
    assert.equal(finished.code, 0, finished.stderr);
    const { epoch } = await head(namespace, stream);
    const stored = await client.get(entryKey(streamAddress({ namespace, stream }), epoch, 1));
    assert.equal(decodeEntry(stored!.value).d, "from env");

    // And MEMIPC_MEMCACHED alone is used.
    const viaEnv = await run(t, ["log", "--stream", stream, "second"], {
      MEMIPC_MEMCACHED: MEMCACHED,
      MEMIPC_NAMESPACE: namespace,
    });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal((await head(namespace, stream)).seq, 2);
  },
);

const BAD_FLAGS: { args: string[]; env?: NodeJS.ProcessEnv; message: RegExp }[] = [
  {
    args: ["log", "--layout", "columnar", "x"],
    message: /--layout "columnar" is not known: use "default" or "seed"/,
  },
  {
    args: ["log", "--memcached", "cache one:11211", "x"],
    message: /--memcached: server "cache one:11211" is not host:port/,
  },
  { args: ["log", "--memcached", "127.0.0.1:99999", "x"], message: /port 99999 is not 1 to 65535/ },
  { args: ["log", "x"], env: { MEMIPC_MEMCACHED: "a:b:c:d" }, message: /MEMIPC_MEMCACHED: server "a:b:c:d"/ },
  { args: ["log", "--namespace", "no spaces", "x"], message: /--namespace: namespace "no spaces" must be/ },
  { args: ["log", "--stream", "a/b", "x"], message: /--stream "a\/b" must be 1 to 64 letters/ },
  { args: ["log"], message: /nothing to log/ },
  { args: ["log", "-", "x"], message: /"-" reads entries from standard input/ },
  { args: ["log", "--seed-counter", "C", "x"], message: /--seed-counter only applies with --layout seed/ },
  { args: ["log", "--bogus", "x"], message: /--bogus.*see "memipc log --help"/ },
  { args: ["drain"], message: /--out DIR is required/ },
  {
    args: ["drain", "--out", "/tmp/x", "--fsync", "sometimes"],
    message: /--fsync "sometimes" is not a policy/,
  },
  { args: ["drain", "--out", "/tmp/x", "--format", "xml"], message: /--format "xml" is not known/ },
  { args: ["drain", "--out", "/tmp/x", "--max-bytes", "big"], message: /--max-bytes "big" is not a size/ },
  { args: ["drain", "--out", "/tmp/x", "--lease-ttl", "1"], message: /--lease-ttl 1 is out of range/ },
  { args: ["drain", "--out", "/tmp/x", "--hole-timeout", "-5"], message: /--hole-timeout/ },
  { args: ["drain", "--out", "/tmp/x", "stray"], message: /unexpected argument "stray"/ },
  { args: ["tail", "-n", "ten"], message: /--lines "ten" is not a whole number/ },
  {
    args: ["tail", "--out", "/nonexistent/memipc-test"],
    message: /--out \/nonexistent\/memipc-test is not a folder/,
  },
  { args: ["tail", "--format", "raw"], message: /--format only applies with --out/ },
];

for (const { args, env, message } of BAD_FLAGS) {
  test(`memipc ${args.join(" ")}: exits 2 with a clear message`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const finished = await run(t, args, env);
    assert.equal(finished.code, 2, finished.stderr);
    assert.match(finished.stderr, /^memipc: /, "the message names the program");
    assert.match(finished.stderr, message);
    assert.doesNotMatch(finished.stderr, /^\s+at /m, "no stack trace");
    assert.equal(finished.stdout, "");
  });
}

test(
  "memipc log with nothing listening: exits 1 and names the server",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const gone = await startServer({ port: 0 });
    const port = gone.port;
    await gone.close();
    const finished = await run(t, ["log", "--memcached", `127.0.0.1:${port}`, "lost"]);
    assert.equal(finished.code, 1);
    assert.match(finished.stderr, new RegExp(`^memipc: .*127\\.0\\.0\\.1:${port}`));
    assert.doesNotMatch(finished.stderr, /^\s+at /m);
  },
);

test(
  "memipc log - with nothing listening: exits 1 and names the first line not logged",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const gone = await startServer({ port: 0 });
    const port = gone.port;
    await gone.close();
    const cli = new Cli(t, ["log", "--memcached", `127.0.0.1:${port}`, "-"], { stdin: "pipe" });
    cli.child.stdin!.end("a\nb\nc\n");
    const finished = await cli.finished();
    assert.equal(finished.code, 1);
    assert.match(finished.stderr, /^memipc: line 1 was not logged: .*ECONNREFUSED/);
  },
);

test(
  "memipc tail: prints the last N entries log wrote, as seq time node data",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const stream = randomName();
    const base = ["--memcached", MEMCACHED, "--stream", stream];
    const cli = new Cli(t, ["log", ...base, "--node", "web-1", "-"], { stdin: "pipe" });
    cli.child.stdin!.end("first\nsecond\nthird\n");
    assert.equal((await cli.finished()).code, 0);

    const two = await run(t, ["tail", ...base, "-n", "2"]);
    assert.equal(two.code, 0, two.stderr);
    const lines = two.stdout.split("\n").filter(Boolean);
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /^2 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z web-1 second$/);
    assert.match(lines[1]!, /^3 \S+ web-1 third$/);

    const all = await run(t, ["tail", ...base]);
    assert.equal(all.stdout.split("\n").filter(Boolean).length, 3, "default -n 10 shows all three");

    const none = await run(t, ["tail", "--memcached", MEMCACHED, "--stream", randomName()]);
    assert.equal(none.code, 0);
    assert.equal(none.stdout, "");
    assert.match(none.stderr, /does not exist: nothing was logged to this stream yet/);
  },
);

test(
  "memipc tail -f: shows an entry logged after it started, and stops on SIGTERM",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const stream = randomName();
    const base = ["--memcached", MEMCACHED, "--stream", stream];
    assert.equal((await run(t, ["log", ...base, "before"])).code, 0);
    const tail = new Cli(t, ["tail", "-f", "-n", "1", ...base]);
    await tail.waitForOutput((out) => /^1 \S+ \S+ before\n/.test(out), "the existing entry");

    assert.equal((await run(t, ["log", ...base, "after", "start"])).code, 0);
    await tail.waitForOutput((out) => /\n2 \S+ \S+ after start\n$/.test(out), "the new entry");
    // Each new entry once, in order.
    assert.equal((await run(t, ["log", ...base, "third"])).code, 0);
    await tail.waitForOutput((out) => out.includes(" third\n"), "the third entry");

    assert.ok(tail.child.kill("SIGTERM"));
    const finished = await tail.finished();
    assert.equal(finished.signal, null, "exits by itself");
    assert.equal(finished.code, 0);
    assert.equal(finished.stdout.split("\n").filter(Boolean).length, 3, "each entry once");
  },
);

test("memipc log --help and memipc tail --help say what they do", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const log = await run(t, ["log", "--help"]);
  assert.equal(log.code, 0);
  assert.match(log.stdout, /^Usage: memipc log/);
  for (const flag of ["--memcached", "--namespace", "--stream", "--layout", "--node", "MEMIPC_MEMCACHED"]) {
    assert.ok(log.stdout.includes(flag), `log help mentions ${flag}`);
  }
  const tail = await run(t, ["tail", "--help"]);
  assert.equal(tail.code, 0);
  assert.match(tail.stdout, /not drained yet/);
  assert.match(tail.stdout, /--out DIR/);
  const usage = await run(t, ["--help"]);
  for (const name of ["log", "drain", "tail"]) assert.match(usage.stdout, new RegExp(`^  ${name} `, "m"));
});
