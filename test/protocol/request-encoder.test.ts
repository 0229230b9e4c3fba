// Request encoders and key checks: exact bytes for every command, values copied or passed through by size,
// and every bad key or argument refused with a message that says what to do.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ClientError } from "../../src/errors.js";
import { KeyError, KeyProblem, MAX_KEY_LENGTH, toBase64Key, validateKey } from "../../src/protocol/keys.js";
import {
  INLINE_VALUE_LIMIT,
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
  type StoreCommand,
} from "../../src/protocol/request-encoder.js";

// ---- fixtures ----

/** A request as the server should receive it: a command line, then optionally a data block. */
function request(line: string, data?: string | Uint8Array): Buffer {
  const head = Buffer.from(`${line}\r\n`, "utf8");
  if (data === undefined) return head;
  const body = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  return Buffer.concat([head, body, Buffer.from("\r\n")]);
}

function flat(encoded: Encoded): Buffer {
  return Buffer.isBuffer(encoded) ? encoded : Buffer.concat(encoded);
}

function assertBytes(encoded: Encoded, expected: Buffer, message?: string): void {
  assert.deepStrictEqual(flat(encoded), expected, message);
}

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

// ---- retrieval ----

test("encoder: get, gets, gat and gats with one or many keys", () => {
  assertBytes(encodeGet("k"), request("get k"));
  assertBytes(encodeGet(["a", "b", "c"]), request("get a b c"));
  assertBytes(encodeGets(["a"]), request("gets a"));
  assertBytes(encodeGat(100, ["a", "b"]), request("gat 100 a b"));
  assertBytes(encodeGats(-1, "a"), request("gats -1 a"));
  assertBytes(encodeGet(["clé", "ключ"]), request("get clé ключ"), "UTF-8 keys go out as UTF-8");
});

test("encoder: a retrieval without keys, or with one bad key, is refused", () => {
  assert.throws(
    () => encodeGet([]),
    (e) => e instanceof ClientError && /at least one key/.test(e.message),
  );
  assert.throws(
    () => encodeGets(["ok", "not ok"]),
    (e) => e instanceof KeyError && e.problem === "whitespace",
  );
  assert.throws(() => encodeGat(1.5, "k"), /exptime 1.5 is not a 32-bit whole number/);
});

// ---- storage ----

test("encoder: set, add, replace, append and prepend with flags, exptime and noreply", () => {
  assertBytes(encodeStore("set", "k", "hello", { flags: 5, exptime: 60 }), request("set k 5 60 5", "hello"));
  assertBytes(encodeStore("add", "k", "x", { noreply: true }), request("add k 0 0 1 noreply", "x"));
  assertBytes(encodeStore("replace", "k", ""), request("replace k 0 0 0", ""));
  assertBytes(encodeStore("append", "k", "tail", { noreply: false }), request("append k 0 0 4", "tail"));
  assertBytes(
    encodeStore("prepend", "k", "h", { flags: 4294967295, exptime: -1 }),
    request("prepend k 4294967295 -1 1", "h"),
  );
  assert.throws(
    () => encodeStore("cas" as StoreCommand, "k", "v"),
    (e) => e instanceof ClientError && /use set, add, replace, append or prepend/.test(e.message),
  );
});

test("encoder: cas carries the 64-bit unique as given", () => {
  assertBytes(encodeCas("k", "v", 42), request("cas k 0 0 1 42", "v"));
  assertBytes(
    encodeCas("k", "v", 18446744073709551615n, { flags: 1, exptime: 2, noreply: true }),
    request("cas k 1 2 1 18446744073709551615 noreply", "v"),
  );
  for (const bad of [-1, 1.5, 2 ** 53, -1n, 2n ** 64n]) {
    assert.throws(() => encodeCas("k", "v", bad), /cas unique .* is not a 64-bit unsigned whole number/);
  }
});

test("encoder: values are bytes as given, strings as UTF-8, \\r\\n inside data untouched", () => {
  assertBytes(encodeStore("set", "k", ALL_BYTES), request("set k 0 0 256", ALL_BYTES));
  assertBytes(encodeStore("set", "clé", "héllo\r\nEND"), request("set clé 0 0 11", "héllo\r\nEND"));
  const view = new Uint8Array(ALL_BYTES.buffer, ALL_BYTES.byteOffset + 10, 5);
  assertBytes(
    encodeStore("set", "k", view),
    request("set k 0 0 5", ALL_BYTES.subarray(10, 15)),
    "Uint8Array",
  );
  assert.throws(
    () => encodeStore("set", "k", 42 as unknown as string),
    (e) => e instanceof ClientError && /string or a Buffer/.test(e.message),
  );
});

test("encoder: small values are copied into one buffer; large ones go out uncopied between header and \\r\\n", () => {
  const small = Buffer.alloc(INLINE_VALUE_LIMIT, 0x61);
  const one = encodeStore("set", "k", small);
  assert.ok(Buffer.isBuffer(one), "at the limit: one buffer");
  small[0] = 0x62;
  assertBytes(
    one,
    request(`set k 0 0 ${INLINE_VALUE_LIMIT}`, Buffer.alloc(INLINE_VALUE_LIMIT, 0x61)),
    "a copy",
  );

  const large = Buffer.alloc(INLINE_VALUE_LIMIT + 1, 0x63);
  const parts = encodeStore("set", "k", large);
  assert.ok(Array.isArray(parts) && parts.length === 3);
  assert.equal(parts[1], large, "the caller's buffer itself");
  assertBytes(parts, request(`set k 0 0 ${large.length}`, large));

  const text = "é".repeat(INLINE_VALUE_LIMIT);
  assertBytes(
    encodeMs("k", text, ["T0"]),
    request(`ms k ${2 * INLINE_VALUE_LIMIT} T0`, text),
    "large string",
  );
  const typed = new Uint8Array(INLINE_VALUE_LIMIT + 7).fill(7);
  const typedParts = encodeMs("k", typed);
  assert.ok(Array.isArray(typedParts) && Buffer.isBuffer(typedParts[1]));
  assert.equal(typedParts[1].buffer, typed.buffer, "a Uint8Array is wrapped, not copied");
  assertBytes(typedParts, request(`ms k ${typed.length}`, typed));
});

test("encoder: bad flags and exptime are refused with what to give instead", () => {
  assert.throws(() => encodeStore("set", "k", "v", { flags: -1 }), /client flags -1 .* give 0 to 4294967295/);
  assert.throws(() => encodeStore("set", "k", "v", { flags: 2 ** 32 }), /client flags/);
  assert.throws(() => encodeStore("set", "k", "v", { exptime: 2 ** 31 }), /exptime .* 0 \(never\)/);
  assert.throws(() => encodeTouch("k", Number.NaN), ClientError);
});

// ---- other text commands ----

test("encoder: delete, incr, decr and touch, with noreply", () => {
  assertBytes(encodeDelete("k"), request("delete k"));
  assertBytes(encodeDelete("k", { noreply: true }), request("delete k noreply"));
  assertBytes(encodeIncr("k", 5), request("incr k 5"));
  assertBytes(encodeIncr("k", 0n, { noreply: true }), request("incr k 0 noreply"));
  assertBytes(encodeDecr("k", 18446744073709551615n), request("decr k 18446744073709551615"));
  assertBytes(encodeTouch("k", 10), request("touch k 10"));
  assertBytes(encodeTouch("k", 0, { noreply: true }), request("touch k 0 noreply"));
  assert.throws(() => encodeIncr("k", -1), /delta -1 is not a 64-bit unsigned/);
  assert.throws(() => encodeDecr("k", 0.5), /delta/);
});

test("encoder: flush_all, version, verbosity, stats and quit", () => {
  assertBytes(encodeFlushAll(), request("flush_all"));
  assertBytes(encodeFlushAll({ delay: 10 }), request("flush_all 10"));
  assertBytes(encodeFlushAll({ noreply: true }), request("flush_all noreply"));
  assertBytes(encodeFlushAll({ delay: 0, noreply: true }), request("flush_all 0 noreply"));
  assert.throws(() => encodeFlushAll({ delay: -1 }), /flush_all delay -1 must be a whole number/);
  assertBytes(encodeVersion(), request("version"));
  assertBytes(encodeVerbosity(1), request("verbosity 1"));
  assertBytes(encodeVerbosity(0, { noreply: true }), request("verbosity 0 noreply"));
  assert.throws(() => encodeVerbosity(-1), ClientError);
  assertBytes(encodeStats(), request("stats"));
  assertBytes(encodeStats(""), request("stats"));
  assertBytes(encodeStats("slabs"), request("stats slabs"));
  assertBytes(encodeStats("detail dump"), request("stats detail dump"));
  for (const bad of ["a\r\nflush_all", "a  b", " a", "é"]) {
    assert.throws(() => encodeStats(bad), /stats argument .* is malformed/);
  }
  assertBytes(encodeQuit(), request("quit"));
});

// ---- meta commands ----

test("encoder: mg, ms, md, ma, mn and me with flags written in the order given", () => {
  assertBytes(encodeMg("k"), request("mg k"));
  assertBytes(encodeMg("k", ["v", "c", "T30", "O123"]), request("mg k v c T30 O123"));
  assertBytes(encodeMs("k", "hi", ["T0", "F5", "MS", "q"]), request("ms k 2 T0 F5 MS q", "hi"));
  assertBytes(encodeMs("k", ALL_BYTES), request("ms k 256", ALL_BYTES));
  assertBytes(encodeMd("k", ["q", "C99"]), request("md k q C99"));
  assertBytes(encodeMa("k", ["N0", "J10", "D5", "MD", "v"]), request("ma k N0 J10 D5 MD v"));
  assertBytes(encodeMn(), request("mn"));
  assertBytes(encodeMe("k"), request("me k"));
  assertBytes(encodeMg("clé", ["k"]), request("mg clé k"));
});

test("encoder: malformed meta flags are refused (they would split or end the command line)", () => {
  for (const bad of ["", "v c", "1", "T\r\n", "vé", " v", "O\t1"]) {
    assert.throws(
      () => encodeMg("k", [bad]),
      (e) => e instanceof ClientError && /is malformed: a flag is one letter/.test(e.message),
      JSON.stringify(bad),
    );
  }
});

test("encoder: with the b flag the key must be padded base64 and may hold any bytes once decoded", () => {
  const binary = toBase64Key(Buffer.from([0, 0x20, 0x0a, 0xff]));
  assertBytes(encodeMg(binary, ["b", "v"]), request(`mg ${binary} b v`));
  assertBytes(encodeMs(binary, "x", ["b"]), request(`ms ${binary} 1 b`, "x"));
  assert.throws(
    () => encodeMg("not base64", ["b"]),
    (e) => e instanceof KeyError && e.problem === "base64",
  );
  assert.throws(
    () => encodeMg("a b", ["v"]),
    (e) => e instanceof KeyError && e.problem === "whitespace",
  );
});

// ---- keys ----

test("validateKey: 1 to 250 bytes (UTF-8), no spaces, no control characters", () => {
  validateKey("a");
  validateKey("x".repeat(MAX_KEY_LENGTH));
  validateKey("é".repeat(125)); // 250 bytes
  validateKey("namespace:log/entry-123");
  const cases: [string, KeyProblem, RegExp][] = [
    ["", "empty", /key is empty: give a key of 1 to 250 bytes/],
    ["x".repeat(251), "too_long", /is 251 bytes, over memcached's limit of 250: shorten it/],
    ["é".repeat(126), "too_long", /is 252 bytes/],
    ["a b", "whitespace", /has a space at index 1.*replace it/],
    ["a\tb", "control", /control character 0x09 at index 1.*remove it/],
    ["ab\r\nflush_all", "control", /0x0d at index 2/],
    ["\x00", "control", /0x00/],
    ["a\x7f", "control", /0x7f/],
    ["a\u0085", "control", /0x85/],
  ];
  for (const [key, problem, message] of cases) {
    assert.throws(
      () => validateKey(key),
      (e) =>
        e instanceof KeyError &&
        e instanceof ClientError &&
        e.code === "ECLIENT" &&
        e.problem === problem &&
        e.key === key &&
        message.test(e.message),
      JSON.stringify(key),
    );
  }
});

test("validateKey: base64 keys (meta b flag) are checked as padded base64 of at most 250 bytes", () => {
  validateKey("Zm9v", { base64: true });
  validateKey("Zg==", { base64: true });
  validateKey(toBase64Key(Buffer.alloc(250, 0xff)), { base64: true });
  validateKey(toBase64Key("a b"), { base64: true });
  assert.equal(toBase64Key("foo"), "Zm9v");
  assert.throws(() => validateKey(toBase64Key(Buffer.alloc(251)), { base64: true }), /decodes to 251 bytes/);
  for (const bad of ["Zm9", "Zm=v", "Z===", "Zm9v YQ==", "Zm9v\n", "Zm-_"]) {
    assert.throws(
      () => validateKey(bad, { base64: true }),
      (e) => e instanceof KeyError && e.problem === "base64" && /toBase64Key/.test(e.message),
      JSON.stringify(bad),
    );
  }
});
