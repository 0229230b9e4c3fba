// `memipc incr` and `memipc timing`: counts from the command line land in the current bucket's keys.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Client } from "../../src/client/index.js";
import { bucketStart, counterKey, indexKey, parseIndex, timerKey } from "../../src/stats/layout.js";
import { startServer } from "../../src/server/index.js";
import { randomName, run } from "./run-cli.js";

const TEST_TIMEOUT_MS = 60_000;

const server = await startServer({ port: 0 });
const MEMCACHED = `127.0.0.1:${server.port}`;
const client = new Client({ servers: MEMCACHED });
after(async () => {
  client.close();
  await server.close();
});

async function value(key: string): Promise<string | undefined> {
  return (await client.get(key))?.value.toString();
}

test(
  "memipc incr NAME [BY]: adds to the counter of the current bucket and lists it",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const namespace = randomName("ns");
    const common = ["--memcached", MEMCACHED, "--namespace", namespace, "--bucket", "3600"];
    const before = Date.now();
    for (const args of [
      ["incr", ...common, "accounts.created"],
      ["incr", ...common, "accounts.created", "41"],
    ]) {
      const done = await run(t, args);
      assert.equal(done.code, 0, done.stderr);
      assert.equal(done.stdout, "");
    }
    const address = { namespace, bucketSeconds: 3600 };
    // The bucket of the hour the commands ran in (retry the next one if the hour turned meanwhile).
    const starts = [...new Set([bucketStart(address, before), bucketStart(address, Date.now())])];
    const found = await Promise.all(
      starts.map((start) => value(counterKey(address, start, "accounts.created"))),
    );
    assert.equal(
      found.map(Number).reduce((a, b) => a + (b || 0), 0),
      42,
    );
    const index = await value(indexKey(address, starts[0]!));
    assert.ok(index === undefined || parseIndex(index).get("c")!.has("accounts.created"));
  },
);

test("memipc timing NAME MS: records count, sum and histogram", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const namespace = randomName("ns");
  const start = bucketStart({ namespace, bucketSeconds: 86_400 }, Date.now());
  const done = await run(t, [
    "timing",
    "--memcached",
    MEMCACHED,
    "--namespace",
    namespace,
    "--bucket",
    "86400",
    "report.ms",
    "12.5",
  ]);
  assert.equal(done.code, 0, done.stderr);
  const address = { namespace, bucketSeconds: 86_400 };
  if (bucketStart(address, Date.now()) !== start) return; // the day turned during the test: nothing to compare
  assert.equal(await value(timerKey(address, start, "report.ms", "n")), "1");
  assert.equal(await value(timerKey(address, start, "report.ms", "s")), "12500");
});

test(
  "memipc incr and timing refuse bad input with exit status 2 and a clear message",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const cases: Array<[string[], RegExp]> = [
      [["incr"], /counter name/],
      [["incr", "has space"], /letters, digits/],
      [["incr", "ok", "0"], /out of range/],
      [["incr", "ok", "x"], /not a whole number/],
      [["timing", "ok"], /duration/],
      [["timing", "ok", "-3"], /not a duration|unknown option/i],
      [["incr", "--bucket", "0", "ok"], /out of range/],
    ];
    for (const [args, message] of cases) {
      const done = await run(t, [...args, "--memcached", MEMCACHED]);
      assert.equal(done.code, 2, `${args.join(" ")}: ${done.stderr}`);
      assert.match(done.stderr, message, args.join(" "));
    }
  },
);
