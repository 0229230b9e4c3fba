// Other-language writers. In the seed layout: a Python (pymemcache) and a Perl (Cache::Memcached) script doing
// exactly the original idiom's loop, and memipc's seed-layout producer, write at once; memipc's drainer puts
// every line in the output once, in order of its number, keeps `Process` up to date and deletes what it
// drained. In the default layout: the Python and Perl append examples of docs/PROTOCOL.md, run as printed
// there (with a small limit), roll the counter over and drain in order. Run against the embedded server and
// real memcached.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it, type TestContext } from "node:test";
import { Client } from "../../src/client/index.js";
import { Drainer } from "../../src/log/drainer.js";
import { DEFAULT_SEED_NAMES, Layout, headValue, nextEpoch } from "../../src/log/layout.js";
import { LogProducer } from "../../src/log/producer.js";
import { openFileSink } from "../../src/sinks/file-sink.js";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { pymemcachePython, runProgram, works } from "../helpers/run-program.js";
import { TARGETS, type RunningServer } from "../helpers/targets.js";

const INSTALL_HINT = "apt-get install -y python3-pymemcache libcache-memcached-perl";
const LINES_PER_WRITER = 2000;
const WRITERS = 3; // Python, Perl, memipc
const STREAM = "interop";
const TEST_TIMEOUT_MS = 120_000; // a run that hangs fails instead of stalling the suite
const SCRIPT_TIMEOUT_MS = 60_000; // one writer script
const CATCH_UP_TIMEOUT_MS = 30_000; // ms the drainer may take to reach the head once the writers are done
// Nobody leaves a hole here, so any gap is a bug; a long hole timeout keeps a slow CI machine from making one.
const HOLE_TIMEOUT_MS = 30_000;

// The scripts are not compiled: find them in the source tree (this file runs from dist/test/log/).
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const PYTHON_WRITER = join(ROOT, "test", "log", "interop", "writer.py");
const PERL_WRITER = join(ROOT, "test", "log", "interop", "writer.pl");
const PROTOCOL_DOC = join(ROOT, "docs", "PROTOCOL.md");
const EXAMPLE_LIMIT = 3; // the documented examples run with this limit, so a few appends roll the counter over
const EXAMPLE_ROUNDS = 4; // each round runs both examples at once: 8 entries, epochs of 3, 3 and 2

/** A Perl that has Cache::Memcached: Debian's /usr/bin/perl, or perl on PATH. */
function cacheMemcachedPerl(): string | undefined {
  return ["/usr/bin/perl", "perl"].find((perl) => works(perl, ["-MCache::Memcached", "-e", "1"]));
}

/** The interpreters to run the writers with; when one is missing, fails in CI and skips elsewhere. */
function requireInterpreters(t: TestContext): { python: string; perl: string } | undefined {
  const python = pymemcachePython();
  const perl = cacheMemcachedPerl();
  if (python !== undefined && perl !== undefined) return { python, perl };
  const missing = [
    python === undefined ? "Python's pymemcache" : "",
    perl === undefined ? "Perl's Cache::Memcached" : "",
  ].filter(Boolean);
  const message = `${missing.join(" and ")} ${missing.length > 1 ? "are" : "is"} not installed: ${INSTALL_HINT}`;
  if (process.env.CI === "true") throw new Error(message);
  t.skip(message);
  return undefined;
}

/** Runs a script to its end; resolves with what it printed. */
function runScript(command: string, args: readonly string[]): Promise<string> {
  return runProgram(command, args, { timeoutMs: SCRIPT_TIMEOUT_MS, what: args[0] ?? command });
}

/** Runs a writer script; resolves with the line it stored under each number. */
async function runWriter(
  command: string,
  script: string,
  server: RunningServer,
  tag: string,
): Promise<Written> {
  const args = [script, server.host, String(server.port), String(LINES_PER_WRITER), tag];
  const written: Written = new Map();
  for (const row of (await runScript(command, args)).split("\n")) {
    if (row === "") continue;
    const [n, line] = row.split("\t");
    written.set(Number(n), line!);
  }
  return written;
}

/** Sequence number → the line stored under it. */
type Written = Map<number, string>;

/** memipc's seed-layout producer, appending one line at a time as the scripts do. */
async function produce(client: Client, tag: string): Promise<Written> {
  const producer = new LogProducer(client, { layout: Layout.seed, stream: STREAM });
  const written: Written = new Map();
  for (let i = 1; i <= LINES_PER_WRITER; i++) {
    const line = `${tag} ${i} hello`;
    const { seq } = await producer.append(line);
    written.set(seq, line);
  }
  return written;
}

/**
 * The first code block in `language` of docs/PROTOCOL.md (the default-layout append example), pointed at
 * `server` and given the small limit. Each replacement must match: an example that changes shape fails here.
 */
function documentedExample(language: "python" | "perl", server: RunningServer): string {
  const doc = readFileSync(PROTOCOL_DOC, "utf8");
  const block = new RegExp("```" + language + "\\n([\\s\\S]*?)```").exec(doc)?.[1];
  assert.ok(block !== undefined, `docs/PROTOCOL.md has no ${language} example`);
  const replacements: Array<[string, string]> =
    language === "python"
      ? [
          ['("127.0.0.1", 11211)', `(${JSON.stringify(server.host)}, ${server.port})`],
          ["LIMIT = 999_999_999", `LIMIT = ${EXAMPLE_LIMIT}`],
        ]
      : [
          ['"127.0.0.1:11211"', JSON.stringify(`${server.host}:${server.port}`)],
          ["my $LIMIT = 999_999_999", `my $LIMIT = ${EXAMPLE_LIMIT}`],
        ];
  let code = block;
  for (const [from, to] of replacements) {
    assert.ok(code.includes(from), `the ${language} example in docs/PROTOCOL.md no longer has ${from}`);
    code = code.replace(from, () => to);
  }
  return code;
}

/** Every JSON line the file sink wrote, in file order. */
function readRecords(dir: string): Record<string, unknown>[] {
  const files = readdirSync(dir)
    .filter((name) => name.endsWith(".jsonl"))
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  return files.flatMap((name) =>
    readFileSync(join(dir, name), "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>),
  );
}

/** A drainer running in the background; one that stops with an error fails the test at once. */
interface Running {
  drainer: Drainer;
  /** Waits until `done`; throws if the drainer failed or `timeoutMs` passed (with its metrics). */
  until(what: string, done: () => boolean, timeoutMs: number): Promise<void>;
  /** Aborts it and waits for it to settle. */
  stop(): Promise<void>;
}

function startDrainer(client: Client, options: ConstructorParameters<typeof Drainer>[1]): Running {
  const drainer = new Drainer(client, options);
  const controller = new AbortController();
  let failure: unknown;
  const running = drainer.run(controller.signal).catch((error: unknown) => {
    failure = error;
  });
  const check = (): void => {
    if (failure !== undefined) throw new Error("the drainer stopped with an error", { cause: failure });
  };
  return {
    drainer,
    async until(what, done, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (check(); !done(); check()) {
        if (Date.now() > deadline) {
          const state = JSON.stringify(drainer.metrics);
          throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${state}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async stop() {
      controller.abort();
      await running;
      check();
    },
  };
}

const text = (value: Buffer | undefined): string | undefined => value?.toString("utf8").trim();

for (const target of TARGETS) {
  describe(`log interop (${target.name})`, { timeout: TEST_TIMEOUT_MS }, () => {
    let server: RunningServer | undefined;
    let root: string;
    let dirs = 0;
    const dir = (): string => mkdtempSync(join(root, `${++dirs}-`));

    before(async () => {
      server = target.real && !memcachedAvailable() ? undefined : await target.start();
      root = mkdtempSync(join(tmpdir(), "memipc-interop-"));
    });
    after(async () => {
      await server?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    it("interop: Python, Perl and memipc writers of the original idiom at once; the drainer writes every line once, in order", async (t) => {
      if (!server) return void requireMemcached(t);
      const interpreters = requireInterpreters(t);
      if (interpreters === undefined) return;
      // The seed layout's names are fixed (`Counter`, `logentry-<n>`, `Process`), as an unchanged writer
      // expects: this server is ours alone, so they need no random prefix.
      const servers = `${server.host}:${server.port}`;
      const out = dir();
      const client = new Client({ servers });
      const drainerClient = new Client({ servers });
      // The drainer runs from the start, as in a farm: it meets numbers taken and not yet written.
      const running = startDrainer(drainerClient, {
        layout: Layout.seed,
        stream: STREAM,
        holeTimeout: HOLE_TIMEOUT_MS,
        openSink: () => openFileSink(out, { stream: STREAM, fsync: "batch" }),
      });
      const { drainer } = running;
      try {
        const [python, perl, memipc] = await Promise.all([
          runWriter(interpreters.python, PYTHON_WRITER, server, "py"),
          runWriter(interpreters.perl, PERL_WRITER, server, "pl"),
          produce(client, "ts"),
        ]);
        const total = WRITERS * LINES_PER_WRITER;
        const byNumber: Written = new Map([...python, ...perl, ...memipc]);
        assert.equal(byNumber.size, total, "the writers were handed overlapping numbers");
        assert.deepEqual(
          [...byNumber.keys()].sort((a, b) => a - b),
          Array.from({ length: total }, (_, i) => i + 1),
        );
        assert.equal(text((await client.get(DEFAULT_SEED_NAMES.counter))?.value), String(total));

        await running.until(
          "the drainer to catch up",
          () => drainer.caughtUp() && drainer.metrics.cursor?.seq === total,
          CATCH_UP_TIMEOUT_MS,
        );
        const metrics = drainer.metrics;
        // What docs/PROTOCOL.md tells other nodes they may read: the lease and the published metrics.
        const lease = JSON.parse(text((await client.get(`memipc:lease:drain:${STREAM}`))?.value) ?? "{}");
        assert.equal(lease.owner, drainer.owner);
        const published = JSON.parse(text((await client.get(`memipc:log:${STREAM}:drainer`))?.value) ?? "{}");
        assert.equal(published.stream, STREAM);
        assert.equal(published.layout, Layout.seed);
        await running.stop();

        const records = readRecords(out);
        const gaps = records.filter((record) => "gap" in record);
        assert.deepEqual(gaps, [], "no number was left unwritten, so there must be no gap");
        assert.deepEqual(
          records.map((record) => record.seq),
          Array.from({ length: total }, (_, i) => i + 1),
          "one record per number, in order of the number",
        );
        for (const record of records) {
          assert.equal(record.epoch, 1, "seed-layout epochs count the drainer's resets, from 1");
          assert.equal(record.data, byNumber.get(record.seq as number), `the line numbered ${record.seq}`);
          assert.equal(record.late, undefined);
        }
        const lines = records.map((record) => record.data as string);
        assert.equal(new Set(lines).size, total, "every line exactly once");
        for (const tag of ["py", "pl", "ts"]) {
          // Each writer's own lines keep the order it wrote them in.
          const own = lines.filter((line) => line.startsWith(`${tag} `));
          assert.deepEqual(
            own,
            Array.from({ length: LINES_PER_WRITER }, (_, i) => `${tag} ${i + 1} hello`),
          );
        }

        assert.equal(metrics.entries, total);
        assert.equal(metrics.gaps, 0);
        assert.equal(metrics.late, 0);
        assert.equal(metrics.lag, 0);
        // Old readers of the idiom follow `Process`: the last number drained.
        assert.equal(text((await client.get(DEFAULT_SEED_NAMES.process))?.value), String(total));
        const keys = Array.from({ length: total }, (_, i) => `${DEFAULT_SEED_NAMES.entryPrefix}${i + 1}`);
        const left = await client.getMulti(keys);
        assert.deepEqual([...left.keys()].slice(0, 5), [], `${left.size} drained entries are still stored`);
      } finally {
        await running.stop().catch(() => undefined);
        client.close();
        drainerClient.close();
      }
    });

    it("interop: the Python and Perl append examples of docs/PROTOCOL.md roll the counter over and drain in order", async (t) => {
      if (!server) return void requireMemcached(t);
      const interpreters = requireInterpreters(t);
      if (interpreters === undefined) return;
      // The examples use the default namespace and stream, `memipc` and `log`: no other test here does.
      const scripts = dir();
      const python = join(scripts, "append.py");
      const perl = join(scripts, "append.pl");
      writeFileSync(python, documentedExample("python", server));
      writeFileSync(perl, documentedExample("perl", server));
      const out = dir();
      const client = new Client({ servers: `${server.host}:${server.port}` });
      const running = startDrainer(client, {
        limit: EXAMPLE_LIMIT,
        holeTimeout: HOLE_TIMEOUT_MS,
        openSink: () => openFileSink(out, { fsync: "batch" }),
      });
      const { drainer } = running;
      const total = 2 * EXAMPLE_ROUNDS;
      try {
        for (let round = 0; round < EXAMPLE_ROUNDS; round++) {
          await Promise.all([runScript(interpreters.python, [python]), runScript(interpreters.perl, [perl])]);
        }
        await running.until(
          "the drainer to catch up",
          () => drainer.caughtUp() && drainer.metrics.entries === total,
          CATCH_UP_TIMEOUT_MS,
        );
        await running.stop();

        const records = readRecords(out);
        assert.deepEqual(
          records.filter((record) => "gap" in record),
          [],
        );
        // Epochs of 3, 3 and 2 entries, each epoch the one after the last (a rollover, not a reset).
        const first = records[0]!.epoch as number;
        const expected = Array.from({ length: total }, (_, i) => ({
          epoch: [first, nextEpoch(first), nextEpoch(nextEpoch(first))][Math.floor(i / EXAMPLE_LIMIT)],
          seq: (i % EXAMPLE_LIMIT) + 1,
        }));
        assert.deepEqual(
          records.map(({ epoch, seq }) => ({ epoch, seq })),
          expected,
        );
        for (const record of records) {
          // Read as memipc's own entries: time, node and payload, not a line of text.
          assert.equal(record.node, hostname());
          assert.deepEqual(record.data, { user: 42, action: "login" });
          assert.equal(typeof record.ms, "number");
        }
        // The drainer removed what it drained: the entries and the markers of the epochs it finished.
        const last = expected[total - 1]!;
        assert.equal(
          text((await client.get("memipc:log:log:head"))?.value),
          String(headValue(last.epoch!, last.seq)),
        );
        const keys = [
          ...expected.map(({ epoch, seq }) => `memipc:log:log:${epoch}:${seq}`),
          `memipc:log:log:rolled:${first}`,
          `memipc:log:log:rolled:${nextEpoch(first)}`,
        ];
        assert.deepEqual([...(await client.getMulti(keys)).keys()], []);
      } finally {
        await running.stop().catch(() => undefined);
        client.close();
      }
    });
  });
}
