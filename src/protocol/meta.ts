// Meta-command flags: the pre-parse memcached does before touching an item, and its base64 key rules.
import { parseI32, parseU32, parseU64 } from "./numbers.js";

/** Flags and tokens of one meta request, as memcached's pre-parse leaves them. */
export interface MetaFlags {
  base64Key: boolean;
  noUpdate: boolean;
  /** The request reads hit/last-access before bumping (h, l, N, R, T). */
  locked: boolean;
  vivify: boolean;
  returnValue: boolean;
  invalidate: boolean;
  quiet: boolean;
  hasCas: boolean;
  newTtl: boolean;
  /** Single-character mode from M, or "" when absent. */
  mode: string;
  /** Raw TTL numbers as sent; the server turns them into expiry times. */
  ttl: number;
  vivifyTtl: number;
  recacheTtl: number;
  clientFlags: number;
  compareCas: bigint;
  delta: bigint;
  initial: bigint;
}

export function emptyMetaFlags(): MetaFlags {
  return {
    base64Key: false,
    noUpdate: false,
    locked: false,
    vivify: false,
    returnValue: false,
    invalidate: false,
    quiet: false,
    hasCas: false,
    newTtl: false,
    mode: "",
    ttl: 0,
    vivifyTtl: 0,
    recacheTtl: 0,
    clientFlags: 0,
    compareCas: 0n,
    delta: 1n,
    initial: 0n,
  };
}

export const META_MAX_TOKENS = 20; // the command, key and flags together, counting memcached's end marker
export const META_MAX_OPAQUE = 32; // bytes of an O token, the O included

export interface PreparseResult {
  flags: MetaFlags;
  /** The decoded key (latin1 string of its bytes). */
  key: string;
  /** memcached's error line, when the flags were not acceptable. */
  error?: string;
}

/**
 * Reads the flag tokens the way memcached's pre-parse does: a duplicate or unknown flag stops at once,
 * a bad number is remembered (the last one wins) and parsing goes on.
 */
export function preparseMetaFlags(key: string, tokens: readonly string[]): PreparseResult {
  const flags = emptyMetaFlags();
  let error: string | undefined;
  let failed = false;
  const seen = new Uint8Array(128);
  for (const token of tokens) {
    const code = token.charCodeAt(0);
    if (code >= 127 || seen[code]) return { flags, key, error: "CLIENT_ERROR duplicate flag" };
    seen[code] = 1;
    switch (token[0]) {
      case "b": {
        const decoded = decodeBase64Key(key);
        if (decoded === undefined) {
          error = "CLIENT_ERROR error decoding key";
          failed = true;
          key = "";
        } else {
          key = decoded;
        }
        flags.base64Key = true;
        break;
      }
      case "N":
      case "T":
      case "R": {
        flags.locked = true;
        const value = parseI32(token.slice(1));
        if (value === undefined) {
          error = "CLIENT_ERROR bad token in command line format";
          failed = true;
          if (token[0] === "N") flags.vivify = true;
          break;
        }
        if (token[0] === "N") {
          flags.vivify = true;
          flags.vivifyTtl = value;
        } else if (token[0] === "T") {
          flags.ttl = value;
          flags.newTtl = true;
        } else {
          flags.recacheTtl = value;
        }
        break;
      }
      case "l":
      case "h":
        flags.locked = true;
        break;
      case "O":
      case "P":
      case "L":
      case "k":
      case "s":
      case "t":
      case "c":
      case "f":
        break;
      case "v":
        flags.returnValue = true;
        break;
      case "u":
        flags.noUpdate = true;
        break;
      case "q":
        flags.quiet = true;
        break;
      case "F": {
        const value = parseU32(token.slice(1));
        if (value === undefined) failed = true;
        else flags.clientFlags = value;
        break;
      }
      case "C": {
        const value = parseU64(token.slice(1));
        if (value === undefined) {
          error = "CLIENT_ERROR bad token in command line format";
          failed = true;
        } else {
          flags.compareCas = value;
          flags.hasCas = true;
        }
        break;
      }
      case "M":
        if (token.length !== 2) {
          error = "CLIENT_ERROR incorrect length for M token";
          failed = true;
        } else {
          flags.mode = token[1]!;
        }
        break;
      case "J": {
        const value = parseU64(token.slice(1));
        if (value === undefined) {
          error = "CLIENT_ERROR invalid numeric initial value";
          failed = true;
        } else flags.initial = value;
        break;
      }
      case "D": {
        const value = parseU64(token.slice(1));
        if (value === undefined) {
          error = "CLIENT_ERROR invalid numeric delta value";
          failed = true;
        } else flags.delta = value;
        break;
      }
      case "I":
        flags.invalidate = true;
        break;
      default:
        return { flags, key, error: "CLIENT_ERROR invalid flag" };
    }
  }
  if (failed) return { flags, key, error: error ?? "CLIENT_ERROR bad command line format" };
  return { flags, key };
}

const BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const DECODE = new Int16Array(256).fill(-1);
for (let i = 0; i < BASE64_ALPHABET.length; i++) DECODE[BASE64_ALPHABET.charCodeAt(i)] = i;
DECODE[61 /* = */] = 0;

/**
 * Decodes a base64 key as memcached does: characters outside the alphabet are skipped, the rest must
 * come in whole groups of four, and decoding stops after the first group with padding.
 */
export function decodeBase64Key(text: string): string | undefined {
  let count = 0;
  for (let i = 0; i < text.length; i++) if (DECODE[text.charCodeAt(i) & 0xff]! >= 0) count++;
  if (count === 0 || count % 4 !== 0) return undefined;
  const out: number[] = [];
  const block = [0, 0, 0, 0];
  let filled = 0;
  let pad = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i) & 0xff;
    const value = DECODE[code]!;
    if (value < 0) continue;
    if (code === 61) pad++;
    block[filled++] = value;
    if (filled === 4) {
      out.push(
        ((block[0]! << 2) | (block[1]! >> 4)) & 0xff,
        ((block[1]! << 4) | (block[2]! >> 2)) & 0xff,
        ((block[2]! << 6) | block[3]!) & 0xff,
      );
      filled = 0;
      if (pad) {
        if (pad > 2) return undefined;
        out.length -= pad;
        break;
      }
    }
  }
  if (out.length === 0) return undefined;
  return Buffer.from(out).toString("latin1", 0, out.length);
}
