// Authentication, differentially: the same scripted exchanges against real memcached started with `-Y FILE`
// and the embedded server started with the same auth file, byte for byte, including what unauthenticated
// connections get, how pipelined commands before authentication collapse into one reply, when the
// connection is dropped, and the auth_* statistics.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { RawSession } from "../helpers/raw-session.js";
import { memcachedAvailable, requireMemcached, startRealMemcached } from "../helpers/real-memcached.js";
import { escapeBytes } from "../conformance/normalize.js";
import { startServer } from "../../src/server/index.js";
import { parseAuthFile } from "../../src/server/auth.js";

const AUTH_FILE = "alice:secret\nbob:pa:ss\r\n";
const STEP_TIMEOUT_MS = 5000; // a reply that has not come by then is reported as missing
const SETTLE_MS = 60; // after the expected lines, how long to wait for any extra byte
const SILENCE_MS = 150; // a step that expects no reply waits this long for one

/** What ends a step: this many reply lines (\r\n), the server closing, or nothing arriving. */
type Until = number | "close" | "silence";
interface Step {
  /** Bytes in one write, or pieces written one by one with a short pause between them. */
  send: string | Buffer | string[];
  until: Until;
}
interface Case {
  name: string;
  steps: Step[];
}

const step = (send: Step["send"], until: Until): Step => ({ send, until });
const auth = (user: string, password: string, line = "set a 0 0"): string =>
  `${line} ${user.length + 1 + password.length}\r\n${user} ${password}\r\n`;
const repeat = (line: string, n: number) => line.repeat(n);

const CASES: Case[] = [
  {
    name: "every command before authentication is refused, the connection stays open",
    steps: [
      "get foo\r\n",
      "gets foo bar\r\n",
      "version\r\n",
      "quit\r\n",
      "stats\r\n",
      "mn\r\n",
      "mg foo v\r\n",
      "ms foo 2\r\n",
      "md foo\r\n",
      "ma foo\r\n",
      "delete foo\r\n",
      "incr foo 1\r\n",
      "touch foo 10\r\n",
      "flush_all\r\n",
      "verbosity 1\r\n",
      "bogus\r\n",
      "\r\n",
      "SET a 0 0 12\r\n",
      "add a 0 0 12\r\n",
      "set a 0 0\r\n",
      "set a 0 0 abc\r\n",
      "set a 0 0 -1\r\n",
      "set a 0 0 99999999999999999999\r\n",
      "\x80\x01\x00\x00\r\n",
    ].map((line) => step(line, 1)),
  },
  {
    name: "the right credentials are STORED and commands work after them",
    steps: [step(auth("alice", "secret"), 1), step("get a\r\nversion\r\nmn\r\n", 3)],
  },
  { name: "a password holding ':' and a CRLF line end", steps: [step(auth("bob", "pa:ss"), 1)] },
  {
    name: "a wrong password fails and the connection stays unauthenticated",
    steps: [step(auth("alice", "wrong!"), 1), step("get a\r\n", 1), step(auth("alice", "secret"), 1)],
  },
  {
    name: "an unknown user, a prefix of a password, a password of another user",
    steps: [
      step(auth("carol", "secret"), 1),
      step(auth("alice", "secre"), 1),
      step(auth("alice", "pa:ss"), 1),
    ],
  },
  {
    name: "a data block of one word is a bad token format",
    steps: [step("set a 0 0 5\r\nhello\r\n", 1), step("set a 0 0 0\r\n\r\n", 1)],
  },
  {
    name: "a data block not ending in \\r\\n is a bad termination",
    steps: [step("set a 0 0 12\r\nalice secretXX", 1), step("get a\r\n", 1)],
  },
  {
    name: "noreply does not silence the reply; a third word in the data block is ignored",
    steps: [
      step(auth("alice", "wrong!", "set a 0 0 12 noreply"), 1),
      step("set a 0 0 18\r\nalice secret extra\r\n", 1),
    ],
  },
  {
    name: "spaces around the credentials and in the command line",
    steps: [step("   set  a  0 0  16 \r\n  alice   secret\r\n", 1)],
  },
  { name: "a command line ended by a bare \\n", steps: [step("set a 0 0 12\nalice secret\r\n", 1)] },
  {
    name: "a size that wraps at 32 bits",
    steps: [step("set a 0 0 4294967296\r\n", "silence"), step("x\r\n", 1)],
  },
  {
    name: "key, flags and exptime are not looked at",
    steps: [step(auth("alice", "secret", "set ~~\x01 x -5"), 1)],
  },
  {
    name: "the credentials line and block in separate writes",
    steps: [step("set a 0 0 12\r\n", "silence"), step("alice secret\r\n", 1), step("mn\r\n", 1)],
  },
  {
    name: "the credentials byte by byte",
    steps: [step(Array.from(auth("alice", "secret")), 1), step("mn\r\n", 1)],
  },
  {
    name: "pipelined commands before authentication get one reply per run of 21",
    steps: [
      step("get a\r\nget b\r\nversion\r\n", 1),
      step(repeat("get a\r\n", 21), 1),
      step(repeat("get a\r\n", 22), 2),
      step(repeat("get a\r\n", 45), 3),
    ],
  },
  {
    name: "pipelined: the STORED of the credentials replaces the refusals before it",
    steps: [step(`get a\r\n${auth("alice", "secret")}get a\r\n`, 2)],
  },
  {
    name: "pipelined: a failure followed by a command shows only the command's refusal",
    steps: [step(`${auth("alice", "wrong!")}get a\r\n`, 1)],
  },
  {
    name: "a lone \\n waits for more input before it is answered",
    steps: [step("\n", "silence"), step("get a\r\n", 1)],
  },
  {
    name: "after authenticating, a second credentials set is an ordinary set",
    // The only case that stores an item, under a key no other case reads (the cases run concurrently).
    steps: [
      step(auth("alice", "secret"), 1),
      step(auth("alice", "wrong!", "set second 0 0"), 1),
      step("get second\r\n", 3),
    ],
  },
  {
    name: "after authenticating, a set with a bad data length is memcached's usual error",
    steps: [step(auth("alice", "secret"), 1), step("set b 0 0 3\r\nabcdef\r\n", 2)],
  },
  {
    name: "a line over 2048 bytes without a newline drops the connection and the replies not sent",
    steps: [step(`get a\r\n${"x".repeat(3000)}`, "close")],
  },
  {
    name: "a long line with its newline in the same read is answered",
    steps: [step(`get a\r\n${"x".repeat(3000)}\r\n`, 1)],
  },
  {
    name: "a line growing past 2048 bytes after a reply was sent",
    steps: [step(`get a\r\n${"x".repeat(2040)}`, 1), step("x".repeat(20), "close")],
  },
  {
    name: "a credentials block of 16382 bytes fits memcached's read buffer",
    steps: [step(`set a 0 0 16382\r\nalice secret${" ".repeat(16370)}\r\nversion\r\n`, 2)],
  },
  {
    name: "a credentials block over 16382 bytes drops the connection",
    steps: [step("get a\r\nset a 0 0 16383\r\n", 1), step("y".repeat(16390), "close")],
  },
];

interface StepResult {
  bytes: Buffer;
  closed: boolean;
}

async function runCase(port: number, c: Case): Promise<StepResult[]> {
  const session = await RawSession.open("127.0.0.1", port, STEP_TIMEOUT_MS);
  const results: StepResult[] = [];
  try {
    for (const s of c.steps) {
      if (Array.isArray(s.send)) await session.sendPieces(s.send);
      else await session.send(s.send);
      results.push(await readStep(session, s.until));
      if (session.closed) break;
    }
  } finally {
    session.close();
  }
  return results;
}

async function readStep(session: RawSession, until: Until): Promise<StepResult> {
  const chunks: Buffer[] = [];
  const lines = () => countLines(Buffer.concat(chunks));
  const deadline = Date.now() + (until === "silence" ? SILENCE_MS : STEP_TIMEOUT_MS);
  while (Date.now() < deadline && !session.closed) {
    chunks.push(session.take());
    if (typeof until === "number" && lines() >= until) break;
    await sleep(5);
  }
  if (typeof until === "number" && !session.closed) await sleep(SETTLE_MS);
  chunks.push(session.take());
  return { bytes: Buffer.concat(chunks), closed: session.closed };
}

function countLines(bytes: Buffer): number {
  let n = 0;
  for (let at = bytes.indexOf("\r\n"); at >= 0; at = bytes.indexOf("\r\n", at + 2)) n++;
  return n;
}

function render(results: StepResult[]): string[] {
  return results.map(
    (r, i) => `step ${i + 1}: ${escapeBytes(r.bytes.toString("latin1"))}${r.closed ? " «closed»" : ""}`,
  );
}

/** The auth_* lines of `stats` and `stats settings`, after authenticating on a fresh connection. */
async function authStats(port: number): Promise<string[]> {
  const session = await RawSession.open("127.0.0.1", port, STEP_TIMEOUT_MS);
  try {
    await session.send(auth("alice", "secret"));
    await readStep(session, 1);
    await session.send("stats\r\nstats settings\r\n");
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    let text = "";
    while (Date.now() < deadline && (text.match(/END\r\n/g) ?? []).length < 2) {
      text += session.take().toString("latin1");
      await sleep(5);
    }
    return text.split("\r\n").filter((line) => /^STAT auth_/.test(line));
  } finally {
    session.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe("authentication: the embedded server replies like memcached -Y", { concurrency: true }, () => {
  const dir = mkdtempSync(join(tmpdir(), "memipc-auth-"));
  const file = join(dir, "auth");
  writeFileSync(file, AUTH_FILE);
  let reference: { port: number; stop(): Promise<void> } | undefined;
  let embedded: { port: number; close(): Promise<void> } | undefined;

  before(async () => {
    if (!memcachedAvailable()) return;
    // No LRU threads: nothing here depends on them, and they are two threads fewer on a loaded machine.
    reference = await startRealMemcached({
      extraArgs: ["-Y", file, "-o", "no_lru_maintainer,no_lru_crawler"],
    });
    embedded = await startServer({ port: 0, authFile: file });
  });

  after(async () => {
    await Promise.all([reference?.stop(), embedded?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  for (const c of CASES) {
    it(c.name, async (t) => {
      if (!requireMemcached(t)) return;
      const [expected, actual] = await Promise.all([
        runCase(reference!.port, c).then(render),
        runCase(embedded!.port, c).then(render),
      ]);
      assert.deepEqual(actual, expected);
    });
  }
});

describe("authentication statistics", () => {
  it("auth_cmds, auth_errors and auth_enabled_ascii match memcached after the same exchanges", async (t) => {
    if (!requireMemcached(t)) return;
    const dir = mkdtempSync(join(tmpdir(), "memipc-auth-"));
    const file = join(dir, "auth");
    writeFileSync(file, AUTH_FILE);
    const reference = await startRealMemcached({ extraArgs: ["-Y", file] });
    const embedded = await startServer({ port: 0, authFile: file });
    try {
      const script: Case = {
        name: "stats",
        steps: [
          step(auth("alice", "wrong!"), 1),
          step("set a 0 0 5\r\nhello\r\n", 1),
          step("set a 0 0 12\r\nalice secretXX", 1),
          step(auth("carol", "secret"), 1),
          step(auth("bob", "pa:ss"), 1),
          step(auth("bob", "pa:ss"), 1),
        ],
      };
      await Promise.all([runCase(reference.port, script), runCase(embedded.port, script)]);
      const [expected, actual] = await Promise.all([authStats(reference.port), authStats(embedded.port)]);
      assert.ok(expected.length === 4, `memcached's auth lines: ${expected.join(" | ")}`);
      assert.deepEqual(actual, expected);
    } finally {
      await Promise.all([reference.stop(), embedded.close()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("auth file", () => {
  it("takes what memcached reads the same way and refuses what it would misread", () => {
    assert.deepEqual(parseAuthFile("alice:se:cr:et\r\nbob:x", "f"), [
      { user: "alice", password: "se:cr:et" },
      { user: "bob", password: "x" },
    ]);
    const refused: Array<[string, RegExp]> = [
      ["", /no user:password line/],
      ["alice:secret\n\n", /line 2 is not user:password/],
      ["# users\nalice:secret\n", /line 1 is not user:password/],
      ["alice:\n", /empty user name or password/],
      [":secret\n", /empty user name or password/],
      ["alice:sec ret\n", /space or NUL/],
      [`alice:${"x".repeat(249)}\n`, /longer than 255 bytes/],
      [Array.from({ length: 9 }, (_, i) => `u${i}:p\n`).join(""), /reads only the first 8/],
    ];
    for (const [text, message] of refused) assert.throws(() => parseAuthFile(text, "f"), message);
    assert.equal(parseAuthFile(`alice:${"x".repeat(248)}\n`, "f").length, 1);
  });
});
