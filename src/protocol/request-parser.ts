// Streaming parser for what clients send to a memcached server: command lines and their data blocks,
// validated exactly as memcached 1.6 validates them, under any split of the byte stream.
import { META_MAX_TOKENS, META_MAX_OPAQUE, preparseMetaFlags, decodeBase64Key } from "./meta.js";
import { MAX_KEY_LENGTH } from "./keys.js";
import { parseI32, parseU32, parseU64 } from "./numbers.js";
import type { Request, RetrievalCommand, StorageCommand, StoreRequest, MetaSetRequest } from "./requests.js";

export const MAX_TOKENS = 24; // memcached tokenizes at most this many, counting its end marker
export const LINE_LIMIT = 2048; // bytes without a newline before a non-get line is given up on
export const READ_BUFFER = 16384; // memcached's read buffer: a longer non-get line cannot be read whole
export const DEFAULT_MAX_GET_LINE = 4 * 1024 * 1024; // bytes; bounds a multi-get line's memory
const ASSEMBLED_KEEP = 64 * 1024; // bytes; smaller data blocks are copied out of the chunks they came in
const STORAGE_KEEP = 64 * 1024; // bytes of line storage kept after a parse; larger storage is let go
const ITEM_HEADER = 48 + 8; // memcached's item header and CAS on a 64-bit build, in bytes
const INT_MAX = 2147483647;

export interface RequestParserOptions {
  /** memcached's -I: the largest item, header and key included, in bytes. */
  maxItemSize: number;
  /** Longest multi-get line accepted before the connection is closed. */
  maxGetLine?: number;
}

/** Called for each request; return false to pause parsing until `resume` is called. */
export type RequestHandler = (request: Request) => boolean | void;

const State = { Line: 0, Data: 1, Swallow: 2, Closed: 3 } as const;
type State = (typeof State)[keyof typeof State];

/** Does an item of this key and data length fit, as memcached's item_size_ok decides. */
export function itemFits(keyLength: number, flags: number, dataLength: number, maxItemSize: number): boolean {
  return ITEM_HEADER + keyLength + 1 + (flags === 0 ? 0 : 4) + dataLength + 2 <= maxItemSize;
}

export class RequestParser {
  readonly #maxItemSize: number;
  readonly #maxGetLine: number;
  #buffer: Buffer = Buffer.alloc(0);
  #offset = 0;
  #state: State = State.Line;
  /** Data block wanted, counting its trailing "\r\n". */
  #need = 0;
  #pending: StoreRequest | MetaSetRequest | undefined;
  #paused = false;
  /** Pieces of a large data block, kept apart until the whole block is here (no repeated copying). */
  #chunks: Buffer[] = [];
  /** `#buffer` when the parser assembled it from several chunks: its bytes belong to no one else. */
  #assembled: Buffer | undefined;
  #chunkBytes = 0;
  /** Bytes of the unfinished line already searched for a newline (so each byte is searched once). */
  #searched = 0;
  /** The parser's own growable storage that `#buffer` may be a view of (never a received chunk). */
  #storage: Buffer | undefined;

  constructor(options: RequestParserOptions) {
    this.#maxItemSize = options.maxItemSize;
    this.#maxGetLine = options.maxGetLine ?? DEFAULT_MAX_GET_LINE;
  }

  /** Bytes received but not parsed yet (memory held for this connection). */
  get buffered(): number {
    return this.#buffer.length - this.#offset + this.#chunkBytes;
  }

  get closed(): boolean {
    return this.#state === State.Closed;
  }

  /** Bytes of a data block (read or discarded) still to come before command lines are read again. */
  get awaiting(): number {
    if (this.#state === State.Data) return Math.max(0, this.#need - this.buffered);
    return this.#state === State.Swallow ? this.#need : 0;
  }

  /** Adds received bytes and parses as far as possible. */
  feed(chunk: Buffer, handler: RequestHandler): void {
    if (this.#state === State.Closed) return;
    if (this.#state === State.Data && this.buffered + chunk.length < this.#need) {
      this.#chunks.push(chunk);
      this.#chunkBytes += chunk.length;
      return;
    }
    if (this.#chunks.length > 0) {
      this.#buffer = Buffer.concat([this.#buffer.subarray(this.#offset), ...this.#chunks, chunk]);
      this.#assembled = this.#buffer;
      this.#chunks = [];
      this.#chunkBytes = 0;
    } else if (this.#offset >= this.#buffer.length) {
      this.#buffer = chunk;
    } else {
      this.#append(chunk);
    }
    this.#offset = 0;
    if (!this.#paused) this.#run(handler);
  }

  /**
   * Adds a chunk to an unfinished line in storage that doubles as it fills: a long multi-get line sent a
   * few bytes per read then costs copies in proportion to its length, not to its length squared.
   */
  #append(chunk: Buffer): void {
    const pending = this.#buffer.length - this.#offset;
    const storage = this.#storage;
    const end = this.#buffer.byteOffset + this.#buffer.length;
    if (
      storage !== undefined &&
      this.#buffer.buffer === storage.buffer &&
      end + chunk.length <= storage.byteOffset + storage.length
    ) {
      const at = end - storage.byteOffset;
      chunk.copy(storage, at);
      this.#buffer = storage.subarray(at - pending, at + chunk.length);
      return;
    }
    const grown = Buffer.allocUnsafeSlow(Math.max(2 * (pending + chunk.length), 4096));
    this.#buffer.copy(grown, 0, this.#offset);
    chunk.copy(grown, pending);
    this.#storage = grown;
    this.#buffer = grown.subarray(0, pending + chunk.length);
  }

  /** Continues after a handler returned false. */
  resume(handler: RequestHandler): void {
    this.#paused = false;
    this.#run(handler);
  }

  #run(handler: RequestHandler): void {
    for (;;) {
      if (this.#state === State.Closed) return;
      if (this.#state === State.Swallow) {
        const available = this.#buffer.length - this.#offset;
        const take = Math.min(available, this.#need);
        this.#offset += take;
        this.#need -= take;
        if (this.#need > 0) break;
        this.#state = State.Line;
        continue;
      }
      if (this.#state === State.Data) {
        if (this.#buffer.length - this.#offset < this.#need) break;
        const start = this.#offset;
        const end = start + this.#need;
        this.#offset = end;
        this.#state = State.Line;
        const request = this.#pending!;
        this.#pending = undefined;
        if (this.#buffer[end - 2] !== 13 || this.#buffer[end - 1] !== 10) {
          // memcached reads exactly the declared length; a block not ending in \r\n is refused whole.
          const noreply = request.kind === "store" ? request.noreply : false;
          if (this.#emit(handler, { kind: "rejected", line: "CLIENT_ERROR bad data chunk", noreply }))
            continue;
          break;
        }
        // Own the bytes: a view would pin the whole network chunk in memory for the item's lifetime.
        const data = this.#buffer.subarray(start, end - 2);
        // A large block assembled from chunks is most of the storage it sits in: the item keeps that
        // storage rather than a second copy (which would double the garbage a stream of huge sets makes).
        request.data =
          this.#buffer === this.#assembled &&
          data.length >= ASSEMBLED_KEEP &&
          data.length * 8 >= this.#buffer.length * 7
            ? data
            : Buffer.from(data);
        if (this.#emit(handler, request)) continue;
        break;
      }
      const newline = this.#buffer.indexOf(10, this.#offset + this.#searched);
      if (newline < 0) {
        this.#searched = this.#buffer.length - this.#offset;
        if (this.#tooLongWithoutNewline()) {
          this.#close(handler, "command line too long");
        }
        break;
      }
      this.#searched = 0;
      const lineStart = this.#offset;
      let lineEnd = newline;
      this.#offset = newline + 1;
      if (lineEnd - lineStart > 1 && this.#buffer[lineEnd - 1] === 13) lineEnd--;
      if (lineEnd - lineStart >= READ_BUFFER && !this.#isGetLine(lineStart)) {
        this.#close(handler, "command line too long");
        break;
      }
      let line = this.#buffer.toString("latin1", lineStart, lineEnd);
      const nul = line.indexOf("\0");
      if (nul >= 0) line = line.slice(0, nul);
      if (!this.#line(line, handler)) break;
    }
    if (this.#offset >= this.#buffer.length) {
      this.#buffer = Buffer.alloc(0);
      this.#offset = 0;
      this.#storage = undefined;
    } else if (
      this.#storage !== undefined &&
      this.#storage.length > STORAGE_KEEP &&
      (this.#buffer.length - this.#offset) * 8 < this.#storage.length
    ) {
      // A long line is done with (a line still growing fills at least half): keep the rest in a buffer of
      // its own size, not in the large storage.
      this.#buffer = Buffer.from(this.#buffer.subarray(this.#offset));
      this.#offset = 0;
      this.#storage = undefined;
    }
  }

  #emit(handler: RequestHandler, request: Request): boolean {
    if (handler(request) === false) {
      this.#paused = true;
      return false;
    }
    return this.#state !== State.Closed;
  }

  #close(handler: RequestHandler, reason: string): void {
    this.#state = State.Closed;
    handler({ kind: "close", reason });
  }

  #isGetLine(start: number): boolean {
    let i = start;
    const end = this.#buffer.length;
    while (i < end && this.#buffer[i] === 32) i++;
    if (i - start > 100) return false;
    const head = this.#buffer.toString("latin1", i, Math.min(i + 5, end));
    return head.startsWith("get ") || head.startsWith("gets ");
  }

  #tooLongWithoutNewline(): boolean {
    const pending = this.#buffer.length - this.#offset;
    if (pending <= LINE_LIMIT) return false;
    // Only a multi-get may be longer; memcached drops anything else that has no newline by now.
    if (!this.#isGetLine(this.#offset)) return true;
    return pending > this.#maxGetLine;
  }

  /** Handles one command line; returns false when parsing must stop (paused, closed, or data pending). */
  #line(line: string, handler: RequestHandler): boolean {
    const tokens = tokenize(line);
    const ntokens = tokens.count + 1; // memcached counts its end marker
    const t = tokens.list;
    const name = t[0] ?? "";
    if (ntokens < 2 || name.length < 2) return this.#reject(handler, "ERROR", false);

    if (name.length === 2 && name.charCodeAt(0) === 109 /* m */) {
      switch (name[1]) {
        case "g":
        case "d":
        case "a":
          return this.#meta(name as "mg" | "md" | "ma", t, ntokens, handler);
        case "s":
          return this.#metaSet(t, ntokens, handler);
        case "n":
          return this.#emit(handler, { kind: "mn" });
        case "e":
          return this.#metaDebug(t, ntokens, handler);
        default:
          return this.#reject(handler, "ERROR", false);
      }
    }
    switch (name) {
      case "get":
      case "gets":
      case "gat":
      case "gats":
      case "bget":
        if (ntokens < 3) return this.#reject(handler, "ERROR", false);
        return this.#get(name, t, tokens.rest, handler);
      case "set":
      case "add":
      case "replace":
      case "append":
      case "prepend":
        if (ntokens !== 6 && ntokens !== 7) return this.#reject(handler, "ERROR", false);
        return this.#store(name, t, ntokens, handler);
      case "cas":
        if (ntokens !== 7 && ntokens !== 8) return this.#reject(handler, "ERROR", false);
        return this.#store(name, t, ntokens, handler);
      case "incr":
      case "decr": {
        if (ntokens !== 4 && ntokens !== 5) return this.#reject(handler, "ERROR", false);
        const noreply = isNoreply(t, ntokens);
        const key = t[1]!;
        if (key.length > MAX_KEY_LENGTH)
          return this.#reject(handler, "CLIENT_ERROR bad command line format", noreply);
        const delta = parseU64(t[2]!);
        if (delta === undefined)
          return this.#reject(handler, "CLIENT_ERROR invalid numeric delta argument", noreply);
        return this.#emit(handler, { kind: "arithmetic", incr: name === "incr", key, delta, noreply });
      }
      case "delete":
        if (ntokens < 3 || ntokens > 5) return this.#reject(handler, "ERROR", false);
        return this.#delete(t, ntokens, handler);
      case "touch": {
        if (ntokens !== 4 && ntokens !== 5) return this.#reject(handler, "ERROR", false);
        const noreply = isNoreply(t, ntokens);
        const key = t[1]!;
        if (key.length > MAX_KEY_LENGTH)
          return this.#reject(handler, "CLIENT_ERROR bad command line format", noreply);
        const ttl = parseI32(t[2]!);
        if (ttl === undefined) return this.#reject(handler, "CLIENT_ERROR invalid exptime argument", noreply);
        return this.#emit(handler, { kind: "touch", key, ttl, noreply });
      }
      case "flush_all": {
        if (ntokens < 2 || ntokens > 4) return this.#reject(handler, "ERROR", false);
        const noreply = isNoreply(t, ntokens);
        let delay = 0;
        if (ntokens !== (noreply ? 3 : 2)) {
          const parsed = parseI32(t[1]!);
          if (parsed === undefined)
            return this.#reject(handler, "CLIENT_ERROR invalid exptime argument", noreply);
          delay = parsed;
        }
        return this.#emit(handler, { kind: "flush_all", delay, noreply });
      }
      case "version":
        return this.#emit(handler, { kind: "version" });
      case "quit":
        this.#state = State.Closed;
        handler({ kind: "quit" });
        return false;
      case "verbosity": {
        if (ntokens !== 3 && ntokens !== 4) return this.#reject(handler, "ERROR", false);
        const noreply = isNoreply(t, ntokens);
        if (parseU32(t[1]!) === undefined) {
          return this.#reject(handler, "CLIENT_ERROR bad command line format", noreply);
        }
        return this.#emit(handler, { kind: "verbosity", noreply });
      }
      case "stats":
        return this.#emit(handler, { kind: "stats", args: t.slice(1) });
      case "shutdown":
      case "slabs":
      case "cache_memlimit":
      case "lru_crawler":
      case "watch":
      case "lru":
      case "extstore":
        return this.#emit(handler, { kind: "admin", tokens: t, noreply: isNoreply(t, ntokens) });
      default:
        return this.#reject(handler, "ERROR", false);
    }
  }

  #reject(handler: RequestHandler, line: string, noreply: boolean): boolean {
    return this.#emit(handler, { kind: "rejected", line, noreply });
  }

  #get(command: RetrievalCommand, t: string[], rest: string, handler: RequestHandler): boolean {
    let first = 1;
    let ttl = 0;
    if (command === "gat" || command === "gats") {
      const parsed = parseI32(t[1]!);
      if (parsed === undefined) return this.#reject(handler, "CLIENT_ERROR invalid exptime argument", false);
      ttl = parsed;
      first = 2;
    }
    let keys = t.length > first ? t.slice(first) : [];
    if (rest.length > 0) keys = keys.concat(splitTokens(rest));
    let keyTooLong = false;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i]!.length > MAX_KEY_LENGTH) {
        keys = keys.slice(0, i);
        keyTooLong = true;
        break;
      }
    }
    return this.#emit(handler, { kind: "get", command, keys, ttl, keyTooLong });
  }

  #store(command: StorageCommand, t: string[], ntokens: number, handler: RequestHandler): boolean {
    const noreply = isNoreply(t, ntokens);
    const key = t[1]!;
    if (key.length > MAX_KEY_LENGTH)
      return this.#reject(handler, "CLIENT_ERROR bad command line format", noreply);
    const flags = parseU32(t[2]!);
    const ttl = flags === undefined ? undefined : parseI32(t[3]!);
    const length = ttl === undefined ? undefined : parseI32(t[4]!);
    if (length === undefined) return this.#reject(handler, "CLIENT_ERROR bad command line format", noreply);
    let cas = 0n;
    if (command === "cas") {
      const parsed = parseU64(t[5]!);
      if (parsed === undefined) return this.#reject(handler, "CLIENT_ERROR bad command line format", noreply);
      cas = parsed;
    }
    if (length < 0 || length > INT_MAX - 2) {
      return this.#reject(handler, "CLIENT_ERROR bad command line format", noreply);
    }
    const request: StoreRequest = {
      kind: "store",
      command,
      key,
      flags: flags!,
      ttl: ttl!,
      cas,
      noreply,
      data: undefined,
    };
    if (!itemFits(key.length, flags!, length, this.#maxItemSize)) {
      // Too large: memcached answers now and discards the data block unread.
      this.#swallow(length + 2);
      return this.#emit(handler, request);
    }
    return this.#expectData(request, length + 2);
  }

  #expectData(request: StoreRequest | MetaSetRequest, need: number): boolean {
    this.#pending = request;
    this.#need = need;
    this.#state = State.Data;
    return true;
  }

  #swallow(bytes: number): void {
    this.#state = State.Swallow;
    this.#need = bytes;
  }

  #delete(t: string[], ntokens: number, handler: RequestHandler): boolean {
    let noreply = false;
    if (ntokens > 3) {
      const holdIsZero = t[2] === "0";
      noreply = isNoreply(t, ntokens);
      const valid = (ntokens === 4 && (holdIsZero || noreply)) || (ntokens === 5 && holdIsZero && noreply);
      if (!valid) {
        return this.#reject(
          handler,
          "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
          noreply,
        );
      }
    }
    const key = t[1]!;
    if (key.length > MAX_KEY_LENGTH)
      return this.#reject(handler, "CLIENT_ERROR bad command line format", noreply);
    return this.#emit(handler, { kind: "delete", key, noreply });
  }

  #meta(kind: "mg" | "md" | "ma", t: string[], ntokens: number, handler: RequestHandler): boolean {
    if (ntokens < 3) return this.#reject(handler, "ERROR", false);
    if (t[1]!.length > MAX_KEY_LENGTH)
      return this.#reject(handler, "CLIENT_ERROR bad command line format", false);
    if (ntokens > META_MAX_TOKENS) {
      const line =
        kind === "mg" ? "CLIENT_ERROR options flags are too long" : "CLIENT_ERROR options flags too long";
      return this.#reject(handler, line, false);
    }
    const tokens = t.slice(2);
    const parsed = preparseMetaFlags(t[1]!, tokens);
    if (parsed.error !== undefined) {
      const line = kind === "mg" ? parsed.error : "CLIENT_ERROR invalid or duplicate flag";
      return this.#reject(handler, line, false);
    }
    if (kind === "ma" && !"I+D-".includes(parsed.flags.mode)) {
      return this.#reject(handler, "CLIENT_ERROR invalid mode for ma M token", false);
    }
    if (kind === "md" && tokens.some((token) => token[0] === "O" && token.length > META_MAX_OPAQUE)) {
      return this.#reject(handler, "CLIENT_ERROR opaque token too long", false);
    }
    return this.#emit(handler, { kind, key: parsed.key, tokens, flags: parsed.flags });
  }

  #metaSet(t: string[], ntokens: number, handler: RequestHandler): boolean {
    if (ntokens < 3) return this.#reject(handler, "ERROR", false);
    if (t[1]!.length > MAX_KEY_LENGTH || ntokens === 3) {
      return this.#reject(handler, "CLIENT_ERROR bad command line format", false);
    }
    if (ntokens > META_MAX_TOKENS) return this.#reject(handler, "CLIENT_ERROR options flags too long", false);
    const length = parseI32(t[2]!);
    if (length === undefined || length < 0 || length > INT_MAX - 2) {
      return this.#reject(handler, "CLIENT_ERROR bad command line format", false);
    }
    const tokens = t.slice(3);
    const parsed = preparseMetaFlags(t[1]!, tokens);
    let error = parsed.error;
    if (error === undefined) {
      const opaqueTooLong = tokens.some((token) => token[0] === "O" && token.length > META_MAX_OPAQUE);
      if (parsed.flags.mode !== "" && !"EAPRS".includes(parsed.flags.mode)) {
        error = "CLIENT_ERROR invalid mode for ms M token";
      } else if (opaqueTooLong) {
        error = "CLIENT_ERROR opaque token too long";
      }
    }
    const request: MetaSetRequest = {
      kind: "ms",
      key: parsed.key,
      tokens,
      flags: parsed.flags,
      data: undefined,
    };
    if (error !== undefined) {
      this.#swallow(length + 2);
      return this.#reject(handler, error, false);
    }
    if (!itemFits(parsed.key.length, parsed.flags.clientFlags, length, this.#maxItemSize)) {
      this.#swallow(length + 2);
      return this.#emit(handler, request);
    }
    return this.#expectData(request, length + 2);
  }

  #metaDebug(t: string[], ntokens: number, handler: RequestHandler): boolean {
    if (ntokens < 3 || t[1]!.length > MAX_KEY_LENGTH) {
      return this.#reject(handler, "CLIENT_ERROR bad command line format", false);
    }
    let key = t[1]!;
    const base64Key = ntokens >= 4 && t[2] === "b";
    if (base64Key) {
      const decoded = decodeBase64Key(key);
      if (decoded === undefined) return this.#reject(handler, "CLIENT_ERROR bad command line format", false);
      key = decoded;
    }
    return this.#emit(handler, { kind: "me", key, base64Key });
  }
}

interface Tokens {
  list: string[];
  /** Number of tokens memcached sees before its end marker (at most MAX_TOKENS - 1). */
  count: number;
  /** What memcached left untokenized after MAX_TOKENS - 1 tokens ("" when the line was used up). */
  rest: string;
}

/** Splits on spaces as memcached's tokenizer does, stopping after MAX_TOKENS - 1 tokens. */
function tokenize(line: string): Tokens {
  const list: string[] = [];
  const n = line.length;
  let start = 0;
  for (let i = 0; i < n; i++) {
    if (line.charCodeAt(i) !== 32) continue;
    if (i > start) {
      list.push(line.slice(start, i));
      if (list.length === MAX_TOKENS - 1) {
        return { list, count: list.length, rest: line.slice(i + 1) };
      }
    }
    start = i + 1;
  }
  if (n > start) list.push(line.slice(start));
  return { list, count: list.length, rest: "" };
}

function splitTokens(text: string): string[] {
  return text.split(" ").filter((token) => token.length > 0);
}

/** memcached takes `noreply` only as the last token it tokenized. */
function isNoreply(t: string[], ntokens: number): boolean {
  return t[ntokens - 2] === "noreply";
}

/** Re-exported for tests that build expected frames. */
export { emptyMetaFlags } from "./meta.js";
