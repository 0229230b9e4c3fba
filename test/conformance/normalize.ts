// Reads a reply stream as lines and data blocks, masks the fields a case declares as legitimately
// different (each with its reason), ranks CAS uniques, and renders readable diffs.

/** A reply cut into protocol units: text lines, and data blocks announced by VALUE or VA lines. */
export type Segment =
  { kind: "line"; text: string } | { kind: "data"; text: string } | { kind: "rest"; text: string };

const VALUE_LINE = /^VALUE [^ ]+ \d+ (\d+)(?: \d+)?$/;
const VA_LINE = /^VA (\d+)(?: |$)/;
const META_LINE = /^(?:HD|VA|EN|NF|NS|EX)(?: |$)/;

/** Cuts bytes into segments; a data block is taken by its announced length, as a client would. */
export function segments(bytes: Buffer): Segment[] {
  const text = bytes.toString("latin1");
  const out: Segment[] = [];
  let at = 0;
  while (at < text.length) {
    const eol = text.indexOf("\r\n", at);
    if (eol < 0) {
      out.push({ kind: "rest", text: text.slice(at) });
      break;
    }
    const lineText = text.slice(at, eol);
    out.push({ kind: "line", text: lineText });
    at = eol + 2;
    const announced = VALUE_LINE.exec(lineText) ?? VA_LINE.exec(lineText);
    if (announced) {
      const length = Number(announced[1]);
      if (text.length >= at + length + 2 && text.startsWith("\r\n", at + length)) {
        out.push({ kind: "data", text: text.slice(at, at + length) });
        at += length + 2;
      }
    }
  }
  return out;
}

/** Where a line carries a CAS unique: gets/gats VALUE lines, meta `c` tokens, and `me`'s cas=. */
function casTokenPattern(lineText: string): RegExp | undefined {
  if (lineText.startsWith("VALUE ")) return /^(VALUE [^ ]+ \d+ \d+ )(\d+)$/;
  if (META_LINE.test(lineText)) return /( c)(\d+)(?= |$)/g;
  if (lineText.startsWith("ME ")) return /( cas=)(\d+)(?= |$)/g;
  return undefined;
}

/** Distinct non-zero CAS uniques in the order they first appear. */
export function casValues(bytes: Buffer): bigint[] {
  const seen: bigint[] = [];
  for (const segment of segments(bytes)) {
    if (segment.kind !== "line") continue;
    const pattern = casTokenPattern(segment.text);
    if (!pattern) continue;
    for (const match of segment.text.matchAll(new RegExp(pattern.source, "g"))) {
      const value = BigInt(match[2]!);
      if (value !== 0n && !seen.includes(value)) seen.push(value);
    }
  }
  return seen;
}

/**
 * CAS policy for the whole suite: every non-zero CAS unique is replaced by its rank among the
 * distinct uniques of the same case ("#1" the smallest). Why: both servers serve the whole table in
 * one run, so absolute uniques depend on every earlier case; one extra increment in one case would
 * change every later unique. Uniques are opaque to clients: what a client can rely on, and what the
 * rank keeps, is which replies share a unique, which changed, and their order. 0 (memcached's
 * "no unique" in `ms c` on failure) stays literal. MEMIPC_CONFORMANCE_EXACT_CAS=1 compares the
 * absolute numbers instead (both servers start fresh and run the same commands in the same order).
 */
export function rankCas(lines: Segment[]): Segment[] {
  const all: bigint[] = [];
  for (const s of lines) {
    if (s.kind !== "line") continue;
    const pattern = casTokenPattern(s.text);
    if (!pattern) continue;
    for (const match of s.text.matchAll(new RegExp(pattern.source, "g"))) {
      const value = BigInt(match[2]!);
      if (value !== 0n && !all.includes(value)) all.push(value);
    }
  }
  const ranked = [...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return lines.map((s) => {
    if (s.kind !== "line") return s;
    const pattern = casTokenPattern(s.text);
    if (!pattern) return s;
    const text = s.text.replace(new RegExp(pattern.source, "g"), (whole, head: string, digits: string) => {
      const value = BigInt(digits);
      return value === 0n ? whole : `${head}#${ranked.indexOf(value) + 1}`;
    });
    return { kind: "line", text };
  });
}

/** A count of seconds that may be off by one between the servers, kept to the nearest ten. */
function roughSeconds(digits: string): string {
  const value = Number(digits);
  if (value === -1) return "-1";
  return `~${Math.round(value / 10) * 10 + 0}`;
}

interface Normalizer {
  readonly reason: string;
  apply(text: string): string;
}

export const NORMALIZERS = {
  ttl: {
    reason:
      "remaining TTL (mg/ma `t`), seconds since last access (mg `l`) and `me` exp=/la= count whole seconds " +
      "on each server's own clock, which ticks at a different instant on each; two replies to the same " +
      "script can honestly be one second apart. Values are kept to the nearest ten, so cases use TTLs " +
      "that are multiples of ten (a real difference of a whole TTL still shows); -1 (no expiry) stays.",
    apply(text) {
      if (META_LINE.test(text)) {
        return text.replace(
          / ([tl])(-?\d+)(?= |$)/g,
          (_, flag: string, n: string) => ` ${flag}${roughSeconds(n)}`,
        );
      }
      if (text.startsWith("ME ")) {
        return text.replace(
          / (exp|la)=(-?\d+)(?= |$)/g,
          (_, field: string, n: string) => ` ${field}=${roughSeconds(n)}`,
        );
      }
      return text;
    },
  },
  version: {
    reason:
      "the version string names each implementation's own release; only the reply's shape " +
      "(`VERSION <one token>`) must match",
    apply: (text) => text.replace(/^VERSION \S+$/, "VERSION <version>"),
  },
  statsValues: {
    reason:
      "stats values are process facts (pid, uptime, rusage, memory, connection counts, thread counts) " +
      "that no two processes share; the names, their order and the END line are compared",
    apply: (text) => text.replace(/^STAT (\S+) .*$/, "STAT $1 <value>"),
  },
  metaDebugInternals: {
    reason:
      "`me` reports memcached's slab class id (cls=) and its allocator's per-item byte count (size=, " +
      "with its 48-byte header); they describe the slab allocator, which the embedded store does not have",
    apply: (text) =>
      text.startsWith("ME ")
        ? text.replace(/ cls=\d+/, " cls=<slab class>").replace(/ size=\d+/, " size=<bytes>")
        : text,
  },
} as const satisfies Record<string, Normalizer>;

export type NormalizerName = keyof typeof NORMALIZERS;

export interface NormalizeOptions {
  exactCas: boolean;
}

/** Segments after the case's normalizers and the suite's CAS policy. */
export function normalize(
  bytes: Buffer,
  names: readonly NormalizerName[],
  options: NormalizeOptions,
): Segment[] {
  let out = segments(bytes).map((s): Segment => {
    if (s.kind !== "line") return s;
    let text = s.text;
    for (const name of names) text = NORMALIZERS[name].apply(text);
    return { kind: "line", text };
  });
  if (!options.exactCas) out = rankCas(out);
  return out;
}

/** Bytes as one readable line: \r \n and other control or high bytes escaped. */
export function escapeBytes(text: string): string {
  let out = "";
  for (const ch of text) {
    const code = ch.charCodeAt(0);
    if (ch === "\r") out += "\\r";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\\") out += "\\\\";
    else if (code < 0x20 || code >= 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return out;
}

/** One row per segment, each ending in its escaped \r\n; long data blocks are shortened. */
export function render(segs: readonly Segment[]): string[] {
  return segs.map((s) => {
    if (s.kind === "rest") return `${escapeBytes(s.text)}   (no line end)`;
    const body = s.kind === "data" && s.text.length > 200 ? shorten(s.text) : escapeBytes(s.text);
    return `${s.kind === "data" ? "  data: " : ""}${body}\\r\\n`;
  });
}

function shorten(text: string): string {
  return `${escapeBytes(text.slice(0, 60))}…(${text.length} bytes in all)…${escapeBytes(text.slice(-20))}`;
}

/** A readable two-column-free diff: common rows, then where the replies part. */
export function diffRows(expected: readonly string[], actual: readonly string[]): string {
  let first = 0;
  while (first < expected.length && first < actual.length && expected[first] === actual[first]) first++;
  const rows: string[] = [];
  const from = Math.max(0, first - 3);
  if (from > 0) rows.push(`    … ${from} equal rows`);
  for (let i = from; i < first; i++) rows.push(`    ${expected[i]}`);
  const tail = 12;
  for (const row of expected.slice(first, first + tail)) rows.push(`  - ${row}`);
  if (expected.length - first > tail) rows.push(`  - … ${expected.length - first - tail} more`);
  for (const row of actual.slice(first, first + tail)) rows.push(`  + ${row}`);
  if (actual.length - first > tail) rows.push(`  + … ${actual.length - first - tail} more`);
  return rows.join("\n");
}
