// Reply parser: every case parsed whole, byte by byte and split at each offset gives the same frames;
// malformed replies raise ProtocolError; real memcached's replies to our encoded requests parse as expected.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createConnection, type Socket } from "node:net";
import { test } from "node:test";
import { ClientError, CommandError, ConfigError, ProtocolError, ServerError } from "../../src/errors.js";
import {
  ReplyParser,
  findMetaFlag,
  replyError,
  type ErrorFrame,
  type MetaFlag,
  type RawValueReceiver,
  type ReplyFrame,
  type ReplyParserOptions,
} from "../../src/protocol/reply-parser.js";
import {
  encodeCas,
  encodeDecr,
  encodeDelete,
  encodeFlushAll,
  encodeGat,
  encodeGats,
  encodeGet,
  encodeGets,
  encodeIncr,
  encodeMa,
  encodeMd,
  encodeMe,
  encodeMg,
  encodeMn,
  encodeMs,
  encodeQuit,
  encodeStats,
  encodeStore,
  encodeTouch,
  encodeVerbosity,
  encodeVersion,
  type Encoded,
} from "../../src/protocol/request-encoder.js";
import { toBase64Key } from "../../src/protocol/keys.js";
import { requireMemcached, startRealMemcached } from "../helpers/real-memcached.js";

// ---- fixtures: what a server sends (wire) and what the parser should make of it (frame) ----

type Data = string | Buffer;
const bytes = (data: Data): Buffer => (typeof data === "string" ? Buffer.from(data, "latin1") : data);
const CRLF = bytes("\r\n");
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

const wire = {
  line: (...words: (string | number | bigint)[]): Buffer => bytes(`${words.join(" ")}\r\n`),
  value: (key: string, flags: number, data: Data, cas?: bigint): Buffer => {
    const cols: (string | number | bigint)[] = ["VALUE", key, flags, bytes(data).length];
    if (cas !== undefined) cols.push(cas);
    return Buffer.concat([wire.line(...cols), bytes(data), CRLF]);
  },
  va: (data: Data, ...flags: string[]): Buffer =>
    Buffer.concat([wire.line("VA", bytes(data).length, ...flags), bytes(data), CRLF]),
};

const metaFlag = (text: string): MetaFlag => ({ flag: text[0]!, token: text.slice(1) });
const frame = {
  value: (key: string, flags: number, data: Data, cas?: bigint): ReplyFrame => ({
    kind: "VALUE",
    key,
    flags,
    value: bytes(data),
    cas,
  }),
  va: (data: Data, ...flags: string[]): ReplyFrame => ({
    kind: "VA",
    flags: flags.map(metaFlag),
    value: bytes(data),
  }),
  meta: (kind: "HD" | "EN" | "NF" | "NS" | "EX", ...flags: string[]): ReplyFrame => ({
    kind,
    flags: flags.map(metaFlag),
  }),
  word: (
    kind:
      | "END"
      | "MN"
      | "STORED"
      | "NOT_STORED"
      | "EXISTS"
      | "NOT_FOUND"
      | "DELETED"
      | "TOUCHED"
      | "OK"
      | "RESET",
  ): ReplyFrame => ({ kind }),
  me: (key: string, ...fields: string[]): ReplyFrame => ({
    kind: "ME",
    key,
    fields: fields.map((f) => ({ name: f.slice(0, f.indexOf("=")), value: f.slice(f.indexOf("=") + 1) })),
  }),
  stat: (name: string, value: string): ReplyFrame => ({ kind: "STAT", name, value }),
  version: (version: string): ReplyFrame => ({ kind: "VERSION", version }),
  number: (value: bigint): ReplyFrame => ({ kind: "NUMBER", value }),
  error: (kind: ErrorFrame["kind"], message = ""): ReplyFrame => ({ kind, message }),
};

// ---- split harness ----

/** The ways a stream can arrive: whole, byte by byte, in two at each offset, in three at each pair (small inputs). */
function* ways(input: Buffer, pairsUpTo = 48): Generator<[string, Iterable<Buffer>]> {
  yield ["whole", [input]];
  yield ["byte by byte", byteByByte(input)];
  for (let i = 1; i < input.length; i++) yield [`split at ${i}`, [input.subarray(0, i), input.subarray(i)]];
  if (input.length > pairsUpTo) return;
  for (let i = 1; i < input.length; i++) {
    for (let j = i + 1; j < input.length; j++) {
      yield [`split at ${i} and ${j}`, [input.subarray(0, i), input.subarray(i, j), input.subarray(j)]];
    }
  }
}

function* byteByByte(input: Buffer): Generator<Buffer> {
  for (let i = 0; i < input.length; i++) yield input.subarray(i, i + 1);
}

function parseChunks(
  chunks: Iterable<Buffer>,
  options?: ReplyParserOptions,
): { frames: ReplyFrame[]; parser: ReplyParser } {
  const parser = new ReplyParser(options);
  const frames: ReplyFrame[] = [];
  for (const chunk of chunks) parser.parse(chunk, (f) => frames.push(f));
  return { frames, parser };
}

function assertParses(input: Buffer, expected: ReplyFrame[], options?: ReplyParserOptions): void {
  for (const [how, chunks] of ways(input)) {
    const { frames, parser } = parseChunks(chunks, options);
    assert.deepStrictEqual(frames, expected, how);
    assert.equal(parser.hasPartialReply, false, `${how}: nothing left over`);
  }
}

function assertRejects(
  input: Buffer,
  before: ReplyFrame[],
  message: RegExp,
  options?: ReplyParserOptions,
): void {
  for (const [how, chunks] of ways(input)) {
    const parser = new ReplyParser(options);
    const frames: ReplyFrame[] = [];
    let thrown: unknown;
    try {
      for (const chunk of chunks) parser.parse(chunk, (f) => frames.push(f));
    } catch (error) {
      thrown = error;
    }
    assert.ok(thrown instanceof ProtocolError, `${how}: throws ProtocolError, got ${String(thrown)}`);
    assert.match(thrown.message, message, how);
    assert.equal(thrown.code, "EPROTOCOL");
    assert.deepStrictEqual(frames, before, `${how}: frames before the error`);
    assert.throws(
      () => parser.parse(bytes("END\r\n"), () => assert.fail("no frame after an error")),
      (e) => e === thrown,
    );
  }
}

// ---- well-formed replies ----

test("reply parser: get replies with flags, cas, empty and binary values (\\r\\n and END inside data)", () => {
  const binary = Buffer.concat([ALL_BYTES, bytes("\r\nEND\r\nVALUE x 0 1\r\n")]);
  assertParses(
    Buffer.concat([
      wire.value("k1", 42, "hello"),
      wire.value("k2", 4294967295, "", 18446744073709551615n),
      wire.value("bin", 0, binary, 7n),
      wire.line("END"),
    ]),
    [
      frame.value("k1", 42, "hello"),
      frame.value("k2", 4294967295, "", 18446744073709551615n),
      frame.value("bin", 0, binary, 7n),
      frame.word("END"),
    ],
  );
});

test("reply parser: keys come back one character per byte (latin1), so UTF-8 keys survive unchanged as bytes", () => {
  const utf8Key = Buffer.from("clé-ключ", "utf8").toString("latin1");
  const input = Buffer.concat([wire.value(utf8Key, 1, "v"), wire.line("END")]);
  assertParses(input, [frame.value(utf8Key, 1, "v"), frame.word("END")]);
  const parsed = parseChunks([input]).frames[0];
  assert.ok(parsed?.kind === "VALUE");
  assert.equal(Buffer.from(parsed.key, "latin1").toString("utf8"), "clé-ключ");
});

test("reply parser: meta replies with return flags in order (VA HD EN NF NS EX MN)", () => {
  assertParses(
    Buffer.concat([
      wire.va("abc", "c1", "f5", "t-1", "s3", "ka", "O12"),
      wire.va(""),
      wire.va("x\r\ny", "W", "Z", "X"),
      wire.line("HD"),
      wire.line("HD", "c2", "kfoo", "b"),
      wire.line("EN"),
      wire.line("EN", "kzz", "O1"),
      wire.line("NF", "O9", "kzz"),
      wire.line("NS"),
      wire.line("EX", "c0"),
      wire.line("MN"),
    ]),
    [
      frame.va("abc", "c1", "f5", "t-1", "s3", "ka", "O12"),
      frame.va(""),
      frame.va("x\r\ny", "W", "Z", "X"),
      frame.meta("HD"),
      frame.meta("HD", "c2", "kfoo", "b"),
      frame.meta("EN"),
      frame.meta("EN", "kzz", "O1"),
      frame.meta("NF", "O9", "kzz"),
      frame.meta("NS"),
      frame.meta("EX", "c0"),
      frame.word("MN"),
    ],
  );
});

test("reply parser: ME meta debug lines give the key and ordered name=value fields", () => {
  assertParses(wire.line("ME", "a", "exp=-1", "la=0", "cas=1", "fetch=yes", "cls=1", "size=67", "empty="), [
    frame.me("a", "exp=-1", "la=0", "cas=1", "fetch=yes", "cls=1", "size=67", "empty="),
  ]);
  assertParses(wire.line("ME", "k"), [frame.me("k")]);
});

test("reply parser: storage and other status words", () => {
  const words = [
    "STORED",
    "NOT_STORED",
    "EXISTS",
    "NOT_FOUND",
    "DELETED",
    "TOUCHED",
    "OK",
    "RESET",
    "END",
  ] as const;
  assertParses(Buffer.concat(words.map((w) => wire.line(w))), words.map(frame.word));
});

test("reply parser: STAT lines (values may hold spaces or be empty), VERSION", () => {
  assertParses(
    Buffer.concat([
      wire.line("STAT", "pid", "1234"),
      wire.line("STAT", "1:chunk_size", "96"),
      wire.line("STAT", "libevent", "2.1.12-stable with spaces"),
      wire.line("STAT empty "),
      wire.line("END"),
      wire.line("VERSION", "1.6.18"),
    ]),
    [
      frame.stat("pid", "1234"),
      frame.stat("1:chunk_size", "96"),
      frame.stat("libevent", "2.1.12-stable with spaces"),
      frame.stat("empty", ""),
      frame.word("END"),
      frame.version("1.6.18"),
    ],
  );
});

test("reply parser: incr/decr number lines, 64-bit exact, space padding allowed", () => {
  assertParses(
    Buffer.concat([wire.line("0"), wire.line("15"), wire.line("18446744073709551615"), wire.line("9   ")]),
    [frame.number(0n), frame.number(15n), frame.number(18446744073709551615n), frame.number(9n)],
  );
});

test("reply parser: ERROR, CLIENT_ERROR and SERVER_ERROR lines with their messages", () => {
  assertParses(
    Buffer.concat([
      wire.line("ERROR"),
      wire.line("ERROR", "unknown", "command"),
      wire.line("CLIENT_ERROR", "bad", "data", "chunk"),
      wire.line("SERVER_ERROR", "object too large for cache"),
    ]),
    [
      frame.error("ERROR"),
      frame.error("ERROR", "unknown command"),
      frame.error("CLIENT_ERROR", "bad data chunk"),
      frame.error("SERVER_ERROR", "object too large for cache"),
    ],
  );
});

test("reply parser: many different replies in one chunk, split anywhere", () => {
  const input = Buffer.concat([
    wire.line("STORED"),
    wire.value("a", 1, "x\r\n"),
    wire.line("END"),
    wire.va("12", "c9"),
    wire.line("HD"),
    wire.line("42"),
    wire.line("CLIENT_ERROR", "oops"),
    wire.line("MN"),
  ]);
  assertParses(input, [
    frame.word("STORED"),
    frame.value("a", 1, "x\r\n"),
    frame.word("END"),
    frame.va("12", "c9"),
    frame.meta("HD"),
    frame.number(42n),
    frame.error("CLIENT_ERROR", "oops"),
    frame.word("MN"),
  ]);
});

test("reply parser: a 300 KB value arrives intact whole, byte by byte and split at sampled offsets", () => {
  const data = randomBytes(300 * 1024);
  const input = Buffer.concat([wire.value("big", 3, data, 99n), wire.va(data, "s307200"), wire.line("END")]);
  const expected = [frame.value("big", 3, data, 99n), frame.va(data, "s307200"), frame.word("END")];
  const whole = parseChunks([input]).frames;
  assert.deepStrictEqual(whole, expected);
  const byByte = parseChunks(byteByByte(input)).frames;
  assert.deepStrictEqual(byByte, expected);
  for (let i = 1; i < input.length; i += 4093) {
    assert.deepStrictEqual(
      parseChunks([input.subarray(0, i), input.subarray(i)]).frames,
      expected,
      `split at ${i}`,
    );
  }
  const header = wire.line("VALUE", "big", 3, data.length, 99n).length;
  for (const i of [header - 1, header, header + 1, header + data.length, header + data.length + 1]) {
    assert.deepStrictEqual(
      parseChunks([input.subarray(0, i), input.subarray(i)]).frames,
      expected,
      `split at ${i}`,
    );
  }
});

// ---- ownership, state and helpers ----

test("reply parser: a value that arrived whole is a view of its chunk; a split one is its own buffer; both stay intact", () => {
  const whole = Buffer.concat([wire.value("k", 0, "abc"), wire.line("END")]);
  const got = parseChunks([whole]).frames[0];
  assert.ok(got?.kind === "VALUE");
  assert.equal(got.value.buffer, whole.buffer, "whole: a view, no copy");

  const parser = new ReplyParser();
  const kept: Buffer[] = [];
  const onFrame = (f: ReplyFrame) => {
    if (f.kind === "VALUE") kept.push(f.value);
  };
  const input = Buffer.concat([wire.value("k", 0, "first-value"), wire.value("k", 0, "second")]);
  for (let i = 0; i < input.length; i += 5) parser.parse(Buffer.from(input.subarray(i, i + 5)), onFrame);
  for (let i = 0; i < 200; i++) {
    const stat = wire.line("STAT", `name-${i}`, "x".repeat(i));
    for (let j = 0; j < stat.length; j += 3) parser.parse(stat.subarray(j, j + 3), onFrame);
  }
  assert.deepStrictEqual(kept.map(String), ["first-value", "second"]);
});

test("reply parser: a raw value receiver gets keys and byte ranges in place of VALUE frames, split anywhere", () => {
  const input = Buffer.concat([
    wire.value("k1", 3, "first"),
    wire.value("clé", 0, ""), // as bytes: é is one (latin1) byte here
    wire.value("k3", 1, "x".repeat(300), 9n),
    wire.line("END"),
    wire.va("meta"),
  ]);
  for (const size of [1, 2, 7, 64, input.length]) {
    let raw = true;
    const got: string[] = [];
    const receiver: RawValueReceiver = {
      key: (buf, start, end) => got.push(`key ${buf.toString("latin1", start, end)}`),
      value: (buf, start, end, flags) => got.push(`value ${buf.toString("latin1", start, end)} ${flags}`),
    };
    const parser = new ReplyParser({ rawValues: () => (raw ? receiver : undefined) });
    const frames: ReplyFrame[] = [];
    for (let i = 0; i < input.length; i += size) {
      parser.parse(Buffer.from(input.subarray(i, i + size)), (f) => {
        frames.push(f);
        if (f.kind === "END") raw = false;
      });
    }
    assert.deepStrictEqual(
      got,
      ["key k1", "value first 3", "key clé", "value  0", "key k3", `value ${"x".repeat(300)} 1`],
      `chunks of ${size}`,
    );
    assert.deepStrictEqual(
      frames,
      [frame.word("END"), frame.va("meta")],
      `chunks of ${size}: no VALUE frames`,
    );
  }
  // A receiver that refuses a key stops the parser like any broken reply.
  const refusing = new ReplyParser({
    rawValues: () => ({
      key: () => {
        throw new ProtocolError("not asked for");
      },
      value: () => assert.fail("no value after a refused key"),
    }),
  });
  assert.throws(() => refusing.parse(wire.value("k", 0, "v"), () => undefined), /not asked for/);
  assert.throws(() => refusing.parse(wire.line("END"), () => undefined), /not asked for/);
});

test("reply parser: hasPartialReply is true mid-line, mid-block and mid-trailer, false between replies", () => {
  const parser = new ReplyParser();
  const frames: ReplyFrame[] = [];
  const feed = (text: string) => parser.parse(bytes(text), (f) => frames.push(f));
  assert.equal(parser.hasPartialReply, false);
  feed("VALU");
  assert.equal(parser.hasPartialReply, true, "mid-line");
  feed("E k 0 3\r\nab");
  assert.equal(parser.hasPartialReply, true, "mid-block");
  feed("c\r");
  assert.equal(parser.hasPartialReply, true, "mid-trailer");
  feed("\n");
  assert.equal(parser.hasPartialReply, false);
  assert.deepStrictEqual(frames, [frame.value("k", 0, "abc")]);
});

test("reply parser: a throwing callback breaks the parser with a ProtocolError that names the cause", () => {
  const parser = new ReplyParser();
  const boom = new Error("boom");
  assert.throws(
    () =>
      parser.parse(bytes("STORED\r\n"), () => {
        throw boom;
      }),
    (e) => e === boom,
  );
  assert.throws(
    () => parser.parse(bytes("STORED\r\n"), () => undefined),
    (e) => e instanceof ProtocolError && e.cause === boom && /callback threw/.test(e.message),
  );
});

test("reply parser: bad options are refused with ConfigError", () => {
  assert.throws(() => new ReplyParser({ maxLineLength: 3 }), ConfigError);
  assert.throws(() => new ReplyParser({ maxValueSize: -1 }), ConfigError);
});

test("replyError: maps ERROR, CLIENT_ERROR, SERVER_ERROR to CommandError, ClientError, ServerError", () => {
  const command = replyError({ kind: "ERROR", message: "" });
  assert.ok(command instanceof CommandError);
  assert.match(command.message, /does not know the command/);
  const client = replyError({ kind: "CLIENT_ERROR", message: "bad data chunk" });
  assert.ok(client instanceof ClientError);
  assert.match(client.message, /CLIENT_ERROR bad data chunk/);
  const server = replyError({ kind: "SERVER_ERROR", message: "out of memory storing object" });
  assert.ok(server instanceof ServerError);
  assert.equal(server.code, "ESERVER");
});

test("findMetaFlag: the first token of a return flag, or undefined", () => {
  const flags = ["c12", "W", "kkey", "c13"].map(metaFlag);
  assert.equal(findMetaFlag(flags, "c"), "12");
  assert.equal(findMetaFlag(flags, "W"), "");
  assert.equal(findMetaFlag(flags, "t"), undefined);
});

// ---- malformed replies ----

test("reply parser: unknown or garbled lines raise ProtocolError after the frames before them", () => {
  const ok = wire.line("STORED");
  for (const text of [
    "FOO",
    "STORED extra",
    "END x",
    "",
    "MN x",
    "stored",
    "OK!",
    "VALUEX k 0 1",
    "12a",
    "-1",
  ]) {
    assertRejects(
      Buffer.concat([ok, wire.line(text)]),
      [frame.word("STORED")],
      /unexpected reply line|not a 64-bit unsigned number/,
    );
  }
});

test("reply parser: a line ending in a bare \\n is refused", () => {
  assertRejects(bytes("END\n"), [], /bare \\n/);
  assertRejects(bytes("\n"), [], /bare \\n/);
});

test("reply parser: bad VALUE and VA headers are refused", () => {
  const cases: [string, RegExp][] = [
    ["VALUE", /has no key/],
    ["VALUE k", /bad client flags/],
    ["VALUE k x 1", /bad client flags/],
    ["VALUE k 4294967296 1", /bad client flags/],
    ["VALUE k 0", /bad data block size/],
    ["VALUE k 0 -1", /bad data block size/],
    ["VALUE k 0 1x", /bad data block size/],
    ["VALUE k 0 1234567890123456", /bad data block size/],
    ["VALUE k 0 1 x", /bad cas unique/],
    ["VALUE k 0 1 18446744073709551616", /bad cas unique/],
    ["VALUE k 0 1 5 extra", /bad cas unique/],
    ["VA", /bad data block size/],
    ["VA x", /bad data block size/],
  ];
  for (const [text, message] of cases) assertRejects(wire.line(text), [], message);
});

test("reply parser: a data block over maxValueSize is refused before any memory is taken for it", () => {
  assertRejects(wire.line("VALUE", "k", 0, 1025), [], /exceeds maxValueSize \(1024 bytes\)/, {
    maxValueSize: 1024,
  });
  assertParses(wire.value("k", 0, "x".repeat(1024)), [frame.value("k", 0, "x".repeat(1024))], {
    maxValueSize: 1024,
  });
});

test("reply parser: a data block not followed by \\r\\n is refused", () => {
  assertRejects(bytes("VALUE k 0 3\r\nabcd\r\n"), [], /3 bytes is not followed by \\r\\n/);
  assertRejects(bytes("VA 1\r\nab\r\n"), [], /not followed by \\r\\n/);
  assertRejects(bytes("VA 0\r\n\n\r"), [], /not followed by \\r\\n/);
  assertRejects(Buffer.concat([wire.va("ok"), bytes("VA 2 c1\r\nab\n\n")]), [frame.va("ok")], /not followed/);
});

test("reply parser: line length is bounded, with or without a newline in sight", () => {
  const options = { maxLineLength: 16 };
  const fits = "STAT a 123456789"; // 16 bytes
  assertParses(wire.line(fits), [frame.stat("a", "123456789")], options);
  assertRejects(
    Buffer.concat([wire.line(fits), wire.line(`${fits}0`)]),
    [frame.stat("a", "123456789")],
    /ran past 16 bytes/,
    options,
  );
  assertRejects(bytes("x".repeat(40)), [], /ran past 16 bytes/, options);
  // Default bound: a megabyte without a newline does not pile up.
  const parser = new ReplyParser();
  assert.throws(() => {
    for (let i = 0; i < 1024; i++) parser.parse(Buffer.alloc(1024, 0x41), () => undefined);
  }, /ran past 8192 bytes/);
});

test("reply parser: malformed numbers, STAT, ME and meta flags are refused", () => {
  assertRejects(wire.line("18446744073709551616"), [], /not a 64-bit unsigned number/);
  assertRejects(wire.line("123456789012345678901"), [], /not a 64-bit unsigned number/);
  assertRejects(wire.line("12 x"), [], /is not a number/);
  assertRejects(wire.line("STAT"), [], /STAT line has no name/);
  assertRejects(wire.line("ME"), [], /ME line has no key/);
  assertRejects(wire.line("ME k exp"), [], /not name=value/);
  assertRejects(wire.line("ME k =1"), [], /not name=value/);
  assertRejects(Buffer.concat([bytes("HD \x7f1"), CRLF]), [], /not a printable character/);
  assertRejects(Buffer.concat([bytes("HD c1 \x01"), CRLF]), [], /not a printable character/);
});

// ---- against real memcached ----

/** A connection that sends requests, ends each batch with `mn`, and collects the frames before its MN. */
class Session {
  readonly raw: Buffer[] = [];
  readonly all: ReplyFrame[] = [];
  readonly parser = new ReplyParser();
  private pending: ReplyFrame[] = [];
  private waiter: { resolve: (frames: ReplyFrame[]) => void; reject: (e: Error) => void } | undefined;
  readonly closed: Promise<void>;
  private readonly socket: Socket;

  constructor(socket: Socket) {
    this.socket = socket;
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.waiter?.reject(new Error("memcached closed the connection before answering the batch"));
        resolve();
      }),
    );
    socket.on("data", (chunk: Buffer) => {
      this.raw.push(chunk);
      try {
        this.parser.parse(chunk, (f) => this.onFrame(f));
      } catch (error) {
        this.waiter?.reject(error as Error);
        socket.destroy();
      }
    });
    socket.on("error", (error) => this.waiter?.reject(error));
  }

  static open(port: number): Promise<Session> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: "127.0.0.1", port });
      socket.once("connect", () => resolve(new Session(socket)));
      socket.once("error", reject);
    });
  }

  private onFrame(f: ReplyFrame): void {
    this.all.push(f);
    if (f.kind !== "MN") {
      this.pending.push(f);
      return;
    }
    const frames = this.pending;
    const waiter = this.waiter;
    this.pending = [];
    this.waiter = undefined;
    waiter?.resolve(frames);
  }

  /** Sends the requests in one pipeline and resolves with every frame answered before the closing MN. */
  exchange(requests: (Encoded | string)[]): Promise<ReplyFrame[]> {
    const done = new Promise<ReplyFrame[]>((resolve, reject) => (this.waiter = { resolve, reject }));
    this.socket.cork();
    for (const request of [...requests, encodeMn()]) {
      if (typeof request === "string") this.socket.write(request, "latin1");
      else if (Buffer.isBuffer(request)) this.socket.write(request);
      else for (const part of request) this.socket.write(part);
    }
    this.socket.uncork();
    return done;
  }

  async quit(): Promise<void> {
    this.socket.write(encodeQuit());
    await this.closed;
  }
}

function casOf(f: ReplyFrame | undefined): bigint {
  assert.ok(
    f?.kind === "VALUE" && typeof f.cas === "bigint",
    `expected a VALUE frame with cas, got ${f?.kind}`,
  );
  return f.cas;
}

test("reply parser: real memcached answers encoded requests with bytes that parse as expected", async (t) => {
  if (!requireMemcached(t)) return;
  const server = await startRealMemcached();
  t.after(() => server.stop());
  const session = await Session.open(server.port);
  const p = `rt${randomBytes(4).toString("hex")}:`;
  const [k1, k2, n, missing] = [`${p}k1`, `${p}k2`, `${p}n`, `${p}missing`];
  const binary = Buffer.concat([ALL_BYTES, bytes("\r\nEND\r\n")]);

  // Text storage and retrieval.
  const a = await session.exchange([
    encodeStore("set", k1, "hello", { flags: 42 }),
    encodeStore("add", k1, "x"),
    encodeStore("replace", missing, "x"),
    encodeStore("append", k1, " world"),
    encodeStore("prepend", k1, ">"),
    encodeStore("set", k2, binary, { noreply: true }),
    encodeGet([k1, missing, k2]),
    encodeGets(k1),
  ]);
  const cas = casOf(a[8]);
  assert.deepStrictEqual(a, [
    frame.word("STORED"),
    frame.word("NOT_STORED"),
    frame.word("NOT_STORED"),
    frame.word("STORED"),
    frame.word("STORED"),
    frame.value(k1, 42, ">hello world"),
    frame.value(k2, 0, binary),
    frame.word("END"),
    frame.value(k1, 42, ">hello world", cas),
    frame.word("END"),
  ]);

  // cas, arithmetic (64-bit wrap, in-place space padding), touch, gat/gats, delete.
  const b = await session.exchange([
    encodeCas(k1, "v2", cas),
    encodeCas(k1, "v3", cas),
    encodeCas(missing, "v", 1n),
    encodeIncr(missing, 1),
    encodeStore("set", n, "10"),
    encodeIncr(n, 5),
    encodeDecr(n, 100),
    encodeIncr(n, 18446744073709551615n),
    encodeIncr(n, 1, { noreply: true }),
    encodeGet(n),
    encodeTouch(k1, 100),
    encodeTouch(missing, 100),
    encodeGat(100, k1),
    encodeGats(0, [k1]),
    encodeDelete(k1),
    encodeDelete(k1),
    encodeIncr(k2, 1),
  ]);
  assert.deepStrictEqual(b, [
    frame.word("STORED"),
    frame.word("EXISTS"),
    frame.word("NOT_FOUND"),
    frame.word("NOT_FOUND"),
    frame.word("STORED"),
    frame.number(15n),
    frame.number(0n),
    frame.number(18446744073709551615n),
    frame.value(n, 0, "0".padEnd(20)),
    frame.word("END"),
    frame.word("TOUCHED"),
    frame.word("NOT_FOUND"),
    frame.value(k1, 0, "v2"),
    frame.word("END"),
    frame.value(k1, 0, "v2", casOf(b[14])),
    frame.word("END"),
    frame.word("DELETED"),
    frame.word("NOT_FOUND"),
    frame.error("CLIENT_ERROR", "cannot increment or decrement non-numeric value"),
  ]);

  // Meta commands.
  const [m1, c1] = [`${p}m1`, `${p}c1`];
  const binaryKey = toBase64Key(Buffer.from([0, 1, 2, 0xff, 0x20, 0x0a]));
  const utf8Key = `${p}clé`;
  const c = await session.exchange([
    encodeMs(m1, "meta!", ["T60", "F7", "c"]),
    encodeMg(m1, ["v", "f", "s", "k", "Oabc", "c"]),
    encodeMg(m1, ["k", "t"]),
    encodeMg(missing, ["v"]),
    encodeMg(missing, ["v", "q"]),
    encodeMg(missing, ["v", "k", "O1"]),
    encodeMs(m1, "x", ["ME"]),
    encodeMs(m1, "x", ["C1"]),
    encodeMs(missing, "x", ["MR"]),
    encodeMd(missing),
    encodeMd(missing, ["q", "O9"]),
    encodeMa(c1, ["N0", "J10", "v"]),
    encodeMa(c1, ["D5", "v"]),
    encodeMa(c1, ["MD", "D20", "v"]),
    encodeMa(missing),
    encodeMa(c1, ["q"]),
    encodeMe(m1),
    encodeMe(missing),
    encodeMd(m1, ["q"]),
    encodeMg(m1, ["v"]),
    encodeMs(binaryKey, "b64", ["b"]),
    encodeMg(binaryKey, ["b", "k", "v"]),
    encodeStore("set", utf8Key, "u"),
    encodeGet(utf8Key),
  ]);
  const hd = c[0];
  assert.ok(hd?.kind === "HD");
  const metaCas = findMetaFlag(hd.flags, "c");
  assert.match(metaCas ?? "", /^\d+$/);
  assert.deepStrictEqual(c[1], frame.va("meta!", "f7", "s5", `k${m1}`, "Oabc", `c${metaCas}`));
  assert.ok(c[2]?.kind === "HD");
  assert.deepStrictEqual(
    c[2].flags.map((f) => f.flag),
    ["k", "t"],
  );
  assert.match(findMetaFlag(c[2].flags, "t") ?? "", /^(59|60)$/);
  const me = c[14];
  assert.ok(me?.kind === "ME" && me.key === m1);
  assert.deepStrictEqual(
    me.fields.map((f) => f.name),
    ["exp", "la", "cas", "fetch", "cls", "size"],
  );
  assert.deepStrictEqual(c.slice(3, 13), [
    frame.meta("EN"),
    frame.meta("EN", `k${missing}`, "O1"),
    frame.meta("NS"),
    frame.meta("EX"),
    frame.meta("NS"),
    frame.meta("NF"),
    frame.meta("NF", "O9"),
    frame.va("10"),
    frame.va("15"),
    frame.va("0"),
  ]);
  assert.deepStrictEqual(c.slice(13), [
    frame.meta("NF"),
    me,
    frame.meta("EN"),
    frame.meta("EN"),
    frame.meta("HD"),
    frame.va("b64", `k${binaryKey}`, "b"),
    frame.word("STORED"),
    frame.value(Buffer.from(utf8Key, "utf8").toString("latin1"), 0, "u"),
    frame.word("END"),
  ]);

  // Admin commands and error replies.
  const tooBig = Buffer.alloc(2 * 1024 * 1024, 0x61);
  const d = await session.exchange([
    encodeVersion(),
    encodeVerbosity(1),
    encodeVerbosity(0, { noreply: true }),
    encodeStats(),
    encodeStats("settings"),
    encodeStats("reset"),
    encodeStats("nope"),
    "bogus\r\n",
    encodeStore("set", `${p}big`, tooBig),
    encodeFlushAll(),
    encodeFlushAll({ delay: 0, noreply: true }),
    encodeGet(k2),
  ]);
  assert.ok(d[0]?.kind === "VERSION");
  assert.match(d[0].version, /^\d+\.\d+\.\d+/);
  assert.deepStrictEqual(d[1], frame.word("OK"));
  const ends = d.flatMap((f, i) => (f.kind === "END" ? [i] : []));
  assert.equal(ends.length, 3, "stats, stats settings and the last get each end with END");
  const stats = d.slice(2, ends[0]);
  const settings = d.slice(ends[0]! + 1, ends[1]);
  assert.ok(stats.length > 20 && settings.length > 20);
  assert.ok([...stats, ...settings].every((f) => f.kind === "STAT"));
  const names = new Set(stats.map((f) => (f.kind === "STAT" ? f.name : "")));
  for (const name of ["pid", "version", "curr_items", "get_hits"]) assert.ok(names.has(name), name);
  assert.ok(settings.some((f) => f.kind === "STAT" && f.name === "maxbytes"));
  assert.deepStrictEqual(d.slice(ends[1]! + 1), [
    frame.word("RESET"),
    frame.error("ERROR"),
    frame.error("ERROR"),
    frame.error("SERVER_ERROR", "object too large for cache"),
    frame.word("OK"),
    frame.word("END"),
  ]);

  await session.quit();
  assert.equal(session.parser.hasPartialReply, false);
  assert.equal(session.all.filter((f) => f.kind === "MN").length, 4, "one MN per batch");

  // The same real bytes, replayed whole, byte by byte and split at every offset, give the same frames.
  const stream = Buffer.concat(session.raw);
  for (const [how, chunks] of ways(stream, 0)) {
    assert.deepStrictEqual(parseChunks(chunks).frames, session.all, how);
  }
});

test("reply parser: real memcached's large values, arriving in socket-sized pieces, parse intact", async (t) => {
  if (!requireMemcached(t)) return;
  const server = await startRealMemcached();
  t.after(() => server.stop());
  const session = await Session.open(server.port);
  const key = `big${randomBytes(4).toString("hex")}`;
  const data = randomBytes(700 * 1024);
  const frames = await session.exchange([
    encodeStore("set", key, data, { flags: 9 }),
    encodeGets([key, `${key}-missing`, key]),
    encodeMs(`${key}m`, data.subarray(1000), ["T0"]),
    encodeMg(`${key}m`, ["s", "v"]),
  ]);
  const cas = casOf(frames[1]);
  assert.deepStrictEqual(frames, [
    frame.word("STORED"),
    frame.value(key, 9, data, cas),
    frame.value(key, 9, data, cas),
    frame.word("END"),
    frame.meta("HD"),
    frame.va(data.subarray(1000), `s${data.length - 1000}`),
  ]);
  await session.quit();
  const stream = Buffer.concat(session.raw);
  assert.deepStrictEqual(parseChunks(byteByByte(stream)).frames, session.all);
  for (let i = 1; i < stream.length; i += 65521) {
    assert.deepStrictEqual(
      parseChunks([stream.subarray(0, i), stream.subarray(i)]).frames,
      session.all,
      `split at ${i}`,
    );
  }
});
