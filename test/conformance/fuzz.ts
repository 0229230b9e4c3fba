// Seeded generator of memcached command streams for the randomized differential run: valid commands
// over a small key space, wrong argument counts, bad numbers, garbage lines and meta flags, built so
// that every stream stays in step with the sentinel (no data block is ever left half sent) and so that
// nothing in the replies depends on time (no expiry inside a run, TTLs that are multiples of ten).
import { casValues, type NormalizerName } from "./normalize.js";
import { toSteps, type Dynamic, type ScriptItem, type Step } from "./script.js";

/** mulberry32: a small, fast, well-spread 32-bit PRNG; the same seed gives the same streams. */
export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(below: number): number {
    return Math.floor(this.next() * below);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** One generated command: how to render it under a key prefix, and a short label for reports. */
export interface FuzzCommand {
  readonly label: string;
  render(prefix: string): ScriptItem[];
}

export const FUZZ_NORMALIZERS: readonly NormalizerName[] = ["ttl", "version", "metaDebugInternals"];

const KEYS = ["a", "b", "c", "d", "e"];
const FLAGS = ["0", "1", "42", "65535", "4294967295"];
// No TTL here can lapse during a run, and remaining TTLs are multiples of ten (see the ttl normalizer).
const EXPTIMES = ["0", "0", "-1", "1000", "100000", "2592000", "2592001", "1000000000"];
// No negative TTL in meta flags: memcached then reports a remaining TTL (`t`) computed from its own
// uptime (an unsigned wrap), which no other server can share; the case table covers negative TTLs.
const META_TTLS = ["30", "100", "1000", "0"];
const RECACHE_TOKENS = ["10", "50", "500", "5000"];
const VALUES = [
  "",
  "v",
  "hello",
  "0",
  "1",
  "42",
  "007",
  "  5",
  "5 ",
  "99",
  "100",
  "18446744073709551615",
  "abc",
  "a\r\nb",
  "x y",
];
const DELTAS = ["0", "1", "5", "100", "18446744073709551615", "18446744073709551616", "-1", "abc", "+3"];
const BAD_NUMBERS = ["abc", "-1", "1x", "", "99999999999999999999", "+", "0x10", "4294967296"];
const GARBAGE_WORDS = [
  "bogus",
  "SET",
  "Get",
  "m",
  "mgg",
  "ms5",
  "stats_",
  "0",
  "-",
  "\x00",
  "\x01\x02",
  "\xff\xfe",
  "\t",
  "é",
];

function value(rng: Random): string {
  return rng.chance(0.1) ? "z".repeat(1 + rng.int(300)) : rng.pick(VALUES);
}

/** A CAS unique seen earlier in the run (by position, so it resolves on both servers), or a made-up one. */
function casToken(rng: Random): string | Dynamic {
  if (rng.chance(0.2)) return rng.pick(["0", "1", "999999999", "18446744073709551615", "abc"]);
  const nth = rng.int(4);
  const fromEnd = rng.chance(0.5);
  return (context) => {
    const seen = casValues(context.replies);
    if (seen.length === 0) return "12345";
    const index = fromEnd ? Math.max(0, seen.length - 1 - nth) : Math.min(nth, seen.length - 1);
    return String(seen[index]);
  };
}

/**
 * A key from the small key space, now and then one byte too long or with a control byte. Text
 * retrieval commands never get the long key: memcached then drops every reply queued in the same
 * read, which depends on how its reads fall (the case table pins that behaviour down instead).
 */
function keyOf(rng: Random, prefix: string, allowLong = true): string {
  if (rng.chance(0.03) && allowLong) return prefix + "k".repeat(251 - prefix.length);
  if (rng.chance(0.02)) return `${prefix}c\x01`;
  return prefix + rng.pick(KEYS);
}

/** Joins items into one piece when all are text, else keeps the dynamic parts apart. */
function command(label: string, render: (prefix: string) => (string | Dynamic)[]): FuzzCommand {
  return {
    label,
    render(prefix) {
      const parts = render(prefix);
      if (parts.every((p) => typeof p === "string")) return [parts.join("")];
      const dynamicParts = parts;
      const whole: Dynamic = (context) =>
        dynamicParts.map((p) => (typeof p === "string" ? p : String(p(context)))).join("");
      return [whole];
    },
  };
}

/** A data block of the declared length, or one that is deliberately off, kept in step with the stream. */
function dataBlock(rng: Random, data: string): { declared: string; block: string } {
  const roll = rng.int(20);
  // Shorter than declared, made up by the next line; that line ends in \r\n, so a server that refuses
  // the command line reads it as a line of its own and stays in step.
  if (roll === 0) return { declared: String(data.length + 3), block: `${data}\r\nq\r\n` };
  if (roll === 1) return { declared: String(Math.max(0, data.length - 1)), block: `${data}\r\n` }; // longer than declared
  if (roll === 2) return { declared: rng.pick(BAD_NUMBERS), block: `${data}\r\n` };
  if (roll === 3) return { declared: String(data.length), block: `${data}\n` + "\r\n" }; // wrong terminator, then an empty line
  return { declared: String(data.length), block: `${data}\r\n` };
}

function storage(rng: Random): FuzzCommand {
  const verb = rng.pick(["set", "set", "add", "replace", "append", "prepend", "cas"]);
  const flags = rng.chance(0.05) ? rng.pick(BAD_NUMBERS) : rng.pick(FLAGS);
  const exptime = rng.chance(0.05) ? rng.pick(BAD_NUMBERS) : rng.pick(EXPTIMES);
  const { declared, block } = dataBlock(rng, value(rng));
  const unique = verb === "cas" ? casToken(rng) : undefined;
  const noreply = rng.chance(0.2) ? " noreply" : "";
  // 0: a token short (flags, or cas's unique: dropping another would shift a number into the length),
  // 1: a stray token after the last one.
  const shape = rng.int(20);
  const keySeed = rng.next();
  return command(`${verb}`, (prefix) => {
    const key = keyOf(new Random(Math.floor(keySeed * 2 ** 32)), prefix);
    const dropFlags = shape === 0 && unique === undefined;
    const head = `${verb} ${key} ${dropFlags ? "" : `${flags} `}${exptime} ${declared}`;
    const tail = `${noreply}${shape === 1 ? " extra" : ""}\r\n${block}`;
    return unique === undefined || shape === 0 ? [head, tail] : [head, " ", unique, tail];
  });
}

function retrieval(rng: Random): FuzzCommand {
  const verb = rng.pick(["get", "gets", "gat", "gats"]);
  const count = rng.chance(0.05) ? 0 : 1 + rng.int(5);
  const exptime = verb.startsWith("gat")
    ? `${rng.chance(0.1) ? rng.pick(BAD_NUMBERS) : rng.pick(EXPTIMES)} `
    : "";
  const seeds = Array.from({ length: count }, () => rng.next());
  return command(verb, (prefix) => [
    `${verb} ${exptime}${seeds.map((s) => keyOf(new Random(Math.floor(s * 2 ** 32)), prefix, false)).join(" ")}\r\n`,
  ]);
}

function simple(rng: Random): FuzzCommand {
  const kind = rng.pick(["delete", "incr", "decr", "touch", "incr", "decr"]);
  const argument =
    kind === "delete"
      ? rng.pick(["", "", "", " 0", " 5"])
      : kind === "touch"
        ? ` ${rng.chance(0.1) ? rng.pick(BAD_NUMBERS) : rng.pick(EXPTIMES)}`
        : ` ${rng.pick(DELTAS)}`;
  const noreply = rng.chance(0.2) ? " noreply" : "";
  const extra = rng.chance(0.05) ? " extra" : "";
  const keySeed = rng.next();
  return command(kind, (prefix) => [
    `${kind} ${keyOf(new Random(Math.floor(keySeed * 2 ** 32)), prefix)}${argument}${noreply}${extra}\r\n`,
  ]);
}

function metaFlags(
  rng: Random,
  pool: readonly (() => string | Dynamic)[],
  max: number,
): (string | Dynamic)[] {
  const count = rng.int(max + 1);
  const flags: (string | Dynamic)[] = [];
  for (let i = 0; i < count; i++) flags.push(rng.pick(pool)());
  if (rng.chance(0.05)) flags.push(rng.pick(["!", "vv", "Z", "@x", "E1"]));
  return flags;
}

function meta(rng: Random): FuzzCommand {
  const verb = rng.pick(["mg", "mg", "ms", "ms", "md", "ma", "ma", "mn", "me"]);
  const token = (letter: string, values: readonly string[]) => () => `${letter}${rng.pick(values)}`;
  const opaque = () => `O${rng.pick(["1", "op", "x".repeat(31), "x".repeat(40)])}`;
  const cas = () => {
    const t = casToken(rng);
    return typeof t === "string" ? `C${t}` : (((context) => `C${t(context)}`) satisfies Dynamic);
  };
  const simpleFlag = (letter: string) => () => letter;
  type FlagMaker = () => string | Dynamic;
  const simpleFlags = (letters: string): FlagMaker[] => letters.split("").map(simpleFlag);
  const pools: Record<string, FlagMaker[]> = {
    mg: [
      ...simpleFlags("vvcfhklqstub"),
      opaque,
      token("N", META_TTLS),
      token("R", RECACHE_TOKENS),
      token("T", META_TTLS),
    ],
    ms: [
      ...simpleFlags("ckqIb"),
      opaque,
      token("F", ["0", "7", "4294967295", "x"]),
      token("T", META_TTLS),
      token("M", ["E", "A", "P", "R", "S", "X", "e"]),
      cas,
    ],
    md: [...simpleFlags("qkIb"), opaque, token("T", META_TTLS), cas],
    ma: [
      ...simpleFlags("qtcvvk"),
      opaque,
      token("N", META_TTLS),
      token("J", ["0", "10", "18446744073709551615", "x"]),
      token("D", DELTAS),
      token("T", META_TTLS),
      token("M", ["I", "+", "D", "-", "X"]),
      cas,
    ],
    me: [simpleFlag("b")],
    mn: [],
  };
  const flags = metaFlags(rng, pools[verb]!, verb === "mn" ? 0 : 6);
  const base64Key = flags.includes("b");
  const keySeed = rng.next();
  const data = verb === "ms" ? dataBlock(rng, value(rng)) : undefined;
  return command(verb, (prefix) => {
    if (verb === "mn") return ["mn\r\n"];
    const plain = keyOf(new Random(Math.floor(keySeed * 2 ** 32)), prefix);
    const key = base64Key ? Buffer.from(plain, "latin1").toString("base64") : plain;
    const parts: (string | Dynamic)[] = [`${verb} ${key}${data ? ` ${data.declared}` : ""}`];
    for (const flag of flags) parts.push(" ", flag);
    parts.push(`\r\n${data ? data.block : ""}`);
    return parts;
  });
}

function other(rng: Random): FuzzCommand {
  const line = rng.pick([
    "version",
    "verbosity 0",
    "verbosity 1 noreply",
    "verbosity",
    "flush_all",
    "flush_all 0",
    "flush_all -1",
    "flush_all noreply",
    "flush_all abc",
    "",
    "   ",
  ]);
  return command(line.split(" ")[0] || "empty line", () => [`${line}\r\n`]);
}

function garbage(rng: Random): FuzzCommand {
  const words = Array.from({ length: 1 + rng.int(4) }, () =>
    rng.chance(0.5)
      ? rng.pick(GARBAGE_WORDS)
      : // no \n (it would end the line early) and no 0x80 (as a connection's first byte it selects the binary protocol)
        String.fromCharCode(
          ...Array.from({ length: 1 + rng.int(6) }, () => 1 + rng.int(254)).filter(
            (b) => b !== 10 && b !== 0x80,
          ),
        ),
  );
  const text = words.join(rng.chance(0.8) ? " " : "  ");
  return command("garbage", () => [`${text}\r\n`]);
}

export function generateCommand(rng: Random): FuzzCommand {
  const roll = rng.int(100);
  if (roll < 25) return storage(rng);
  if (roll < 40) return retrieval(rng);
  if (roll < 55) return simple(rng);
  if (roll < 88) return meta(rng);
  if (roll < 94) return other(rng);
  return garbage(rng);
}

/** A round: commands, and where the stream is synced (the runner reads to the sentinel there). */
export interface FuzzRound {
  readonly commands: readonly FuzzCommand[];
  /** Indexes of commands after which the script syncs. */
  readonly syncs: ReadonlySet<number>;
  /** Commands sent in several writes, with where to cut them (fractions of their length). */
  readonly split: ReadonlyMap<number, readonly number[]>;
}

export function generateRound(rng: Random, length: number): FuzzRound {
  const commands = Array.from({ length }, () => generateCommand(rng));
  const syncs = new Set<number>();
  const split = new Map<number, number[]>();
  commands.forEach((_, i) => {
    if (rng.chance(0.2)) syncs.add(i);
    if (rng.chance(0.1))
      split.set(
        i,
        Array.from({ length: 1 + rng.int(3) }, () => rng.next()),
      );
  });
  return { commands, syncs, split };
}

/** The round as steps, with every key under `prefix` (a fresh prefix gives a fresh key space). */
export function roundSteps(round: FuzzRound, prefix: string): Step[] {
  const items: ScriptItem[] = [];
  round.commands.forEach((cmd, i) => {
    const rendered = cmd.render(prefix);
    const cuts = round.split.get(i);
    if (cuts && rendered.every((p) => typeof p === "string")) {
      // Cut anywhere: inside a token, between \r and \n, inside a data block.
      const text = rendered.join("");
      const at = [...new Set(cuts.map((f) => Math.floor(f * text.length)))]
        .filter((n) => n > 0)
        .sort((a, b) => a - b);
      const parts = [0, ...at]
        .map((from, j) => text.slice(from, at[j] ?? text.length))
        .filter((p) => p !== "");
      items.push({ kind: "pieces", pieces: parts });
    } else items.push(...rendered);
    if (round.syncs.has(i)) items.push({ kind: "sync" });
  });
  return toSteps(items);
}

/** The same round with only the commands at `keep`. */
export function subRound(round: FuzzRound, keep: readonly number[]): FuzzRound {
  const commands = keep.map((i) => round.commands[i]!);
  const syncs = new Set<number>();
  const split = new Map<number, readonly number[]>();
  keep.forEach((old, i) => {
    if (round.syncs.has(old)) syncs.add(i);
    const cuts = round.split.get(old);
    if (cuts) split.set(i, cuts);
  });
  return { commands, syncs, split };
}
