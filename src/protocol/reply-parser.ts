// Client side of the codec: turns the bytes a memcached server sends back into typed frames, the same
// frames however the stream is split into chunks. Pure: no sockets, timers or logging.
import { ClientError, CommandError, ConfigError, ProtocolError, ServerError } from "../errors.js";

export const DEFAULT_MAX_REPLY_LINE_LENGTH = 8192; // bytes in one reply line, not counting its \r\n
export const DEFAULT_MAX_REPLY_VALUE_SIZE = 1024 * 1024 * 1024; // bytes in one data block: memcached's ceiling for -I

/** One return flag of a meta reply: `c123` is `{ flag: "c", token: "123" }`, `W` is `{ flag: "W", token: "" }`. */
export interface MetaFlag {
  readonly flag: string;
  readonly token: string;
}

/** One `name=value` pair of an `ME` (meta debug) reply. */
export interface MetaDebugField {
  readonly name: string;
  readonly value: string;
}

/** `VALUE <key> <flags> <bytes> [<cas>]` and its data block (get, gets, gat, gats). */
export interface ValueFrame {
  readonly kind: "VALUE";
  /** One character per byte (latin1): the key itself when ASCII; `Buffer.from(key, "latin1")` gives the bytes. */
  readonly key: string;
  /** The client flags stored with the item (32-bit unsigned). */
  readonly flags: number;
  readonly value: Buffer;
  /** Present for gets and gats. */
  readonly cas: bigint | undefined;
}

/** `VA <size> <flags>*` and its data block (mg with `v`, ma with `v`). */
export interface MetaValueFrame {
  readonly kind: "VA";
  readonly flags: readonly MetaFlag[];
  readonly value: Buffer;
}

/** Meta status codes: HD (done/stored/deleted), EN (miss), NF (not found), NS (not stored), EX (cas mismatch). */
export interface MetaStatusFrame {
  readonly kind: "HD" | "EN" | "NF" | "NS" | "EX";
  readonly flags: readonly MetaFlag[];
}

/** `ME <key> <name>=<value>*` (me). */
export interface MetaDebugFrame {
  readonly kind: "ME";
  /** As sent by the server (latin1, base64 when the request had `b`). */
  readonly key: string;
  readonly fields: readonly MetaDebugField[];
}

/** `STAT <name> <value>`; a stats reply is a run of these ended by END. */
export interface StatFrame {
  readonly kind: "STAT";
  readonly name: string;
  readonly value: string;
}

export interface VersionFrame {
  readonly kind: "VERSION";
  readonly version: string;
}

/** A bare number line: the new value after incr or decr (64-bit unsigned). */
export interface NumberFrame {
  readonly kind: "NUMBER";
  readonly value: bigint;
}

/** Lines that carry nothing but their word. END closes get/stats replies, MN answers mn, RESET answers stats reset. */
export interface StatusFrame {
  readonly kind:
    "END" | "MN" | "STORED" | "NOT_STORED" | "EXISTS" | "NOT_FOUND" | "DELETED" | "TOUCHED" | "OK" | "RESET";
}

/** The server's error lines; `message` is what follows the word ("" for a bare ERROR). */
export interface ErrorFrame {
  readonly kind: "ERROR" | "CLIENT_ERROR" | "SERVER_ERROR";
  readonly message: string;
}

export type ReplyFrame =
  | ValueFrame
  | MetaValueFrame
  | MetaStatusFrame
  | MetaDebugFrame
  | StatFrame
  | VersionFrame
  | NumberFrame
  | StatusFrame
  | ErrorFrame;

export type ReplyCallback = (frame: ReplyFrame) => void;

export interface ReplyParserOptions {
  /** Longest reply line accepted, in bytes without \r\n; longer is a ProtocolError. */
  maxLineLength?: number;
  /** Largest data block accepted, in bytes; set it to the server's item size limit to bound memory sooner. */
  maxValueSize?: number;
  /**
   * Asked at each VALUE header: a receiver takes that value's key and bytes in place of a ValueFrame (no frame,
   * key string or Buffer is made for it); undefined makes the frame as usual. A client sets this to the
   * receiver of the request the reply belongs to.
   */
  rawValues?: () => RawValueReceiver | undefined;
}

/** Takes VALUE replies as byte ranges (see ReplyParserOptions.rawValues). */
export interface RawValueReceiver {
  /** A VALUE header's key, `buf[start..end)` (its bytes). Throw a ProtocolError if it was not asked for. */
  key(buf: Buffer, start: number, end: number): void;
  /** That value's data block, `buf[start..end)`, and its client flags (a cas unique is dropped). Not copied. */
  value(buf: Buffer, start: number, end: number, flags: number): void;
}

const CR = 13;
const LF = 10;
const SPACE = 32;
const EMPTY_FLAGS: readonly MetaFlag[] = Object.freeze([]);
const EMPTY_VALUE = Buffer.alloc(0);
const MAX_UINT32 = 0xffffffff;
const MAX_UINT64 = 0xffffffffffffffffn;

// Word-only replies are the same every time: share one frozen frame each instead of allocating.
function statusFrame(kind: StatusFrame["kind"]): StatusFrame {
  return Object.freeze({ kind });
}
const END = statusFrame("END");
const MN = statusFrame("MN");
const STORED = statusFrame("STORED");
const NOT_STORED = statusFrame("NOT_STORED");
const EXISTS = statusFrame("EXISTS");
const NOT_FOUND = statusFrame("NOT_FOUND");
const DELETED = statusFrame("DELETED");
const TOUCHED = statusFrame("TOUCHED");
const OK = statusFrame("OK");
const RESET = statusFrame("RESET");
const BARE_META: Record<MetaStatusFrame["kind"], MetaStatusFrame> = {
  HD: Object.freeze({ kind: "HD", flags: EMPTY_FLAGS }),
  EN: Object.freeze({ kind: "EN", flags: EMPTY_FLAGS }),
  NF: Object.freeze({ kind: "NF", flags: EMPTY_FLAGS }),
  NS: Object.freeze({ kind: "NS", flags: EMPTY_FLAGS }),
  EX: Object.freeze({ kind: "EX", flags: EMPTY_FLAGS }),
};
const FLAG_NAMES: string[] = Array.from({ length: 128 }, (_, c) => String.fromCharCode(c));

const CALLBACK_THREW = "the reply callback threw, so the rest of the chunk was lost: close the connection";

const HEADER_NONE = 0;
const HEADER_VALUE = 1;
const HEADER_VA = 2;

/**
 * Streaming parser for everything a memcached server sends a client (text and meta protocol).
 *
 * Feed it each chunk as it arrives; it calls `onFrame` once per complete reply, in order. A partial line
 * waits in a small reusable buffer (bounded by maxLineLength) that is compacted, never concatenated onto;
 * a data block that arrived whole is handed out as a view of the chunk, a split one is gathered into one
 * buffer of its exact size.
 *
 * Ownership of `value` Buffers: each is either a view of a chunk passed to parse() or a buffer the parser
 * allocated for that value alone; the parser never writes to either again, so a value may be kept. It does
 * keep its chunk's memory alive: copy small values you hold for long out of large chunks. Chunks must not
 * be reused by the caller (socket chunks are not).
 *
 * Malformed input throws ProtocolError; from then on the parser is broken and every parse() throws that
 * error again: close the connection. If `onFrame` throws, the rest of that chunk is lost and the parser
 * is broken the same way.
 */
export class ReplyParser {
  private readonly maxLineLength: number;
  private readonly maxValueSize: number;
  // A line split across chunks: its first `lineLength` bytes, in a buffer reused line after line.
  private line: Buffer = EMPTY_VALUE;
  private lineLength = 0;
  // A data block still being read: its header, size, the bytes so far, and how much of its \r\n was seen.
  private header = HEADER_NONE;
  private headerKey = "";
  private headerFlags = 0;
  private headerCas: bigint | undefined = undefined;
  private headerMeta: readonly MetaFlag[] = EMPTY_FLAGS;
  private blockSize = 0;
  private block: Buffer | undefined = undefined;
  /** Where the block starts in `block` (a raw value read in place from its chunk). */
  private blockAt = 0;
  private blockFilled = 0;
  private readonly rawValues: (() => RawValueReceiver | undefined) | undefined;
  private headerRaw: RawValueReceiver | undefined = undefined;
  private trailerSeen = 0;
  private failure: Error | undefined = undefined;

  constructor(options: ReplyParserOptions = {}) {
    this.maxLineLength = options.maxLineLength ?? DEFAULT_MAX_REPLY_LINE_LENGTH;
    this.maxValueSize = options.maxValueSize ?? DEFAULT_MAX_REPLY_VALUE_SIZE;
    this.rawValues = options.rawValues;
    if (!Number.isInteger(this.maxLineLength) || this.maxLineLength < 16) {
      throw new ConfigError(
        `maxLineLength ${this.maxLineLength} is too small: give a whole number of at least 16 bytes`,
      );
    }
    if (!Number.isInteger(this.maxValueSize) || this.maxValueSize < 0) {
      throw new ConfigError(`maxValueSize ${this.maxValueSize} must be a whole number of bytes, 0 or more`);
    }
  }

  /** True while part of a reply is buffered: a connection closing now has cut a reply short. */
  get hasPartialReply(): boolean {
    return this.lineLength > 0 || this.header !== HEADER_NONE;
  }

  parse(chunk: Buffer, onFrame: ReplyCallback): void {
    if (this.failure !== undefined) throw this.failure;
    try {
      this.run(chunk, onFrame);
    } catch (error) {
      this.failure =
        error instanceof ProtocolError ? error : new ProtocolError(CALLBACK_THREW, { cause: error });
      throw error;
    }
  }

  private run(chunk: Buffer, onFrame: ReplyCallback): void {
    const end = chunk.length;
    let pos = 0;
    if (this.header !== HEADER_NONE) {
      pos = this.readBlock(chunk, pos, onFrame);
      if (this.header !== HEADER_NONE) return;
    }
    if (this.lineLength > 0) {
      const nl = chunk.indexOf(LF, pos);
      if (nl === -1) {
        this.keep(chunk, pos, end);
        return;
      }
      this.keep(chunk, pos, nl + 1);
      const length = this.lineLength;
      this.lineLength = 0;
      this.onLine(this.line, 0, length - 1, onFrame);
      pos = nl + 1;
      if (this.header !== HEADER_NONE) pos = this.readBlock(chunk, pos, onFrame);
    }
    while (pos < end && this.header === HEADER_NONE) {
      const nl = chunk.indexOf(LF, pos);
      if (nl === -1) {
        this.keep(chunk, pos, end);
        return;
      }
      this.onLine(chunk, pos, nl, onFrame);
      pos = nl + 1;
      if (this.header !== HEADER_NONE) pos = this.readBlock(chunk, pos, onFrame);
    }
  }

  /** Buffers bytes of an unfinished line, refusing to hold more than a line may be long. */
  private keep(chunk: Buffer, from: number, to: number): void {
    const need = this.lineLength + (to - from);
    // Room for the longest line, its \r and its \n; until the \n comes, the last byte may be the \r.
    const complete = chunk[to - 1] === LF;
    if (need > this.maxLineLength + (complete ? 2 : 1)) throw lineTooLong(this.maxLineLength);
    if (need > this.line.length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(need * 2, 256), this.maxLineLength + 2));
      this.line.copy(grown, 0, 0, this.lineLength);
      this.line = grown;
    }
    chunk.copy(this.line, this.lineLength, from, to);
    this.lineLength = need;
  }

  /** Reads (the rest of) the current data block and its \r\n from `chunk`; returns the position after. */
  private readBlock(chunk: Buffer, pos: number, onFrame: ReplyCallback): number {
    const end = chunk.length;
    const size = this.blockSize;
    if (this.block === undefined) {
      // First bytes of the block: hand out a view when the whole block is in this chunk.
      if (end - pos >= size) {
        if (this.headerRaw !== undefined) {
          this.block = chunk;
          this.blockAt = pos;
        } else {
          this.block = size === 0 ? EMPTY_VALUE : chunk.subarray(pos, pos + size);
          this.blockAt = 0;
        }
        this.blockFilled = size;
        pos += size;
      } else {
        this.block = Buffer.allocUnsafe(size);
        this.blockAt = 0;
        this.blockFilled = 0;
      }
    }
    if (this.blockFilled < size) {
      const take = Math.min(size - this.blockFilled, end - pos);
      chunk.copy(this.block, this.blockFilled, pos, pos + take);
      this.blockFilled += take;
      pos += take;
      if (this.blockFilled < size) return pos;
    }
    while (this.trailerSeen < 2) {
      if (pos === end) return pos;
      if (chunk[pos] !== (this.trailerSeen === 0 ? CR : LF)) throw badTrailer(size);
      this.trailerSeen++;
      pos++;
    }
    const value = this.block;
    const header = this.header;
    const raw = this.headerRaw;
    this.header = HEADER_NONE;
    this.block = undefined;
    this.headerRaw = undefined;
    this.trailerSeen = 0;
    if (raw !== undefined) {
      raw.value(value, this.blockAt, this.blockAt + size, this.headerFlags);
    } else if (header === HEADER_VALUE) {
      const frame: ValueFrame = {
        kind: "VALUE",
        key: this.headerKey,
        flags: this.headerFlags,
        value,
        cas: this.headerCas,
      };
      onFrame(frame);
    } else {
      const frame: MetaValueFrame = { kind: "VA", flags: this.headerMeta, value };
      onFrame(frame);
    }
    return pos;
  }

  /** Handles one complete line, `nl` being the index of its \n. */
  private onLine(buf: Buffer, start: number, nl: number, onFrame: ReplyCallback): void {
    if (nl - start > this.maxLineLength + 1) throw lineTooLong(this.maxLineLength);
    const end = nl - 1;
    if (end < start || buf[end] !== CR)
      throw new ProtocolError(
        `reply line ${show(buf, start, nl)} ends in a bare \\n instead of \\r\\n: the stream is corrupt or not from memcached; close the connection`,
      );
    let t = start;
    while (t < end && buf[t] !== SPACE) t++;
    const len = t - start;
    switch (buf[start]) {
      case 0x56 /* V */:
        if (is(buf, start, len, "VALUE")) return this.onValueHeader(buf, start, t, end);
        if (is(buf, start, len, "VA")) return this.onVaHeader(buf, start, t, end);
        if (is(buf, start, len, "VERSION")) return onFrame({ kind: "VERSION", version: rest(buf, t, end) });
        break;
      case 0x45 /* E */:
        if (is(buf, start, len, "END") && t === end) return onFrame(END);
        if (is(buf, start, len, "EN")) return onFrame(this.meta("EN", buf, t, end));
        if (is(buf, start, len, "EX")) return onFrame(this.meta("EX", buf, t, end));
        if (is(buf, start, len, "EXISTS") && t === end) return onFrame(EXISTS);
        if (is(buf, start, len, "ERROR")) return onFrame({ kind: "ERROR", message: rest(buf, t, end) });
        break;
      case 0x48 /* H */:
        if (is(buf, start, len, "HD")) return onFrame(this.meta("HD", buf, t, end));
        break;
      case 0x4e /* N */:
        if (is(buf, start, len, "NF")) return onFrame(this.meta("NF", buf, t, end));
        if (is(buf, start, len, "NS")) return onFrame(this.meta("NS", buf, t, end));
        if (is(buf, start, len, "NOT_FOUND") && t === end) return onFrame(NOT_FOUND);
        if (is(buf, start, len, "NOT_STORED") && t === end) return onFrame(NOT_STORED);
        break;
      case 0x4d /* M */:
        if (is(buf, start, len, "MN") && t === end) return onFrame(MN);
        if (is(buf, start, len, "ME")) return onFrame(this.metaDebug(buf, t, end));
        break;
      case 0x53 /* S */:
        if (is(buf, start, len, "STAT")) return onFrame(this.stat(buf, t, end));
        if (is(buf, start, len, "STORED") && t === end) return onFrame(STORED);
        if (is(buf, start, len, "SERVER_ERROR"))
          return onFrame({ kind: "SERVER_ERROR", message: rest(buf, t, end) });
        break;
      case 0x43 /* C */:
        if (is(buf, start, len, "CLIENT_ERROR"))
          return onFrame({ kind: "CLIENT_ERROR", message: rest(buf, t, end) });
        break;
      case 0x44 /* D */:
        if (is(buf, start, len, "DELETED") && t === end) return onFrame(DELETED);
        break;
      case 0x54 /* T */:
        if (is(buf, start, len, "TOUCHED") && t === end) return onFrame(TOUCHED);
        break;
      case 0x4f /* O */:
        if (is(buf, start, len, "OK") && t === end) return onFrame(OK);
        break;
      case 0x52 /* R */:
        if (is(buf, start, len, "RESET") && t === end) return onFrame(RESET);
        break;
      default:
        if (buf[start] >= 0x30 && buf[start] <= 0x39) return onFrame(this.number(buf, start, t, end));
    }
    throw new ProtocolError(
      `unexpected reply line ${show(buf, start, end)}: the stream is out of step with the requests or not from memcached; close the connection`,
    );
  }

  private onValueHeader(buf: Buffer, start: number, t: number, end: number): void {
    // VALUE <key> <flags> <bytes> [<cas>]
    let s = t + 1;
    let e = tokenEnd(buf, s, end);
    if (e === s) throw badLine(buf, start, end, "has no key");
    const raw = this.rawValues?.();
    if (raw !== undefined) raw.key(buf, s, e);
    const key = raw === undefined ? buf.toString("latin1", s, e) : "";
    s = e + 1;
    e = tokenEnd(buf, s, end);
    const flags = parseUint(buf, s, e);
    if (flags < 0 || flags > MAX_UINT32) throw badLine(buf, start, end, "has bad client flags");
    s = e + 1;
    e = tokenEnd(buf, s, end);
    const size = this.size(buf, s, e, start, end);
    let cas: bigint | undefined;
    if (e < end) {
      s = e + 1;
      e = tokenEnd(buf, s, end);
      cas = parseUint64(buf, s, e);
      if (cas === undefined || e !== end) throw badLine(buf, start, end, "has a bad cas unique");
    }
    this.header = HEADER_VALUE;
    this.headerRaw = raw;
    this.headerKey = key;
    this.headerFlags = flags;
    this.headerCas = cas;
    this.blockSize = size;
  }

  private onVaHeader(buf: Buffer, start: number, t: number, end: number): void {
    // VA <size> <flags>*
    const s = t + 1;
    const e = tokenEnd(buf, s, end);
    const size = this.size(buf, s, e, start, end);
    this.header = HEADER_VA;
    this.headerMeta = e < end ? metaFlags(buf, e, end) : EMPTY_FLAGS;
    this.blockSize = size;
  }

  private size(buf: Buffer, s: number, e: number, start: number, end: number): number {
    const size = parseUint(buf, s, e);
    if (size < 0) throw badLine(buf, start, end, "has a bad data block size");
    if (size > this.maxValueSize) {
      throw new ProtocolError(
        `a data block of ${size} bytes exceeds maxValueSize (${this.maxValueSize} bytes): raise maxValueSize to the server's item size limit, or the stream is corrupt; close the connection`,
      );
    }
    return size;
  }

  private meta(kind: MetaStatusFrame["kind"], buf: Buffer, t: number, end: number): MetaStatusFrame {
    if (t === end) return BARE_META[kind];
    const flags = metaFlags(buf, t, end);
    return flags.length === 0 ? BARE_META[kind] : { kind, flags };
  }

  private metaDebug(buf: Buffer, t: number, end: number): MetaDebugFrame {
    // ME <key> <name>=<value>*
    let s = t + 1;
    let e = tokenEnd(buf, s, end);
    if (e <= s) throw badLine(buf, t, end, "ME line has no key");
    const key = buf.toString("latin1", s, e);
    const fields: MetaDebugField[] = [];
    for (s = e + 1; s < end; s = e + 1) {
      e = tokenEnd(buf, s, end);
      if (e === s) continue;
      let eq = s;
      while (eq < e && buf[eq] !== 0x3d /* = */) eq++;
      if (eq === e || eq === s) throw badLine(buf, t, end, "ME field is not name=value");
      fields.push({ name: buf.toString("latin1", s, eq), value: buf.toString("latin1", eq + 1, e) });
    }
    return { kind: "ME", key, fields };
  }

  private stat(buf: Buffer, t: number, end: number): StatFrame {
    // STAT <name> <value>; the value runs to the end of the line and may hold spaces.
    const s = t + 1;
    const e = tokenEnd(buf, s, end);
    if (e <= s) throw badLine(buf, t, end, "STAT line has no name");
    return {
      kind: "STAT",
      name: buf.toString("latin1", s, e),
      value: e < end ? buf.toString("latin1", e + 1, end) : "",
    };
  }

  private number(buf: Buffer, start: number, t: number, end: number): NumberFrame {
    // memcached may pad the number with spaces; nothing else may follow it.
    for (let i = t; i < end; i++) if (buf[i] !== SPACE) throw badLine(buf, start, end, "is not a number");
    const value = parseUint64(buf, start, t);
    if (value === undefined) throw badLine(buf, start, end, "is not a 64-bit unsigned number");
    return { kind: "NUMBER", value };
  }
}

/** The error a client should raise for an error frame: CommandError, ClientError or ServerError. */
export function replyError(frame: ErrorFrame): CommandError | ClientError | ServerError {
  switch (frame.kind) {
    case "ERROR":
      return new CommandError(
        `memcached answered ERROR${frame.message === "" ? "" : ` ${frame.message}`}: it does not know the command; check the command name and that the server version supports it`,
      );
    case "CLIENT_ERROR":
      return new ClientError(
        `memcached answered CLIENT_ERROR ${frame.message}: fix the request (key, value size, arguments)`,
      );
    case "SERVER_ERROR":
      return new ServerError(
        `memcached answered SERVER_ERROR ${frame.message}: the server could not do it (value over its item size limit, out of memory); retry, shrink the value or raise the server's limits`,
      );
  }
}

/** The token of the first return flag `flag` in a meta reply, or undefined when the flag is absent. */
export function findMetaFlag(flags: readonly MetaFlag[], flag: string): string | undefined {
  for (let i = 0; i < flags.length; i++) if (flags[i].flag === flag) return flags[i].token;
  return undefined;
}

function metaFlags(buf: Buffer, t: number, end: number): readonly MetaFlag[] {
  const flags: MetaFlag[] = [];
  for (let s = t + 1, e = t; s < end; s = e + 1) {
    e = tokenEnd(buf, s, end);
    if (e === s) continue;
    const c = buf[s];
    if (c <= SPACE || c >= 0x7f)
      throw badLine(buf, t, end, "has a meta flag that is not a printable character");
    flags.push({ flag: FLAG_NAMES[c], token: e > s + 1 ? buf.toString("latin1", s + 1, e) : "" });
  }
  return flags;
}

function is(buf: Buffer, start: number, len: number, word: string): boolean {
  if (len !== word.length) return false;
  for (let i = 0; i < len; i++) if (buf[start + i] !== word.charCodeAt(i)) return false;
  return true;
}

function tokenEnd(buf: Buffer, s: number, end: number): number {
  while (s < end && buf[s] !== SPACE) s++;
  return s;
}

/** Text after the word and its space, or "" when the line is the word alone. */
function rest(buf: Buffer, t: number, end: number): string {
  return t + 1 < end ? buf.toString("latin1", t + 1, end) : "";
}

/** A decimal of at most 15 digits (exact as a number), or -1. */
function parseUint(buf: Buffer, s: number, e: number): number {
  if (e === s || e - s > 15) return -1;
  let n = 0;
  for (let i = s; i < e; i++) {
    const d = buf[i] - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

function parseUint64(buf: Buffer, s: number, e: number): bigint | undefined {
  if (e - s <= 15) {
    const n = parseUint(buf, s, e);
    return n < 0 ? undefined : BigInt(n);
  }
  if (e - s > 20) return undefined;
  for (let i = s; i < e; i++) if (buf[i] < 0x30 || buf[i] > 0x39) return undefined;
  const n = BigInt(buf.toString("latin1", s, e));
  return n > MAX_UINT64 ? undefined : n;
}

function show(buf: Buffer, start: number, end: number): string {
  const cut = Math.min(end, start + 60);
  return JSON.stringify(buf.toString("latin1", start, cut) + (cut < end ? "…" : ""));
}

function badLine(buf: Buffer, start: number, end: number, problem: string): ProtocolError {
  return new ProtocolError(
    `reply line ${show(buf, start, end)} ${problem}: the stream is corrupt or not from memcached; close the connection`,
  );
}

function lineTooLong(max: number): ProtocolError {
  return new ProtocolError(
    `a reply line ran past ${max} bytes without \\r\\n: the stream is corrupt or not from memcached; close the connection (or raise maxLineLength)`,
  );
}

function badTrailer(size: number): ProtocolError {
  return new ProtocolError(
    `a data block of ${size} bytes is not followed by \\r\\n: its size in the header is wrong or the stream is corrupt; close the connection`,
  );
}
