// Carries out parsed requests against the store and writes memcached's replies, byte for byte.
import { toBase64Key } from "../protocol/keys.js";
import { META_MAX_OPAQUE } from "../protocol/meta.js";
import { parseStoredU64 } from "../protocol/numbers.js";
import type {
  ArithmeticRequest,
  GetRequest,
  MetaRequest,
  MetaSetRequest,
  Request,
  StorageCommand,
  StoreRequest,
} from "../protocol/requests.js";
import { loadCredentials, type Credentials } from "./auth.js";
import type { Collector } from "./collector.js";
import { ItemBit, Store, valueBytes, type Item } from "./store.js";
import { ServerStats } from "./stats.js";
import type { ServerOptions } from "./options.js";

/** Where replies go: the connection's output buffer. */
export interface Output {
  /** Appends latin1 text as is. */
  text(s: string): void;
  /** Appends bytes as is. */
  bytes(b: Buffer): void;
  /** Drops replies gathered but not sent yet (memcached culls them on some errors). */
  discard(): void;
  /** Marks an item as held by a reply until that reply is sent. */
  pin(item: Item): void;
  /** What memcached does when it sends its replies at once (after get and mn): held items are let go. */
  release(): void;
}

const U64_MASK = (1n << 64n) - 1n;

type StoreResult = "STORED" | "EXISTS" | "NOT_FOUND" | "NOT_STORED";
const META_CODE: Record<StoreResult, string> = {
  STORED: "HD",
  EXISTS: "EX",
  NOT_FOUND: "NF",
  NOT_STORED: "NS",
};

/** What a request asks of the connection after its reply. */
export const After = { continue: 0, close: 1 } as const;
export type After = (typeof After)[keyof typeof After];

export class Engine {
  readonly store: Store;
  readonly stats: ServerStats;
  readonly options: ServerOptions;
  verbosity = 0;
  /** The users of the auth file; while set, every connection authenticates before its first command. */
  credentials: Credentials | undefined;
  /** Paces full garbage collections by the garbage made, when the hosting process allows it. */
  collector: Collector | undefined;

  constructor(options: ServerOptions, now: () => number) {
    this.options = options;
    this.store = new Store(options.memoryLimit, now);
    this.stats = new ServerStats(now);
    this.credentials = options.authFile === undefined ? undefined : loadCredentials(options.authFile);
  }

  /**
   * Reads the auth file again (memcached does on SIGHUP). When it cannot be read or is malformed, the users
   * loaded before stay in force and the error is thrown for the caller to report.
   */
  reloadCredentials(): void {
    if (this.options.authFile !== undefined) this.credentials = loadCredentials(this.options.authFile);
  }

  /** The authentication gate's check, counted as memcached counts it (auth_cmds, auth_errors). */
  authenticate(user: Buffer, password: Buffer): boolean {
    this.stats.authCmds++;
    const ok = this.credentials?.check(user, password) ?? false;
    if (!ok) this.stats.authErrors++;
    return ok;
  }

  execute(request: Request, out: Output): After {
    switch (request.kind) {
      case "get":
        this.get(request, out);
        return After.continue;
      case "store":
        this.#store(request, out);
        return After.continue;
      case "delete": {
        const item = this.store.peek(request.key);
        if (item) {
          this.stats.deleteHits++;
          this.store.unlink(item);
        } else {
          this.stats.deleteMisses++;
        }
        if (!request.noreply) out.text(item ? "DELETED\r\n" : "NOT_FOUND\r\n");
        return After.continue;
      }
      case "arithmetic":
        this.#arithmetic(request, out);
        return After.continue;
      case "touch": {
        const item = this.store.get(request.key, true);
        this.stats.cmdTouch++;
        if (item) {
          item.exptime = this.store.expiry(request.ttl);
          this.stats.touchHits++;
        } else {
          this.stats.touchMisses++;
        }
        if (!request.noreply) out.text(item ? "TOUCHED\r\n" : "NOT_FOUND\r\n");
        return After.continue;
      }
      case "flush_all":
        this.stats.cmdFlush++;
        this.store.flush(request.delay);
        if (!request.noreply) out.text("OK\r\n");
        return After.continue;
      case "version":
        out.text(`VERSION ${this.options.version}\r\n`);
        return After.continue;
      case "verbosity":
        if (!request.noreply) out.text("OK\r\n");
        return After.continue;
      case "mn":
        out.text("MN\r\n");
        out.release();
        return After.continue;
      case "stats":
        out.text(this.stats.report(request.args, this));
        return After.continue;
      case "admin":
        this.#admin(request.tokens, request.noreply, out);
        return After.continue;
      case "mg":
        this.#mg(request, out);
        return After.continue;
      case "ms":
        this.#ms(request, out);
        return After.continue;
      case "md":
        this.#md(request, out);
        return After.continue;
      case "ma":
        this.#ma(request, out);
        return After.continue;
      case "me": {
        this.stats.cmdMeta++;
        const item = this.store.peek(request.key);
        if (!item) {
          out.text("EN\r\n");
          return After.continue;
        }
        const now = this.store.now();
        const key = item.bits & ItemBit.keyBinary ? toBase64Key(Buffer.from(item.key, "latin1")) : item.key;
        const exp = item.exptime === 0 ? -1 : now - item.exptime;
        const fetched = item.bits & ItemBit.fetched ? "yes" : "no";
        out.text(
          `ME ${key} exp=${exp} la=${now - item.time} cas=${item.cas} fetch=${fetched} cls=1 size=${item.size}\r\n`,
        );
        return After.continue;
      }
      case "rejected":
        if (!request.noreply) {
          out.text(request.line);
          out.text("\r\n");
        }
        return After.continue;
      case "quit":
      case "close":
        return After.close;
    }
  }

  /**
   * Runs a retrieval command's keys from `from` on and returns the index of the first key not done, or the
   * number of keys once `END` is written. It stops early, after at least `budget` bytes of values, so a
   * connection can send a long multi-get a slice at a time and hold no more of its reply than a slice.
   */
  get(request: GetRequest, out: Output, from = 0, budget = Infinity): number {
    const withCas = request.command === "gets" || request.command === "gats";
    const touch = request.command === "gat" || request.command === "gats";
    const exptime = touch ? this.store.expiry(request.ttl) : 0;
    const stats = this.stats;
    // A key that was too long makes memcached drop what it had built and answer with an error only.
    const sink = request.keyTooLong ? undefined : out;
    const keys = request.keys;
    let written = 0;
    for (let i = from; i < keys.length; i++) {
      if (written >= budget) return i;
      const key = keys[i]!;
      const item = this.store.get(key, true);
      if (touch) {
        stats.cmdTouch++;
        if (item) {
          item.exptime = exptime;
          stats.touchHits++;
        } else {
          stats.touchMisses++;
        }
      } else {
        stats.cmdGet++;
        if (item) stats.getHits++;
        else stats.getMisses++;
      }
      if (item && sink) {
        const value = item.value;
        if (typeof value === "string") {
          const cas = withCas ? ` ${item.cas}` : "";
          sink.text(`VALUE ${item.key} ${item.flags} ${value.length}${cas}\r\n${value}\r\n`);
          written += value.length;
        } else if (withCas) {
          sink.text(`VALUE ${item.key} ${item.flags} ${value.length} ${item.cas}\r\n`);
          sink.bytes(value);
          sink.text("\r\n");
          written += value.length;
        } else {
          const wire = this.store.wireOf(item as Item & { value: Buffer });
          sink.bytes(wire);
          written += wire.length;
        }
      }
    }
    if (request.keyTooLong) {
      // memcached culls every reply it has not sent yet, earlier commands' included.
      out.discard();
      out.text("CLIENT_ERROR bad command line format\r\n");
    } else {
      out.text("END\r\n");
      out.release();
    }
    return keys.length;
  }

  #store(request: StoreRequest, out: Output): void {
    this.stats.cmdSet++;
    if (request.data === undefined) {
      this.stats.storeTooLarge++;
      // A failed set must not leave the old value visible.
      if (request.command === "set") {
        const old = this.store.peek(request.key);
        if (old) this.store.unlink(old);
      }
      if (!request.noreply) out.text("SERVER_ERROR object too large for cache\r\n");
      return;
    }
    const item = this.store.newItem(request.key, request.data, request.flags, this.store.expiry(request.ttl));
    const result = this.#storeItem(item, request.command, request.cas, false);
    if (!request.noreply) out.text(result + "\r\n");
  }

  /** memcached's do_store_item: the storage modes, with CAS checks. */
  #storeItem(item: Item, command: StorageCommand, cas: bigint, casStale: boolean): StoreResult {
    const store = this.store;
    const old = store.peek(item.key);
    if (old === undefined) {
      if (command === "set" || command === "add") {
        store.link(item);
        return "STORED";
      }
      if (command === "cas") this.stats.casMisses++;
      return command === "cas" ? "NOT_FOUND" : "NOT_STORED";
    }
    const casMatch =
      cas === 0n
        ? "none"
        : cas === BigInt(old.cas)
          ? "match"
          : casStale && cas < BigInt(old.cas)
            ? "stale"
            : "bad";
    switch (command) {
      case "add":
        store.touchTime(old);
        return "NOT_STORED";
      case "cas":
        if (casMatch === "match") {
          this.stats.casHits++;
        } else if (casMatch === "stale") {
          item.exptime = old.exptime;
          item.bits |= ItemBit.stale | (old.bits & ItemBit.tokenSent);
          this.stats.casHits++;
        } else {
          this.stats.casBadval++;
          return "EXISTS";
        }
        store.link(item);
        return "STORED";
      case "append":
      case "prepend": {
        if (casMatch !== "none" && casMatch !== "match") return "EXISTS";
        const value =
          typeof old.value === "string" && typeof item.value === "string"
            ? command === "append"
              ? old.value + item.value
              : item.value + old.value
            : joinValues(command === "append" ? [old.value, item.value] : [item.value, old.value]);
        const combined = store.newItem(old.key, value, old.flags, old.exptime);
        if (!this.#fits(combined)) return "NOT_STORED";
        store.link(combined);
        item.cas = combined.cas;
        return "STORED";
      }
      case "set":
      case "replace":
        store.link(item);
        return "STORED";
    }
  }

  #fits(item: Item): boolean {
    return item.size <= this.options.maxItemSize;
  }

  #arithmetic(request: ArithmeticRequest, out: Output): void {
    const result = this.#addDelta(request.key, request.incr, request.delta, 0n);
    if (typeof result === "string") {
      if (result === "NOT_FOUND") {
        if (request.incr) this.stats.incrMisses++;
        else this.stats.decrMisses++;
      }
      if (!request.noreply) out.text(result + "\r\n");
      return;
    }
    if (!request.noreply) out.text(result.text + "\r\n");
  }

  /** memcached's do_add_delta: 64-bit wrap on incr, floor at 0 on decr, padding when the number shrinks. */
  #addDelta(
    key: string,
    incr: boolean,
    delta: bigint,
    cas: bigint,
  ):
    | { item: Item; text: string; replaced: boolean }
    | "NOT_FOUND"
    | "EXISTS"
    | "CLIENT_ERROR cannot increment or decrement non-numeric value" {
    const item = this.store.peek(key);
    if (!item) return "NOT_FOUND";
    if (item.value.length === 0) return "CLIENT_ERROR cannot increment or decrement non-numeric value";
    if (cas !== 0n && BigInt(item.cas) !== cas) return "EXISTS";
    const current = parseStoredU64(valueBytes(item.value));
    if (current === undefined) return "CLIENT_ERROR cannot increment or decrement non-numeric value";
    let next: bigint;
    if (incr) {
      next = (current + delta) & U64_MASK;
      this.stats.incrHits++;
    } else {
      next = delta > current ? 0n : current - delta;
      this.stats.decrHits++;
    }
    const text = next.toString();
    if (text.length <= item.value.length && item.refs === 0) {
      // In place, as memcached does it when nothing else holds the item: the rest of the old width is
      // filled with spaces. A reply still waiting to be sent holds it, so then a new item is made.
      const value = Buffer.alloc(item.value.length, 32);
      value.write(text, 0, "latin1");
      this.store.rewrite(item, value);
      return { item, text, replaced: false };
    }
    const replacement = this.store.newItem(item.key, Buffer.from(text, "latin1"), item.flags, item.exptime);
    this.store.link(replacement);
    return { item: replacement, text, replaced: true };
  }

  #mg(request: MetaRequest, out: Output): void {
    const { flags, tokens } = request;
    const store = this.store;
    this.stats.cmdMeta++;
    let item = flags.locked ? store.peek(request.key) : store.get(request.key, !flags.noUpdate);
    let created = false;
    if (item === undefined && flags.vivify) {
      // memcached does not mark a vivified key as binary, so `k` then returns it decoded.
      item = store.newItem(request.key, Buffer.alloc(0), 0, 0);
      store.link(item);
      created = true;
    }
    if (item === undefined) {
      this.stats.cmdGet++;
      this.stats.getMisses++;
      let line = "EN";
      for (const token of tokens) {
        if (token[0] === "O") {
          if (token.length > META_MAX_OPAQUE) return void out.text("CLIENT_ERROR opaque token too long\r\n");
          line += " " + token;
        } else if (token[0] === "k") {
          line += metaKey(request.key, flags.base64Key);
        }
      }
      if (!flags.quiet) out.text(line + "\r\n");
      return;
    }
    const now = store.now();
    let line = flags.returnValue ? `VA ${item.value.length}` : "HD";
    let won = false;
    let ttlSet = false;
    for (const token of tokens) {
      switch (token[0]) {
        case "T":
          ttlSet = true;
          item.exptime = store.expiry(flags.ttl);
          break;
        case "N":
          if (created) {
            item.exptime = store.expiry(flags.vivifyTtl);
            won = true;
          }
          break;
        case "R": {
          const recache = store.expiry(flags.recacheTtl);
          if (
            (item.bits & ItemBit.tokenSent) === 0 &&
            !created &&
            item.exptime !== 0 &&
            item.exptime < recache
          ) {
            won = true;
          }
          break;
        }
        case "s":
          line += ` s${item.value.length}`;
          break;
        case "t":
          line += item.exptime === 0 ? " t-1" : ` t${(item.exptime - now) >>> 0}`;
          break;
        case "c":
          line += ` c${item.cas}`;
          break;
        case "f":
          line += ` f${item.flags}`;
          break;
        case "l":
          line += ` l${(now - item.time) >>> 0}`;
          break;
        case "h":
          line += item.bits & ItemBit.fetched ? " h1" : " h0";
          break;
        case "O":
          if (token.length > META_MAX_OPAQUE) return void out.text("CLIENT_ERROR opaque token too long\r\n");
          line += " " + token;
          break;
        case "k":
          line += metaKey(item.key, (item.bits & ItemBit.keyBinary) !== 0);
          break;
      }
    }
    if (item.bits & ItemBit.tokenSent) line += " Z";
    if (item.bits & ItemBit.stale) {
      line += " X";
      if ((item.bits & ItemBit.tokenSent) === 0) won = true;
    }
    if (won) {
      line += " W";
      item.bits |= ItemBit.tokenSent;
    }
    if (flags.locked && !flags.noUpdate) store.bump(item);
    out.pin(item);
    if (ttlSet) {
      this.stats.cmdTouch++;
      this.stats.touchHits++;
    } else {
      this.stats.cmdGet++;
      this.stats.getHits++;
    }
    out.text(line + "\r\n");
    if (flags.returnValue) {
      const value = item.value;
      if (typeof value === "string") out.text(value);
      else out.bytes(value);
      out.text("\r\n");
    }
  }

  #ms(request: MetaSetRequest, out: Output): void {
    const { flags, tokens } = request;
    this.stats.cmdSet++;
    if (request.data === undefined) {
      this.stats.storeTooLarge++;
      const old = this.store.peek(request.key);
      if (old) this.store.unlink(old);
      out.text("SERVER_ERROR object too large for cache\r\n");
      return;
    }
    let command: StorageCommand = "set";
    switch (flags.mode) {
      case "E":
        command = "add";
        break;
      case "A":
        command = "append";
        break;
      case "P":
        command = "prepend";
        break;
      case "R":
        command = "replace";
        break;
    }
    if (flags.hasCas && (command === "set" || command === "replace")) command = "cas";
    const item = this.store.newItem(
      request.key,
      request.data,
      flags.clientFlags,
      this.store.expiry(flags.ttl),
    );
    if (flags.base64Key) item.bits |= ItemBit.keyBinary;
    const result = this.#storeItem(item, command, flags.compareCas, flags.invalidate && command === "cas");
    if (result === "STORED" && flags.quiet) return;
    let line = META_CODE[result];
    for (const token of tokens) {
      switch (token[0]) {
        case "O":
          line += " " + token;
          break;
        case "k":
          line += metaKey(item.key, flags.base64Key);
          break;
        case "c":
          line += ` c${result === "STORED" ? item.cas : 0}`;
          break;
      }
    }
    out.text(line + "\r\n");
  }

  #md(request: MetaRequest, out: Output): void {
    const { flags, tokens } = request;
    const store = this.store;
    this.stats.cmdMeta++;
    let suffix = "";
    for (const token of tokens) {
      if (token[0] === "O") suffix += " " + token;
      else if (token[0] === "k") suffix += metaKey(request.key, flags.base64Key);
    }
    const item = store.peek(request.key);
    let code: string;
    if (!item) {
      this.stats.deleteMisses++;
      code = "NF";
    } else if (flags.hasCas && BigInt(item.cas) !== flags.compareCas) {
      this.stats.deleteMisses++;
      code = "EX";
    } else if (flags.invalidate) {
      if (flags.newTtl) item.exptime = store.expiry(flags.ttl);
      item.bits = (item.bits | ItemBit.stale) & ~ItemBit.tokenSent;
      item.cas = store.nextCas();
      code = "HD";
    } else {
      this.stats.deleteHits++;
      store.unlink(item);
      code = "HD";
    }
    if (code === "HD" && flags.quiet) return;
    out.text(code + suffix + "\r\n");
  }

  #ma(request: MetaRequest, out: Output): void {
    const { flags, tokens } = request;
    this.stats.cmdMeta++;
    const incr = !(flags.mode === "D" || flags.mode === "-");
    const result = this.#addDelta(request.key, incr, flags.delta, flags.hasCas ? flags.compareCas : 0n);
    let item: Item | undefined;
    let text = "";
    let code = "";
    let created = false;
    let quietOk = false;
    // memcached applies `T` (and reads `t`) on the item add_delta hands back, which is the old one when
    // the value grew and a new item replaced it: the reply shows the new TTL but the stored item keeps
    // the old one. The embedded server does the same.
    let replaced = false;
    if (typeof result === "object") {
      item = result.item;
      replaced = result.replaced;
      text = result.text;
      quietOk = flags.quiet;
    } else if (result === "NOT_FOUND") {
      if (flags.vivify) {
        text = flags.initial.toString();
        item = this.store.newItem(request.key, Buffer.from(text, "latin1"), 0, 0);
        this.store.link(item);
        created = true;
      } else {
        if (incr) this.stats.incrMisses++;
        else this.stats.decrMisses++;
        code = "NF";
      }
    } else if (result === "EXISTS") {
      code = "EX";
    } else {
      out.text(result + "\r\n");
      return;
    }
    let line: string;
    if (item) {
      line = flags.returnValue ? `VA ${text.length}` : "HD";
      let exptime = item.exptime;
      for (const token of tokens) {
        switch (token[0]) {
          case "c":
            line += ` c${item.cas}`;
            break;
          case "t":
            line += exptime === 0 ? " t-1" : ` t${(exptime - this.store.now()) >>> 0}`;
            break;
          case "T":
            exptime = this.store.expiry(flags.ttl);
            if (!replaced) item.exptime = exptime;
            break;
          case "N":
            if (created) item.exptime = exptime = this.store.expiry(flags.vivifyTtl);
            break;
          case "O":
            if (token.length > META_MAX_OPAQUE)
              return void out.text("CLIENT_ERROR opaque token too long\r\n");
            line += " " + token;
            break;
          case "k":
            line += metaKey(request.key, flags.base64Key);
            break;
        }
      }
      if (flags.returnValue) line += "\r\n" + text;
    } else {
      line = code;
      for (const token of tokens) {
        if (token[0] === "O") {
          if (token.length > META_MAX_OPAQUE) return void out.text("CLIENT_ERROR opaque token too long\r\n");
          line += " " + token;
        } else if (token[0] === "k") {
          line += metaKey(request.key, flags.base64Key);
        }
      }
    }
    if (quietOk) return;
    out.text(line + "\r\n");
  }

  #admin(tokens: string[], noreply: boolean, out: Output): void {
    const reply = adminReply(tokens);
    if (reply !== undefined && !noreply) out.text(reply + "\r\n");
  }
}

/** Two values end to end in one buffer of the joined size, allocated once. */
function joinValues(parts: [Buffer | string, Buffer | string]): Buffer {
  const [first, second] = parts;
  const joined = Buffer.allocUnsafeSlow(first.length + second.length);
  if (typeof first === "string") joined.write(first, 0, "latin1");
  else first.copy(joined, 0);
  if (typeof second === "string") joined.write(second, first.length, "latin1");
  else second.copy(joined, first.length);
  return joined;
}

function metaKey(key: string, binary: boolean): string {
  return binary ? ` k${toBase64Key(Buffer.from(key, "latin1"))} b` : ` k${key}`;
}

/** Answers for administrative commands memipc accepts but has nothing to tune for. */
function adminReply(t: string[]): string | undefined {
  const ntokens = t.length + 1;
  switch (t[0]) {
    case "shutdown":
      return "ERROR: shutdown not enabled";
    case "slabs":
      if (ntokens >= 4 && t[1] === "automove") {
        if (t[2] === "ratio") return ntokens < 5 || Number.isNaN(Number(t[3])) ? "ERROR" : "OK";
        return ["0", "1", "2"].includes(t[2]!) ? "OK" : "ERROR";
      }
      return "ERROR";
    case "cache_memlimit":
      if (ntokens !== 3 && ntokens !== 4) return "ERROR";
      return /^\d+$/.test(t[1]!) ? "OK" : "ERROR";
    case "lru_crawler":
      if (ntokens === 3 && (t[1] === "enable" || t[1] === "disable")) return "OK";
      return "ERROR";
    case "watch":
      return "CLIENT_ERROR watch commands not allowed";
    case "lru":
      return "ERROR";
    case "extstore":
      return "ERROR";
  }
  return "ERROR";
}
