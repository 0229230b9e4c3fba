// The request parser emits the same typed frames however the byte stream is cut: every case runs
// whole, one byte at a time, and split in two at each offset (sampled on multi-megabyte inputs).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { RequestParser, emptyMetaFlags, type RequestHandler } from "../../src/protocol/request-parser.js";
import type { MetaFlags } from "../../src/protocol/meta.js";
import type { Request, RetrievalCommand, StorageCommand } from "../../src/protocol/requests.js";

const MAX_ITEM_SIZE = 1024 * 1024; // bytes, memcached's default -I
const EXHAUSTIVE_SPLIT_LIMIT = 16 * 1024; // bytes: longer inputs are split at sampled offsets
const SPLIT_EDGE = 4096; // bytes at each end of a long input that are still split at every offset
const SPLIT_STRIDE = 509; // bytes between sampled offsets in the middle of a long input
const BYTEWISE_LIMIT = 4 * 1024 * 1024; // bytes: longer inputs are not fed one byte at a time

// ---- builders for what a client sends ----

/** Concatenates pieces; strings are taken byte for byte (latin1). */
function bytes(...pieces: (Buffer | string)[]): Buffer {
  return Buffer.concat(
    pieces.map((piece) => (typeof piece === "string" ? Buffer.from(piece, "latin1") : piece)),
  );
}

/** One command line: tokens joined by spaces, ended by "\r\n". */
function line(...tokens: (string | number)[]): Buffer {
  return bytes(tokens.join(" "), "\r\n");
}

interface StorageLine {
  flags?: number | string;
  ttl?: number | string;
  /** The length to declare; the data's real length when absent. */
  length?: number | string;
  cas?: number | string;
  noreply?: boolean;
}

/** A storage command with its data block. */
function storage(
  command: StorageCommand,
  key: string,
  data: Buffer | string,
  options: StorageLine = {},
): Buffer {
  const block = bytes(data);
  const tokens: (string | number)[] = [
    command,
    key,
    options.flags ?? 0,
    options.ttl ?? 0,
    options.length ?? block.length,
  ];
  if (command === "cas") tokens.push(options.cas ?? 1);
  if (options.noreply) tokens.push("noreply");
  return bytes(line(...tokens), block, "\r\n");
}

/** An ms command with its data block. */
function metaSet(key: string, data: Buffer | string, ...flags: string[]): Buffer {
  const block = bytes(data);
  return bytes(line("ms", key, block.length, ...flags), block, "\r\n");
}

/** `count` distinct keys: prefix0, prefix1, … */
function keyList(count: number, prefix = "key"): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${i}`);
}

/** A buffer of `length` bytes cycling through every byte value, so "\r\n" and NUL turn up inside. */
function pattern(length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 7) & 0xff;
  return out;
}

// ---- builders for the frames expected ----

function getFrame(command: RetrievalCommand, keys: string[], ttl = 0, keyTooLong = false): Request {
  return { kind: "get", command, keys, ttl, keyTooLong };
}

interface StoreFrame {
  flags?: number;
  ttl?: number;
  cas?: bigint;
  noreply?: boolean;
}

/** A storage frame; `data` undefined is an item too large whose bytes were discarded. */
function storeFrame(
  command: StorageCommand,
  key: string,
  data: Buffer | string | undefined,
  o: StoreFrame = {},
): Request {
  return {
    kind: "store",
    command,
    key,
    flags: o.flags ?? 0,
    ttl: o.ttl ?? 0,
    cas: o.cas ?? 0n,
    noreply: o.noreply ?? false,
    data: data === undefined ? undefined : bytes(data),
  };
}

function rejected(reply: string, noreply = false): Request {
  return { kind: "rejected", line: reply, noreply };
}

function metaFrame(
  kind: "mg" | "md" | "ma",
  key: string,
  tokens: string[],
  flags: Partial<MetaFlags> = {},
): Request {
  return { kind, key, tokens, flags: { ...emptyMetaFlags(), ...flags } };
}

function metaSetFrame(
  key: string,
  tokens: string[],
  data: Buffer | string | undefined,
  flags: Partial<MetaFlags> = {},
): Request {
  return {
    kind: "ms",
    key,
    tokens,
    flags: { ...emptyMetaFlags(), ...flags },
    data: data === undefined ? undefined : bytes(data),
  };
}

const CLOSE_TOO_LONG: Request = { kind: "close", reason: "command line too long" };
const BAD_FORMAT = "CLIENT_ERROR bad command line format";
const BAD_DATA_CHUNK = "CLIENT_ERROR bad data chunk";

// ---- the runner ----

/** Feeds the pieces to a fresh parser and returns every frame it emitted. */
function parsePieces(pieces: Iterable<Buffer>, maxItemSize = MAX_ITEM_SIZE): Request[] {
  const parser = new RequestParser({ maxItemSize });
  const frames: Request[] = [];
  const handler: RequestHandler = (request) => {
    frames.push(request);
  };
  for (const piece of pieces) parser.feed(piece, handler);
  return frames;
}

function* oneByteAtATime(input: Buffer): Generator<Buffer> {
  for (let i = 0; i < input.length; i++) yield input.subarray(i, i + 1);
}

/** Offsets to split at: all of them, or for a long input both ends in full and the middle sampled. */
function splitOffsets(length: number): number[] {
  const offsets: number[] = [];
  if (length <= EXHAUSTIVE_SPLIT_LIMIT) {
    for (let i = 1; i < length; i++) offsets.push(i);
    return offsets;
  }
  for (let i = 1; i <= SPLIT_EDGE; i++) offsets.push(i);
  for (let i = SPLIT_EDGE + SPLIT_STRIDE; i < length - SPLIT_EDGE; i += SPLIT_STRIDE) offsets.push(i);
  for (let i = length - SPLIT_EDGE; i < length; i++) offsets.push(i);
  return offsets;
}

/** Asserts that the input parses to exactly these frames whole, byte by byte and split at each offset. */
function assertFrames(input: Buffer, expected: Request[], maxItemSize = MAX_ITEM_SIZE): void {
  assert.deepStrictEqual(parsePieces([input], maxItemSize), expected, "fed whole");
  if (input.length <= BYTEWISE_LIMIT) {
    assert.deepStrictEqual(
      parsePieces(oneByteAtATime(input), maxItemSize),
      expected,
      "fed one byte at a time",
    );
  }
  for (const offset of splitOffsets(input.length)) {
    const frames = parsePieces([input.subarray(0, offset), input.subarray(offset)], maxItemSize);
    // deepStrictEqual on every split would build a diff each time; compare cheaply, explain on failure.
    if (!sameFrames(frames, expected)) {
      assert.deepStrictEqual(frames, expected, `split at offset ${offset} of ${input.length}`);
    }
  }
}

function sameFrames(a: Request[], b: Request[]): boolean {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

// ---- the cases ----

describe("request parser: retrieval commands", () => {
  test("get with one key", () => {
    assertFrames(line("get", "foo"), [getFrame("get", ["foo"])]);
  });

  test("get, gets, gat and gats take more keys than memcached's 24 tokens", () => {
    const keys = keyList(40);
    assertFrames(
      bytes(
        line("get", ...keys),
        line("gets", ...keys),
        line("gat", 300, ...keys),
        line("gats", -1, ...keys),
      ),
      [getFrame("get", keys), getFrame("gets", keys), getFrame("gat", keys, 300), getFrame("gats", keys, -1)],
    );
  });

  test("runs of spaces between keys, before and after them are ignored", () => {
    assertFrames(bytes("  get   a  b", " ".repeat(30), "c   \r\n"), [getFrame("get", ["a", "b", "c"])]);
  });

  test("a key of 250 bytes is accepted", () => {
    const key = "k".repeat(250);
    assertFrames(line("get", "a", key, "b"), [getFrame("get", ["a", key, "b"])]);
  });

  test("a key of 251 bytes mid-list stops the command after the keys before it", () => {
    const long = "x".repeat(251);
    assertFrames(line("get", "a", "b", long, "c"), [getFrame("get", ["a", "b"], 0, true)]);
  });

  test("a key of 251 bytes beyond the first 24 tokens stops the command there too", () => {
    const keys = keyList(30);
    const long = "y".repeat(251);
    assertFrames(line("gets", ...keys, long, "after"), [getFrame("gets", keys, 0, true)]);
  });

  test("get without a key is an unknown command; gat with a bad exptime is refused; gat without keys", () => {
    assertFrames(bytes(line("get"), line("gat", "abc", "k"), line("gat", 10)), [
      rejected("ERROR"),
      rejected("CLIENT_ERROR invalid exptime argument"),
      getFrame("gat", [], 10),
    ]);
  });

  test("a long multi-get line without a newline yet is kept, then parsed whole", () => {
    const keys = keyList(600, "longkey");
    const input = line("get", ...keys);
    assert.ok(input.length > 2 * 2048, "the line is well over memcached's 2048-byte limit");
    assertFrames(input, [getFrame("get", keys)]);
  });

  // A hard stop, not a timing: the linear parse takes about a second, the quadratic one hours.
  test(
    "a 2 MiB multi-get line sent a few bytes per read costs linear work, not quadratic",
    { timeout: 60_000 },
    () => {
      // Each read used to copy and search the whole unfinished line again: about 2^42 byte copies here,
      // hours of CPU for one slow client. Now each byte is copied and searched about once.
      const keys = keyList(160_000, "slowkey");
      const input = bytes(`get ${keys.join(" ")}\r\n`);
      assert.ok(input.length > 2 * 1024 * 1024 && input.length < 4 * 1024 * 1024);
      const parser = new RequestParser({ maxItemSize: MAX_ITEM_SIZE });
      const frames: Request[] = [];
      for (let at = 0; at < input.length; at += 3)
        parser.feed(input.subarray(at, at + 3), (r) => void frames.push(r));
      assert.deepStrictEqual(frames, [getFrame("get", keys)]);
      assert.equal(parser.buffered, 0);
    },
  );

  test("leading spaces before a long gets line still count as a multi-get", () => {
    const keys = keyList(500, "k");
    assertFrames(bytes("   ", line("gets", ...keys)), [getFrame("gets", keys)]);
  });
});

describe("request parser: storage commands", () => {
  test("set, add, replace, append and prepend carry data blocks with \\r\\n inside", () => {
    const data = "line one\r\nline two\r\n\r\n";
    const input = bytes(
      storage("set", "k1", data, { flags: 5, ttl: 60 }),
      storage("add", "k2", data),
      storage("replace", "k3", "\r\n"),
      storage("append", "k4", "\r\n\r\n"),
      storage("prepend", "k5", "x\r"),
    );
    assertFrames(input, [
      storeFrame("set", "k1", data, { flags: 5, ttl: 60 }),
      storeFrame("add", "k2", data),
      storeFrame("replace", "k3", "\r\n"),
      storeFrame("append", "k4", "\r\n\r\n"),
      storeFrame("prepend", "k5", "x\r"),
    ]);
  });

  test("cas carries its unique, up to 2^64-1", () => {
    assertFrames(
      bytes(
        storage("cas", "k", "v\r\nv", { cas: "18446744073709551615" }),
        storage("cas", "k", "", { cas: 7 }),
      ),
      [
        storeFrame("cas", "k", "v\r\nv", { cas: 18446744073709551615n }),
        storeFrame("cas", "k", "", { cas: 7n }),
      ],
    );
  });

  test("data blocks hold every byte value, NUL and 0xff included", () => {
    const data = pattern(1000);
    assertFrames(storage("set", "bin", data), [storeFrame("set", "bin", data)]);
  });

  test("an empty data block", () => {
    assertFrames(storage("set", "empty", ""), [storeFrame("set", "empty", "")]);
  });

  test("noreply is read on storage commands and cas", () => {
    assertFrames(
      bytes(storage("set", "k", "a", { noreply: true }), storage("cas", "k", "b", { cas: 3, noreply: true })),
      [
        storeFrame("set", "k", "a", { noreply: true }),
        storeFrame("cas", "k", "b", { cas: 3n, noreply: true }),
      ],
    );
  });

  test("flags and exptime are read as memcached reads them: 32-bit wrap, negatives, signs", () => {
    assertFrames(
      bytes(
        storage("set", "a", "x", { flags: "4294967297" }),
        storage("set", "b", "x", { flags: "4294967295", ttl: -1 }),
        storage("set", "c", "x", { flags: "+7", ttl: "+30" }),
      ),
      [
        storeFrame("set", "a", "x", { flags: 1 }),
        storeFrame("set", "b", "x", { flags: 4294967295, ttl: -1 }),
        storeFrame("set", "c", "x", { flags: 7, ttl: 30 }),
      ],
    );
  });

  test("bad flags, exptime, length or cas: refused, and the data block is read as a command", () => {
    const cases: [StorageLine, StorageCommand][] = [
      [{ flags: "abc" }, "set"],
      [{ flags: "-1" }, "set"],
      [{ flags: "18446744073709551616" }, "add"],
      [{ ttl: "soon" }, "replace"],
      [{ ttl: "1x" }, "append"],
      [{ length: "5x" }, "prepend"],
      [{ length: "five" }, "set"],
      [{ cas: "abc" }, "cas"],
      [{ cas: "-1" }, "cas"],
    ];
    for (const [options, command] of cases) {
      // The block "hello" reaches the command reader, which does not know it.
      assertFrames(storage(command, "k", "hello", options), [rejected(BAD_FORMAT), rejected("ERROR")]);
    }
  });

  test("a negative or over-large length is refused and the block read as a command", () => {
    assertFrames(storage("set", "k", "hello", { length: -1 }), [rejected(BAD_FORMAT), rejected("ERROR")]);
    assertFrames(storage("set", "k", "hello", { length: 2147483646 }), [
      rejected(BAD_FORMAT),
      rejected("ERROR"),
    ]);
  });

  test("a bad number with noreply is refused silently", () => {
    assertFrames(storage("set", "k", "hello", { flags: "x", noreply: true }), [
      rejected(BAD_FORMAT, true),
      rejected("ERROR"),
    ]);
  });

  test("the wrong number of tokens is an unknown command", () => {
    assertFrames(
      bytes(line("set", "k", 0, 0), line("set", "k", 0, 0, 1, "noreply", "extra"), line("cas", "k", 0, 0, 1)),
      [rejected("ERROR"), rejected("ERROR"), rejected("ERROR")],
    );
  });

  test("a storage key of 251 bytes is refused and its block read as a command", () => {
    assertFrames(storage("set", "k".repeat(251), "hello"), [rejected(BAD_FORMAT), rejected("ERROR")]);
  });

  test("a data block shorter than declared takes bytes of the next command: bad data chunk", () => {
    // 5 declared: "abc\r\n" + "ge" are taken, do not end in \r\n, and "t k" is left as a command.
    assertFrames(bytes(storage("set", "k", "abc", { length: 5 }), line("get", "k")), [
      rejected(BAD_DATA_CHUNK),
      rejected("ERROR"),
    ]);
  });

  test("a data block longer than declared: bad data chunk, the rest read as a command", () => {
    // 3 declared: "abcde" is taken; "f" is left over as a command line.
    assertFrames(bytes(storage("set", "k", "abcdef", { length: 3 }), line("get", "k")), [
      rejected(BAD_DATA_CHUNK),
      rejected("ERROR"),
      getFrame("get", ["k"]),
    ]);
  });

  test("a bad data chunk under noreply is silent", () => {
    assertFrames(bytes(storage("set", "k", "abcdef", { length: 3, noreply: true }), line("mn")), [
      rejected(BAD_DATA_CHUNK, true),
      rejected("ERROR"),
      { kind: "mn" },
    ]);
  });

  test("an item too large is answered at once, its block swallowed, and the next command parsed", () => {
    const data = pattern(MAX_ITEM_SIZE); // with any key and header this is over the limit
    assertFrames(bytes(storage("set", "big", data), line("get", "big")), [
      storeFrame("set", "big", undefined),
      getFrame("get", ["big"]),
    ]);
  });

  test("a too-large item under noreply, and a swallowed block holding command-like lines", () => {
    const data = bytes(line("get", "inside"), pattern(MAX_ITEM_SIZE), line("version"));
    assertFrames(bytes(storage("add", "big", data, { noreply: true }), line("version")), [
      storeFrame("add", "big", undefined, { noreply: true }),
      { kind: "version" },
    ]);
  });

  test("the item size limit counts header, key, flags and the trailing \\r\\n as memcached does", () => {
    const limit = 2048; // a small -I keeps every split cheap
    const largest = limit - 56 - 1 - 1 - 2; // header, key "k" and its NUL, the "\r\n"
    assertFrames(
      bytes(
        storage("set", "k", pattern(largest)),
        storage("set", "k", pattern(largest + 1)),
        storage("set", "k", pattern(largest - 4), { flags: 1 }),
        storage("set", "k", pattern(largest - 3), { flags: 1 }),
      ),
      [
        storeFrame("set", "k", pattern(largest)),
        storeFrame("set", "k", undefined),
        storeFrame("set", "k", pattern(largest - 4), { flags: 1 }),
        storeFrame("set", "k", undefined, { flags: 1 }),
      ],
      limit,
    );
  });

  test("a huge declared item is swallowed without buffering its bytes", () => {
    const parser = new RequestParser({ maxItemSize: MAX_ITEM_SIZE });
    const frames: Request[] = [];
    const handler: RequestHandler = (request) => {
      frames.push(request);
    };
    parser.feed(line("set", "k", 0, 0, 2000000000), handler);
    assert.deepStrictEqual(frames, [storeFrame("set", "k", undefined)]);
    const chunk = pattern(64 * 1024);
    for (let i = 0; i < 128; i++) {
      parser.feed(chunk, handler);
      assert.equal(parser.buffered, 0, `nothing is held while swallowing (chunk ${i})`);
    }
    assert.equal(frames.length, 1, "swallowed bytes are not read as commands");
  });
});

describe("request parser: other text commands", () => {
  test("incr, decr, delete, touch, flush_all, version, verbosity, stats", () => {
    assertFrames(
      bytes(
        line("incr", "n", 5),
        line("decr", "n", "18446744073709551615", "noreply"),
        line("incr", "n", "abc"),
        line("delete", "k"),
        line("delete", "k", 0, "noreply"),
        line("delete", "k", 1),
        line("touch", "k", 10),
        line("flush_all"),
        line("flush_all", 10, "noreply"),
        line("version"),
        line("verbosity", 1),
        line("stats"),
        line("stats", "slabs"),
      ),
      [
        { kind: "arithmetic", incr: true, key: "n", delta: 5n, noreply: false },
        { kind: "arithmetic", incr: false, key: "n", delta: 18446744073709551615n, noreply: true },
        rejected("CLIENT_ERROR invalid numeric delta argument"),
        { kind: "delete", key: "k", noreply: false },
        { kind: "delete", key: "k", noreply: true },
        rejected("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"),
        { kind: "touch", key: "k", ttl: 10, noreply: false },
        { kind: "flush_all", delay: 0, noreply: false },
        { kind: "flush_all", delay: 10, noreply: true },
        { kind: "version" },
        { kind: "verbosity", noreply: false },
        { kind: "stats", args: [] },
        { kind: "stats", args: ["slabs"] },
      ],
    );
  });

  test("unknown commands and one-letter commands are ERROR", () => {
    assertFrames(bytes(line("bogus", "k"), line("g", "k"), line("mx", "k")), [
      rejected("ERROR"),
      rejected("ERROR"),
      rejected("ERROR"),
    ]);
  });

  test("quit ends parsing: nothing after it is read", () => {
    assertFrames(bytes(line("version"), line("quit"), line("get", "k")), [
      { kind: "version" },
      { kind: "quit" },
    ]);
  });
});

describe("request parser: meta commands", () => {
  test("mg with flags", () => {
    const tokens = ["v", "f", "t", "k", "s", "c", "Oabc", "q"];
    assertFrames(line("mg", "foo", ...tokens), [
      metaFrame("mg", "foo", tokens, { returnValue: true, quiet: true }),
    ]);
  });

  test("mg with vivify, TTL and recache flags", () => {
    const tokens = ["N30", "T60", "R5", "h", "l"];
    assertFrames(line("mg", "foo", ...tokens), [
      metaFrame("mg", "foo", tokens, {
        vivify: true,
        vivifyTtl: 30,
        ttl: 60,
        newTtl: true,
        recacheTtl: 5,
        locked: true,
      }),
    ]);
  });

  test("mg with no flags; mg without a key is an unknown command", () => {
    assertFrames(bytes(line("mg", "foo"), line("mg")), [metaFrame("mg", "foo", []), rejected("ERROR")]);
  });

  test("ms with flags and a data block holding \\r\\n", () => {
    const tokens = ["T10", "F3", "MS", "I", "c"];
    assertFrames(metaSet("foo", "he\r\nllo", ...tokens), [
      metaSetFrame("foo", tokens, "he\r\nllo", {
        ttl: 10,
        newTtl: true,
        locked: true,
        clientFlags: 3,
        mode: "S",
        invalidate: true,
      }),
    ]);
  });

  test("ms with a compare CAS and the append mode", () => {
    const tokens = ["C99", "MA", "q"];
    assertFrames(metaSet("foo", "tail", ...tokens), [
      metaSetFrame("foo", tokens, "tail", { hasCas: true, compareCas: 99n, mode: "A", quiet: true }),
    ]);
  });

  test("ms: missing length, bad length, negative length are refused and the block read as a command", () => {
    assertFrames(bytes(line("ms", "foo"), "hi\r\n"), [rejected(BAD_FORMAT), rejected("ERROR")]);
    assertFrames(bytes(line("ms", "foo", "two"), "hi\r\n"), [rejected(BAD_FORMAT), rejected("ERROR")]);
    assertFrames(bytes(line("ms", "foo", -1), "hi\r\n"), [rejected(BAD_FORMAT), rejected("ERROR")]);
  });

  test("ms with a bad data chunk always answers, even with q", () => {
    assertFrames(bytes(line("ms", "k", 3, "q"), "abcdef\r\n", line("mn")), [
      rejected(BAD_DATA_CHUNK),
      rejected("ERROR"),
      { kind: "mn" },
    ]);
  });

  test("ms too large is answered and swallowed; the next command parses", () => {
    assertFrames(bytes(metaSet("big", pattern(MAX_ITEM_SIZE), "T0"), line("mn")), [
      metaSetFrame("big", ["T0"], undefined, { ttl: 0, newTtl: true, locked: true }),
      { kind: "mn" },
    ]);
  });

  test("md and ma with flags", () => {
    const md = ["q", "I", "T30", "C5"];
    const ma = ["N0", "J10", "D5", "MI", "q"];
    assertFrames(bytes(line("md", "foo", ...md), line("ma", "cnt", ...ma), line("ma", "cnt")), [
      metaFrame("md", "foo", md, {
        quiet: true,
        invalidate: true,
        ttl: 30,
        newTtl: true,
        locked: true,
        hasCas: true,
        compareCas: 5n,
      }),
      metaFrame("ma", "cnt", ma, {
        vivify: true,
        vivifyTtl: 0,
        locked: true,
        initial: 10n,
        delta: 5n,
        mode: "I",
        quiet: true,
      }),
      metaFrame("ma", "cnt", []),
    ]);
  });

  test("ma with a mode it does not know", () => {
    assertFrames(line("ma", "cnt", "MX"), [rejected("CLIENT_ERROR invalid mode for ma M token")]);
  });

  test("mn and me", () => {
    assertFrames(bytes(line("mn"), line("me", "foo"), line("me", "Zm9v", "b"), line("me")), [
      { kind: "mn" },
      { kind: "me", key: "foo", base64Key: false },
      { kind: "me", key: "foo", base64Key: true },
      rejected(BAD_FORMAT),
    ]);
  });

  test("base64 keys (b) are decoded for mg, ms, md and ma, binary bytes included", () => {
    const binary = Buffer.from([0, 1, 2, 0xff]).toString("latin1");
    const encoded = Buffer.from(binary, "latin1").toString("base64");
    assertFrames(
      bytes(
        line("mg", "Zm9v", "b", "v"),
        line("mg", encoded, "b", "k"),
        metaSet("Zm9v", "hi", "b"),
        line("md", "Zm9v", "b"),
        line("ma", "Zm9v", "b"),
      ),
      [
        metaFrame("mg", "foo", ["b", "v"], { base64Key: true, returnValue: true }),
        metaFrame("mg", binary, ["b", "k"], { base64Key: true }),
        metaSetFrame("foo", ["b"], "hi", { base64Key: true }),
        metaFrame("md", "foo", ["b"], { base64Key: true }),
        metaFrame("ma", "foo", ["b"], { base64Key: true }),
      ],
    );
  });

  test("a key that is not base64 is refused", () => {
    assertFrames(bytes(line("mg", "Zm9", "b", "v"), line("md", "Zm9", "b"), line("me", "Zm9", "b")), [
      rejected("CLIENT_ERROR error decoding key"),
      rejected("CLIENT_ERROR invalid or duplicate flag"),
      rejected(BAD_FORMAT),
    ]);
  });

  test("duplicate and unknown flags", () => {
    assertFrames(
      bytes(
        line("mg", "foo", "v", "v"),
        line("mg", "foo", "!"),
        line("mg", "foo", "E5"),
        line("md", "foo", "q", "q"),
        line("ma", "foo", "!"),
      ),
      [
        rejected("CLIENT_ERROR duplicate flag"),
        rejected("CLIENT_ERROR invalid flag"),
        rejected("CLIENT_ERROR invalid flag"),
        rejected("CLIENT_ERROR invalid or duplicate flag"),
        rejected("CLIENT_ERROR invalid or duplicate flag"),
      ],
    );
  });

  test("ms with a duplicate flag or a bad mode: refused, and its data block swallowed", () => {
    assertFrames(bytes(metaSet("foo", "hi", "v", "v"), metaSet("foo", "hi", "MX"), line("mn")), [
      rejected("CLIENT_ERROR duplicate flag"),
      rejected("CLIENT_ERROR invalid mode for ms M token"),
      { kind: "mn" },
    ]);
  });

  test("bad numbers in flags and an M of the wrong length", () => {
    assertFrames(
      bytes(
        line("mg", "foo", "Tsoon"),
        line("mg", "foo", "Mxx"),
        line("ma", "foo", "Dlots"),
        line("ma", "foo", "Jx"),
      ),
      [
        rejected("CLIENT_ERROR bad token in command line format"),
        rejected("CLIENT_ERROR incorrect length for M token"),
        rejected("CLIENT_ERROR invalid or duplicate flag"),
        rejected("CLIENT_ERROR invalid or duplicate flag"),
      ],
    );
  });

  test("mg takes at most 17 flags; one more is too many", () => {
    const flags17 = ["v", "f", "t", "k", "s", "c", "h", "l", "O1", "q", "u", "N1", "T1", "R1", "P", "L", "I"];
    assertFrames(bytes(line("mg", "foo", ...flags17), line("mg", "foo", ...flags17, "D1")), [
      metaFrame("mg", "foo", flags17, {
        returnValue: true,
        locked: true,
        quiet: true,
        noUpdate: true,
        vivify: true,
        vivifyTtl: 1,
        ttl: 1,
        newTtl: true,
        recacheTtl: 1,
        invalidate: true,
      }),
      rejected("CLIENT_ERROR options flags are too long"),
    ]);
  });

  test("ms with too many flags is refused before its data block, which is read as a command", () => {
    const flags = ["T1", "F1", "I", "q", "c", "k", "O1", "s", "t", "f", "h", "l", "v", "u", "b", "P", "L"];
    assertFrames(bytes(metaSet("foo", "hi", ...flags), line("mn")), [
      rejected("CLIENT_ERROR options flags too long"),
      rejected("ERROR"),
      { kind: "mn" },
    ]);
  });

  test("an opaque token over 32 bytes is refused by md", () => {
    assertFrames(line("md", "foo", "O" + "x".repeat(32)), [rejected("CLIENT_ERROR opaque token too long")]);
  });
});

describe("request parser: malformed lines", () => {
  test("an empty line, \\r\\n alone, and a line of spaces are unknown commands", () => {
    assertFrames(bytes("\n", "\r\n", "     \r\n", "\r\r\n"), [
      rejected("ERROR"),
      rejected("ERROR"),
      rejected("ERROR"),
      rejected("ERROR"),
    ]);
  });

  test("a NUL ends the line where it stands", () => {
    assertFrames(bytes("get foo\0bar baz\r\n", "\0get foo\r\n", "mg foo v\0 q\r\n", "\0\r\n"), [
      getFrame("get", ["foo"]),
      rejected("ERROR"),
      metaFrame("mg", "foo", ["v"], { returnValue: true }),
      rejected("ERROR"),
    ]);
  });

  test("a line over 2048 bytes without a newline closes the connection", () => {
    assertFrames(bytes("set ", "k".repeat(3000)), [CLOSE_TOO_LONG]);
    assertFrames(bytes("x".repeat(2049)), [CLOSE_TOO_LONG]);
  });

  test("only get and gets may run long: a long gat or mg line without a newline closes", () => {
    assertFrames(bytes("gat 0 ", keyList(400).join(" ")), [CLOSE_TOO_LONG]);
    assertFrames(bytes("mg ", "k".repeat(2100)), [CLOSE_TOO_LONG]);
  });

  test("2048 bytes without a newline are still waited on", () => {
    assertFrames(bytes("x".repeat(2048)), []);
  });

  test("a non-get line of 16 KiB or more closes the connection even with its newline", () => {
    assertFrames(bytes("set ", "k".repeat(20000), "\r\n", line("version")), [CLOSE_TOO_LONG]);
  });

  test("nothing is parsed after the parser closed", () => {
    const parser = new RequestParser({ maxItemSize: MAX_ITEM_SIZE });
    const frames: Request[] = [];
    const handler: RequestHandler = (request) => {
      frames.push(request);
    };
    parser.feed(bytes("x".repeat(3000)), handler);
    assert.ok(parser.closed);
    parser.feed(line("version"), handler);
    assert.deepStrictEqual(frames, [CLOSE_TOO_LONG]);
  });
});

describe("request parser: backpressure", () => {
  test("a handler returning false pauses parsing until resume", () => {
    const parser = new RequestParser({ maxItemSize: MAX_ITEM_SIZE });
    const frames: Request[] = [];
    let pause = true;
    const handler: RequestHandler = (request) => {
      frames.push(request);
      return !pause;
    };
    parser.feed(bytes(line("get", "a"), storage("set", "b", "1\r\n2")), handler);
    assert.deepStrictEqual(frames, [getFrame("get", ["a"])]);
    parser.feed(line("get", "c"), handler);
    assert.deepStrictEqual(frames, [getFrame("get", ["a"])], "bytes fed while paused are only buffered");
    pause = false;
    parser.resume(handler);
    assert.deepStrictEqual(frames, [
      getFrame("get", ["a"]),
      storeFrame("set", "b", "1\r\n2"),
      getFrame("get", ["c"]),
    ]);
    assert.equal(parser.buffered, 0);
  });
});
