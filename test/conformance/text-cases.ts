// Conformance cases for memcached's text protocol: storage, retrieval, delete, incr/decr, touch,
// flush_all, version, verbosity, stats, quit, noreply, and malformed input.
import {
  ALL_BYTES,
  add,
  append,
  byteByByte,
  cas,
  casUnique,
  decr,
  del,
  filler,
  gat,
  gats,
  get,
  gets,
  incr,
  line,
  mg,
  pause,
  pieces,
  prepend,
  replace,
  set,
  store,
  sync,
  touch,
  type CaseTable,
  type StorageVerb,
} from "./script.js";

const U64_MAX = 18446744073709551615n;
const ONE_MIB = 1024 * 1024;
/** Bytes memcached adds to key + value when it sizes an item: 48-byte header, key NUL, value \r\n, 8-byte CAS. */
const MEMCACHED_ITEM_OVERHEAD = 48 + 1 + 2 + 8;

/** Largest value memcached 1.6 stores under `key` with flags 0 and the default 1 MiB item size. */
const largestValue = (key: string) => ONE_MIB - MEMCACHED_ITEM_OVERHEAD - key.length;

export function addTextCases(table: CaseTable): void {
  table.group("set", (c) => {
    c("stores a value that get returns", (k) => [set(k("a"), "hello"), get(k("a"))]);
    c("stores an empty value", (k) => [set(k("a"), ""), get(k("a"))]);
    c("value holding \\r\\n and spaces comes back whole", (k) => [set(k("a"), "a b\r\nc\r\n"), get(k("a"))]);
    c("value holding every byte 0x00-0xff", (k) => [set(k("a"), ALL_BYTES), get(k("a"))]);
    c("value that looks like a reply line", (k) => [set(k("a"), "END\r\nVALUE x 0 1"), get(k("a"))]);
    c("overwrites an existing value and its flags", (k) => [
      set(k("a"), "one", { flags: 3 }),
      set(k("a"), "second", { flags: 9 }),
      get(k("a")),
    ]);
    c("flags 0, 1, 65535, 65536 and 2^32-1 come back as stored", (k) => [
      ...[0, 1, 65535, 65536, 4294967295].map((flags, i) => set(k(`f${i}`), "x", { flags })),
      get(k("f0"), k("f1"), k("f2"), k("f3"), k("f4")),
    ]);
    c("flags 2^32 (past 32 bits)", (k) => [set(k("a"), "x", { flags: "4294967296" }), get(k("a"))]);
    c("flags 2^64 (past 64 bits)", (k) => [set(k("a"), "x", { flags: "18446744073709551616" }), get(k("a"))]);
    c("flags -1", (k) => [set(k("a"), "x", { flags: -1 }), get(k("a"))]);
    c("flags not a number", (k) => [set(k("a"), "x", { flags: "abc" }), get(k("a"))]);
    c("flags with trailing letters", (k) => [set(k("a"), "x", { flags: "12x" }), get(k("a"))]);
    c("flags with a plus sign", (k) => [set(k("a"), "x", { flags: "+7" }), get(k("a"))]);
    c("flags in hex notation", (k) => [set(k("a"), "x", { flags: "0x10" }), get(k("a"))]);
    c("flags with leading zeros", (k) => [set(k("a"), "x", { flags: "0007" }), get(k("a"))]);
    c("exptime not a number", (k) => [set(k("a"), "x", { exptime: "soon" }), get(k("a"))]);
    c("exptime with trailing letters", (k) => [set(k("a"), "x", { exptime: "10s" }), get(k("a"))]);
    c("exptime past 32 bits", (k) => [set(k("a"), "x", { exptime: "4294967296" }), get(k("a"))]);
    c("length -1", (k) => [set(k("a"), "x", { bytes: -1 }), get(k("a"))]);
    c("length not a number", (k) => [set(k("a"), "x", { bytes: "one" }), get(k("a"))]);
    c("length with trailing letters", (k) => [set(k("a"), "x", { bytes: "1x" }), get(k("a"))]);
    c("length with a plus sign", (k) => [set(k("a"), "x", { bytes: "+1" }), get(k("a"))]);
    c("length 2^31-1 with no data: refused before any data", (k) => [
      line(`set ${k("a")} 0 0 2147483647`),
      get(k("a")),
    ]);
    c(
      "length 2^32 wraps to a short read in memcached",
      (k) => [line(`set ${k("a")} 0 0 4294967296`), line("xx"), get(k("a"))],
      {
        note: "memcached reads the length as an int and keeps its low bits: 2^32+2 becomes 2, so the next two bytes are taken as the data block",
      },
    );
    c("only the verb", () => [line("set")]);
    c("key but no numbers", (k) => [line(`set ${k("a")}`)]);
    c("one number missing", (k) => [line(`set ${k("a")} 0 0`), get(k("a"))]);
    c("stray token where noreply goes is ignored", (k) => [
      line(`set ${k("a")} 0 0 1 please`),
      "x\r\n",
      get(k("a")),
    ]);
    c("one token too many", (k) => [line(`set ${k("a")} 0 0 1 noreply extra`), "x\r\n", get(k("a"))]);
    c("data block longer than declared", (k) => [set(k("a"), "abcdef", { bytes: 3 }), get(k("a"))]);
    c("data block shorter than declared, made up by the next line", (k) => [
      set(k("a"), "ab", { bytes: 5 }),
      line("cd"),
      get(k("a")),
    ]);
    c("data block ended by \\n alone", (k) => [line(`set ${k("a")} 0 0 1`), "x\n", line(""), get(k("a"))]);
    c("data block ended by \\r alone then more bytes", (k) => [
      line(`set ${k("a")} 0 0 1`),
      "x\rzz\r\n",
      get(k("a")),
    ]);
    c(
      "data block not ended: the server waits for the rest",
      (k) => [line(`set ${k("a")} 0 0 10`), "abc\r\n"],
      {
        end: "idle",
        note: "memcached holds the connection mid data block; the sentinel would be read as data, so the case ends on silence",
      },
    );
    c("command line ended by \\n alone", (k) => [`set ${k("a")} 0 0 2\nhi\r\n`, get(k("a"))]);
    c("spaces before the verb", (k) => [`   set ${k("a")} 0 0 2\r\nhi\r\n`, get(k("a"))]);
    c("several spaces between tokens", (k) => [`set   ${k("a")}  0   0  2\r\nhi\r\n`, get(k("a"))]);
    c("space after the last token", (k) => [`set ${k("a")} 0 0 2 \r\nhi\r\n`, get(k("a"))]);
    c("tab between tokens", (k) => [`set\t${k("a")} 0 0 2\r\nhi\r\n`, get(k("a"))]);
    c("a set that failed leaves the old value", (k) => [
      set(k("a"), "old"),
      set(k("a"), "new", { bytes: "x" }),
      get(k("a")),
    ]);
    c("pipelined sets and gets in one write", (k) => [
      set(k("a"), "1"),
      set(k("b"), "22"),
      get(k("a")),
      set(k("c"), "333"),
      get(k("a"), k("b"), k("c")),
    ]);
  });

  table.group("add", (c) => {
    c("stores a new key", (k) => [add(k("a"), "v"), get(k("a"))]);
    c("refuses an existing key and keeps its value", (k) => [
      set(k("a"), "old"),
      add(k("a"), "new"),
      get(k("a")),
    ]);
    c("stores again after delete", (k) => [set(k("a"), "old"), del(k("a")), add(k("a"), "new"), get(k("a"))]);
    c("stores over an expired item", (k) => [
      set(k("a"), "old", { exptime: -1 }),
      add(k("a"), "new"),
      get(k("a")),
    ]);
    c("noreply on success and on refusal", (k) => [
      add(k("a"), "one", { noreply: true }),
      add(k("a"), "two", { noreply: true }),
      get(k("a")),
    ]);
    c("bad length", (k) => [add(k("a"), "v", { bytes: "z" }), get(k("a"))]);
    c("too few tokens", (k) => [line(`add ${k("a")} 0 0`)]);
    c("refused add keeps the old CAS unique", (k) => [
      set(k("a"), "old"),
      gets(k("a")),
      add(k("a"), "new"),
      gets(k("a")),
    ]);
  });

  table.group("replace", (c) => {
    c("refuses a missing key", (k) => [replace(k("a"), "v"), get(k("a"))]);
    c("replaces an existing key and its flags", (k) => [
      set(k("a"), "old", { flags: 1 }),
      replace(k("a"), "new", { flags: 2 }),
      get(k("a")),
    ]);
    c("refuses an expired key", (k) => [
      set(k("a"), "old", { exptime: -1 }),
      replace(k("a"), "new"),
      get(k("a")),
    ]);
    c("noreply on success and on refusal", (k) => [
      replace(k("a"), "x", { noreply: true }),
      set(k("a"), "old"),
      replace(k("a"), "new", { noreply: true }),
      get(k("a")),
    ]);
    c("bad flags", (k) => [set(k("a"), "old"), replace(k("a"), "new", { flags: "-5" }), get(k("a"))]);
  });

  for (const verb of ["append", "prepend"] as const) {
    const op = verb === "append" ? append : prepend;
    table.group(verb, (c) => {
      c("refuses a missing key", (k) => [op(k("a"), "v"), get(k("a"))]);
      c("joins data to an existing value", (k) => [set(k("a"), "mid"), op(k("a"), "++"), get(k("a"))]);
      c("ignores the flags and exptime it is given", (k) => [
        set(k("a"), "mid", { flags: 5 }),
        op(k("a"), "+", { flags: 9, exptime: -1 }),
        get(k("a")),
      ]);
      c("empty data leaves the value as it was", (k) => [set(k("a"), "mid"), op(k("a"), ""), get(k("a"))]);
      c("binary data", (k) => [set(k("a"), "\x00\x01"), op(k("a"), "\r\n\xff"), get(k("a"))]);
      c("changes the CAS unique", (k) => [set(k("a"), "mid"), gets(k("a")), op(k("a"), "x"), gets(k("a"))]);
      c("refuses an expired item", (k) => [
        set(k("a"), "mid", { exptime: -1 }),
        op(k("a"), "x"),
        get(k("a")),
      ]);
      c("noreply", (k) => [
        op(k("a"), "x", { noreply: true }),
        set(k("a"), "mid"),
        op(k("a"), "y", { noreply: true }),
        get(k("a")),
      ]);
      c("bad length", (k) => [set(k("a"), "mid"), op(k("a"), "x", { bytes: "-3" }), get(k("a"))]);
      c("flags field not a number is still checked", (k) => [
        set(k("a"), "mid"),
        op(k("a"), "x", { flags: "zz" }),
        get(k("a")),
      ]);
      c("repeated joins", (k) => [
        set(k("a"), "0"),
        op(k("a"), "1"),
        op(k("a"), "2"),
        op(k("a"), "3"),
        get(k("a")),
      ]);
    });
  }

  table.group("cas", (c) => {
    c("missing key", (k) => [cas(k("a"), "v", "1"), get(k("a"))]);
    c("unique from gets stores", (k) => [
      set(k("a"), "old"),
      gets(k("a")),
      cas(k("a"), "new", casUnique(1)),
      gets(k("a")),
    ]);
    c("stale unique after another set", (k) => [
      set(k("a"), "one"),
      gets(k("a")),
      set(k("a"), "two"),
      cas(k("a"), "three", casUnique(1)),
      get(k("a")),
    ]);
    c("same unique twice: second refused", (k) => [
      set(k("a"), "one"),
      gets(k("a")),
      cas(k("a"), "two", casUnique(1)),
      cas(k("a"), "three", casUnique(1)),
      gets(k("a")),
    ]);
    c("unique one below and one above the item's", (k) => [
      set(k("a"), "one"),
      gets(k("a")),
      cas(k("a"), "low", casUnique(1, -1n)),
      cas(k("a"), "high", casUnique(1, 1n)),
      get(k("a")),
    ]);
    c("unique 0", (k) => [set(k("a"), "one"), cas(k("a"), "two", "0"), get(k("a"))]);
    c("unique not a number", (k) => [set(k("a"), "one"), cas(k("a"), "two", "abc"), get(k("a"))]);
    c("unique -1", (k) => [set(k("a"), "one"), cas(k("a"), "two", "-1"), get(k("a"))]);
    c("unique 2^64-1", (k) => [set(k("a"), "one"), cas(k("a"), "two", U64_MAX.toString()), get(k("a"))]);
    c("unique 2^64", (k) => [set(k("a"), "one"), cas(k("a"), "two", "18446744073709551616"), get(k("a"))]);
    c("unique missing", (k) => [set(k("a"), "one"), line(`cas ${k("a")} 0 0 3`), "two\r\n", get(k("a"))]);
    c("noreply on success and on a stale unique", (k) => [
      set(k("a"), "one"),
      gets(k("a")),
      cas(k("a"), "two", casUnique(1), { noreply: true }),
      cas(k("a"), "three", casUnique(1), { noreply: true }),
      gets(k("a")),
    ]);
    c("noreply on a missing key", (k) => [cas(k("a"), "v", "5", { noreply: true }), get(k("a"))]);
    c("noreply with a bad data chunk", (k) => [
      set(k("a"), "one"),
      cas(k("a"), "toolong", "1", { bytes: 2, noreply: true }),
      get(k("a")),
    ]);
    c("expired item counts as missing", (k) => [
      set(k("a"), "one", { exptime: -1 }),
      cas(k("a"), "two", "1"),
      get(k("a")),
    ]);
    c("deleted then re-added key refuses the old unique", (k) => [
      set(k("a"), "one"),
      gets(k("a")),
      del(k("a")),
      add(k("a"), "two"),
      cas(k("a"), "three", casUnique(1)),
      gets(k("a")),
    ]);
    c(
      "sets the flags and exptime it is given",
      (k) => [
        set(k("a"), "one", { flags: 1 }),
        gets(k("a")),
        cas(k("a"), "two", casUnique(1), { flags: 77, exptime: 1000 }),
        mg(k("a"), "f", "t", "v"),
      ],
      { normalize: ["ttl"] },
    );
    c("one token too many", (k) => [
      set(k("a"), "one"),
      line(`cas ${k("a")} 0 0 3 1 noreply extra`),
      "two\r\n",
      get(k("a")),
    ]);
    c("after incr the unique has changed", (k) => [
      set(k("a"), "5"),
      gets(k("a")),
      incr(k("a"), 1),
      cas(k("a"), "9", casUnique(1)),
      gets(k("a")),
    ]);
  });

  table.group("get", (c) => {
    c("miss", (k) => [get(k("a"))]);
    c("hit with flags", (k) => [set(k("a"), "v", { flags: 42 }), get(k("a"))]);
    c("multi-get with hits, misses and repeats", (k) => [
      set(k("a"), "1"),
      set(k("b"), "2"),
      get(k("a"), k("x"), k("b"), k("a"), k("y"), k("b"), k("a")),
    ]);
    c("multi-get of 24 keys", (k) => [
      set(k("k3"), "three"),
      get(...Array.from({ length: 24 }, (_, i) => k(`k${i}`))),
    ]);
    c("multi-get of 25 keys (past memcached's 24 tokens at a time)", (k) => [
      set(k("k0"), "first"),
      set(k("k24"), "last"),
      get(...Array.from({ length: 25 }, (_, i) => k(`k${i}`))),
    ]);
    c("multi-get of 100 keys, every seventh stored", (k) => [
      ...Array.from({ length: 100 }, (_, i) => i)
        .filter((i) => i % 7 === 0)
        .map((i) => set(k(`k${i}`), `v${i}`)),
      get(...Array.from({ length: 100 }, (_, i) => k(`k${i}`))),
    ]);
    c("multi-get of four 500 KB values", (k) => [
      ...["a", "b", "c", "d"].map((name) => set(k(name), name.repeat(500 * 1024))),
      get(k("a"), k("b"), k("c"), k("d")),
    ]);
    c("gets of 30 keys", (k) => [
      set(k("k29"), "x"),
      set(k("k0"), "y"),
      gets(...Array.from({ length: 30 }, (_, i) => k(`k${i}`))),
    ]);
    c("1000 pipelined sets then gets in one write", (k) => [
      ...Array.from({ length: 1000 }, (_, i) => set(k(`p${i}`), `value-${i}`)),
      ...Array.from({ length: 10 }, (_, i) =>
        get(...Array.from({ length: 10 }, (_, j) => k(`p${i * 100 + j * 7}`))),
      ),
    ]);
    c("multi-get of 600 keys in one 6 KB line", (k) => [
      set(k("k599"), "tail"),
      get(...Array.from({ length: 600 }, (_, i) => k(`k${i}`))),
    ]);
    // The sync before each failing get: see "a too-long key in get drops ..." below.
    c("multi-get with a too-long key in the middle", (k) => [
      set(k("a"), "1"),
      set(k("b"), "2"),
      sync,
      get(k("a"), k.sized(251), k("b")),
    ]);
    c("multi-get with the too-long key after 24 tokens", (k) => [
      set(k("k0"), "first"),
      sync,
      get(...Array.from({ length: 26 }, (_, i) => k(`k${i}`)), k.sized(260)),
    ]);
    for (const verb of ["get", "gets", "gat 0"]) {
      c(
        `a too-long key in ${verb.split(" ")[0]} drops the replies queued before it in the same read`,
        (k) => [
          set(k("a"), "1"),
          line("bogus"),
          mg(k("a"), "v"),
          line(`${verb} ${k("a")} ${k.sized(251)}`),
          get(k("a")),
        ],
        {
          note:
            "memcached 1.6.18 throws away every reply it has not yet written when a get/gets/gat/gats key is too long, " +
            "here the STORED, ERROR and VA of the same write; commands sent in an earlier read keep their replies",
        },
      );
    }
    c("no key", () => [line("get")]);
    c("no key but a space", () => [line("get ")]);
    c("several spaces between keys", (k) => [set(k("a"), "1"), line(`get   ${k("a")}    ${k("a")}  `)]);
    c("gets returns the CAS unique", (k) => [set(k("a"), "1"), gets(k("a"))]);
    c("gets multi with misses", (k) => [set(k("a"), "1"), set(k("b"), "2"), gets(k("b"), k("x"), k("a"))]);
    c("gets no key", () => [line("gets")]);
    c("uppercase verb is unknown", (k) => [set(k("a"), "1"), line(`GET ${k("a")}`)]);
    c("get line ended by \\n alone", (k) => [set(k("a"), "1"), `get ${k("a")}\n`]);
    c("set then get in one write, byte by byte", (k) => [byteByByte(set(k("a"), "hey") + get(k("a")))]);
    c("command split in the middle of the verb", (k) => [
      pieces(`se`, `t ${k("a")} 0 0 2\r\nhi\r\ng`, `et ${k("a")}\r\n`),
    ]);
    c("command split between \\r and \\n", (k) => [
      pieces(`set ${k("a")} 0 0 2\r`, `\nhi\r`, `\nget ${k("a")}\r`, `\n`),
    ]);
  });

  table.group("gat", (c) => {
    c("miss", (k) => [gat(100, k("a"))]);
    c(
      "hit returns the value and sets the TTL",
      (k) => [set(k("a"), "v", { flags: 3 }), gat(1000, k("a")), mg(k("a"), "t")],
      {
        normalize: ["ttl"],
      },
    );
    c("gats returns the CAS unique", (k) => [set(k("a"), "v"), gats(100, k("a")), gets(k("a"))]);
    c("gat does not change the CAS unique", (k) => [
      set(k("a"), "v"),
      gets(k("a")),
      gat(200, k("a")),
      gets(k("a")),
    ]);
    c("multi-key with misses and repeats", (k) => [
      set(k("a"), "1"),
      set(k("b"), "2"),
      gat(300, k("a"), k("x"), k("b"), k("a")),
    ]);
    c("exptime 0 clears an existing TTL", (k) => [
      set(k("a"), "v", { exptime: 500 }),
      gat(0, k("a")),
      mg(k("a"), "t"),
    ]);
    c("negative exptime returns the value, then it is gone", (k) => [
      set(k("a"), "v"),
      gat(-1, k("a")),
      get(k("a")),
    ]);
    c("exptime not a number", (k) => [set(k("a"), "v"), gat("abc", k("a")), mg(k("a"), "t")]);
    c("exptime but no key", () => [line("gat 10")]);
    c("no arguments", () => [line("gat")]);
    c("gats no arguments", () => [line("gats")]);
    c("too-long key", (k) => [gat(10, k.sized(251))]);
    c("over 24 keys", (k) => [
      set(k("k1"), "one"),
      gat(400, ...Array.from({ length: 30 }, (_, i) => k(`k${i}`))),
    ]);
  });

  table.group("delete", (c) => {
    c("hit", (k) => [set(k("a"), "v"), del(k("a")), get(k("a"))]);
    c("miss", (k) => [del(k("a"))]);
    c("twice", (k) => [set(k("a"), "v"), del(k("a")), del(k("a"))]);
    c("noreply hit and miss", (k) => [set(k("a"), "v"), del(k("a"), true), del(k("a"), true), get(k("a"))]);
    c("legacy time argument 0", (k) => [set(k("a"), "v"), line(`delete ${k("a")} 0`), get(k("a"))]);
    c("legacy time argument 0 with noreply", (k) => [
      set(k("a"), "v"),
      line(`delete ${k("a")} 0 noreply`),
      get(k("a")),
    ]);
    c("legacy time argument other than 0", (k) => [
      set(k("a"), "v"),
      line(`delete ${k("a")} 10`),
      get(k("a")),
    ]);
    c("stray token", (k) => [set(k("a"), "v"), line(`delete ${k("a")} now`), get(k("a"))]);
    c("too many tokens", (k) => [set(k("a"), "v"), line(`delete ${k("a")} 0 noreply extra`), get(k("a"))]);
    c("no key", () => [line("delete")]);
    c("expired item", (k) => [set(k("a"), "v", { exptime: -1 }), del(k("a"))]);
  });

  table.group("incr/decr", (c) => {
    c("incr by 1", (k) => [set(k("a"), "10"), incr(k("a"), 1), get(k("a"))]);
    c("decr by 1", (k) => [set(k("a"), "10"), decr(k("a"), 1), get(k("a"))]);
    c("missing key", (k) => [incr(k("a"), 1), decr(k("a"), 1)]);
    c("incr at 2^64-1 wraps to 0", (k) => [set(k("a"), U64_MAX.toString()), incr(k("a"), 1), get(k("a"))]);
    c("incr by 2^64-1 wraps", (k) => [set(k("a"), "5"), incr(k("a"), U64_MAX), get(k("a"))]);
    c("incr by 2^64 is refused", (k) => [
      set(k("a"), "5"),
      incr(k("a"), "18446744073709551616"),
      get(k("a")),
    ]);
    c("decr below 0 stops at 0", (k) => [set(k("a"), "3"), decr(k("a"), 10), get(k("a"))]);
    c("decr 0 by 1", (k) => [set(k("a"), "0"), decr(k("a"), 1), get(k("a"))]);
    c("decr by 2^64-1", (k) => [set(k("a"), U64_MAX.toString()), decr(k("a"), U64_MAX), get(k("a"))]);
    c("incr on a non-number", (k) => [set(k("a"), "abc"), incr(k("a"), 1), get(k("a"))]);
    c("decr on a non-number", (k) => [set(k("a"), "12abc"), decr(k("a"), 1), get(k("a"))]);
    c("incr on an empty value", (k) => [set(k("a"), ""), incr(k("a"), 1), get(k("a"))]);
    c("incr on a value past 2^64-1", (k) => [set(k("a"), "18446744073709551616"), incr(k("a"), 1)]);
    c("incr on a negative value", (k) => [set(k("a"), "-5"), incr(k("a"), 1)]);
    c("incr on a value with a plus sign", (k) => [set(k("a"), "+5"), incr(k("a"), 1), get(k("a"))]);
    c("incr on a value with leading spaces", (k) => [set(k("a"), "  5"), incr(k("a"), 1), get(k("a"))]);
    c("incr on a value with trailing spaces", (k) => [set(k("a"), "5  "), incr(k("a"), 1), get(k("a"))]);
    c("incr on a value with leading zeros", (k) => [set(k("a"), "007"), incr(k("a"), 1), get(k("a"))]);
    c("incr on a value with a trailing \\r\\n", (k) => [set(k("a"), "5\r\n"), incr(k("a"), 1), get(k("a"))]);
    c("incr on a value in hex", (k) => [set(k("a"), "0x10"), incr(k("a"), 1)]);
    c(
      "decr to a shorter number pads the stored value with spaces",
      (k) => [
        set(k("a"), "100"),
        decr(k("a"), 1),
        get(k("a")),
        decr(k("a"), 90),
        get(k("a")),
        mg(k("a"), "s", "v"),
      ],
      {
        note: "memcached rewrites the digits in place when they fit and pads the rest of the old length with spaces",
      },
    );
    c(
      "decr after an mg hit in the same read makes a new item, unpadded",
      (k) => [set(k("a"), "100"), mg(k("a"), "s"), decr(k("a"), 1), get(k("a"))],
      {
        note:
          "memcached rewrites in place only when no one else holds the item; an mg hit's reply holds it until " +
          "that reply is written, so a decr later in the same read stores the digits as a new item",
      },
    );
    c("decr after an mg hit in an earlier read pads in place", (k) => [
      set(k("a"), "100"),
      mg(k("a"), "v"),
      sync,
      decr(k("a"), 1),
      get(k("a")),
    ]);
    c("decr after a get hit in the same read pads in place", (k) => [
      set(k("a"), "100"),
      get(k("a")),
      decr(k("a"), 1),
      get(k("a")),
    ]);
    c("incr after gets and gat hits in the same read pads in place", (k) => [
      set(k("a"), "0100"),
      gets(k("a")),
      gat(0, k("a")),
      incr(k("a"), 1),
      get(k("a")),
    ]);
    c("incr result shorter than the stored value", (k) => [
      set(k("a"), "0000000005"),
      incr(k("a"), 1),
      get(k("a")),
    ]);
    c("incr to a longer number grows the value", (k) => [
      set(k("a"), "99"),
      incr(k("a"), 1),
      get(k("a")),
      incr(k("a"), 900),
      get(k("a")),
    ]);
    c("padded value incremented again", (k) => [
      set(k("a"), "100"),
      decr(k("a"), 95),
      incr(k("a"), 3),
      get(k("a")),
    ]);
    c("keeps the flags", (k) => [set(k("a"), "1", { flags: 12 }), incr(k("a"), 1), get(k("a"))]);
    c("changes the CAS unique", (k) => [
      set(k("a"), "1"),
      gets(k("a")),
      incr(k("a"), 1),
      gets(k("a")),
      decr(k("a"), 1),
      gets(k("a")),
    ]);
    c("delta 0", (k) => [set(k("a"), "7"), incr(k("a"), 0), decr(k("a"), 0), gets(k("a"))]);
    c("delta not a number", (k) => [set(k("a"), "7"), incr(k("a"), "abc"), decr(k("a"), "x1"), get(k("a"))]);
    c("delta negative", (k) => [set(k("a"), "7"), incr(k("a"), -1), decr(k("a"), -1), get(k("a"))]);
    c("delta with trailing letters", (k) => [set(k("a"), "7"), incr(k("a"), "5z")]);
    c("delta with a plus sign", (k) => [set(k("a"), "7"), incr(k("a"), "+5")]);
    c("noreply", (k) => [
      set(k("a"), "7"),
      incr(k("a"), 5, true),
      decr(k("a"), 2, true),
      incr(k("b"), 1, true),
      get(k("a")),
    ]);
    c("noreply on a non-number", (k) => [set(k("a"), "x"), incr(k("a"), 5, true), get(k("a"))]);
    c("no delta", (k) => [set(k("a"), "7"), line(`incr ${k("a")}`), line(`decr ${k("a")}`)]);
    c("too many tokens", (k) => [set(k("a"), "7"), line(`incr ${k("a")} 1 noreply extra`), get(k("a"))]);
    c("expired item", (k) => [set(k("a"), "7", { exptime: -1 }), incr(k("a"), 1)]);
    c("appended digits are counted", (k) => [
      set(k("a"), "1"),
      append(k("a"), "5"),
      incr(k("a"), 1),
      get(k("a")),
    ]);
    c("incr on a value with a NUL after the digits", (k) => [
      set(k("a"), "5\x00abc"),
      incr(k("a"), 1),
      get(k("a")),
    ]);
    c("incr on a value with a tab after the digits", (k) => [
      set(k("a"), "5\t"),
      incr(k("a"), 1),
      get(k("a")),
    ]);
    c("incr on a 24-digit value with leading zeros", (k) => [
      set(k("a"), "000000000000000000000001"),
      incr(k("a"), 1),
      get(k("a")),
    ]);
    c("incr on a 25-digit number", (k) => [set(k("a"), "1000000000000000000000000"), incr(k("a"), 1)]);
    c("twenty-digit value at 2^64-1 then decr", (k) => [
      set(k("a"), U64_MAX.toString()),
      decr(k("a"), 1),
      get(k("a")),
    ]);
  });

  table.group("touch", (c) => {
    c("hit sets the TTL", (k) => [set(k("a"), "v"), touch(k("a"), 1000), mg(k("a"), "t", "v")], {
      normalize: ["ttl"],
    });
    c("miss", (k) => [touch(k("a"), 10)]);
    c("negative exptime expires the item", (k) => [set(k("a"), "v"), touch(k("a"), -1), get(k("a"))]);
    c("exptime 0 clears the TTL", (k) => [
      set(k("a"), "v", { exptime: 100 }),
      touch(k("a"), 0),
      mg(k("a"), "t"),
    ]);
    c(
      "noreply hit and miss",
      (k) => [set(k("a"), "v"), touch(k("a"), 100, true), touch(k("b"), 100, true), mg(k("a"), "t")],
      {
        normalize: ["ttl"],
      },
    );
    c("exptime not a number", (k) => [set(k("a"), "v"), touch(k("a"), "later"), mg(k("a"), "t")]);
    c("no exptime", (k) => [set(k("a"), "v"), line(`touch ${k("a")}`)]);
    c("too many tokens", (k) => [
      set(k("a"), "v"),
      line(`touch ${k("a")} 10 noreply extra`),
      mg(k("a"), "t"),
    ]);
    c("does not change the CAS unique", (k) => [
      set(k("a"), "v"),
      gets(k("a")),
      touch(k("a"), 100),
      gets(k("a")),
    ]);
    c("expired item", (k) => [set(k("a"), "v", { exptime: -1 }), touch(k("a"), 100)]);
    c(
      "to an absolute time in the future",
      (k) => [set(k("a"), "v"), () => touch(k("a"), Math.floor(Date.now() / 1000) + 7200), mg(k("a"), "t")],
      { normalize: ["ttl"], note: "the unix time is computed when the bytes are sent, on each target" },
    );
  });

  table.group("expiry", (c) => {
    const now = () => Math.floor(Date.now() / 1000);
    c("exptime 0 never expires", (k) => [set(k("a"), "v", { exptime: 0 }), mg(k("a"), "t", "v")]);
    c("negative exptime is already expired", (k) => [
      set(k("a"), "v", { exptime: -1 }),
      get(k("a")),
      mg(k("a"), "v"),
    ]);
    c("very negative exptime", (k) => [set(k("a"), "v", { exptime: -2147483648 }), get(k("a"))]);
    c("relative exptime", (k) => [set(k("a"), "v", { exptime: 100 }), mg(k("a"), "t", "v")], {
      normalize: ["ttl"],
    });
    c(
      "exactly 30 days is still relative",
      (k) => [set(k("a"), "v", { exptime: 2592000 }), mg(k("a"), "t", "v")],
      {
        normalize: ["ttl"],
      },
    );
    c("30 days and 1 second is a unix time long past", (k) => [
      set(k("a"), "v", { exptime: 2592001 }),
      get(k("a")),
    ]);
    c("absolute unix time in the past", (k) => [set(k("a"), "v", { exptime: 1000000000 }), get(k("a"))]);
    c(
      "absolute unix time in the future",
      (k) => [() => set(k("a"), "v", { exptime: now() + 3600 }), mg(k("a"), "t", "v")],
      { normalize: ["ttl"], note: "the unix time is computed when the bytes are sent, on each target" },
    );
    c("absolute unix time one second ago", (k) => [
      () => set(k("a"), "v", { exptime: now() - 1 }),
      get(k("a")),
    ]);
    c("2^31-1 (year 2038)", (k) => [set(k("a"), "v", { exptime: 2147483647 }), get(k("a"))]);
    c("touch to an absolute time in the past", (k) => [
      set(k("a"), "v"),
      touch(k("a"), 1000000000),
      get(k("a")),
    ]);
    c("gat to an absolute time in the past", (k) => [set(k("a"), "v"), gat(1000000000, k("a")), get(k("a"))]);
    c(
      "items with TTL 1 are gone two seconds later; longer ones stay",
      (k) => [
        set(k("a"), "short", { exptime: 1 }),
        set(k("b"), "long", { exptime: 100 }),
        set(k("c"), "none"),
        set(k("d"), "touched"),
        touch(k("d"), 1),
        set(k("e"), "gat"),
        gat(1, k("e")),
        get(k("a"), k("b"), k("c"), k("d"), k("e")),
        pause(2200),
        get(k("a"), k("b"), k("c"), k("d"), k("e")),
        add(k("a"), "again"),
        get(k("a")),
      ],
      {
        note: "the one timed expiry case: memcached's clock ticks once a second, so 2.2 s is past any TTL-1 item",
      },
    );
  });

  table.group("keys", (c) => {
    const verbs: StorageVerb[] = ["set", "add", "replace", "append", "prepend"];
    c("250-byte key works with every command", (k) => {
      const key = k.sized(250);
      return [
        set(key, "v"),
        get(key),
        gets(key),
        touch(key, 100),
        incr(key, 1),
        append(key, "1"),
        replace(key, "5"),
        incr(key, 1),
        decr(key, 1),
        gat(0, key),
        del(key),
        add(key, "w"),
        get(key),
      ];
    });
    for (const verb of verbs) {
      c(`251-byte key refused by ${verb}`, (k) => [store(verb, k.sized(251), "v"), get(k.sized(250))]);
    }
    c("251-byte key refused by cas", (k) => [cas(k.sized(251), "v", "1")]);
    c("251-byte key refused by get", (k) => [get(k.sized(251))]);
    c("251-byte key refused by gets", (k) => [gets(k.sized(251))]);
    c("251-byte key refused by delete", (k) => [del(k.sized(251))]);
    c("251-byte key refused by incr and decr", (k) => [incr(k.sized(251), 1), decr(k.sized(251), 1)]);
    c("251-byte key refused by touch", (k) => [touch(k.sized(251), 10)]);
    c("1000-byte key", (k) => [set(k.sized(1000), "v"), sync, get(k.sized(1000))]);
    c("key with a control byte 0x01", (k) => [set(k("a\x01b"), "v"), get(k("a\x01b")), del(k("a\x01b"))]);
    c("key with DEL 0x7f", (k) => [set(k("a\x7fb"), "v"), get(k("a\x7fb"))]);
    c("key with a tab", (k) => [set(k("a\tb"), "v"), get(k("a\tb")), get(k("a"))]);
    c("key with a bare \\r", (k) => [set(k("a\rb"), "v"), get(k("a\rb"))]);
    c("key with a NUL byte", (k) => [set(k("a\x00b"), "v"), get(k("a")), get(k("a\x00b"))]);
    c("key with UTF-8 bytes", (k) => [set(k("caf\xc3\xa9"), "v"), get(k("caf\xc3\xa9"))]);
    c("key with high bytes 0x80-0xff", (k) => [set(k("\x80\xfe\xff"), "v"), get(k("\x80\xfe\xff"))]);
    c("key with punctuation", (k) => [set(k("a:b/c?d=e&f%g"), "v"), get(k("a:b/c?d=e&f%g"))]);
    c("keys differ by case", (k) => [
      set(k("Key"), "upper"),
      set(k("key"), "lower"),
      get(k("Key"), k("key")),
    ]);
  });

  table.group("item size", (c) => {
    c(
      "largest value memcached accepts",
      (k) => [set(k("big"), "v".repeat(largestValue(k("big")))), mg(k("big"), "s")],
      {
        note: "1 MiB item limit minus memcached's per-item overhead: 48-byte header, key + NUL, value's \\r\\n, 8-byte CAS",
      },
    );
    c("one byte over the largest value", (k) => [
      set(k("big"), "v".repeat(largestValue(k("big")) + 1)),
      get(k("big")),
    ]);
    c("largest value under a 250-byte key", (k) => [
      set(k.sized(250), "v".repeat(largestValue(k.sized(250)))),
      mg(k.sized(250), "s"),
    ]);
    c("one byte over under a 250-byte key", (k) => [
      set(k.sized(250), "v".repeat(largestValue(k.sized(250)) + 1)),
      mg(k.sized(250), "s"),
    ]);
    c(
      "largest value with non-zero flags",
      (k) => [
        set(k("big"), "v".repeat(largestValue(k("big"))), { flags: 1 }),
        set(k("big2"), "v".repeat(largestValue(k("big2")) - 4), { flags: 1 }),
        mg(k("big"), "s"),
        mg(k("big2"), "s"),
      ],
      { note: "memcached stores non-zero client flags in 4 more bytes" },
    );
    c("value of exactly 1 MiB", (k) => [set(k("big"), "v".repeat(ONE_MIB)), mg(k("big"), "s")]);
    c("value of 1 MiB + 1", (k) => [set(k("big"), "v".repeat(ONE_MIB + 1)), mg(k("big"), "s")]);
    c("value of 2 MiB", (k) => [set(k("big"), "v".repeat(2 * ONE_MIB)), mg(k("big"), "s")]);
    c("too large set removes the old value", (k) => [
      set(k("big"), "old"),
      set(k("big"), "v".repeat(ONE_MIB + 1)),
      get(k("big")),
    ]);
    c("too large with noreply still answers", (k) => [
      set(k("big"), "old"),
      set(k("big"), "v".repeat(ONE_MIB + 1), { noreply: true }),
      get(k("big")),
    ]);
    c("too large add leaves the old value", (k) => [
      set(k("big"), "old"),
      add(k("big"), "v".repeat(ONE_MIB + 1)),
      get(k("big")),
    ]);
    c("too large replace", (k) => [
      set(k("big"), "old"),
      replace(k("big"), "v".repeat(ONE_MIB + 1)),
      get(k("big")),
    ]);
    c("append past the limit", (k) => [
      set(k("big"), "v"),
      append(k("big"), "w".repeat(largestValue(k("big")))),
      mg(k("big"), "s"),
    ]);
    c("too large data block sent in pieces", (k) => [
      pieces(`set ${k("big")} 0 0 ${ONE_MIB + 10}\r\n`, "v".repeat(ONE_MIB), "v".repeat(10), "\r\n"),
      get(k("big")),
    ]);
    c("too large length with a bad block end", (k) => [
      line(`set ${k("big")} 0 0 ${ONE_MIB + 1}`),
      "v".repeat(ONE_MIB + 1),
      "XX",
      get(k("big")),
    ]);
  });

  table.group("flush_all", (c) => {
    c("invalidates every item", (k) => [
      set(k("a"), "1"),
      set(k("b"), "2"),
      line("flush_all"),
      get(k("a"), k("b")),
    ]);
    c("items stored after it are kept", (k) => [
      set(k("a"), "1"),
      line("flush_all"),
      set(k("b"), "2"),
      get(k("a"), k("b")),
    ]);
    c("noreply", (k) => [set(k("a"), "1"), line("flush_all noreply"), get(k("a"))]);
    c("delay 0", (k) => [set(k("a"), "1"), line("flush_all 0"), get(k("a"))]);
    c("delay 0 noreply", (k) => [set(k("a"), "1"), line("flush_all 0 noreply"), get(k("a"))]);
    c("negative delay acts now", (k) => [set(k("a"), "1"), line("flush_all -1"), get(k("a"))]);
    c("delay not a number", (k) => [set(k("a"), "1"), line("flush_all soon"), get(k("a"))]);
    c("too many tokens", (k) => [set(k("a"), "1"), line("flush_all 0 noreply extra"), get(k("a"))]);
    c("unix time long past", (k) => [set(k("a"), "1"), line("flush_all 1000000000"), get(k("a"))], {
      note: "memcached turns a past absolute time into 'no flush time' and keeps the items",
    });
    c("add works on a flushed key", (k) => [
      set(k("a"), "1"),
      line("flush_all"),
      add(k("a"), "2"),
      get(k("a")),
    ]);
    c("incr, touch and delete miss a flushed key", (k) => [
      set(k("a"), "1"),
      line("flush_all"),
      incr(k("a"), 1),
      touch(k("a"), 10),
      del(k("a")),
    ]);
    c(
      "with a 2 s delay: items stay, then go",
      (k) => [
        set(k("a"), "before"),
        line("flush_all 2"),
        set(k("b"), "after"),
        get(k("a"), k("b")),
        pause(2600),
        get(k("a"), k("b")),
        set(k("c"), "later"),
        get(k("c")),
      ],
      {
        note: "memcached's flush time is the delay less one second on its own clock; 2.6 s is past it on any tick",
      },
    );
  });

  table.group("version", (c) => {
    c("version", () => [line("version")], { normalize: ["version"] });
    c("version with an argument", () => [line("version now")], { normalize: ["version"] });
    c("version twice pipelined", () => [line("version"), line("version")], { normalize: ["version"] });
  });

  table.group("verbosity", (c) => {
    c("level 1", () => [line("verbosity 1")]);
    c("level 0 noreply", () => [line("verbosity 0 noreply"), line("verbosity 0")]);
    c("no level", () => [line("verbosity")]);
    c("level not a number", () => [line("verbosity loud")]);
    c("too many tokens", () => [line("verbosity 1 noreply extra")]);
    c("two levels", () => [line("verbosity 1 2")]);
    c("negative level", () => [line("verbosity -1")]);
  });

  table.group("stats", (c) => {
    const note =
      "values are masked (statsValues); `stats items`, `stats slabs` and `stats conns` are not compared at all: " +
      "their names are memcached's slab class ids and file descriptors";
    c("general statistics names", () => [line("stats")], {
      normalize: ["statsValues"],
      note,
      reference: "stock",
    });
    c("settings names", () => [line("stats settings")], {
      normalize: ["statsValues"],
      note,
      reference: "stock",
    });
    c("reset", () => [line("stats reset")]);
    c("sizes (histogram off by default)", () => [line("stats sizes")], { normalize: ["statsValues"] });
    c("unknown group", () => [line("stats nonsense")]);
    c("detail off", () => [line("stats detail off")]);
  });

  table.group("quit", (c) => {
    c("closes the connection", () => [line("quit")], { end: "close" });
    c("answers what came before it", (k) => [set(k("a"), "v"), get(k("a")), line("quit")], { end: "close" });
    c("ignores what comes after it", (k) => [line("quit"), set(k("a"), "v"), get(k("a"))], { end: "close" });
    c("with an argument", () => [line("quit now")], { end: "close" });
    c("after a noreply set", (k) => [set(k("a"), "v", { noreply: true }), line("quit")], { end: "close" });
  });

  table.group("noreply", (c) => {
    c("every storage command, then one get", (k) => [
      set(k("a"), "1", { noreply: true }),
      add(k("b"), "2", { noreply: true }),
      replace(k("a"), "3", { noreply: true }),
      append(k("a"), "4", { noreply: true }),
      prepend(k("a"), "5", { noreply: true }),
      get(k("a"), k("b")),
    ]);
    c("failing storage commands stay silent", (k) => [
      add(k("b"), "2"),
      add(k("b"), "x", { noreply: true }),
      replace(k("z"), "x", { noreply: true }),
      append(k("z"), "x", { noreply: true }),
      prepend(k("z"), "x", { noreply: true }),
      cas(k("z"), "x", "1", { noreply: true }),
      get(k("b"), k("z")),
    ]);
    c("malformed line with noreply still answers", (k) => [line(`set ${k("a")} x 0 1 noreply`), "v\r\n"]);
    c("bad data chunk with noreply", (k) => [set(k("a"), "toolong", { bytes: 2, noreply: true })]);
    c("noreply spelled differently is not noreply", (k) => [
      line(`set ${k("a")} 0 0 1 NOREPLY`),
      "v\r\n",
      line(`delete ${k("a")} no_reply`),
    ]);
    c("get does not take noreply", (k) => [set(k("a"), "v"), get(k("a"), "noreply")]);
    c("flush_all, verbosity, touch, incr, decr, delete together", (k) => [
      set(k("n"), "10"),
      set(k("t"), "x"),
      set(k("d"), "x"),
      incr(k("n"), 5, true),
      decr(k("n"), 1, true),
      touch(k("t"), 100, true),
      del(k("d"), true),
      line("verbosity 0 noreply"),
      get(k("n"), k("t"), k("d")),
      line("flush_all noreply"),
      get(k("n")),
    ]);
  });

  table.group("malformed input", (c) => {
    c("unknown command", () => [line("bogus")]);
    c("unknown command with arguments", () => [line("bogus a b c")]);
    c("empty line", () => [line("")]);
    c("several empty lines", () => [line(""), line(""), "\n", line("")]);
    c("line of spaces", () => [line("     ")]);
    c("bare \\n", () => ["\n"]);
    c("bare \\r then \\n later", () => ["\r", line("")]);
    c("NUL bytes", () => [line("\x00\x00\x00")]);
    c("binary garbage", () => [line("\xff\xfe\x80\x81 \x01\x02")]);
    c("verb with a trailing \\r before \\n", () => [line("version\r")], { normalize: ["version"] });
    c("thirty tokens on a storage line", (k) => [
      line(`set ${k("a")} 0 0 1 ${filler(26).split("").join(" ")}`),
      "v\r\n",
    ]);
    c("thirty tokens on an unknown command", () => [
      line(Array.from({ length: 30 }, (_, i) => `t${i}`).join(" ")),
    ]);
    c("thirty tokens on delete", (k) => [
      line(`delete ${k("a")} ${Array.from({ length: 28 }, () => "x").join(" ")}`),
    ]);
    c("thirty tokens on incr", (k) => [
      set(k("a"), "1"),
      line(`incr ${k("a")} 1 ${Array.from({ length: 28 }, () => "x").join(" ")}`),
    ]);
    c("thirty tokens on touch", (k) => [
      line(`touch ${k("a")} 1 ${Array.from({ length: 28 }, () => "x").join(" ")}`),
    ]);
    c("line of 4000 bytes ending in \\r\\n", () => [line("x".repeat(4000))]);
    c("line of 2100 bytes without a line end closes the connection", () => ["x".repeat(2100)], {
      end: "close",
      note: "memcached gives up on a non-get line that reaches 2048 bytes without \\n and closes",
    });
    c(
      "get line of 3000 bytes without a line end is kept open",
      (k) => [`get ${Array.from({ length: 300 }, (_, i) => k(`${i}`)).join(" ")}`],
      { end: "idle", note: "memcached keeps reading a long get line, as a large multi-get" },
    );
    c(
      "get line of 3000 bytes in two pieces is answered whole",
      (k) => {
        const text = line(`get ${Array.from({ length: 300 }, (_, i) => k(`${i}`)).join(" ")} ${k("hit")}`);
        return [set(k("hit"), "v"), sync, pieces(text.slice(0, 2100), text.slice(2100))];
      },
      { note: "the first piece passes 2048 bytes without \n: memcached keeps reading because it is a get" },
    );
    c("multi-get line of 24 KB", (k) => [
      set(k("k1999"), "last"),
      get(...Array.from({ length: 2000 }, (_, i) => k(`k${i}`))),
    ]);
    c(
      "set line of 3000 bytes in two pieces closes the connection",
      (k) => {
        const text = line(`set ${k.sized(2990)} 0 0 1`) + "v\r\n";
        return [pieces(text.slice(0, 2100), text.slice(2100))];
      },
      { end: "close", note: "memcached closes once 2048 bytes of a non-get line have arrived without \n" },
    );
    c("commands after an error still run", (k) => [line("bogus"), set(k("a"), "v"), get(k("a"))]);
    c("error inside a pipeline", (k) => [
      set(k("a"), "1"),
      line("nope"),
      set(k("b"), "2"),
      get(k("a"), k("b")),
    ]);
    c("a sixth numeric token is ignored", (k) => [line(`set ${k("a")} 0 0 1 0`), "v\r\n", get(k("a"))]);
    c("storage verb split over pieces with a bad length", (k) => [
      pieces(`set ${k("a")} 0 `, "0 -", "5\r\n"),
      get(k("a")),
    ]);
    c("whole pipeline byte by byte", (k) => [
      byteByByte(`${set(k("a"), "5")}${incr(k("a"), 3)}${gets(k("a"))}bogus\r\n${del(k("a"))}`),
    ]);
  });

  table.group("sessions", (c) => {
    c("sync between steps keeps order", (k) => [
      set(k("a"), "1"),
      sync,
      get(k("a")),
      sync,
      del(k("a")),
      sync,
      get(k("a")),
    ]);
  });
}
