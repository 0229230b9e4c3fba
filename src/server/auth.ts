// Authentication compatible with memcached's text-protocol auth file (`-Y`): the file of `user:password`
// lines, and the gate a connection passes before its commands are read, replying as memcached 1.6 does.
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { ConfigError } from "../errors.js";
import type { Output } from "./engine.js";

/** memcached reads at most this many entries and ignores the rest without a word; memipc refuses more. */
export const MAX_AUTH_ENTRIES = 8;
/** Bytes of one auth file line, its line end included, that memcached reads whole (it cuts longer ones). */
export const MAX_AUTH_LINE = 255;
/** Bytes of a command line without its newline after which an unauthenticated connection is closed. */
export const PREAUTH_MAX_LINE = 2048;
/** memcached's read buffer: a credentials block (with its \r\n) larger than this closes the connection. */
export const PREAUTH_BUFFER = 16384;
/**
 * memcached reuses one reply slot for every command of an unauthenticated connection until it sends
 * what it has: it sends after 21 commands (its 20 requests per event, plus the first), or when it waits
 * for input. Only the last reply of each such run reaches the client.
 */
export const PREAUTH_COMMANDS_PER_REPLY = 21;

const UNAUTHENTICATED = "CLIENT_ERROR unauthenticated\r\n";
const BAD_TERMINATION = "CLIENT_ERROR bad command line termination\r\n";
const BAD_FORMAT = "CLIENT_ERROR bad authentication token format\r\n";
const FAILURE = "CLIENT_ERROR authentication failure\r\n";
const STORED = "STORED\r\n";

interface Entry {
  user: Buffer;
  password: Buffer;
}

/**
 * The users of an auth file, kept as SHA-256 digests: a check compares equal-length digests with
 * timingSafeEqual and visits every entry, so its duration says nothing about how close a guess was.
 */
export class Credentials {
  readonly file: string;
  readonly #entries: Entry[];

  constructor(file: string, entries: ReadonlyArray<{ user: string; password: string }>) {
    this.file = file;
    this.#entries = entries.map((e) => ({ user: digest(e.user), password: digest(e.password) }));
  }

  get size(): number {
    return this.#entries.length;
  }

  check(user: Buffer | string, password: Buffer | string): boolean {
    const u = digest(user);
    const p = digest(password);
    let found = 0;
    for (const entry of this.#entries) {
      // Both comparisons always run: & instead of &&.
      found |= Number(timingSafeEqual(u, entry.user)) & Number(timingSafeEqual(p, entry.password));
    }
    return found === 1;
  }
}

function digest(text: Buffer | string): Buffer {
  return createHash("sha256")
    .update(typeof text === "string" ? Buffer.from(text, "latin1") : text)
    .digest();
}

/**
 * Reads an auth file. It takes what memcached takes and refuses, with the line at fault, what memcached
 * would read differently from what it says: a blank line or a line without ':' (memcached refuses those
 * too), an entry no client could send (empty, or with a space or NUL), a line too long, more than 8 entries,
 * or none at all (nobody could log in).
 */
export function loadCredentials(file: string): Credentials {
  let text: string;
  try {
    text = readFileSync(file, "latin1");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConfigError(
      `auth file ${file} cannot be read (${reason}): give a readable file of user:password lines`,
      { cause: error },
    );
  }
  return new Credentials(file, parseAuthFile(text, file));
}

export function parseAuthFile(text: string, file: string): Array<{ user: string; password: string }> {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const entries: Array<{ user: string; password: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const at = `auth file ${file} line ${i + 1}`;
    const ended = i < lines.length - 1 || text.endsWith("\n");
    if (raw.length + (ended ? 1 : 0) > MAX_AUTH_LINE) {
      throw new ConfigError(
        `${at} is longer than ${MAX_AUTH_LINE} bytes with its line end, which memcached cuts short: use a shorter password`,
      );
    }
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const colon = line.indexOf(":");
    if (line === "" || colon < 0) {
      throw new ConfigError(
        `${at} is not user:password (blank lines and comments are not allowed, as in memcached): fix or remove it`,
      );
    }
    const user = line.slice(0, colon);
    const password = line.slice(colon + 1);
    if (user === "" || password === "") {
      throw new ConfigError(`${at} has an empty user name or password, which no client can send: fill it in`);
    }
    if (/[ \0]/.test(line)) {
      throw new ConfigError(
        `${at} has a space or NUL byte: clients send "user password" separated by a space, so neither may hold one`,
      );
    }
    entries.push({ user, password });
  }
  if (entries.length === 0) {
    throw new ConfigError(`auth file ${file} has no user:password line, so nobody could connect: add one`);
  }
  if (entries.length > MAX_AUTH_ENTRIES) {
    throw new ConfigError(
      `auth file ${file} has ${entries.length} entries; memcached reads only the first ${MAX_AUTH_ENTRIES}: keep at most ${MAX_AUTH_ENTRIES}`,
    );
  }
  return entries;
}

/** What the gate wants done after taking a chunk of input. */
export type GateResult =
  /** Still unauthenticated: wait for more input. */
  | { readonly kind: "waiting" }
  /** Drop the connection at once, unsent replies included. */
  | { readonly kind: "close" }
  /** Authenticated: `rest` is the input that followed the credentials, for the command parser. */
  | { readonly kind: "open"; readonly rest: Buffer };

const WAITING: GateResult = { kind: "waiting" };
const CLOSE: GateResult = { kind: "close" };

/**
 * What an unauthenticated connection reads: memcached's handshake, where the only command understood is a
 * `set` (key, flags and exptime ignored) whose data block is `user password`. Every other line gets
 * CLIENT_ERROR unauthenticated and the connection stays open.
 */
export class AuthGate {
  readonly #check: (user: Buffer, password: Buffer) => boolean;
  #input: Buffer = Buffer.alloc(0);
  /** Bytes of the credentials block (with its \r\n) still to come; undefined while reading a line. */
  #blockLength: number | undefined;
  /** The reply in memcached's one reusable slot, and how many commands have used the slot. */
  #reply: string | undefined;
  #commands = 0;

  constructor(check: (user: Buffer, password: Buffer) => boolean) {
    this.#check = check;
  }

  /** Bytes held while waiting for the rest of a line or block. */
  get buffered(): number {
    return this.#input.length;
  }

  feed(chunk: Buffer, out: Output): GateResult {
    this.#input = this.#input.length === 0 ? chunk : Buffer.concat([this.#input, chunk]);
    for (;;) {
      const input = this.#input;
      if (this.#blockLength === undefined) {
        // memcached does not look at fewer than two bytes: a lone "\n" waits for what follows.
        if (input.length < 2) break;
        const newline = input.subarray(0, PREAUTH_BUFFER).indexOf(0x0a);
        if (newline < 0) {
          if (input.length > PREAUTH_MAX_LINE) return this.#close();
          break;
        }
        this.#input = input.subarray(newline + 1);
        const size = authCommandSize(input.subarray(0, newline));
        if (size === undefined) this.#answer(UNAUTHENTICATED, out);
        else this.#blockLength = size + 2;
        continue;
      }
      const length = this.#blockLength;
      if (length > PREAUTH_BUFFER) {
        if (input.length >= PREAUTH_BUFFER) return this.#close();
        break;
      }
      if (input.length < length) break;
      this.#blockLength = undefined;
      this.#input = input.subarray(length);
      if (input[length - 2] !== 0x0d || input[length - 1] !== 0x0a) {
        this.#answer(BAD_TERMINATION, out);
        continue;
      }
      const tokens = tokenize(input.subarray(0, length - 2), 2);
      if (tokens.length < 2) {
        this.#answer(BAD_FORMAT, out);
        continue;
      }
      if (!this.#check(tokens[0]!, tokens[1]!)) {
        this.#answer(FAILURE, out);
        continue;
      }
      this.#answer(STORED, out);
      this.#send(out);
      const rest = this.#input;
      this.#input = Buffer.alloc(0);
      return { kind: "open", rest };
    }
    // memcached sends its reply slot whenever it waits for input.
    this.#send(out);
    // Keep only what is unread, not the chunk it was cut from.
    if (this.#input.length > 0 && this.#input.byteOffset > 0) this.#input = Buffer.from(this.#input);
    return WAITING;
  }

  #answer(reply: string, out: Output): void {
    if (this.#commands === PREAUTH_COMMANDS_PER_REPLY) this.#send(out);
    this.#reply = reply;
    this.#commands++;
  }

  #send(out: Output): void {
    if (this.#reply !== undefined) out.text(this.#reply);
    this.#reply = undefined;
    this.#commands = 0;
  }

  #close(): GateResult {
    this.#reply = undefined;
    this.#input = Buffer.alloc(0);
    return CLOSE;
  }
}

/**
 * The data length of an authenticating `set` line (memcached reads its fifth token as an unsigned 32-bit
 * number and ignores the others), or undefined for any other line.
 */
function authCommandSize(line: Buffer): number | undefined {
  const tokens = tokenize(line, 5);
  if (tokens.length < 5 || !tokens[0]!.equals(SET)) return undefined;
  return parseUnsigned32(tokens[4]!.toString("latin1"));
}

const SET = Buffer.from("set", "latin1");

/** memcached's tokenizer: the text up to its first NUL, split on spaces; at most `max` tokens are needed. */
function tokenize(bytes: Buffer, max: number): Buffer[] {
  const nul = bytes.indexOf(0);
  const text = nul < 0 ? bytes : bytes.subarray(0, nul);
  const tokens: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= text.length && tokens.length < max; i++) {
    if (i === text.length || text[i] === 0x20) {
      if (i > start) tokens.push(text.subarray(start, i));
      start = i + 1;
    }
  }
  return tokens;
}

const C_SPACE = /[ \t\n\v\f\r]/;
const U64 = (1n << 64n) - 1n;

/**
 * strtoul in base 10 as memcached's safe_strtoul uses it: leading white space, a sign, digits, then white
 * space or the end; out of range or a negative number is refused; the result is cut to 32 bits.
 */
function parseUnsigned32(token: string): number | undefined {
  const match = /^[ \t\n\v\f\r]*([+-]?)(\d+)(.?)/.exec(token);
  if (!match) return undefined;
  if (match[3] !== "" && !C_SPACE.test(match[3]!)) return undefined;
  const magnitude = BigInt(match[2]!);
  if (magnitude > U64) return undefined;
  const value = match[1] === "-" ? (U64 + 1n - magnitude) & U64 : magnitude;
  if (match[1] === "-" && value >= 1n << 63n) return undefined;
  return Number(value & 0xffffffffn);
}
