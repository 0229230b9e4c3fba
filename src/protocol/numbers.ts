// Number tokens read the way memcached reads them (C's strtol family on a 64-bit machine), so that odd
// inputs such as " 5", "+5", "5\t", "-0" or an over-long flags value get memcached's exact answer.

const U64_MAX = (1n << 64n) - 1n;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

/** C's isspace in the "C" locale. */
export function isCSpace(code: number): boolean {
  return code === 32 || (code >= 9 && code <= 13);
}

interface Scanned {
  negative: boolean;
  magnitude: bigint;
  /** Index just past the last digit. */
  end: number;
}

/** Leading blanks, a sign, decimal digits; undefined when no digit follows. */
function scan(text: string): Scanned | undefined {
  let i = 0;
  const n = text.length;
  while (i < n && isCSpace(text.charCodeAt(i))) i++;
  let negative = false;
  const sign = text.charCodeAt(i);
  if (sign === 43 /* + */ || sign === 45 /* - */) {
    negative = sign === 45;
    i++;
  }
  const first = i;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) break;
    i++;
  }
  if (i === first) return undefined;
  return { negative, magnitude: BigInt(text.slice(first, i)), end: i };
}

/** What follows the number must be a blank or the end, as memcached's safe_strto* insist. */
function endsCleanly(text: string, end: number): boolean {
  return end === text.length || isCSpace(text.charCodeAt(end)) || text.charCodeAt(end) === 0;
}

/** Fast path: plain digits that fit a double exactly. */
function plainDigits(text: string): number {
  const n = text.length;
  if (n === 0 || n > 15) return -1;
  let value = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    value = value * 10 + c;
  }
  return value;
}

/** strtoull semantics: a minus sign negates modulo 2^64; out of range fails. */
function strtoull(text: string): bigint | undefined {
  const s = scan(text);
  if (!s || !endsCleanly(text, s.end)) return undefined;
  if (s.magnitude > U64_MAX) return undefined;
  const value = s.negative ? (U64_MAX + 1n - s.magnitude) & U64_MAX : s.magnitude;
  // memcached refuses a minus sign whenever the result looks negative as a signed number.
  if (value > I64_MAX && text.includes("-")) return undefined;
  return value;
}

/** memcached's safe_strtoull: an unsigned 64-bit number, or undefined. */
export function parseU64(text: string): bigint | undefined {
  const fast = plainDigits(text);
  if (fast >= 0) return BigInt(fast);
  return strtoull(text);
}

/** memcached's safe_strtoul: unsigned long parsed, then truncated to 32 bits. */
export function parseU32(text: string): number | undefined {
  const fast = plainDigits(text);
  if (fast >= 0) return fast % 4294967296;
  const value = strtoull(text);
  return value === undefined ? undefined : Number(value & 0xffffffffn);
}

/** memcached's safe_strtol: signed long parsed, then truncated to 32 bits. */
export function parseI32(text: string): number | undefined {
  const fast = plainDigits(text);
  if (fast >= 0) return fast | 0;
  const s = scan(text);
  if (!s || !endsCleanly(text, s.end)) return undefined;
  const value = s.negative ? -s.magnitude : s.magnitude;
  if (value > I64_MAX || value < I64_MIN) return undefined;
  return Number(BigInt.asIntN(32, value));
}

/** The number stored in an item, read as incr/decr read it: digits up to the first blank. */
export function parseStoredU64(value: Buffer): bigint | undefined {
  // The stored bytes are followed by "\r\n" in memcached, which ends the number like a blank.
  const fast = value.length <= 15 ? plainDigits(value.toString("latin1", 0, value.length)) : -1;
  if (fast >= 0) return BigInt(fast);
  return strtoull(value.toString("latin1", 0, value.length) + "\r\n");
}
