// Client side of the codec: every request a client sends, as bytes ready for socket.write. Arguments are
// checked here, the last step before the wire, so a bad key or number can never desynchronise a connection.
import { ClientError } from "../errors.js";
import { keyLength } from "./keys.js";

/** Values up to this many bytes are copied into the request buffer; larger ones go out as their own buffer. */
export const INLINE_VALUE_LIMIT = 16 * 1024; // bytes

/** An item's data: bytes as given, or a string sent as UTF-8. */
export type Value = string | Uint8Array;

/**
 * What value-carrying encoders return: one Buffer, or for values over INLINE_VALUE_LIMIT the buffers to write
 * in order (header, the value itself uncopied, \r\n). Do not modify the value until it has been written.
 */
export type Encoded = Buffer | Buffer[];

export type StoreCommand = "set" | "add" | "replace" | "append" | "prepend";

export interface StoreOptions {
  /** Client flags stored with the item, a 32-bit unsigned number (default 0). */
  flags?: number;
  /** Seconds to live: 0 never expires, up to 30 days is relative, more is a unix time, negative is expired. */
  exptime?: number;
  /** Ask the server not to answer; errors in a malformed request may still be answered. */
  noreply?: boolean;
}

export interface NoreplyOptions {
  noreply?: boolean;
}

export interface FlushAllOptions {
  /** Seconds from now at which to invalidate everything (default now). */
  delay?: number;
  noreply?: boolean;
}

// Requests that never change are built once; the returned Buffers are shared, so never write into them.
const CRLF = Buffer.from("\r\n", "latin1");
const VERSION = Buffer.from("version\r\n", "latin1");
const STATS = Buffer.from("stats\r\n", "latin1");
const QUIT = Buffer.from("quit\r\n", "latin1");
const MN = Buffer.from("mn\r\n", "latin1");

const MAX_UINT32 = 0xffffffff;
const MAX_UINT64 = 0xffffffffffffffffn;
const META_FLAG = /^[A-Za-z][\x21-\x7e]*$/;
const STATS_ARG = /^[\x21-\x7e]+(?: [\x21-\x7e]+)*$/;

/** `get <key>*`: one VALUE frame per key found, then END. */
export function encodeGet(keys: string | readonly string[]): Buffer {
  return retrieval("get ", keys);
}

/** `gets <key>*`: like get, with each item's cas unique. */
export function encodeGets(keys: string | readonly string[]): Buffer {
  return retrieval("gets ", keys);
}

/** `gat <exptime> <key>*`: get and touch. (memcached reads only get and gets lines over 2048 bytes.) */
export function encodeGat(exptime: number, keys: string | readonly string[]): Buffer {
  return retrieval(`gat ${exptimeText(exptime)} `, keys);
}

/** `gats <exptime> <key>*`: gat with cas uniques. */
export function encodeGats(exptime: number, keys: string | readonly string[]): Buffer {
  return retrieval(`gats ${exptimeText(exptime)} `, keys);
}

/** `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]` and the data block. */
export function encodeStore(
  command: StoreCommand,
  key: string,
  value: Value,
  options?: StoreOptions,
): Encoded {
  if (!STORE_COMMANDS.has(command)) {
    throw new ClientError(
      `unknown storage command ${JSON.stringify(command)}: use set, add, replace, append or prepend`,
    );
  }
  return storage(command, key, value, options, "");
}

/** `cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]` and the data block. */
export function encodeCas(key: string, value: Value, cas: bigint | number, options?: StoreOptions): Encoded {
  return storage("cas", key, value, options, ` ${uint64Text(cas, "cas unique")}`);
}

/** `delete <key> [noreply]`: DELETED or NOT_FOUND. */
export function encodeDelete(key: string, options?: NoreplyOptions): Buffer {
  const bytes = keyLength(key, false);
  return line(`delete ${key}${noreply(options)}\r\n`, bytes === key.length);
}

/** `incr <key> <delta> [noreply]`: the new value as a NUMBER frame, or NOT_FOUND. */
export function encodeIncr(key: string, delta: bigint | number, options?: NoreplyOptions): Buffer {
  return arithmetic("incr ", key, delta, options);
}

/** `decr <key> <delta> [noreply]`: the new value (never below 0) as a NUMBER frame, or NOT_FOUND. */
export function encodeDecr(key: string, delta: bigint | number, options?: NoreplyOptions): Buffer {
  return arithmetic("decr ", key, delta, options);
}

/** `touch <key> <exptime> [noreply]`: TOUCHED or NOT_FOUND. */
export function encodeTouch(key: string, exptime: number, options?: NoreplyOptions): Buffer {
  const bytes = keyLength(key, false);
  return line(`touch ${key} ${exptimeText(exptime)}${noreply(options)}\r\n`, bytes === key.length);
}

/** `flush_all [delay] [noreply]`: OK. */
export function encodeFlushAll(options?: FlushAllOptions): Buffer {
  const delay = options?.delay === undefined ? "" : ` ${wholeText(options.delay, "flush_all delay")}`;
  return line(`flush_all${delay}${noreply(options)}\r\n`, true);
}

/** `version`: VERSION. The Buffer is shared: do not write into it. */
export function encodeVersion(): Buffer {
  return VERSION;
}

/** `verbosity <level> [noreply]`: OK. */
export function encodeVerbosity(level: number, options?: NoreplyOptions): Buffer {
  return line(`verbosity ${wholeText(level, "verbosity level")}${noreply(options)}\r\n`, true);
}

/** `stats [arg]` (e.g. "settings", "items", "slabs", "reset"): STAT frames then END, or RESET. */
export function encodeStats(arg?: string): Buffer {
  if (arg === undefined || arg === "") return STATS;
  if (!STATS_ARG.test(arg)) {
    throw new ClientError(
      `stats argument ${JSON.stringify(arg)} is malformed: give printable words separated by single spaces, e.g. "settings" or "slabs"`,
    );
  }
  return line(`stats ${arg}\r\n`, true);
}

/** `quit`: the server closes the connection without answering. The Buffer is shared: do not write into it. */
export function encodeQuit(): Buffer {
  return QUIT;
}

/**
 * `mg <key> <flags>*` (meta get). Flags are written as given, e.g. `["v", "c", "T30", "Oabc"]`; with `"b"`
 * the key must be base64 (see toBase64Key). Answers VA, HD or EN (nothing for a miss with `q`).
 */
export function encodeMg(key: string, flags?: readonly string[]): Buffer {
  return meta("mg ", key, flags);
}

/** `ms <key> <datalen> <flags>*` and the data block (meta set; mode flag `MS|E|A|P|R`). Answers HD, NS, EX or NF. */
export function encodeMs(key: string, value: Value, flags?: readonly string[]): Encoded {
  const bytes = keyLength(key, hasBase64Flag(flags));
  const size = valueSize(value);
  const head = `ms ${key} ${size}${flagsText(flags)}\r\n`;
  return withValue(head, head.length - key.length + bytes, value, size);
}

/** `md <key> <flags>*` (meta delete). Answers HD, NF or EX. */
export function encodeMd(key: string, flags?: readonly string[]): Buffer {
  return meta("md ", key, flags);
}

/** `ma <key> <flags>*` (meta arithmetic: `D<delta>`, `MD` to decrement, `N<ttl>` `J<initial>` to create). */
export function encodeMa(key: string, flags?: readonly string[]): Buffer {
  return meta("ma ", key, flags);
}

/** `mn` (meta no-op): answers MN after everything sent before it. The Buffer is shared: do not write into it. */
export function encodeMn(): Buffer {
  return MN;
}

/** `me <key> [b]` (meta debug): ME with the item's internals, or EN. */
export function encodeMe(key: string, flags?: readonly string[]): Buffer {
  return meta("me ", key, flags);
}

const STORE_COMMANDS: ReadonlySet<string> = new Set(["set", "add", "replace", "append", "prepend"]);

function retrieval(prefix: string, keys: string | readonly string[]): Buffer {
  if (typeof keys === "string") {
    const bytes = keyLength(keys, false);
    return line(`${prefix}${keys}\r\n`, bytes === keys.length);
  }
  if (keys.length === 0) {
    throw new ClientError(`${prefix.trim()} needs at least one key: pass a key or a non-empty array of keys`);
  }
  let ascii = true;
  let text = prefix;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    if (keyLength(key, false) !== key.length) ascii = false;
    text += i === 0 ? key : ` ${key}`;
  }
  return line(`${text}\r\n`, ascii);
}

function storage(
  command: string,
  key: string,
  value: Value,
  options: StoreOptions | undefined,
  cas: string,
): Encoded {
  const bytes = keyLength(key, false);
  const size = valueSize(value);
  const flags = options?.flags === undefined ? 0 : uint32Text(options.flags, "client flags");
  const exptime = options?.exptime === undefined ? 0 : exptimeText(options.exptime);
  const head = `${command} ${key} ${flags} ${exptime} ${size}${cas}${noreply(options)}\r\n`;
  return withValue(head, head.length - key.length + bytes, value, size);
}

function arithmetic(prefix: string, key: string, delta: bigint | number, options?: NoreplyOptions): Buffer {
  const bytes = keyLength(key, false);
  return line(`${prefix}${key} ${uint64Text(delta, "delta")}${noreply(options)}\r\n`, bytes === key.length);
}

function meta(prefix: string, key: string, flags: readonly string[] | undefined): Buffer {
  const bytes = keyLength(key, hasBase64Flag(flags));
  return line(`${prefix}${key}${flagsText(flags)}\r\n`, bytes === key.length);
}

function withValue(head: string, headBytes: number, value: Value, size: number): Encoded {
  if (size > INLINE_VALUE_LIMIT) {
    const body =
      typeof value === "string"
        ? Buffer.from(value, "utf8")
        : Buffer.isBuffer(value)
          ? value
          : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return [line(head, headBytes === head.length), body, CRLF];
  }
  const out = Buffer.allocUnsafe(headBytes + size + 2);
  out.write(head, 0, headBytes === head.length ? "latin1" : "utf8");
  if (typeof value === "string") out.write(value, headBytes, "utf8");
  else out.set(value, headBytes);
  out[headBytes + size] = 13;
  out[headBytes + size + 1] = 10;
  return out;
}

function line(text: string, ascii: boolean): Buffer {
  return Buffer.from(text, ascii ? "latin1" : "utf8");
}

function valueSize(value: Value): number {
  if (typeof value === "string") return Buffer.byteLength(value, "utf8");
  if (value instanceof Uint8Array) return value.byteLength;
  throw new ClientError(
    `a value must be a string or a Buffer/Uint8Array, not ${typeof value}: convert it first`,
  );
}

function noreply(options: NoreplyOptions | undefined): string {
  return options?.noreply === true ? " noreply" : "";
}

function hasBase64Flag(flags: readonly string[] | undefined): boolean {
  return flags !== undefined && flags.includes("b");
}

function flagsText(flags: readonly string[] | undefined): string {
  if (flags === undefined) return "";
  let text = "";
  for (let i = 0; i < flags.length; i++) {
    const flag = flags[i];
    if (!META_FLAG.test(flag)) {
      throw new ClientError(
        `meta flag ${JSON.stringify(flag)} is malformed: a flag is one letter, then an optional token without spaces, e.g. "v", "T30" or "Oabc"`,
      );
    }
    text += ` ${flag}`;
  }
  return text;
}

function exptimeText(exptime: number): string {
  if (!Number.isInteger(exptime) || exptime < -0x80000000 || exptime > 0x7fffffff) {
    throw new ClientError(
      `exptime ${exptime} is not a 32-bit whole number of seconds: use 0 (never), up to 2592000 (30 days, relative), a unix time, or negative (expire now)`,
    );
  }
  return String(exptime);
}

function uint32Text(n: number, what: string): string {
  if (!Number.isInteger(n) || n < 0 || n > MAX_UINT32) {
    throw new ClientError(`${what} ${n} is not a 32-bit unsigned whole number: give 0 to ${MAX_UINT32}`);
  }
  return String(n);
}

function uint64Text(n: bigint | number, what: string): string {
  const ok = typeof n === "bigint" ? n >= 0n && n <= MAX_UINT64 : Number.isSafeInteger(n) && n >= 0;
  if (!ok) {
    throw new ClientError(
      `${what} ${String(n)} is not a 64-bit unsigned whole number: give 0 to ${MAX_UINT64} (as a bigint above 2^53)`,
    );
  }
  return String(n);
}

function wholeText(n: number, what: string): string {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new ClientError(`${what} ${n} must be a whole number of 0 or more`);
  }
  return String(n);
}
