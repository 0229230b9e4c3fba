// Conformance cases for memcached's meta protocol: mg, ms, md, ma, mn and me with their flags,
// quiet mode, opaques, base64 keys, vivify/recache/stale, and malformed flags.
import {
  base64,
  casRef,
  get,
  gets,
  line,
  ma,
  md,
  me,
  mg,
  mn,
  ms,
  pieces,
  set,
  sync,
  type CaseTable,
} from "./script.js";

const U64_MAX = "18446744073709551615";

export function addMetaCases(table: CaseTable): void {
  table.group("mg", (c) => {
    c("hit with no flags", (k) => [set(k("a"), "v"), mg(k("a"))]);
    c("miss with no flags", (k) => [mg(k("a"))]);
    c("v returns the value", (k) => [set(k("a"), "hello"), mg(k("a"), "v")]);
    c("v on a miss", (k) => [mg(k("a"), "v")]);
    c("v on an empty value", (k) => [set(k("a"), ""), mg(k("a"), "v")]);
    c("v on a binary value", (k) => [set(k("a"), "\r\n\x00\xff"), mg(k("a"), "v")]);
    c("c returns the CAS unique", (k) => [set(k("a"), "v"), mg(k("a"), "c"), gets(k("a"))]);
    c("f returns the client flags", (k) => [set(k("a"), "v", { flags: 4294967295 }), mg(k("a"), "f")]);
    c("f on zero flags", (k) => [set(k("a"), "v"), mg(k("a"), "f")]);
    c("h before and after the first fetch", (k) => [
      set(k("a"), "v"),
      mg(k("a"), "h"),
      mg(k("a"), "h"),
      mg(k("a"), "h"),
    ]);
    c("h after get counts as hit", (k) => [set(k("a"), "v"), get(k("a")), mg(k("a"), "h")]);
    c("k returns the key", (k) => [set(k("a"), "v"), mg(k("a"), "k")]);
    c("k on a miss", (k) => [mg(k("a"), "k")]);
    c("l returns seconds since last access", (k) => [set(k("a"), "v"), mg(k("a"), "l"), mg(k("a"), "l")], {
      normalize: ["ttl"],
    });
    c("O echoes the opaque", (k) => [set(k("a"), "v"), mg(k("a"), "Oabc123"), mg(k("a"), "v", "O1")]);
    c("O on a miss", (k) => [mg(k("a"), "Oxyz"), mg(k("a"), "v", "k", "O9")]);
    c("O of 31 bytes", (k) => [set(k("a"), "v"), mg(k("a"), `O${"o".repeat(31)}`)]);
    c("O of 32 bytes", (k) => [set(k("a"), "v"), mg(k("a"), `O${"o".repeat(32)}`)]);
    c("O of 33 bytes", (k) => [set(k("a"), "v"), mg(k("a"), `O${"o".repeat(33)}`)]);
    c("O with no token", (k) => [set(k("a"), "v"), mg(k("a"), "O")]);
    c("q hides a miss", (k) => [mg(k("a"), "q"), mg(k("a"), "v", "q"), mg(k("a"), "q", "k", "Ox")]);
    c("q shows a hit", (k) => [set(k("a"), "v"), mg(k("a"), "q"), mg(k("a"), "q", "v")]);
    c("q pipeline ended by mn", (k) => [
      set(k("b"), "bee"),
      mg(k("a"), "q", "v", "O1"),
      mg(k("b"), "q", "v", "O2"),
      mg(k("c"), "q", "v", "O3"),
      mn,
    ]);
    c("s returns the value size", (k) => [set(k("a"), "hello"), mg(k("a"), "s")]);
    c("t without expiry is -1", (k) => [set(k("a"), "v"), mg(k("a"), "t")]);
    c("t with expiry", (k) => [set(k("a"), "v", { exptime: 1000 }), mg(k("a"), "t")], { normalize: ["ttl"] });
    c("u does not mark the item fetched", (k) => [
      set(k("a"), "v"),
      mg(k("a"), "u"),
      mg(k("a"), "h"),
      mg(k("a"), "h"),
    ]);
    c(
      "every return flag at once, in request order",
      (k) => [
        set(k("a"), "value", { flags: 7, exptime: 1000 }),
        mg(k("a"), "s", "v", "t", "f", "c", "k", "h", "l", "Oop"),
        mg(k("a"), "k", "c", "f", "h", "O1", "s", "t", "v"),
      ],
      { normalize: ["ttl"] },
    );
    c("T updates the TTL", (k) => [set(k("a"), "v"), mg(k("a"), "T1000", "t"), mg(k("a"), "t")], {
      normalize: ["ttl"],
    });
    c("T with no token", (k) => [set(k("a"), "v"), mg(k("a"), "T", "t")]);
    c("T negative expires the item", (k) => [set(k("a"), "v"), mg(k("a"), "T-1", "v"), mg(k("a"), "v")]);
    c("T not a number", (k) => [set(k("a"), "v"), mg(k("a"), "Tabc", "t")]);
    c("T on a miss", (k) => [mg(k("a"), "T100", "t")]);
    c("T does not change the CAS unique", (k) => [
      set(k("a"), "v"),
      mg(k("a"), "c"),
      mg(k("a"), "T100", "c"),
    ]);
    c(
      "N vivifies a miss and wins",
      (k) => [mg(k("a"), "N30", "v", "c", "t"), mg(k("a"), "N30", "v", "c", "t"), mg(k("a"), "v", "t")],
      {
        normalize: ["ttl"],
      },
    );
    c("N on a hit does nothing", (k) => [set(k("a"), "v"), mg(k("a"), "N30", "v", "t")]);
    c("N with no token", (k) => [mg(k("a"), "N", "v")]);
    c("N not a number", (k) => [mg(k("a"), "Nabc", "v")]);
    c("N then ms clears the win", (k) => [
      mg(k("a"), "N30", "s"),
      ms(k("a"), "fresh"),
      mg(k("a"), "v"),
      mg(k("a"), "N30", "v"),
    ]);
    c("N with q on a miss still answers", (k) => [mg(k("a"), "N30", "q", "s"), mg(k("a"), "N30", "q", "s")]);
    c("vivified item: get sees an empty value", (k) => [mg(k("a"), "N30"), get(k("a"))]);
    c("R wins when the TTL is below the token", (k) => [
      set(k("a"), "v", { exptime: 100 }),
      mg(k("a"), "R30", "v"),
      mg(k("a"), "R200", "v"),
      mg(k("a"), "R200", "v"),
    ]);
    c("R on an item without TTL", (k) => [set(k("a"), "v"), mg(k("a"), "R30", "v")]);
    c("R not a number", (k) => [set(k("a"), "v"), mg(k("a"), "Rx", "v")]);
    c("R and N together on a miss", (k) => [mg(k("a"), "N30", "R10", "v"), mg(k("a"), "N30", "R10", "v")]);
    c("E is not a mg flag in 1.6.18", (k) => [set(k("a"), "v"), mg(k("a"), "E5", "c")]);
    c("P and L tokens are ignored", (k) => [set(k("a"), "v"), mg(k("a"), "v", "P/path", "Lx")]);
    c("b decodes a base64 key", (k) => [set(k("bin"), "v"), mg(base64(k("bin")), "b", "v", "k")]);
    c("b on a miss with k", (k) => [mg(base64(k("miss")), "b", "k")]);
    c("b with binary key bytes", (k) => [
      ms(base64(k("\x00\x01\xff")), "bin", ["b"]),
      mg(base64(k("\x00\x01\xff")), "b", "v", "k"),
    ]);
    c("b with invalid base64", () => [mg("!!!!", "b", "v")]);
    c("b with a base64 key that decodes past 250 bytes", (k) => [mg(base64(k.sized(251)), "b", "v")]);
    c("duplicate flag", (k) => [set(k("a"), "v"), mg(k("a"), "v", "v")]);
    c("duplicate token flag", (k) => [set(k("a"), "v"), mg(k("a"), "O1", "O2")]);
    c("unknown flag", (k) => [set(k("a"), "v"), mg(k("a"), "v", "!")]);
    c("unknown letter flag", (k) => [set(k("a"), "v"), mg(k("a"), "v", "y")]);
    c("flag of two letters", (k) => [set(k("a"), "v"), mg(k("a"), "vk")]);
    c("too many flags", (k) => [set(k("a"), "v"), mg(k("a"), ..."abcdefghijklmnopqrstuvwxyz".split(""))]);
    c(
      "sixteen flags at once",
      (k) => [
        set(k("a"), "v"),
        mg(k("a"), "v", "k", "c", "f", "h", "l", "s", "t", "u", "O1", "q", "P1", "L1", "T100", "N10", "R10"),
      ],
      { normalize: ["ttl"] },
    );
    c("no key", () => [line("mg")]);
    c("251-byte key", (k) => [mg(k.sized(251), "v")]);
    c("250-byte key", (k) => [set(k.sized(250), "v"), mg(k.sized(250), "v", "k")]);
    c("expired item is a miss", (k) => [set(k("a"), "v", { exptime: -1 }), mg(k("a"), "v")]);
    c("pipeline of hits and misses with opaques", (k) => [
      set(k("a"), "1"),
      set(k("c"), "3"),
      mg(k("a"), "v", "O1"),
      mg(k("b"), "v", "O2"),
      mg(k("c"), "v", "O3"),
      mg(k("d"), "v", "O4", "q"),
      mn,
    ]);
    c("split byte by byte", (k) => [
      set(k("a"), "v"),
      pieces(..."mg ".split(""), ...k("a").split(""), ..." v c\r\n".split("")),
    ]);
    c("two spaces before the flags", (k) => [set(k("v"), "x"), line(`mg  v`), line(`mg ${k("v")}  v  k`)]);
    c("key with a control byte", (k) => [set(k("a\x01b"), "v"), mg(k("a\x01b"), "v", "k")]);
    c("b with a 200-byte key (268 base64 characters)", (k) => [
      set(k.sized(200), "v"),
      mg(base64(k.sized(200)), "b", "v", "s"),
    ]);
    c("b with a key of one byte", () => [ms(base64("\x07"), "v", ["b"]), mg(base64("\x07"), "b", "v", "k")]);
    c("b with base64 missing its padding", (k) => [
      set(k("ab"), "v"),
      mg(base64(k("ab")).replace(/=+$/, ""), "b", "v"),
    ]);
    c("an error does not echo the opaque", (k) => [
      set(k("a"), "v"),
      mg(k("a"), "O5", "v", "v"),
      mg(k("a"), "O6", "!"),
    ]);
    c(
      "t after touch to an absolute future time",
      (k) => [
        set(k("a"), "v"),
        () => line(`touch ${k("a")} ${Math.floor(Date.now() / 1000) + 600}`),
        mg(k("a"), "t"),
      ],
      { normalize: ["ttl"] },
    );
    c("uppercase MG is unknown", (k) => [set(k("a"), "v"), line(`MG ${k("a")} v`)]);
  });

  table.group("ms", (c) => {
    c("stores a value", (k) => [ms(k("a"), "hello"), mg(k("a"), "v", "f", "t")]);
    c("stores an empty value", (k) => [ms(k("a"), ""), mg(k("a"), "v", "s")]);
    c("binary value", (k) => [ms(k("a"), "\x00\r\n\xff"), mg(k("a"), "v")]);
    c("F sets client flags", (k) => [ms(k("a"), "v", ["F123"]), mg(k("a"), "f"), get(k("a"))]);
    c("F of 2^32-1 and 2^32", (k) => [
      ms(k("a"), "v", ["F4294967295"]),
      ms(k("b"), "v", ["F4294967296"]),
      mg(k("a"), "f"),
      mg(k("b"), "f"),
    ]);
    c("F not a number", (k) => [ms(k("a"), "v", ["Fx"]), mg(k("a"), "f")]);
    c("T sets the TTL", (k) => [ms(k("a"), "v", ["T1000"]), mg(k("a"), "t")], { normalize: ["ttl"] });
    c("T negative stores an expired item", (k) => [ms(k("a"), "v", ["T-1"]), mg(k("a"), "v")]);
    c("T not a number", (k) => [ms(k("a"), "v", ["Tsoon"]), mg(k("a"), "v")]);
    c("c returns the new CAS unique", (k) => [
      ms(k("a"), "v", ["c"]),
      mg(k("a"), "c"),
      ms(k("a"), "w", ["c"]),
    ]);
    c("k returns the key", (k) => [ms(k("a"), "v", ["k"])]);
    c("O echoes the opaque", (k) => [ms(k("a"), "v", ["O77"]), ms(k("a"), "v", ["k", "O78", "c"])]);
    c("q hides success", (k) => [ms(k("a"), "v", ["q"]), ms(k("a"), "w", ["q", "ME"]), mg(k("a"), "v"), mn]);
    c("b stores under the decoded key", (k) => [ms(base64(k("bin")), "v", ["b", "k"]), get(k("bin"))]);
    c("b with invalid base64", () => [ms("!!!!", "v", ["b"])]);
    c("I without C", (k) => [ms(k("a"), "v", ["I"]), mg(k("a"), "v")]);
    c("ME adds a new key", (k) => [ms(k("a"), "v", ["ME"]), mg(k("a"), "v")]);
    c("ME refuses an existing key", (k) => [ms(k("a"), "old"), ms(k("a"), "new", ["ME"]), mg(k("a"), "v")]);
    c("Me lowercase mode letter", (k) => [ms(k("a"), "v", ["Me"]), ms(k("a"), "w", ["Me"]), mg(k("a"), "v")]);
    c("MA appends", (k) => [ms(k("a"), "old"), ms(k("a"), "+new", ["MA"]), mg(k("a"), "v")]);
    c("MA on a missing key", (k) => [ms(k("a"), "v", ["MA"]), mg(k("a"), "v")]);
    c(
      "MA keeps flags and TTL",
      (k) => [
        ms(k("a"), "v", ["F5", "T1000"]),
        ms(k("a"), "w", ["MA", "F9", "T0"]),
        mg(k("a"), "f", "t", "v"),
      ],
      {
        normalize: ["ttl"],
      },
    );
    c("MP prepends", (k) => [ms(k("a"), "old"), ms(k("a"), "new+", ["MP"]), mg(k("a"), "v")]);
    c("MP on a missing key", (k) => [ms(k("a"), "v", ["MP"])]);
    c("MR replaces an existing key", (k) => [ms(k("a"), "old"), ms(k("a"), "new", ["MR"]), mg(k("a"), "v")]);
    c("MR on a missing key", (k) => [ms(k("a"), "v", ["MR"]), mg(k("a"), "v")]);
    c("MS sets", (k) => [ms(k("a"), "old"), ms(k("a"), "new", ["MS"]), mg(k("a"), "v")]);
    c("unknown mode", (k) => [ms(k("a"), "v", ["MX"]), mg(k("a"), "v")]);
    c("mode with no letter", (k) => [ms(k("a"), "v", ["M"]), mg(k("a"), "v")]);
    c("mode of two letters", (k) => [ms(k("a"), "v", ["MSE"]), mg(k("a"), "v")]);
    c("C with the current unique stores", (k) => [
      ms(k("a"), "one", ["c"]),
      ms(k("a"), "two", [casRef(1), "c"]),
      mg(k("a"), "v", "c"),
    ]);
    c("C with a stale unique", (k) => [
      ms(k("a"), "one", ["c"]),
      ms(k("a"), "two"),
      ms(k("a"), "three", [casRef(1)]),
      mg(k("a"), "v"),
    ]);
    c("C on a missing key", (k) => [ms(k("a"), "v", ["C12345"])]);
    c("C not a number", (k) => [ms(k("a"), "one"), ms(k("a"), "v", ["Cxyz"])]);
    c("C with c on a stale unique", (k) => [
      ms(k("a"), "one", ["c"]),
      ms(k("a"), "two"),
      ms(k("a"), "three", [casRef(1), "c"]),
    ]);
    c("C with MA appends when the unique matches", (k) => [
      ms(k("a"), "one", ["c"]),
      ms(k("a"), "+two", ["MA", casRef(1)]),
      mg(k("a"), "v"),
    ]);
    c("C with MP refuses a stale unique", (k) => [
      ms(k("a"), "one", ["c"]),
      ms(k("a"), "two"),
      ms(k("a"), "x", ["MP", casRef(1)]),
      mg(k("a"), "v"),
    ]);
    c("C with ME on an existing key", (k) => [ms(k("a"), "one", ["c"]), ms(k("a"), "x", ["ME", casRef(1)])]);
    c("C with MR", (k) => [ms(k("a"), "one", ["c"]), ms(k("a"), "two", ["MR", casRef(1)]), mg(k("a"), "v")]);
    c("I with an older C marks the item stale", (k) => [
      ms(k("a"), "one", ["c"]),
      ms(k("a"), "two", [casRef(1, -1n), "I", "c"]),
      mg(k("a"), "v", "c"),
      mg(k("a"), "v", "c"),
    ]);
    c("I with a newer C is refused", (k) => [
      ms(k("a"), "one", ["c"]),
      ms(k("a"), "two", [casRef(1, 1n), "I"]),
      mg(k("a"), "v"),
    ]);
    c("I with the current C stores normally", (k) => [
      ms(k("a"), "one", ["c"]),
      ms(k("a"), "two", [casRef(1), "I"]),
      mg(k("a"), "v"),
    ]);
    c("q shows a refusal", (k) => [ms(k("a"), "v", ["q", "MR"]), ms(k("a"), "v", ["q", "C99"]), mn]);
    c("data block longer than declared", (k) => [ms(k("a"), "abcdef", [], 3), mg(k("a"), "v")]);
    c("data block shorter than declared, made up by the next line", (k) => [
      ms(k("a"), "ab", [], 5),
      line("cd"),
      mg(k("a"), "v"),
    ]);
    c("length not a number", (k) => [ms(k("a"), "v", [], "x"), mg(k("a"), "v")]);
    c("length negative", (k) => [ms(k("a"), "v", [], -1), mg(k("a"), "v")]);
    c("length missing", (k) => [line(`ms ${k("a")}`)]);
    c("length with trailing letters", (k) => [ms(k("a"), "v", [], "1b"), mg(k("a"), "v")]);
    c("old S flag syntax", (k) => [line(`ms ${k("a")} S1 T0`), "v\r\n", mg(k("a"), "v")]);
    c("invalid flag swallows the data block", (k) => [ms(k("a"), "v", ["!"]), mg(k("a"), "v")]);
    c("duplicate flag swallows the data block", (k) => [ms(k("a"), "v", ["T1", "T2"]), mg(k("a"), "v")]);
    c("too many flags", (k) => [ms(k("a"), "v", "abcdefghijklmnopqrstuvwxyz".split("")), mg(k("a"), "v")]);
    c("flags a get would take (v, s, t)", (k) => [
      ms(k("a"), "v", ["v"]),
      ms(k("a"), "v", ["s"]),
      ms(k("a"), "v", ["t"]),
    ]);
    c("251-byte key", (k) => [ms(k.sized(251), "v"), mg(k.sized(250), "v")]);
    c("value over the item size limit", (k) => [
      ms(k("big"), "v".repeat(1024 * 1024 + 1)),
      mg(k("big"), "s"),
    ]);
    c("too large value removes the old one", (k) => [
      ms(k("big"), "old"),
      ms(k("big"), "v".repeat(1024 * 1024 + 1)),
      mg(k("big"), "s"),
    ]);
    c("too large with q still answers", (k) => [ms(k("big"), "v".repeat(1024 * 1024 + 1), ["q"]), mn]);
    c("no key", () => [line("ms")]);
    c("length with leading zeros", (k) => [ms(k("a"), "hello", [], "05"), mg(k("a"), "v")]);
    c("T with no token swallows the data block", (k) => [ms(k("a"), "hi", ["T"]), mg(k("a"), "v")]);
    c("F negative", (k) => [ms(k("a"), "v", ["F-1"]), mg(k("a"), "f")]);
    c("largest value memcached accepts", (k) => [
      ms(k("big"), "v".repeat(1024 * 1024 - 59 - k("big").length)),
      mg(k("big"), "s"),
    ]);
    c("one byte over the largest value", (k) => [
      ms(k("big"), "v".repeat(1024 * 1024 - 58 - k("big").length)),
      mg(k("big"), "s"),
    ]);
    c("split in pieces across the data block", (k) => [
      pieces(`ms ${k("a")} 5 T0`, " c\r\nhe", "llo", "\r", "\n"),
      mg(k("a"), "v"),
    ]);
    c("set via ms, read via gets", (k) => [ms(k("a"), "v", ["F3", "c"]), gets(k("a"))]);
    c("append via ms changes the CAS unique", (k) => [
      ms(k("a"), "v", ["c"]),
      ms(k("a"), "w", ["MA", "c"]),
      mg(k("a"), "c", "v"),
    ]);
  });

  table.group("md", (c) => {
    c("hit", (k) => [set(k("a"), "v"), md(k("a")), mg(k("a"), "v")]);
    c("miss", (k) => [md(k("a"))]);
    c("q hides success and not-found", (k) => [set(k("a"), "v"), md(k("a"), "q"), md(k("a"), "q"), mn]);
    c("k and O", (k) => [set(k("a"), "v"), md(k("a"), "k", "O5"), md(k("a"), "k", "O6")]);
    c("C matching deletes", (k) => [ms(k("a"), "v", ["c"]), md(k("a"), casRef(1)), mg(k("a"), "v")]);
    c("C stale is refused", (k) => [
      ms(k("a"), "v", ["c"]),
      ms(k("a"), "w"),
      md(k("a"), casRef(1)),
      mg(k("a"), "v"),
    ]);
    c("C on a miss", (k) => [md(k("a"), "C1")]);
    c("C not a number", (k) => [set(k("a"), "v"), md(k("a"), "Cnope"), mg(k("a"), "v")]);
    c("I marks stale instead of deleting", (k) => [
      ms(k("a"), "v", ["c"]),
      md(k("a"), "I"),
      mg(k("a"), "v", "c"),
      mg(k("a"), "v", "c"),
      mg(k("a"), "v", "c"),
    ]);
    c("I with T sets the TTL", (k) => [ms(k("a"), "v"), md(k("a"), "I", "T30"), mg(k("a"), "t", "v")], {
      normalize: ["ttl"],
    });
    c("T without I", (k) => [ms(k("a"), "v"), md(k("a"), "T30"), mg(k("a"), "t", "v")], {
      normalize: ["ttl"],
    });
    c("I on a miss", (k) => [md(k("a"), "I")]);
    c("stale item recached with ms clears X", (k) => [
      ms(k("a"), "v"),
      md(k("a"), "I"),
      mg(k("a"), "v"),
      ms(k("a"), "fresh"),
      mg(k("a"), "v"),
    ]);
    c("stale item with C of the invalidated unique", (k) => [
      ms(k("a"), "v"),
      md(k("a"), "I"),
      mg(k("a"), "c"),
      ms(k("a"), "fresh", [casRef(1)]),
      mg(k("a"), "v", "c"),
    ]);
    c("stale item and gets", (k) => [ms(k("a"), "v"), md(k("a"), "I"), gets(k("a"))]);
    c("I twice", (k) => [ms(k("a"), "v"), md(k("a"), "I"), md(k("a"), "I"), mg(k("a"), "v", "c")]);
    c("b decodes the key", (k) => [set(k("bin"), "v"), md(base64(k("bin")), "b", "k"), get(k("bin"))]);
    c("duplicate flag", (k) => [set(k("a"), "v"), md(k("a"), "q", "q"), mg(k("a"), "v")]);
    c("invalid flag", (k) => [set(k("a"), "v"), md(k("a"), "v"), mg(k("a"), "v")]);
    c("no key", () => [line("md")]);
    c("251-byte key", (k) => [md(k.sized(251))]);
    c("legacy delete then md", (k) => [set(k("a"), "v"), line(`delete ${k("a")}`), md(k("a"))]);
  });

  table.group("ma", (c) => {
    c("increments by 1", (k) => [set(k("a"), "5"), ma(k("a")), get(k("a"))]);
    c("miss", (k) => [ma(k("a"))]);
    c("v returns the new value", (k) => [set(k("a"), "5"), ma(k("a"), "v")]);
    c("D sets the delta", (k) => [set(k("a"), "5"), ma(k("a"), "D10", "v")]);
    c("D 2^64-1", (k) => [set(k("a"), "5"), ma(k("a"), `D${U64_MAX}`, "v")]);
    c("D 2^64 is refused", (k) => [set(k("a"), "5"), ma(k("a"), "D18446744073709551616", "v")]);
    c("D not a number", (k) => [set(k("a"), "5"), ma(k("a"), "Dx", "v")]);
    c("D negative", (k) => [set(k("a"), "5"), ma(k("a"), "D-1", "v")]);
    c("wraps at 2^64-1", (k) => [set(k("a"), U64_MAX), ma(k("a"), "v"), get(k("a"))]);
    c("MI, M+, MD and M- modes", (k) => [
      set(k("a"), "10"),
      ma(k("a"), "MI", "v"),
      ma(k("a"), "M+", "v"),
      ma(k("a"), "MD", "v"),
      ma(k("a"), "M-", "v"),
      ma(k("a"), "Mi", "v"),
      ma(k("a"), "Md", "v"),
    ]);
    c("decrement stops at 0", (k) => [set(k("a"), "3"), ma(k("a"), "MD", "D10", "v")]);
    c("decrement pads in place like decr", (k) => [set(k("a"), "100"), ma(k("a"), "MD", "v"), get(k("a"))]);
    c("decrement after an mg hit in the same read makes a new item", (k) => [
      set(k("a"), "100"),
      mg(k("a"), "v"),
      ma(k("a"), "MD", "v"),
      get(k("a")),
    ]);
    c("increment after mg with q in the same read", (k) => [
      set(k("a"), "0050"),
      mg(k("a"), "q", "k"),
      ma(k("a"), "v"),
      get(k("a")),
    ]);
    c("unknown mode", (k) => [set(k("a"), "3"), ma(k("a"), "MX", "v")]);
    c("N creates a missing counter at 0", (k) => [ma(k("a"), "N0", "v"), get(k("a"))]);
    c("N with J seeds the value", (k) => [ma(k("a"), "N0", "J100", "v"), ma(k("a"), "N0", "J100", "v")]);
    c("N with J and decrement mode", (k) => [ma(k("a"), "N0", "J100", "MD", "v")]);
    c(
      "N sets the TTL of the new counter",
      (k) => [ma(k("a"), "N1000", "J5", "t", "v"), mg(k("a"), "t", "v")],
      { normalize: ["ttl"] },
    );
    c("J without N", (k) => [ma(k("a"), "J5", "v")]);
    c("J of 2^64-1", (k) => [ma(k("a"), "N0", `J${U64_MAX}`, "v")]);
    c("J not a number", (k) => [ma(k("a"), "N0", "Jx", "v")]);
    c("N not a number", (k) => [ma(k("a"), "Nx", "v")]);
    c("q hides success, shows a miss", (k) => [
      set(k("a"), "1"),
      ma(k("a"), "q"),
      ma(k("b"), "q"),
      ma(k("a"), "q", "v"),
      mn,
    ]);
    c(
      "t returns the TTL",
      (k) => [set(k("a"), "1", { exptime: 1000 }), ma(k("a"), "t"), set(k("b"), "1"), ma(k("b"), "t")],
      {
        normalize: ["ttl"],
      },
    );
    c("T updates the TTL", (k) => [set(k("a"), "1"), ma(k("a"), "T1000", "t"), mg(k("a"), "t")], {
      normalize: ["ttl"],
    });
    c(
      "T is lost when the value outgrows its stored width (memcached sets it on the replaced item)",
      (k) => [
        set(k("a"), "5", { exptime: 1000 }),
        ma(k("a"), "D100", "T30", "t"),
        mg(k("a"), "t"),
        set(k("b"), "5", { exptime: 1000 }),
        ma(k("b"), "D1", "T30", "t"),
        mg(k("b"), "t"),
      ],
      { normalize: ["ttl"] },
    );
    c("c returns the new CAS unique", (k) => [
      set(k("a"), "1"),
      mg(k("a"), "c"),
      ma(k("a"), "c"),
      mg(k("a"), "c"),
    ]);
    c("C matching increments", (k) => [set(k("a"), "1"), mg(k("a"), "c"), ma(k("a"), casRef(1), "v")]);
    c("C stale is refused", (k) => [
      set(k("a"), "1"),
      mg(k("a"), "c"),
      set(k("a"), "2"),
      ma(k("a"), casRef(1), "v"),
      get(k("a")),
    ]);
    c("k and O", (k) => [set(k("a"), "1"), ma(k("a"), "k", "O3", "v"), ma(k("b"), "k", "O4")]);
    c("non-numeric value", (k) => [set(k("a"), "abc"), ma(k("a"), "v")]);
    c("value past 2^64-1", (k) => [set(k("a"), "18446744073709551616"), ma(k("a"), "v")]);
    c("b decodes the key", (k) => [set(k("bin"), "4"), ma(base64(k("bin")), "b", "v", "k")]);
    c("duplicate flag", (k) => [set(k("a"), "1"), ma(k("a"), "v", "v")]);
    c("invalid flag", (k) => [set(k("a"), "1"), ma(k("a"), "f")]);
    c("no key", () => [line("ma")]);
    c("251-byte key", (k) => [ma(k.sized(251))]);
    c("N with q creates silently", (k) => [ma(k("a"), "N0", "J3", "q"), mg(k("a"), "v"), mn]);
    c("on a value with trailing spaces", (k) => [set(k("a"), "7   "), ma(k("a"), "v"), get(k("a"))]);
    c("expired counter with N is recreated", (k) => [
      set(k("a"), "50", { exptime: -1 }),
      ma(k("a"), "N0", "J7", "v"),
    ]);
    c(
      "all response flags",
      (k) => [set(k("a"), "9", { exptime: 1000 }), ma(k("a"), "O1", "k", "c", "t", "v", "MI", "D2")],
      {
        normalize: ["ttl"],
      },
    );
  });

  table.group("mn", (c) => {
    c("alone", () => [mn]);
    c("twice", () => [mn, mn]);
    c("with an argument", () => [line("mn extra")]);
    c("after a quiet miss", (k) => [mg(k("a"), "q", "v"), mn, sync, mg(k("a"), "q", "v"), mn]);
  });

  table.group("me", (c) => {
    const normalize = ["ttl", "metaDebugInternals"] as const;
    c("hit", (k) => [set(k("a"), "v"), me(k("a"))], { normalize: [...normalize] });
    c(
      "hit after a fetch, with TTL",
      (k) => [set(k("a"), "value", { exptime: 1000 }), get(k("a")), me(k("a"))],
      {
        normalize: [...normalize],
      },
    );
    c("miss", (k) => [me(k("a"))]);
    c("expired item", (k) => [set(k("a"), "v", { exptime: -1 }), me(k("a"))]);
    c("extra flag", (k) => [set(k("a"), "v"), me(k("a"), "T")], { normalize: [...normalize] });
    c("b decodes the key", (k) => [set(k("bin"), "v"), me(base64(k("bin")), "b")], {
      normalize: [...normalize],
    });
    c("no key", () => [line("me")]);
    c("251-byte key", (k) => [me(k.sized(251))]);
  });

  table.group("mixed", (c) => {
    c("text set, meta get, meta set, text gets", (k) => [
      set(k("a"), "one", { flags: 2 }),
      mg(k("a"), "v", "f", "c"),
      ms(k("a"), "two", ["F3"]),
      gets(k("a")),
    ]);
    c("incr then ma then decr", (k) => [
      set(k("a"), "1"),
      line(`incr ${k("a")} 2`),
      ma(k("a"), "D3", "v"),
      line(`decr ${k("a")} 1`),
    ]);
    c("quiet commands between text ones", (k) => [
      ms(k("a"), "1", ["q"]),
      line(`get ${k("a")}`),
      md(k("a"), "q"),
      mg(k("a"), "q", "v"),
      line(`get ${k("a")}`),
      mn,
    ]);
  });
}
