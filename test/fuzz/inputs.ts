// Arbitraries for the property-based fuzzer: byte streams a client might send a memcached server
// (well-formed text and meta commands mixed with damaged ones and plain garbage), byte streams a server
// might send a client, and the ways a stream can be cut into reads.
import fc from "fast-check";
import { generateCommand, Random } from "../conformance/fuzz.js";

const EMPTY = Buffer.alloc(0);

/** Latin-1 text of the given bytes: every string below stands for its bytes one to one. */
const fromBytes = (bytes: Uint8Array): string => Buffer.from(bytes).toString("latin1");

const printable = fc.integer({ min: 33, max: 126 }).map((code) => String.fromCharCode(code));
const anyByte = fc.integer({ min: 0, max: 255 }).map((code) => String.fromCharCode(code));

const keyArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom("a", "b", "c", "d", "n", "k:1") },
  { weight: 3, arbitrary: fc.string({ unit: printable, minLength: 1, maxLength: 24 }) },
  { weight: 1, arbitrary: fc.constantFrom("k".repeat(250), "k".repeat(251), "k".repeat(400)) },
  // Control bytes, NULs and high bytes inside a key.
  { weight: 1, arbitrary: fc.string({ unit: anyByte, minLength: 1, maxLength: 12 }) },
  // A base64 key (for meta commands with b), or something that only looks like one.
  { weight: 1, arbitrary: fc.constantFrom("YQ==", "a2V5", "====", "YWJj!", "Zm9vYmFy") },
);

/** Number tokens: ordinary ones, every edge memcached's strto* calls care about, and junk. */
const numberArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.nat({ max: 100 }).map(String) },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      "0",
      "-1",
      "-0",
      "+5",
      "2147483647",
      "2147483648",
      "-2147483648",
      "-2147483649",
      "2592000",
      "2592001",
      "4294967295",
      "4294967296",
      "9223372036854775807",
      "9223372036854775808",
      "18446744073709551615",
      "18446744073709551616",
      "99999999999999999999999999",
      "abc",
      "1x",
      "0x10",
      "",
      "-",
      "5\t",
    ),
  },
  { weight: 1, arbitrary: fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }).map(String) },
  { weight: 1, arbitrary: fc.nat({ max: 400 }).map((n) => "9".repeat(n + 1)) },
);

/** Mostly a plain small number, sometimes any number token: most commands get past their numbers. */
const usualNumberArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("0", "0", "1", "5", "30", "100", "4294967295") },
  { weight: 2, arbitrary: numberArb },
);

const valueArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: anyByte, maxLength: 40 }) },
  { weight: 3, arbitrary: fc.constantFrom("0", "1", "42", "18446744073709551615", "  7", "x y", "a\r\nb") },
  // Around the small item size limits the fuzz targets run with (1 KiB to 64 KiB).
  { weight: 1, arbitrary: fc.integer({ min: 900, max: 70_000 }).map((n) => "z".repeat(n)) },
);

const noreplyArb = fc.constantFrom("", "", "", " noreply");

/** A data block for a declared length: right, off by a few bytes, wrongly ended, or not a number. */
const dataBlockArb: fc.Arbitrary<{ declared: string; block: string }> = fc
  .tuple(
    valueArb,
    fc.constantFrom("exact", "exact", "exact", "exact", "short", "long", "bad", "huge"),
    fc.integer({ min: 1, max: 5 }),
    fc.constantFrom("\r\n", "\r\n", "\r\n", "\n", "", "xx", "\r"),
  )
  .map(([data, shape, delta, end]) => {
    const length = Buffer.byteLength(data, "latin1");
    switch (shape) {
      case "short":
        return { declared: String(length + delta), block: data + end };
      case "long":
        return { declared: String(Math.max(0, length - delta)), block: data + end };
      case "bad":
        return { declared: "x" + String(length), block: data + end };
      case "huge":
        return { declared: String(2 ** 31 - 3 + delta), block: data + end };
      default:
        return { declared: String(length), block: data + end };
    }
  });

const storageArb = fc
  .tuple(
    fc.constantFrom("set", "set", "add", "replace", "append", "prepend", "cas"),
    keyArb,
    usualNumberArb,
    usualNumberArb,
    dataBlockArb,
    usualNumberArb,
    noreplyArb,
  )
  .map(([verb, key, flags, ttl, { declared, block }, cas, noreply]) => {
    const unique = verb === "cas" ? ` ${cas}` : "";
    return `${verb} ${key} ${flags} ${ttl} ${declared}${unique}${noreply}\r\n${block}`;
  });

const retrievalArb = fc
  .tuple(
    fc.constantFrom("get", "get", "gets", "gat", "gats", "bget"),
    usualNumberArb,
    fc.oneof(
      { weight: 9, arbitrary: fc.array(keyArb, { maxLength: 8 }) },
      { weight: 1, arbitrary: fc.array(keyArb, { minLength: 20, maxLength: 300 }) },
    ),
  )
  .map(([verb, ttl, keys]) => `${verb}${verb.startsWith("gat") ? ` ${ttl}` : ""} ${keys.join(" ")}\r\n`);

const STATS_ARGS = ["", " items", " slabs", " settings", " sizes", " conns", " reset", " detail on"];
const ADMIN_LINES = [
  "shutdown",
  "slabs automove 1",
  "slabs automove ratio x",
  "lru_crawler enable",
  "lru_crawler metadump all",
  "watch",
  "cache_memlimit 100",
  "lru mode flat",
  "extstore",
];

const simpleArb = fc.oneof(
  fc
    .tuple(fc.constantFrom("incr", "decr"), keyArb, usualNumberArb, noreplyArb)
    .map(([verb, key, delta, noreply]) => `${verb} ${key} ${delta}${noreply}\r\n`),
  fc.tuple(keyArb, usualNumberArb, noreplyArb).map(([key, ttl, nr]) => `touch ${key} ${ttl}${nr}\r\n`),
  fc
    .tuple(keyArb, fc.constantFrom("", " 0", " 5", " noreply", " 0 noreply"))
    .map(([key, rest]) => `delete ${key}${rest}\r\n`),
  fc
    .tuple(fc.constantFrom("", " 0", " 1", " -1"), noreplyArb)
    .map(([delay, nr]) => `flush_all${delay}${nr}\r\n`),
  fc.tuple(numberArb, noreplyArb).map(([level, nr]) => `verbosity ${level}${nr}\r\n`),
  fc.constantFrom(...STATS_ARGS).map((args) => `stats${args}\r\n`),
  fc.constantFrom("version\r\n", "mn\r\n", "verbosity\r\n", "flush_all abc\r\n", "\r\n", "   \r\n"),
);

// Flags memcached accepts (for some meta command), then a few it refuses.
const META_FLAGS = [
  ..."vcfhklqstubIPL".split(""),
  "O1",
  "Oabc",
  "O" + "x".repeat(31),
  "O" + "x".repeat(40),
  "N0",
  "N30",
  "Nx",
  "T0",
  "T-1",
  "T100",
  "Tabc",
  "R10",
  "C0",
  "C1",
  "C18446744073709551615",
  "Cx",
  "D5",
  "D18446744073709551616",
  "J10",
  "Jx",
  "MI",
  "M+",
  "MD",
  "M-",
  "ME",
  "MA",
  "MP",
  "MR",
  "MS",
  "MX",
  "F0",
  "F4294967295",
];
const BAD_META_FLAGS = ["Mxy", "Fx", "!", "Z", "\x7f", "v"];
const metaFlagArb = fc.oneof(
  { weight: 20, arbitrary: fc.constantFrom(...META_FLAGS) },
  { weight: 1, arbitrary: fc.constantFrom(...BAD_META_FLAGS) },
  { weight: 1, arbitrary: fc.string({ unit: printable, minLength: 1, maxLength: 6 }) },
);
const metaFlagsArb = fc.oneof(
  { weight: 9, arbitrary: fc.uniqueArray(metaFlagArb, { maxLength: 6, selector: (flag) => flag[0] }) },
  { weight: 1, arbitrary: fc.array(metaFlagArb, { minLength: 17, maxLength: 30 }) },
);
const flagText = (flags: readonly string[]): string => flags.map((flag) => " " + flag).join("");

const metaArb = fc.oneof(
  fc
    .tuple(fc.constantFrom("mg", "mg", "md", "ma", "ma", "me"), keyArb, metaFlagsArb)
    .map(([verb, key, flags]) => `${verb} ${key}${flagText(flags)}\r\n`),
  fc
    .tuple(keyArb, dataBlockArb, metaFlagsArb)
    .map(([key, { declared, block }, flags]) => `ms ${key} ${declared}${flagText(flags)}\r\n${block}`),
  fc.constantFrom("mn\r\n", "mg\r\n", "ms a\r\n", "me\r\n", "mx a\r\n", "m\r\n"),
);

/** Something that is not a command at all. */
const garbageArb: fc.Arbitrary<string> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map(fromBytes),
  fc.uint8Array({ maxLength: 32 }).map((bytes) => fromBytes(bytes) + "\r\n"),
  fc.constantFrom("\n", "\r", "\r\n", "\0\r\n", "get a\0b\r\n", "set\0 a 0 0 1\r\nx\r\n", " \n"),
  // A binary protocol request header (magic 0x80: get, opcode 0), then its key.
  fc.tuple(fc.constantFrom(0, 1, 0x0a, 0x10), keyArb).map(([opcode, key]) => {
    const header = Buffer.alloc(24);
    header[0] = 0x80;
    header[1] = opcode;
    header.writeUInt16BE(Math.min(key.length, 0xffff), 2);
    header.writeUInt32BE(key.length, 8);
    return header.toString("latin1") + key;
  }),
);

/** Lines that never end (or end very late), over the line limit and the multi-get limit. */
const longLineArb: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom("", "set ", "get ", "gets ", "mg ", "   get "),
    fc.integer({ min: 1000, max: 40_000 }),
    fc.constantFrom("A", " ", "k ", "\r"),
    fc.constantFrom("", "", "\r\n", "\n"),
  )
  .map(([head, length, unit, end]) => head + unit.repeat(Math.ceil(length / unit.length)) + end);

/** One of the differential run's generated commands (valid ones kept in step), by its seed. */
const conformanceArb: fc.Arbitrary<string> = fc.nat().map((seed) =>
  generateCommand(new Random(seed))
    .render("")
    .map((piece) => {
      if (typeof piece === "function") return piece({ replies: EMPTY }).toString("latin1");
      if (typeof piece === "string") return piece;
      return Buffer.isBuffer(piece) ? piece.toString("latin1") : "";
    })
    .join(""),
);

export interface RequestStreamOptions {
  /** Include admin commands memcached answers with unusual lines (`ERROR: shutdown not enabled`). */
  admin?: boolean;
  /** Include `quit` (it ends the stream early). */
  quit?: boolean;
  /** Most commands in one stream. */
  maxCommands?: number;
}

const commandArb = (options: RequestStreamOptions): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 80, arbitrary: storageArb },
    { weight: 48, arbitrary: retrievalArb },
    { weight: 60, arbitrary: simpleArb },
    { weight: 100, arbitrary: metaArb },
    { weight: 40, arbitrary: conformanceArb },
    { weight: 24, arbitrary: garbageArb },
    { weight: 3, arbitrary: longLineArb },
    { weight: options.admin ? 8 : 0, arbitrary: fc.constantFrom(...ADMIN_LINES).map((l) => l + "\r\n") },
    { weight: options.quit ? 1 : 0, arbitrary: fc.constant("quit\r\n") },
  );

/** A damage done to a whole stream; positions are fractions of its length. */
type Mutation =
  | { kind: "truncate"; at: number }
  | { kind: "flip"; at: number; byte: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "dropCR"; at: number };

const fraction = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fraction.map((at) => ({ kind: "truncate" as const, at })),
  fc
    .tuple(fraction, fc.integer({ min: 0, max: 255 }))
    .map(([at, byte]) => ({ kind: "flip" as const, at, byte })),
  fc
    .tuple(fraction, fc.uint8Array({ minLength: 1, maxLength: 16 }))
    .map(([at, bytes]) => ({ kind: "insert" as const, at, bytes })),
  fraction.map((at) => ({ kind: "dropCR" as const, at })),
);

function mutate(stream: Buffer, mutation: Mutation): Buffer {
  const at = Math.floor(mutation.at * stream.length);
  switch (mutation.kind) {
    case "truncate":
      return stream.subarray(0, at);
    case "flip": {
      if (stream.length === 0) return stream;
      const copy = Buffer.from(stream);
      copy[at] = mutation.byte;
      return copy;
    }
    case "insert":
      return Buffer.concat([stream.subarray(0, at), mutation.bytes, stream.subarray(at)]);
    case "dropCR": {
      const cr = stream.indexOf(13, at);
      return cr < 0 ? stream : Buffer.concat([stream.subarray(0, cr), stream.subarray(cr + 1)]);
    }
  }
}

/** A stream of client requests: commands, mostly well-formed, then now and then damaged. */
export function requestStreamArb(options: RequestStreamOptions = {}): fc.Arbitrary<Buffer> {
  return fc
    .tuple(
      fc.array(commandArb(options), { maxLength: options.maxCommands ?? 30, size: "medium" }),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant([]) },
        { weight: 1, arbitrary: fc.array(mutationArb, { maxLength: 3 }) },
      ),
    )
    .map(([commands, mutations]) => mutations.reduce(mutate, Buffer.from(commands.join(""), "latin1")));
}

// ---- replies, as a server sends them ----------------------------------------------------------

const replyValueArb = fc.oneof(
  { weight: 5, arbitrary: fc.uint8Array({ maxLength: 40 }).map(fromBytes) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 70_000 }).map((n) => "v".repeat(n)) },
);
const metaReturnFlagsArb = fc
  .array(fc.constantFrom("c1", "f0", "s5", "t-1", "k" + "key", "Oop", "W", "X", "Z", "b", "h0", "l10"), {
    maxLength: 5,
  })
  .map(flagText);

const wellFormedReplyArb: fc.Arbitrary<string> = fc.oneof(
  fc
    .tuple(keyArb, numberArb, replyValueArb, fc.option(numberArb, { nil: undefined }))
    .map(
      ([key, flags, value, cas]) =>
        `VALUE ${key} ${flags} ${value.length}${cas === undefined ? "" : ` ${cas}`}\r\n${value}\r\n`,
    ),
  fc
    .tuple(replyValueArb, metaReturnFlagsArb)
    .map(([value, flags]) => `VA ${value.length}${flags}\r\n${value}\r\n`),
  fc
    .tuple(fc.constantFrom("HD", "EN", "NF", "NS", "EX"), metaReturnFlagsArb)
    .map(([code, flags]) => `${code}${flags}\r\n`),
  fc.constantFrom(
    "END\r\n",
    "STORED\r\n",
    "NOT_STORED\r\n",
    "EXISTS\r\n",
    "NOT_FOUND\r\n",
    "DELETED\r\n",
    "TOUCHED\r\n",
    "OK\r\n",
    "RESET\r\n",
    "MN\r\n",
    "ERROR\r\n",
    "VERSION 1.6.18\r\n",
    "CLIENT_ERROR bad command line format\r\n",
    "SERVER_ERROR object too large for cache\r\n",
    "ME a exp=-1 la=0 cas=2 fetch=no cls=1 size=63\r\n",
    "STAT pid 1\r\nSTAT version 1.6.18\r\nEND\r\n",
  ),
  numberArb.map((n) => `${n}\r\n`),
);

const replyGarbageArb: fc.Arbitrary<string> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map(fromBytes),
  fc.constantFrom(
    "\n",
    "\r\n",
    "VALUE\r\n",
    "VA\r\n",
    "VALUE a 0 5\r\nabc\r\n",
    "ME\r\n",
    "STAT\r\n",
    "12 34\r\n",
  ),
  fc
    .tuple(
      fc.constantFrom("", "VALUE a 0 ", "STAT x ", "SERVER_ERROR "),
      fc.integer({ min: 1000, max: 20_000 }),
    )
    .map(([head, n]) => head + "9".repeat(n)),
);

/** A stream of server replies, mostly well-formed, sometimes damaged. */
export function replyStreamArb(): fc.Arbitrary<Buffer> {
  return fc
    .tuple(
      fc.array(
        fc.oneof({ weight: 8, arbitrary: wellFormedReplyArb }, { weight: 1, arbitrary: replyGarbageArb }),
        { maxLength: 20 },
      ),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant([]) },
        { weight: 1, arbitrary: fc.array(mutationArb, { maxLength: 3 }) },
      ),
    )
    .map(([replies, mutations]) => mutations.reduce(mutate, Buffer.from(replies.join(""), "latin1")));
}

// ---- reads ----------------------------------------------------------------------------------

/** Where to cut a stream into reads: sorted, distinct offsets inside it (fractions of its length). */
export const cutsArb: fc.Arbitrary<number[]> = fc.array(fraction, { maxLength: 12 });

/** The stream cut at those fractions of its length; empty pieces dropped. */
export function cut(stream: Buffer, fractions: readonly number[]): Buffer[] {
  const at = [...new Set(fractions.map((f) => Math.floor(f * stream.length)))]
    .filter((n) => n > 0)
    .sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const to of at) {
    pieces.push(stream.subarray(from, to));
    from = to;
  }
  if (from < stream.length) pieces.push(stream.subarray(from));
  return pieces;
}

/** The stream one byte per read. */
export function bytewise(stream: Buffer): Buffer[] {
  return Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
}
