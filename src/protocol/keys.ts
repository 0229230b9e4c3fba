// What memcached accepts as a key, checked on the client before any byte is sent, so a bad key fails
// with a clear message instead of desynchronising the connection.
import { ClientError } from "../errors.js";

/** Longest key memcached accepts, in bytes (as sent: UTF-8 for strings, decoded bytes for base64 keys). */
export const MAX_KEY_LENGTH = 250;

export const KeyProblem = {
  empty: "empty",
  tooLong: "too_long",
  whitespace: "whitespace",
  control: "control",
  base64: "base64",
} as const;
export type KeyProblem = (typeof KeyProblem)[keyof typeof KeyProblem];

/** A key memcached would refuse (or misread). Same family as a server's `CLIENT_ERROR`, found before sending. */
export class KeyError extends ClientError {
  readonly problem: KeyProblem;
  readonly key: string;
  constructor(problem: KeyProblem, key: string, message: string) {
    super(message);
    this.problem = problem;
    this.key = key;
  }
}

export interface KeyOptions {
  /** The key is base64 of a binary key (meta `b` flag): the 250-byte limit applies to the decoded bytes. */
  base64?: boolean;
}

/**
 * Throws a KeyError when memcached would not accept `key`: empty, over 250 bytes, or holding a space or a
 * control character. Keys go on the wire as UTF-8.
 */
export function validateKey(key: string, options?: KeyOptions): void {
  keyLength(key, options?.base64 === true);
}

/** Base64 form of a binary (or any) key, to send with the meta `b` flag. */
export function toBase64Key(key: string | Uint8Array): string {
  const bytes = typeof key === "string" ? Buffer.from(key, "utf8") : key;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/**
 * Validates `key` and returns how many bytes it takes on the wire (equal to `key.length` exactly when the key
 * is ASCII). The encoders use it; `validateKey` is the public form.
 */
export function keyLength(key: string, base64: boolean): number {
  const n = key.length;
  if (n === 0) {
    throw new KeyError(KeyProblem.empty, key, "key is empty: give a key of 1 to 250 bytes");
  }
  if (base64) return base64KeyLength(key);
  if (n > MAX_KEY_LENGTH) throw tooLong(key, Buffer.byteLength(key, "utf8"));
  let ascii = true;
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c <= 0x20 || (c >= 0x7f && c <= 0x9f)) throw badCharacter(key, i, c);
    if (c > 0x7f) ascii = false;
  }
  if (ascii) return n;
  const bytes = Buffer.byteLength(key, "utf8");
  if (bytes > MAX_KEY_LENGTH) throw tooLong(key, bytes);
  return bytes;
}

function base64KeyLength(key: string): number {
  const n = key.length;
  // Strict, padded base64 (what Buffer's "base64" encoding writes), so every node derives the same bytes.
  let ok = n % 4 === 0;
  let padding = 0;
  for (let i = 0; ok && i < n; i++) {
    const c = key.charCodeAt(i);
    if (c === 0x3d /* = */) {
      padding++;
      ok = i >= n - 2;
    } else {
      ok =
        padding === 0 &&
        ((c >= 0x41 && c <= 0x5a) ||
          (c >= 0x61 && c <= 0x7a) ||
          (c >= 0x30 && c <= 0x39) ||
          c === 0x2b /* + */ ||
          c === 0x2f); /* / */
    }
  }
  if (!ok) {
    throw new KeyError(
      KeyProblem.base64,
      key,
      `key ${show(key)} is not padded base64, but the meta "b" flag says it is: encode the binary key with toBase64Key() or drop the "b" flag`,
    );
  }
  const decoded = (n / 4) * 3 - padding;
  if (decoded > MAX_KEY_LENGTH) {
    throw new KeyError(
      KeyProblem.tooLong,
      key,
      `base64 key ${show(key)} decodes to ${decoded} bytes, over memcached's limit of ${MAX_KEY_LENGTH}: shorten the binary key or hash it`,
    );
  }
  return n;
}

function tooLong(key: string, bytes: number): KeyError {
  return new KeyError(
    KeyProblem.tooLong,
    key,
    `key ${show(key)} is ${bytes} bytes, over memcached's limit of ${MAX_KEY_LENGTH}: shorten it, or keep a prefix and hash the rest`,
  );
}

function badCharacter(key: string, index: number, code: number): KeyError {
  const hex = `0x${code.toString(16).padStart(2, "0")}`;
  if (code === 0x20) {
    return new KeyError(
      KeyProblem.whitespace,
      key,
      `key ${show(key)} has a space at index ${index}; memcached splits commands on spaces: replace it (e.g. with "_") or send the key base64-encoded with the meta "b" flag`,
    );
  }
  return new KeyError(
    KeyProblem.control,
    key,
    `key ${show(key)} has control character ${hex} at index ${index}; memcached keys may not hold control characters: remove it or send the key base64-encoded with the meta "b" flag`,
  );
}

function show(key: string): string {
  return JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key);
}
