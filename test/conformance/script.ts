// Builders for conformance scripts: memcached text and meta commands as bytes, markers that split a
// script into pieces or steps, and references to CAS uniques seen earlier in the same script.
import type { ScriptEnd } from "../helpers/raw-session.js";
import { casValues } from "./normalize.js";
import type { NormalizerName } from "./normalize.js";

/** What a script has received so far on one target, for pieces computed at send time. */
export interface ReplyContext {
  /** Every reply byte of the earlier steps. */
  readonly replies: Buffer;
}

/** Bytes computed when they are sent (from earlier replies, or from the clock). */
export type Dynamic = (context: ReplyContext) => string | Buffer;
export type Piece = string | Buffer | Dynamic;

/** Ends the current step: the runner sends the sentinel and reads the step's whole reply. */
export interface SyncMarker {
  readonly kind: "sync";
}
/** Ends the current step, then waits this long before the next one. */
export interface PauseMarker {
  readonly kind: "pause";
  readonly ms: number;
}
/** Bytes written as separate socket writes with a short gap, so the server sees partial input. */
export interface PiecesMarker {
  readonly kind: "pieces";
  readonly pieces: readonly Piece[];
}
export type ScriptItem = Piece | SyncMarker | PauseMarker | PiecesMarker;

/** One step: writes sent in order (a short gap between them), then the reply read to its end. */
export interface Step {
  readonly pauseMs: number;
  readonly writes: readonly Piece[];
}

export interface ConformanceCase {
  /** "group: behaviour", unique across the table. */
  readonly name: string;
  readonly steps: readonly Step[];
  /** How the last step ends; earlier steps always end with the sentinel. */
  readonly end: ScriptEnd;
  /** Normalizers applied to both replies before comparing; each has a written reason in normalize.ts. */
  readonly normalize: readonly NormalizerName[];
  /** Why the case looks the way it does: an excluded field, a memcached quirk it pins down. */
  readonly note?: string;
  /**
   * "stock": compare with a memcached started with its default options, for replies that list what
   * the background LRU threads report (`stats`). Otherwise the reference runs without those threads
   * (see REFERENCE_MEMCACHED_ARGS in runner.ts).
   */
  readonly reference?: "stock";
}

export const sync: SyncMarker = { kind: "sync" };
export const pause = (ms: number): PauseMarker => ({ kind: "pause", ms });
export const pieces = (...parts: Piece[]): PiecesMarker => ({ kind: "pieces", pieces: parts });
/** The script's bytes written one byte per write. */
export const byteByByte = (text: string): PiecesMarker =>
  pieces(...Array.from(Buffer.from(text, "latin1"), (b) => Buffer.from([b])));

/** Splits a script into steps: at sync and pause markers, and before a dynamic piece (it needs replies). */
export function toSteps(items: readonly ScriptItem[]): Step[] {
  const steps: Step[] = [];
  let writes: Piece[] = [];
  let pauseMs = 0;
  let pending = "";
  const flushText = () => {
    if (pending !== "") writes.push(pending);
    pending = "";
  };
  const endStep = () => {
    flushText();
    if (writes.length > 0 || pauseMs > 0) steps.push({ pauseMs, writes });
    writes = [];
    pauseMs = 0;
  };
  for (const item of items) {
    if (typeof item === "string") pending += item;
    else if (Buffer.isBuffer(item)) pending += item.toString("latin1");
    else if (typeof item === "function") {
      endStep();
      writes.push(item);
    } else if (item.kind === "sync") endStep();
    else if (item.kind === "pause") {
      endStep();
      pauseMs = item.ms;
    } else {
      flushText();
      const dynamicAt = item.pieces.findIndex((p) => typeof p === "function");
      if (dynamicAt > 0 || (dynamicAt === 0 && writes.length > 0)) endStep();
      writes.push(...item.pieces);
    }
  }
  endStep();
  return steps;
}

// ---- values and keys -------------------------------------------------------------------------

/** Latin-1 text of n bytes cycling through a pattern; never ends in "MN" (the sentinel's reply). */
export function filler(n: number, pattern = "abcdefghij"): string {
  if (n <= 0) return "";
  return pattern.repeat(Math.ceil(n / pattern.length)).slice(0, n);
}

export function base64(text: string): string {
  return Buffer.from(text, "latin1").toString("base64");
}

/** Every byte value once, 0x00 to 0xff, as latin-1 text. */
export const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString("latin1");

// ---- text protocol ---------------------------------------------------------------------------

export interface StoreOptions {
  flags?: number | string;
  exptime?: number | string;
  /** Declared length when it must differ from the value's. */
  bytes?: number | string;
  noreply?: boolean;
}

export type StorageVerb = "set" | "add" | "replace" | "append" | "prepend";

export function store(verb: StorageVerb, key: string, value: string, options: StoreOptions = {}): string {
  const { flags = 0, exptime = 0, bytes = Buffer.byteLength(value, "latin1"), noreply = false } = options;
  return `${verb} ${key} ${flags} ${exptime} ${bytes}${noreply ? " noreply" : ""}\r\n${value}\r\n`;
}

export const set = (key: string, value: string, options?: StoreOptions) => store("set", key, value, options);
export const add = (key: string, value: string, options?: StoreOptions) => store("add", key, value, options);
export const replace = (key: string, value: string, options?: StoreOptions) =>
  store("replace", key, value, options);
export const append = (key: string, value: string, options?: StoreOptions) =>
  store("append", key, value, options);
export const prepend = (key: string, value: string, options?: StoreOptions) =>
  store("prepend", key, value, options);

/** `cas` with a unique given literally, or computed from the CAS uniques seen so far. */
export function cas(key: string, value: string, unique: string | CasRef, options: StoreOptions = {}): Piece {
  const { flags = 0, exptime = 0, bytes = Buffer.byteLength(value, "latin1"), noreply = false } = options;
  const text = (u: string) =>
    `cas ${key} ${flags} ${exptime} ${bytes} ${u}${noreply ? " noreply" : ""}\r\n${value}\r\n`;
  return typeof unique === "string" ? text(unique) : (context) => text(unique.resolve(context));
}

export const line = (text: string): string => `${text}\r\n`;
export const get = (...keys: string[]) => line(`get ${keys.join(" ")}`);
export const gets = (...keys: string[]) => line(`gets ${keys.join(" ")}`);
export const gat = (exptime: number | string, ...keys: string[]) => line(`gat ${exptime} ${keys.join(" ")}`);
export const gats = (exptime: number | string, ...keys: string[]) =>
  line(`gats ${exptime} ${keys.join(" ")}`);
export const del = (key: string, noreply = false) => line(`delete ${key}${noreply ? " noreply" : ""}`);
export const incr = (key: string, delta: string | number | bigint, noreply = false) =>
  line(`incr ${key} ${delta}${noreply ? " noreply" : ""}`);
export const decr = (key: string, delta: string | number | bigint, noreply = false) =>
  line(`decr ${key} ${delta}${noreply ? " noreply" : ""}`);
export const touch = (key: string, exptime: number | string, noreply = false) =>
  line(`touch ${key} ${exptime}${noreply ? " noreply" : ""}`);

// ---- meta protocol ---------------------------------------------------------------------------

/** Flags as tokens; a CasRef inside becomes a `C<unique>` token resolved at send time. */
export type MetaFlag = string | CasRef;

function metaLine(head: string, flags: readonly MetaFlag[]): string | Dynamic {
  const render = (context?: ReplyContext) =>
    [head, ...flags.map((f) => (typeof f === "string" ? f : `${f.prefix}${f.resolve(context!)}`))].join(" ");
  return flags.some((f) => typeof f !== "string") ? (context) => line(render(context)) : line(render());
}

export const mg = (key: string, ...flags: MetaFlag[]) => metaLine(`mg ${key}`, flags);
export const md = (key: string, ...flags: MetaFlag[]) => metaLine(`md ${key}`, flags);
export const ma = (key: string, ...flags: MetaFlag[]) => metaLine(`ma ${key}`, flags);
export const me = (key: string, ...flags: string[]) => line([`me ${key}`, ...flags].join(" "));
export const mn = line("mn");

/** `ms <key> <datalen> <flags>*` and its data block; `datalen` overrides the value's length. */
export function ms(
  key: string,
  value: string,
  flags: readonly MetaFlag[] = [],
  datalen?: number | string,
): Piece {
  const length = datalen ?? Buffer.byteLength(value, "latin1");
  const head = metaLine(`ms ${key} ${length}`, flags);
  const block = `${value}\r\n`;
  return typeof head === "string" ? head + block : (context) => head(context) + block;
}

// ---- references to CAS uniques ---------------------------------------------------------------

/** The nth distinct non-zero CAS unique in the replies so far (1-based), plus an offset. */
export interface CasRef {
  readonly prefix: string;
  resolve(context: ReplyContext): string;
}

export function casRef(n: number, offset = 0n, prefix = "C"): CasRef {
  return {
    prefix,
    resolve(context) {
      const seen = casValues(context.replies);
      const value = seen[n - 1];
      if (value === undefined) {
        throw new Error(`script asks for CAS unique #${n} but its replies so far hold ${seen.length}`);
      }
      return String(value + offset);
    },
  };
}

/** The `n`th CAS unique, for the text `cas` command (no flag prefix). */
export const casUnique = (n: number, offset = 0n): CasRef => casRef(n, offset, "");

// ---- the case table --------------------------------------------------------------------------

export interface CaseOptions {
  end?: ScriptEnd;
  normalize?: NormalizerName[];
  note?: string;
  reference?: "stock";
}

/** Keys for one case: every key starts with the case's own prefix, so cases never share items. */
export interface Keys {
  (name: string): string;
  readonly prefix: string;
  /** A key of exactly `length` bytes (prefix included). */
  sized(length: number): string;
}

export type AddCase = (name: string, script: (k: Keys) => ScriptItem[], options?: CaseOptions) => void;

export class CaseTable {
  readonly cases: ConformanceCase[] = [];
  readonly #names = new Set<string>();

  group(groupName: string, build: (add: AddCase) => void): void {
    build((name, script, options = {}) => {
      const full = `${groupName}: ${name}`;
      if (this.#names.has(full)) throw new Error(`duplicate conformance case name: ${full}`);
      this.#names.add(full);
      const keys = makeKeys(`t${this.cases.length}_`);
      this.cases.push({
        name: full,
        steps: toSteps(script(keys)),
        end: options.end ?? "sentinel",
        normalize: options.normalize ?? [],
        ...(options.note !== undefined ? { note: options.note } : {}),
        ...(options.reference !== undefined ? { reference: options.reference } : {}),
      });
    });
  }
}

function makeKeys(prefix: string): Keys {
  const keys = ((name: string) => `${prefix}${name}`) as Keys;
  Object.defineProperty(keys, "prefix", { value: prefix });
  Object.defineProperty(keys, "sized", {
    value: (length: number) => (prefix + filler(Math.max(0, length - prefix.length), "k")).slice(0, length),
  });
  return keys;
}
