// The fuzzer's in-process properties: the request parser and the reply parser (typed frames only, the
// same frames however the bytes are cut, bounded buffering) and the server's engine (every request
// answered or the connection closed, no exception, replies a client can parse, store accounting intact).
import fc from "fast-check";
import { isDeepStrictEqual, inspect } from "node:util";
import { ProtocolError } from "../../src/errors.js";
import { LINE_LIMIT, RequestParser, type RequestParserOptions } from "../../src/protocol/request-parser.js";
import { ReplyParser, type ReplyFrame } from "../../src/protocol/reply-parser.js";
import type { Request } from "../../src/protocol/requests.js";
import { After, Engine, type Output } from "../../src/server/engine.js";
import { resolveOptions } from "../../src/server/options.js";
import { ITEM_OVERHEAD, itemSize, type Item } from "../../src/server/store.js";
import { bytewise, cut, cutsArb, replyStreamArb, requestStreamArb } from "./inputs.js";

/** Small limits, so that generated inputs cross them often. */
export const REQUEST_LIMITS: Required<RequestParserOptions> = { maxItemSize: 2048, maxGetLine: 16 * 1024 };
const BUFFER_SLACK = 64; // bytes a parser may hold beyond its line and item limits
const BYTEWISE_LIMIT = 16 * 1024; // bytes: longer streams are cut at random offsets only
const REPLY_LIMITS = { maxLineLength: 8192, maxValueSize: 64 * 1024 };
const ENGINE_MEMORY = 32 * 1024; // bytes of item memory: a few large items already evict
const ENGINE_MAX_ITEM = 2048; // bytes
const CLOCK_START = 1_700_000_000; // unix seconds the engine's clock starts at

/** A property failure: thrown from a predicate, it carries what went wrong in words. */
export class PropertyViolation extends Error {
  override readonly name = "PropertyViolation";
}

function violated(what: string): never {
  throw new PropertyViolation(what);
}

/** Whether the stream holds a run of more than `limit` bytes without a newline. */
export function hasLongRun(stream: Buffer, limit: number): boolean {
  let from = 0;
  for (;;) {
    const nl = stream.indexOf(10, from);
    const end = nl < 0 ? stream.length : nl;
    if (end - from > limit) return true;
    if (nl < 0) return false;
    from = nl + 1;
  }
}

// ---- request parser -------------------------------------------------------------------------------

interface ParsedRequests {
  frames: Request[];
  closed: boolean;
}

/** Feeds the pieces in order, pausing the parser after every `pauseEvery`th frame and resuming it. */
export function parseRequests(
  pieces: readonly Buffer[],
  options: RequestParserOptions = REQUEST_LIMITS,
  pauseEvery = 0,
): ParsedRequests {
  const parser = new RequestParser(options);
  const frames: Request[] = [];
  let paused = false;
  const handler = (request: Request): boolean => {
    if (parser.closed && request.kind !== "close" && request.kind !== "quit") {
      violated(`a ${request.kind} frame came after the parser closed`);
    }
    frames.push(request);
    if (pauseEvery > 0 && frames.length % pauseEvery === 0) paused = true;
    return !paused;
  };
  const bound = Math.max(LINE_LIMIT, options.maxGetLine ?? 0) + options.maxItemSize + BUFFER_SLACK;
  for (const piece of pieces) {
    try {
      parser.feed(piece, handler);
      while (paused && !parser.closed) {
        paused = false;
        parser.resume(handler);
      }
    } catch (error) {
      if (error instanceof PropertyViolation) throw error;
      violated(`the request parser threw ${inspect(error)}`);
    }
    if (!parser.closed && parser.buffered > bound) {
      violated(`the request parser holds ${parser.buffered} bytes, over its bound of ${bound}`);
    }
  }
  return { frames, closed: parser.closed };
}

function isTooLongClose(frame: Request | undefined): boolean {
  return frame?.kind === "close" && frame.reason === "command line too long";
}

/**
 * Two parses of the same stream agree. The one exception is memcached's own: a line over LINE_LIMIT
 * bytes is given up on when that much arrives without a newline, so a parse that saw it in small
 * reads may close where one that saw it whole read on; then the closing parse's frames are a prefix.
 */
function sameRequests(stream: Buffer, a: ParsedRequests, b: ParsedRequests, what: string): void {
  if (isDeepStrictEqual(a.frames, b.frames)) return;
  if (hasLongRun(stream, LINE_LIMIT) && (closedEarlier(a, b) || closedEarlier(b, a))) return;
  let at = 0;
  while (at < a.frames.length && isDeepStrictEqual(a.frames[at], b.frames[at])) at++;
  violated(
    `${what}: frames differ at #${at}: ${inspect(a.frames[at], { depth: 3 })} against ${inspect(b.frames[at], { depth: 3 })}`,
  );
}

/** `early` closed for a too-long line where `late` read on, and agreed with it until then. */
function closedEarlier(early: ParsedRequests, late: ParsedRequests): boolean {
  const last = early.frames.length - 1;
  return (
    isTooLongClose(early.frames[last]) &&
    late.frames.length >= last &&
    isDeepStrictEqual(early.frames.slice(0, last), late.frames.slice(0, last))
  );
}

/** The request parser: typed frames only, split-invariant, bounded buffering, pause and resume. */
export function requestParserProperty(): fc.IPropertyWithHooks<[Buffer, number[], number]> {
  return fc.property(
    requestStreamArb({ admin: true, quit: true }),
    cutsArb,
    fc.nat({ max: 4 }),
    (stream, cuts, pauseEvery) => {
      const whole = parseRequests([stream]);
      sameRequests(
        stream,
        whole,
        parseRequests(cut(stream, cuts), REQUEST_LIMITS, pauseEvery),
        "random cuts",
      );
      if (stream.length <= BYTEWISE_LIMIT) {
        sameRequests(stream, whole, parseRequests(bytewise(stream)), "byte by byte");
      }
    },
  );
}

// ---- reply parser ---------------------------------------------------------------------------------

interface ParsedReplies {
  frames: ReplyFrame[];
  error: ProtocolError | undefined;
}

/** The reply parser's partial-line buffer, the one piece of its state that input makes grow. */
function lineBufferSize(parser: ReplyParser): number {
  return (parser as unknown as { line: Buffer }).line.length;
}

export function parseReplies(pieces: readonly Buffer[]): ParsedReplies {
  const parser = new ReplyParser(REPLY_LIMITS);
  const frames: ReplyFrame[] = [];
  // Values may be views of a piece: copy them, as a caller keeping them past the next read would.
  const onFrame = (frame: ReplyFrame) => {
    if (frame.kind === "VALUE" || frame.kind === "VA")
      frames.push({ ...frame, value: Buffer.from(frame.value) });
    else frames.push(frame);
  };
  for (const piece of pieces) {
    try {
      parser.parse(piece, onFrame);
    } catch (error) {
      if (!(error instanceof ProtocolError)) violated(`the reply parser threw ${inspect(error)}`);
      let again: unknown;
      try {
        parser.parse(Buffer.from("END\r\n"), onFrame);
      } catch (next) {
        again = next;
      }
      if (again !== error) violated("a reply parser that failed once accepted more input");
      return { frames, error };
    }
    if (lineBufferSize(parser) > REPLY_LIMITS.maxLineLength + 2) {
      violated(`the reply parser buffers ${lineBufferSize(parser)} bytes of one line`);
    }
  }
  return { frames, error: undefined };
}

function sameReplies(a: ParsedReplies, b: ParsedReplies, what: string): void {
  if (!isDeepStrictEqual(a.frames, b.frames)) {
    violated(`${what}: reply frames differ (${a.frames.length} against ${b.frames.length})`);
  }
  if (a.error?.message !== b.error?.message) {
    violated(`${what}: reply errors differ: ${a.error?.message} against ${b.error?.message}`);
  }
}

/** The reply parser: ProtocolError or frames, split-invariant, a bounded line buffer. */
export function replyParserProperty(): fc.IPropertyWithHooks<[Buffer, number[]]> {
  return fc.property(replyStreamArb(), cutsArb, (stream, cuts) => {
    const whole = parseReplies([stream]);
    sameReplies(whole, parseReplies(cut(stream, cuts)), "random cuts");
    if (stream.length <= BYTEWISE_LIMIT) sameReplies(whole, parseReplies(bytewise(stream)), "byte by byte");
  });
}

// ---- engine -----------------------------------------------------------------------------------------

/** Replies gathered per read, as a connection gathers them (pins held until the read's replies go). */
class CollectingOutput implements Output {
  readonly sent: Buffer[] = [];
  #pending: Buffer[] = [];
  #pinned: Item[] = [];
  /** Bytes appended since the counter was last read, discarded ones included. */
  appended = 0;

  text(s: string): void {
    this.#pending.push(Buffer.from(s, "latin1"));
    this.appended += s.length;
  }
  bytes(b: Buffer): void {
    this.#pending.push(Buffer.from(b));
    this.appended += b.length;
  }
  discard(): void {
    this.#pending = [];
    this.release();
  }
  pin(item: Item): void {
    item.refs++;
    this.#pinned.push(item);
  }
  release(): void {
    for (const item of this.#pinned) item.refs--;
    this.#pinned = [];
  }
  /** The end of a read: replies go out, pinned items are let go. */
  flush(): void {
    this.release();
    this.sent.push(...this.#pending);
    this.#pending = [];
  }
}

/** Whether memcached owes the client some reply to this frame. */
function expectsReply(request: Request): boolean {
  switch (request.kind) {
    case "get":
    case "version":
    case "mn":
    case "stats":
    case "me":
      return true;
    case "store":
    case "delete":
    case "arithmetic":
    case "touch":
    case "flush_all":
    case "verbosity":
    case "admin":
    case "rejected":
      return !request.noreply;
    case "mg":
    case "md":
    case "ma":
    case "ms":
      return !request.flags.quiet;
    case "quit":
    case "close":
      return false;
  }
}

/** Keys a frame may have stored something under. */
function keysOf(request: Request): string[] {
  switch (request.kind) {
    case "get":
      return request.keys;
    case "store":
    case "delete":
    case "arithmetic":
    case "touch":
    case "mg":
    case "ms":
    case "md":
    case "ma":
    case "me":
      return [request.key];
    default:
      return [];
  }
}

export interface EngineRun {
  stream: Buffer;
  cuts: number[];
  /** Seconds the clock moves on after each read (cycled). */
  ticks: number[];
}

export function engineRunArb(): fc.Arbitrary<EngineRun> {
  return fc.record({
    stream: requestStreamArb({ quit: true, maxCommands: 40 }),
    cuts: cutsArb,
    ticks: fc.array(fc.constantFrom(0, 0, 0, 1, 2, 30, 100_000, 2_592_001), { minLength: 1, maxLength: 4 }),
  });
}

/** Runs a stream through parser and engine as one connection would; returns the engine and its replies. */
export function runEngine(run: EngineRun): { engine: Engine; replies: Buffer } {
  let now = CLOCK_START;
  const options = resolveOptions({ memoryLimit: ENGINE_MEMORY, maxItemSize: ENGINE_MAX_ITEM, port: 0 });
  const engine = new Engine(options, () => now);
  const parser = new RequestParser({ maxItemSize: options.maxItemSize });
  const out = new CollectingOutput();
  const keys = new Set<string>();
  let closed = false;
  const handler = (request: Request): boolean => {
    for (const key of keysOf(request)) keys.add(key);
    out.appended = 0;
    let after: After;
    try {
      after = engine.execute(request, out);
    } catch (error) {
      violated(`the engine threw ${inspect(error)} on ${inspect(request, { depth: 3 })}`);
    }
    if (after === After.close) {
      closed = true;
      return false;
    }
    if (expectsReply(request) && out.appended === 0) {
      violated(`the engine answered nothing to ${inspect(request, { depth: 3 })}`);
    }
    return true;
  };
  const pieces = cut(run.stream, run.cuts);
  for (let i = 0; i < pieces.length && !closed; i++) {
    parser.feed(pieces[i]!, handler);
    out.flush();
    now += run.ticks[i % run.ticks.length]!;
    checkStore(engine, keys);
  }
  return { engine, replies: Buffer.concat(out.sent) };
}

/**
 * The store's accounting: every byte charged belongs to a live item under a key a request named (its
 * memcached size plus the store's fixed per-item overhead), and no item is left pinned.
 */
function checkStore(engine: Engine, keys: ReadonlySet<string>): void {
  const store = engine.store;
  if (store.bytes < 0 || store.bytes > store.memoryLimit) {
    violated(`the store charges ${store.bytes} bytes against a limit of ${store.memoryLimit}`);
  }
  let items = 0;
  let bytes = 0;
  // peek drops expired and flushed items, as a read would, so the counts below are of live items.
  for (const key of keys) {
    const item = store.peek(key);
    if (item === undefined) continue;
    items++;
    bytes += item.size + ITEM_OVERHEAD;
    if (item.size !== itemSize(item.key.length, item.flags, item.value.length)) {
      violated(`item ${JSON.stringify(key)} is charged ${item.size} bytes for its ${item.value.length}`);
    }
    if (item.refs !== 0) violated(`item ${JSON.stringify(key)} is still pinned by ${item.refs} sent replies`);
    if (item.size > engine.options.maxItemSize)
      violated(`item ${JSON.stringify(key)} is over the item size limit`);
  }
  if (store.count !== items || store.bytes !== bytes) {
    violated(
      `the store counts ${store.count} items and ${store.bytes} bytes, but its live items are ${items} and ${bytes} bytes`,
    );
  }
}

/** The engine: no exception, every request answered (or the connection closed), parseable replies, a sound store. */
export function engineProperty(): fc.IPropertyWithHooks<[EngineRun]> {
  return fc.property(engineRunArb(), (run) => {
    const { replies } = runEngine(run);
    const parsed = parseReplies([replies]);
    if (parsed.error !== undefined) {
      violated(`the engine's replies do not parse: ${parsed.error.message}`);
    }
  });
}
