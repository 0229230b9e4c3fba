// The memcached client: typed methods for every text and meta command over pipelined connections, one
// per server, with keys placed by ketama consistent hashing and concurrent gets merged into multi-gets.
import { ClientError, ConfigError, ConnectionClosedError, ProtocolError, isUnreachable } from "../errors.js";
import { keyLength, validateKey } from "../protocol/keys.js";
import {
  replyError,
  type MetaFlag,
  type RawValueReceiver,
  type ReplyFrame,
  type ValueFrame,
} from "../protocol/reply-parser.js";
import {
  encodeCas,
  encodeDecr,
  encodeDelete,
  encodeFlushAll,
  encodeGat,
  encodeGats,
  encodeGet,
  encodeGets,
  encodeIncr,
  encodeMa,
  encodeMd,
  encodeMe,
  encodeMg,
  encodeMn,
  encodeMs,
  encodeStats,
  encodeStore,
  encodeTouch,
  encodeVersion,
  type StoreCommand,
  type Value,
} from "../protocol/request-encoder.js";
import { ReplyShape, ServerConnection, type ConnectionOptions } from "./connection.js";
import { KetamaRing } from "./ketama.js";

export const DEFAULT_TIMEOUT = 1000; // ms a request may wait for its reply
export const DEFAULT_CONNECT_TIMEOUT = 1000; // ms a connection attempt may take
export const DEFAULT_MAX_PENDING = 10_000; // requests waiting per connection before new ones are refused
export const DEFAULT_RETRY_DELAY = 50; // ms before the first reconnect; doubles up to the maximum
export const DEFAULT_MAX_RETRY_DELAY = 2000; // ms
export const DEFAULT_FAILURES_BEFORE_DEAD = 3; // consecutive failures that mark a server dead
export const DEFAULT_DEAD_TIME = 5000; // ms a dead server is skipped (failover) or failed fast
export const DEFAULT_MAX_VALUE_SIZE = 1024 * 1024 - 512; // bytes: memcached's default 1 MiB item, less its header
export const MAX_KEYS_PER_GET = 100; // keys merged into one get line

export interface ServerAddress {
  host: string;
  port: number;
  /** Share of the keys relative to the other servers (ketama weight); 1 by default. */
  weight?: number;
}

/** Connection settings (timeouts, backoff, dead-server marking; see ConnectionOptions) plus the pool's own. */
export interface ClientOptions extends Omit<ConnectionOptions, "host" | "port"> {
  /** "host:port", "host:port,host:port", or a list of those or of addresses. Default 127.0.0.1:11211. */
  servers: string | readonly (string | ServerAddress)[];
  /** When a key's server is marked dead, use the next server on the ring instead of failing fast. */
  failover: boolean;
  /** Largest value accepted before anything is sent. */
  maxValueSize: number;
}

export interface GetResult {
  value: Buffer;
  flags: number;
  /** Present for gets/gats. */
  cas?: bigint;
}

/** Values found by getManyRanges: key i's value is `buffers[i]` from `starts[i]` to `ends[i]`. */
export interface ValueRanges {
  /** The buffer holding each key's value, undefined where the key was missing. */
  buffers: Array<Buffer | undefined>;
  starts: Uint32Array;
  ends: Uint32Array;
  /**
   * With `skipUnreachable`: the servers (host:port) that could not be read, whose keys are left missing, and
   * the first error met.
   */
  unreachable?: { servers: string[]; keys: number; error: Error };
  /** With `fallback`: the indexes of the keys found on their fallback server (see Client.fallbackIndex). */
  fallback?: number[];
}

export interface StoreOptions {
  /** Seconds (0 never expires; over 30 days is a unix time). */
  ttl?: number;
  flags?: number;
  /** Send without waiting for (or getting) an answer. */
  noreply?: boolean;
  /** Route this request as `failover` says instead of as the client does (see Route). */
  failover?: boolean;
}

/**
 * How one request picks its server, overriding the client's `failover` setting: leases use failover on a
 * pool, so that a lease whose server dies can be taken again on the next one.
 */
export interface Route {
  failover?: boolean;
}

export type CasResult = "stored" | "exists" | "not_found";

/** A meta command's reply: its code, return flags in order, and the value for VA. */
export interface MetaReply {
  code: "VA" | "HD" | "EN" | "NF" | "NS" | "EX";
  flags: readonly MetaFlag[];
  value?: Buffer;
}

export function defaultClientOptions(): ClientOptions {
  return {
    servers: "127.0.0.1:11211",
    timeout: DEFAULT_TIMEOUT,
    connectTimeout: DEFAULT_CONNECT_TIMEOUT,
    maxPending: DEFAULT_MAX_PENDING,
    retryDelay: DEFAULT_RETRY_DELAY,
    maxRetryDelay: DEFAULT_MAX_RETRY_DELAY,
    failuresBeforeDead: DEFAULT_FAILURES_BEFORE_DEAD,
    deadTime: DEFAULT_DEAD_TIME,
    failover: false,
    maxValueSize: DEFAULT_MAX_VALUE_SIZE,
  };
}

/**
 * Credentials must survive memcached's tokenizer, which splits the data block on spaces: anything else
 * would be refused by the server after a round trip, so it is refused here, without echoing the password.
 */
export function checkCredentials(auth: { username: string; password: string }): void {
  const bad = /[\s\x00-\x1f\x7f]/;
  if (typeof auth.username !== "string" || auth.username === "" || bad.test(auth.username)) {
    throw new ConfigError(
      "auth.username must be a non-empty name without spaces or control characters, as in the server's auth file",
    );
  }
  if (typeof auth.password !== "string" || auth.password === "" || bad.test(auth.password)) {
    throw new ConfigError(
      `the password of user ${JSON.stringify(auth.username)} is empty or holds a space or control character, ` +
        "which memcached's authentication cannot carry: choose one without",
    );
  }
}

/** Parses "host:port[:weight]" lists; rejects anything else with a message saying what to write. */
export function parseServers(servers: ClientOptions["servers"]): ServerAddress[] {
  const list = typeof servers === "string" ? servers.split(",") : servers;
  const parsed = list.map((entry): ServerAddress => {
    if (typeof entry !== "string") return { weight: 1, ...entry };
    const text = entry.trim();
    const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+)(?::(\d{1,5}))?(?::(\d+))?$/.exec(text);
    if (!match) throw new ConfigError(`server "${text}" is not host:port (for example 127.0.0.1:11211)`);
    const port = match[2] === undefined ? 11211 : Number(match[2]);
    if (port < 1 || port > 65535) throw new ConfigError(`server "${text}": port ${port} is not 1 to 65535`);
    const host = match[1]!.replace(/^\[(.*)\]$/, "$1");
    return { host, port, weight: match[3] === undefined ? 1 : Number(match[3]) };
  });
  if (parsed.length === 0) throw new ConfigError("no memcached servers given: pass at least one host:port");
  return parsed;
}

interface GetWaiter {
  resolve(result: GetResult | undefined): void;
  reject(error: Error): void;
}

export class Client {
  readonly options: ClientOptions;
  readonly servers: readonly ServerAddress[];
  readonly #connections: ServerConnection[];
  readonly #ring: KetamaRing | undefined;
  /** Rings without the servers marked dead, by which are dead, for failover. */
  readonly #failoverRings = new Map<string, { ring: KetamaRing; alive: number[] }>();
  /** Gets asked for in this tick, per server: merged into multi-gets when the tick ends. */
  #batches = new Map<number, Map<string, GetWaiter[]>>();
  #batchScheduled = false;

  constructor(options: Partial<ClientOptions> = {}) {
    this.options = { ...defaultClientOptions(), ...options };
    this.servers = parseServers(this.options.servers);
    for (const name of ["timeout", "connectTimeout", "maxPending", "maxValueSize"] as const) {
      const value = this.options[name];
      if (!Number.isFinite(value) || value <= 0) throw new ConfigError(`${name} must be a positive number`);
    }
    if (this.options.auth !== undefined) checkCredentials(this.options.auth);
    this.#connections = this.servers.map((server) => new ServerConnection(this.#connectionOptions(server)));
    this.#ring = this.servers.length > 1 ? new KetamaRing(this.servers) : undefined;
  }

  #connectionOptions(server: ServerAddress): ConnectionOptions {
    const {
      servers: _servers,
      failover: _failover,
      maxValueSize: _maxValueSize,
      ...connection
    } = this.options;
    return { ...connection, host: server.host, port: server.port };
  }

  /** Which server holds `key`: ketama over all servers, or over the live ones with failover on. */
  serverIndex(key: string, failover = this.options.failover): number {
    const ring = this.#ring;
    if (ring === undefined) return 0;
    const index = ring.serverFor(key);
    if (!failover || !this.#connections[index]!.dead) return index;
    const alive: number[] = [];
    for (let i = 0; i < this.#connections.length; i++) if (!this.#connections[i]!.dead) alive.push(i);
    if (alive.length === 0) return index;
    const signature = alive.join(",");
    let entry = this.#failoverRings.get(signature);
    if (entry === undefined) {
      entry = { ring: new KetamaRing(alive.map((i) => this.servers[i]!)), alive };
      this.#failoverRings.set(signature, entry);
    }
    return entry.alive[entry.ring.serverFor(key)]!;
  }

  /**
   * Where `key` goes with failover while its own server is marked dead: the next server on the ring over the
   * others (undefined with one server). A value stored there during an outage stays there once the server is
   * back, where readers that look only at the key's own server no longer see it.
   */
  fallbackIndex(key: string): number | undefined {
    const ring = this.#ring;
    if (ring === undefined) return undefined;
    const own = ring.serverFor(key);
    const signature = `-${own}`;
    let entry = this.#failoverRings.get(signature);
    if (entry === undefined) {
      const others = this.servers.map((_, i) => i).filter((i) => i !== own);
      entry = { ring: new KetamaRing(others.map((i) => this.servers[i]!)), alive: others };
      this.#failoverRings.set(signature, entry);
    }
    return entry.alive[entry.ring.serverFor(key)]!;
  }

  /**
   * The connection for `key`, with any gets still waiting for the end of the tick on that server sent
   * first, so requests reach the server in the order they were made.
   */
  #connection(key: string, route: Route = {}): ServerConnection {
    return this.#ordered(this.serverIndex(key, route.failover ?? this.options.failover));
  }

  #ordered(server: number): ServerConnection {
    const batch = this.#batches.get(server);
    if (batch !== undefined) {
      this.#batches.delete(server);
      this.#sendBatch(server, batch);
    }
    return this.#connections[server]!;
  }

  /** Every connection, each with its waiting gets sent first. */
  #all(): ServerConnection[] {
    return this.#connections.map((_, server) => this.#ordered(server));
  }

  // ---- retrieval -------------------------------------------------------------------------------------

  /** One key's value; concurrent calls in the same tick go out together as one multi-get per server. */
  get(key: string): Promise<GetResult | undefined> {
    try {
      validateKey(key);
    } catch (error) {
      return Promise.reject(error);
    }
    const server = this.serverIndex(key);
    let batch = this.#batches.get(server);
    if (batch === undefined) {
      batch = new Map();
      this.#batches.set(server, batch);
    }
    return new Promise((resolve, reject) => {
      const waiters = batch.get(key);
      if (waiters === undefined) batch.set(key, [{ resolve, reject }]);
      else waiters.push({ resolve, reject });
      if (!this.#batchScheduled) {
        this.#batchScheduled = true;
        queueMicrotask(() => this.#sendBatches());
      }
    });
  }

  #sendBatches(): void {
    this.#batchScheduled = false;
    const batches = this.#batches;
    this.#batches = new Map();
    for (const [server, batch] of batches) this.#sendBatch(server, batch);
  }

  #sendBatch(server: number, batch: Map<string, GetWaiter[]>): void {
    const keys = [...batch.keys()];
    for (let start = 0; start < keys.length; start += MAX_KEYS_PER_GET) {
      const slice = keys.length <= MAX_KEYS_PER_GET ? keys : keys.slice(start, start + MAX_KEYS_PER_GET);
      const expected = new Set(slice.map(wireKey));
      this.#connections[server]!.request(encodeGet(slice), ReplyShape.untilEnd, "get", expected).then(
        (frames) => {
          const found = valuesByKey(frames);
          for (const key of slice) {
            const result = found.get(wireKey(key));
            for (const waiter of batch.get(key)!) waiter.resolve(result);
          }
        },
        (error: Error) => {
          for (const key of slice) for (const waiter of batch.get(key)!) waiter.reject(error);
        },
      );
    }
  }

  /**
   * Many keys at once: one multi-get per server (per 100 keys), no per-key bookkeeping. The map holds the
   * keys that were found, under the keys as given.
   */
  async getMulti(keys: readonly string[]): Promise<Map<string, GetResult>> {
    const groups = this.#groupByServer(keys);
    const found = new Map<string, GetResult>();
    const requests: Promise<void>[] = [];
    for (const [server, { keys: group, ascii }] of groups) {
      for (let start = 0; start < group.length; start += MAX_KEYS_PER_GET) {
        const slice =
          start === 0 && group.length <= MAX_KEYS_PER_GET
            ? group
            : group.slice(start, start + MAX_KEYS_PER_GET);
        // Replies name keys as bytes read as latin1: the same strings as ASCII keys, mapped back otherwise.
        const byWire = ascii ? undefined : new Map(slice.map((key) => [wireKey(key), key]));
        const expected = byWire === undefined ? new Set(slice) : new Set(byWire.keys());
        const request = this.#ordered(server).request(encodeGet(slice), ReplyShape.untilEnd, "get", expected);
        requests.push(
          request.then((frames) => {
            for (const frame of frames) {
              if (frame.kind !== "VALUE") continue;
              const key = byWire === undefined ? frame.key : byWire.get(frame.key);
              if (key !== undefined) found.set(key, { value: frame.value, flags: frame.flags });
            }
          }),
        );
      }
    }
    await Promise.all(requests);
    return found;
  }

  /**
   * The values of many keys in the order asked, undefined where missing: getMulti without a map, for callers
   * that walk keys by position (memcached answers a multi-get in the order of its keys).
   */
  async getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>> {
    const { buffers, starts, ends } = await this.getManyRanges(keys);
    const values = new Array<Buffer | undefined>(keys.length).fill(undefined);
    for (let i = 0; i < keys.length; i++) values[i] = buffers[i]?.subarray(starts[i], ends[i]);
    return values;
  }

  /**
   * getMany for bulk readers: the values as byte ranges of the reply buffers, with no object or Buffer made
   * per value. Key i's value is `buffers[i]` from `starts[i]` to `ends[i]` (`buffers[i]` undefined where
   * missing); a buffer holds many values and other reply bytes, so read only the range. Each reply's keys are
   * checked, in order, against the keys asked (a mismatch fails the connection, as for every get).
   */
  async getManyRanges(
    keys: readonly string[],
    options: { skipUnreachable?: boolean; fallback?: boolean } = {},
  ): Promise<ValueRanges> {
    const ranges = await this.#getRanges(keys, undefined, options);
    if (options.fallback !== true || this.#ring === undefined) return ranges;
    // A second look, for the keys missing where they belong, at where failover would have put them.
    const missing: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      if (
        ranges.buffers[i] === undefined &&
        this.serverIndex(keys[i]!, false) === this.serverIndex(keys[i]!)
      ) {
        missing.push(i);
      }
    }
    if (missing.length === 0) return ranges;
    const second = await this.#getRanges(
      missing.map((i) => keys[i]!),
      (key) => this.fallbackIndex(key)!,
      options,
    );
    for (let j = 0; j < missing.length; j++) {
      const buffer = second.buffers[j];
      if (buffer === undefined) continue;
      const i = missing[j]!;
      ranges.buffers[i] = buffer;
      ranges.starts[i] = second.starts[j]!;
      ranges.ends[i] = second.ends[j]!;
      (ranges.fallback ??= []).push(i);
    }
    if (second.unreachable !== undefined && ranges.unreachable === undefined) {
      ranges.unreachable = second.unreachable;
    }
    return ranges;
  }

  async #getRanges(
    keys: readonly string[],
    place: ((key: string) => number) | undefined,
    options: { skipUnreachable?: boolean },
  ): Promise<ValueRanges> {
    const n = keys.length;
    const ranges: ValueRanges = {
      buffers: new Array<Buffer | undefined>(n).fill(undefined),
      starts: new Uint32Array(n),
      ends: new Uint32Array(n),
    };
    // Each key is checked once; its wire form (how a reply names it) comes from its length in bytes.
    const wire = new Array<string>(n);
    const groups = new Map<number, number[]>();
    const single = this.#connections.length === 1;
    for (let i = 0; i < n; i++) {
      const key = keys[i]!;
      wire[i] = keyLength(key, false) === key.length ? key : wireKey(key);
      const server = single ? 0 : place !== undefined ? place(key) : this.serverIndex(key);
      const group = groups.get(server);
      if (group === undefined) groups.set(server, [i]);
      else group.push(i);
    }
    const requests: Promise<unknown>[] = [];
    for (const [server, indexes] of groups) {
      for (let start = 0; start < indexes.length; start += MAX_KEYS_PER_GET) {
        const end = Math.min(indexes.length, start + MAX_KEYS_PER_GET);
        const slice = start === 0 && end === indexes.length ? indexes : indexes.slice(start, end);
        const asked = new Array<string>(slice.length);
        let text = "get";
        let ascii = true;
        for (let j = 0; j < slice.length; j++) {
          const i = slice[j]!;
          asked[j] = wire[i]!;
          text += ` ${keys[i]!}`;
          if (wire[i] !== keys[i]) ascii = false;
        }
        const bytes = Buffer.from(`${text}\r\n`, ascii ? "latin1" : "utf8");
        const receiver = new RangesInOrder(ranges, slice, asked);
        const connection = this.#ordered(server);
        const request = connection.request(bytes, ReplyShape.untilEnd, "get", undefined, receiver);
        requests.push(
          options.skipUnreachable !== true
            ? request
            : request.catch((error: unknown) => {
                if (!isUnreachable(error)) throw error;
                // Values of this request already received stay: they are whole (checked key by key).
                const unreachable = (ranges.unreachable ??= { servers: [], keys: 0, error });
                if (!unreachable.servers.includes(connection.name)) unreachable.servers.push(connection.name);
                unreachable.keys += slice.length;
              }),
        );
      }
    }
    await Promise.all(requests);
    return ranges;
  }

  /** Validates the keys and sorts them by server, noting whether each server's keys are all ASCII. */
  #groupByServer(keys: readonly string[], fallback = false): Map<number, { keys: string[]; ascii: boolean }> {
    const groups = new Map<number, { keys: string[]; ascii: boolean }>();
    const single = this.#connections.length === 1;
    for (const key of keys) {
      const ascii = keyLength(key, false) === key.length;
      const server = single ? 0 : fallback ? this.fallbackIndex(key)! : this.serverIndex(key);
      const group = groups.get(server);
      if (group === undefined) groups.set(server, { keys: [key], ascii });
      else {
        group.keys.push(key);
        if (!ascii) group.ascii = false;
      }
    }
    return groups;
  }

  /** The value with its CAS unique, for a later `cas`. */
  async gets(key: string): Promise<GetResult | undefined> {
    const frames = await this.#connection(key).request(
      encodeGets(key),
      ReplyShape.untilEnd,
      "gets",
      oneKey(key),
    );
    return valuesByKey(frames).get(wireKey(key));
  }

  /** Get and touch: the value, with its TTL reset to `ttl`. */
  async gat(key: string, ttl: number): Promise<GetResult | undefined> {
    const frames = await this.#connection(key).request(
      encodeGat(ttl, key),
      ReplyShape.untilEnd,
      "gat",
      oneKey(key),
    );
    return valuesByKey(frames).get(wireKey(key));
  }

  async gats(key: string, ttl: number): Promise<GetResult | undefined> {
    const frames = await this.#connection(key).request(
      encodeGats(ttl, key),
      ReplyShape.untilEnd,
      "gats",
      oneKey(key),
    );
    return valuesByKey(frames).get(wireKey(key));
  }

  // ---- storage ---------------------------------------------------------------------------------------

  /** Stores unconditionally; resolves true once stored. */
  set(key: string, value: Value, options?: StoreOptions): Promise<boolean> {
    return this.#store("set", key, value, options);
  }

  /** Stores only if the key is absent; false when it exists. */
  add(key: string, value: Value, options?: StoreOptions): Promise<boolean> {
    return this.#store("add", key, value, options);
  }

  /** Stores only if the key exists; false when it does not. */
  replace(key: string, value: Value, options?: StoreOptions): Promise<boolean> {
    return this.#store("replace", key, value, options);
  }

  /** Adds bytes after the stored value (flags and TTL stay); false when the key does not exist. */
  append(key: string, value: Value, options?: StoreOptions): Promise<boolean> {
    return this.#store("append", key, value, options);
  }

  prepend(key: string, value: Value, options?: StoreOptions): Promise<boolean> {
    return this.#store("prepend", key, value, options);
  }

  async #store(
    command: StoreCommand,
    key: string,
    value: Value,
    options: StoreOptions = {},
  ): Promise<boolean> {
    this.#checkValue(key, value);
    const bytes = encodeStore(command, key, value, {
      exptime: options.ttl ?? 0,
      flags: options.flags ?? 0,
      noreply: options.noreply ?? false,
    });
    const connection = this.#connection(key, options);
    if (options.noreply) {
      if (!connection.send(bytes)) {
        throw new ConnectionClosedError(
          `${command} to ${connection.name} (noreply): not sent, the server is not connected (reconnecting or marked dead)`,
        );
      }
      return true;
    }
    const [frame] = await connection.request(bytes, ReplyShape.single, command);
    return expectStatus(frame!, command, "STORED", "NOT_STORED");
  }

  /**
   * Adds many items at once: per server, one write of quiet meta sets in add mode (`ms <key> <n> ME q O<i>`)
   * closed by `mn`. memcached answers only the items it did not store, so the cost is a round trip per
   * server rather than per item. Resolves with one flag per item: true when stored, false when the key
   * existed. Rejects if a server answered with an error (then which of its items were stored is unknown).
   */
  async addMulti(
    items: ReadonlyArray<{ key: string; value: string }>,
    options: { ttl?: number } = {},
  ): Promise<boolean[]> {
    const results = await this.addEach(items, options);
    const failed = results.find((result) => result instanceof Error);
    if (failed !== undefined) throw failed;
    return results as boolean[];
  }

  /**
   * addMulti that settles item by item: true (stored), false (the key existed), or, for each item of a server
   * that failed (down, timed out, answered an error), that error: the item may or may not have been stored.
   * The other servers' items are unaffected, so on a pool one server down fails only its own keys.
   */
  async addEach(
    items: ReadonlyArray<{ key: string; value: string }>,
    options: { ttl?: number } = {},
  ): Promise<Array<boolean | Error>> {
    const stored = new Array<boolean | Error>(items.length).fill(true);
    if (items.length === 0) return stored;
    const ttl = options.ttl ?? 0;
    if (!Number.isInteger(ttl)) throw new ClientError(`ttl ${ttl} must be a whole number of seconds`);
    const flags = ttl === 0 ? " ME q O" : ` T${ttl} ME q O`;
    const groups = new Map<number, { text: string[]; parts: Buffer[] | undefined; indexes: number[] }>();
    for (let i = 0; i < items.length; i++) {
      const { key, value } = items[i]!;
      this.#checkValue(key, value);
      const ascii = keyLength(key, false) === key.length;
      const server = this.#connections.length === 1 ? 0 : this.serverIndex(key);
      let group = groups.get(server);
      if (group === undefined) {
        group = { text: [], parts: undefined, indexes: [] };
        groups.set(server, group);
      }
      group.indexes.push(i);
      if (ascii && group.parts === undefined) {
        group.text.push(`ms ${key} ${Buffer.byteLength(value)}${flags}${i}\r\n${value}\r\n`);
      } else {
        // A non-ASCII key: encode item by item from here on (the key's bytes decide the line).
        group.parts ??= group.text.length > 0 ? [Buffer.from(group.text.join(""), "utf8")] : [];
        group.parts.push(
          ...toParts(encodeMs(key, value, ["ME", "q", `O${i}`, ...(ttl === 0 ? [] : [`T${ttl}`])])),
        );
      }
    }
    const requests: Promise<void>[] = [];
    for (const [server, group] of groups) {
      const bytes =
        group.parts === undefined
          ? [Buffer.from(group.text.join("") + "mn\r\n", "utf8")]
          : [...group.parts, encodeMn()];
      const connection = this.#ordered(server);
      requests.push(
        connection
          .request(bytes, ReplyShape.untilMn, "ms")
          .then((frames) => {
            for (const frame of frames) {
              if (frame.kind === "MN") continue;
              if (frame.kind === "NS") {
                const opaque = frame.flags.find((f) => f.flag === "O")?.token;
                const index = opaque === undefined ? NaN : Number(opaque);
                if (!group.indexes.includes(index)) throw unexpected("ms", frame);
                stored[index] = false;
                continue;
              }
              if (frame.kind === "ERROR" || frame.kind === "CLIENT_ERROR" || frame.kind === "SERVER_ERROR") {
                const error = replyError(frame);
                error.message = `ms (add) to ${connection.name}: ${error.message}`;
                throw error;
              }
              throw unexpected("ms", frame);
            }
          })
          .catch((error: unknown) => {
            const failure = error instanceof Error ? error : new ProtocolError(String(error));
            for (const index of group.indexes) stored[index] = failure;
          }),
      );
    }
    await Promise.all(requests);
    return stored;
  }

  /**
   * Adds to many counters at once, creating a missing one with its amount: per server, one write of quiet
   * meta arithmetic (`ma <key> N<ttl> J<by> D<by> q O<i>`) closed by `mn`. memcached answers only the
   * counters it created (`HD`), so the cost is a round trip per server rather than per counter. Rejects if a
   * server answered with an error (a value that is not a number, or a server without the meta protocol:
   * check with one plain `ma` first); then which of its counters were incremented is unknown.
   */
  async incrMulti(
    items: ReadonlyArray<{ key: string; by: number }>,
    options: { ttl?: number } = {},
  ): Promise<void> {
    if (items.length === 0) return;
    const ttl = options.ttl ?? 0;
    if (!Number.isInteger(ttl)) throw new ClientError(`ttl ${ttl} must be a whole number of seconds`);
    const groups = new Map<number, string[]>();
    for (let i = 0; i < items.length; i++) {
      const { key, by } = items[i]!;
      if (!Number.isSafeInteger(by) || by < 0) {
        throw new ClientError(`increment ${by} of ${JSON.stringify(key)} is not a whole number of 0 or more`);
      }
      validateKey(key);
      if (keyLength(key, false) !== key.length) {
        throw new ClientError(`incrMulti takes ASCII keys only; ${JSON.stringify(key)} is not`);
      }
      const server = this.#connections.length === 1 ? 0 : this.serverIndex(key);
      let lines = groups.get(server);
      if (lines === undefined) groups.set(server, (lines = []));
      lines.push(`ma ${key} N${ttl} J${by} D${by} q O${i}\r\n`);
    }
    const requests: Promise<void>[] = [];
    for (const [server, lines] of groups) {
      const connection = this.#ordered(server);
      const bytes = Buffer.from(lines.join("") + "mn\r\n", "latin1");
      requests.push(
        connection.request(bytes, ReplyShape.untilMn, "ma").then((frames) => {
          for (const frame of frames) {
            // A counter created by N is answered even in quiet mode (memcached 1.6 does so).
            if (frame.kind === "MN" || frame.kind === "HD") continue;
            if (frame.kind === "ERROR" || frame.kind === "CLIENT_ERROR" || frame.kind === "SERVER_ERROR") {
              const error = replyError(frame);
              error.message = `ma (increment) to ${connection.name}: ${error.message}`;
              throw error;
            }
            throw unexpected("ma", frame);
          }
        }),
      );
    }
    await Promise.all(requests);
  }

  /** Stores only if the item still has CAS unique `cas` (from gets). */
  async cas(key: string, value: Value, cas: bigint, options: StoreOptions = {}): Promise<CasResult> {
    this.#checkValue(key, value);
    const bytes = encodeCas(key, value, cas, { exptime: options.ttl ?? 0, flags: options.flags ?? 0 });
    const [frame] = await this.#connection(key).request(bytes, ReplyShape.single, "cas");
    switch (frame!.kind) {
      case "STORED":
        return "stored";
      case "EXISTS":
        return "exists";
      case "NOT_FOUND":
        return "not_found";
      default:
        throw unexpected("cas", frame!);
    }
  }

  #checkValue(key: string, value: Value): void {
    const size = typeof value === "string" ? Buffer.byteLength(value) : value.byteLength;
    if (size > this.options.maxValueSize) {
      throw new ClientError(
        `value for key ${JSON.stringify(key)} is ${size} bytes, over the ${this.options.maxValueSize}-byte limit: ` +
          "split it, compress it, or raise maxValueSize together with memcached's -I",
      );
    }
  }

  // ---- other commands -------------------------------------------------------------------------------

  /** True when the key existed and was removed. */
  async delete(key: string): Promise<boolean> {
    const [frame] = await this.#connection(key).request(encodeDelete(key), ReplyShape.single, "delete");
    return expectStatus(frame!, "delete", "DELETED", "NOT_FOUND");
  }

  /**
   * Deletes many keys: per server, one write of `delete <key> noreply` lines closed by `mn`, so the cost is a
   * round trip per server rather than per key. Resolves once every server has processed its deletes (keys
   * that did not exist are not an error); rejects if a server answered with an error.
   */
  async deleteMulti(keys: readonly string[], options: { fallback?: boolean } = {}): Promise<void> {
    if (keys.length === 0) return;
    // `fallback`: delete where failover put the keys (ValueRanges.fallback), not where they belong.
    const groups = this.#groupByServer(keys, options.fallback === true);
    const requests: Promise<void>[] = [];
    for (const [server, { keys: group, ascii }] of groups) {
      // ASCII keys (the usual case) are written as one string: a buffer per key costs more than the key.
      const bytes = ascii
        ? [Buffer.from(`delete ${group.join(" noreply\r\ndelete ")} noreply\r\nmn\r\n`, "latin1")]
        : [...group.map((key) => encodeDelete(key, { noreply: true })), encodeMn()];
      const connection = this.#ordered(server);
      requests.push(
        connection.request(bytes, ReplyShape.untilMn, "delete").then((frames) => {
          const frame = frames.find((f) => f.kind !== "MN");
          if (frame === undefined) return;
          if (frame.kind === "ERROR" || frame.kind === "CLIENT_ERROR" || frame.kind === "SERVER_ERROR") {
            const error = replyError(frame);
            error.message = `delete to ${connection.name}: ${error.message}`;
            throw error;
          }
          throw unexpected("delete", frame);
        }),
      );
    }
    await Promise.all(requests);
  }

  /** The new value, or undefined when the key does not exist. Wraps at 2^64. */
  incr(key: string, delta: bigint | number = 1): Promise<bigint | undefined> {
    return this.#arithmetic("incr", key, delta);
  }

  /** The new value (never below 0), or undefined when the key does not exist. */
  decr(key: string, delta: bigint | number = 1): Promise<bigint | undefined> {
    return this.#arithmetic("decr", key, delta);
  }

  async #arithmetic(
    command: "incr" | "decr",
    key: string,
    delta: bigint | number,
  ): Promise<bigint | undefined> {
    const bytes = command === "incr" ? encodeIncr(key, delta) : encodeDecr(key, delta);
    const [frame] = await this.#connection(key).request(bytes, ReplyShape.single, command);
    if (frame!.kind === "NUMBER") return frame!.value;
    if (frame!.kind === "NOT_FOUND") return undefined;
    throw unexpected(command, frame!);
  }

  /** Resets the TTL; false when the key does not exist. */
  async touch(key: string, ttl: number): Promise<boolean> {
    const [frame] = await this.#connection(key).request(encodeTouch(key, ttl), ReplyShape.single, "touch");
    return expectStatus(frame!, "touch", "TOUCHED", "NOT_FOUND");
  }

  /** Empties every server (after `delay` seconds if given). */
  async flushAll(delay?: number): Promise<void> {
    const bytes = encodeFlushAll(delay === undefined ? undefined : { delay });
    await Promise.all(
      this.#all().map(async (connection) => {
        const [frame] = await connection.request(bytes, ReplyShape.single, "flush_all");
        if (frame!.kind !== "OK") throw unexpected("flush_all", frame!);
      }),
    );
  }

  /** Each server's `stats [arg]`, by "host:port". */
  async stats(arg?: string): Promise<Map<string, Map<string, string>>> {
    const bytes = encodeStats(arg);
    const all = await Promise.all(
      this.#all().map((connection) => connection.request(bytes, ReplyShape.untilEnd, "stats")),
    );
    const result = new Map<string, Map<string, string>>();
    all.forEach((frames, i) => {
      const stats = new Map<string, string>();
      for (const frame of frames) if (frame.kind === "STAT") stats.set(frame.name, frame.value);
      result.set(this.#connections[i]!.name, stats);
    });
    return result;
  }

  /** Each server's version, by "host:port". */
  async version(): Promise<Map<string, string>> {
    const all = await Promise.all(
      this.#connections.map((connection) =>
        connection.request(encodeVersion(), ReplyShape.single, "version"),
      ),
    );
    const result = new Map<string, string>();
    all.forEach(([frame], i) => {
      if (frame!.kind !== "VERSION") throw unexpected("version", frame!);
      result.set(this.#connections[i]!.name, frame!.version);
    });
    return result;
  }

  // ---- meta commands --------------------------------------------------------------------------------

  /** Meta get with flags such as ["v", "c", "f", "t", "T30", "N30", "O1"]; EN on a miss. */
  async mg(key: string, flags: readonly string[] = ["v"], route?: Route): Promise<MetaReply> {
    return this.#meta("mg", key, encodeMg(key, flags), flags, route);
  }

  /** Meta set with flags such as ["T30", "F5", "C123", "MA", "c"]. */
  async ms(key: string, value: Value, flags: readonly string[] = [], route?: Route): Promise<MetaReply> {
    this.#checkValue(key, value);
    return this.#meta("ms", key, encodeMs(key, value, flags), flags, route);
  }

  /** Meta delete with flags such as ["C123", "I", "T30"]. */
  async md(key: string, flags: readonly string[] = [], route?: Route): Promise<MetaReply> {
    return this.#meta("md", key, encodeMd(key, flags), flags, route);
  }

  /** Meta arithmetic with flags such as ["N0", "J0", "D5", "MD", "v"]. */
  async ma(key: string, flags: readonly string[] = []): Promise<MetaReply> {
    return this.#meta("ma", key, encodeMa(key, flags), flags);
  }

  /** Meta debug: memcached's internal view of an item, as name=value text. */
  async me(key: string): Promise<Map<string, string> | undefined> {
    const [frame] = await this.#connection(key).request(encodeMe(key), ReplyShape.single, "me");
    if (frame!.kind === "EN") return undefined;
    if (frame!.kind !== "ME") throw unexpected("me", frame!);
    return new Map(frame!.fields.map((field) => [field.name, field.value]));
  }

  async #meta(
    command: string,
    key: string,
    bytes: ReturnType<typeof encodeMs>,
    flags: readonly string[],
    route?: Route,
  ) {
    const connection = this.#connection(key, route);
    if (flags.includes("q")) {
      // Quiet mode hides some answers: end the request with mn so the reply's end is known.
      const frames = await connection.request([...toParts(bytes), encodeMn()], ReplyShape.untilMn, command);
      const frame = frames[0];
      if (frame === undefined) return quietReply(command);
      if (frame.kind === "ERROR" || frame.kind === "CLIENT_ERROR" || frame.kind === "SERVER_ERROR") {
        const error = replyError(frame);
        error.message = `${command} to ${connection.name}: ${error.message}`;
        throw error;
      }
      return metaReply(command, frame);
    }
    const [frame] = await connection.request(bytes, ReplyShape.single, command);
    if (frame!.kind === "ERROR" || frame!.kind === "CLIENT_ERROR" || frame!.kind === "SERVER_ERROR") {
      // ERROR: a server without the meta protocol (CommandError), as the other commands report it.
      const error = replyError(frame!);
      error.message = `${command} to ${connection.name}: ${error.message}`;
      throw error;
    }
    return metaReply(command, frame!);
  }

  /** Meta no-op on every server: resolves once each has answered everything sent before it. */
  async mn(): Promise<void> {
    await Promise.all(
      this.#all().map((connection) => connection.request(encodeMn(), ReplyShape.single, "mn")),
    );
  }

  /** Closes every connection; waiting requests fail with ConnectionClosedError. */
  close(): void {
    for (const connection of this.#connections) connection.close();
  }
}

function toParts(bytes: Buffer | Buffer[]): Buffer[] {
  return Array.isArray(bytes) ? bytes : [bytes];
}

/** What a quiet meta command's silence means. */
function quietReply(command: string): MetaReply {
  // mg's q hides EN (a miss); ms, md and ma's q hide HD (success).
  return { code: command === "mg" ? "EN" : "HD", flags: [] };
}

function metaReply(command: string, frame: ReplyFrame): MetaReply {
  switch (frame.kind) {
    case "VA":
      return { code: "VA", flags: frame.flags, value: frame.value };
    case "HD":
    case "EN":
    case "NF":
    case "NS":
    case "EX":
      return { code: frame.kind, flags: frame.flags };
    default:
      throw unexpected(command, frame);
  }
}

/** Keys come back from memcached as their bytes; a JavaScript key is sent as UTF-8. */
function wireKey(key: string): string {
  return isAscii(key) ? key : Buffer.from(key, "utf8").toString("latin1");
}

/** The keys a get-like request may answer for. */
function oneKey(key: string): ReadonlySet<string> {
  return new Set([wireKey(key)]);
}

function isAscii(key: string): boolean {
  return /^[\x00-\x7f]*$/.test(key);
}

/**
 * Receives one multi-get's values in place (see getManyRanges): memcached answers in the order of the keys,
 * skipping missing ones, so each key must be one still ahead in the list; anything else is out of step.
 */
class RangesInOrder implements RawValueReceiver {
  #at = 0;
  readonly #ranges: ValueRanges;
  readonly #indexes: readonly number[];
  readonly #wire: readonly string[];

  constructor(ranges: ValueRanges, indexes: readonly number[], wire: readonly string[]) {
    this.#ranges = ranges;
    this.#indexes = indexes;
    this.#wire = wire;
  }

  key(buf: Buffer, start: number, end: number): void {
    const wire = this.#wire;
    let at = this.#at;
    while (at < wire.length && !sameKey(wire[at]!, buf, start, end)) at++;
    if (at === wire.length) {
      throw new ProtocolError(
        `get got a value for key ${JSON.stringify(buf.toString("latin1", start, end))}, which it did not ask ` +
          "for (or not in the order asked)",
      );
    }
    this.#at = at;
  }

  value(buf: Buffer, start: number, end: number): void {
    const i = this.#indexes[this.#at++]!;
    const ranges = this.#ranges;
    ranges.buffers[i] = buf;
    ranges.starts[i] = start;
    ranges.ends[i] = end;
  }
}

/** Whether `buf[start..end)` is the wire key (one character per byte). */
function sameKey(wire: string, buf: Buffer, start: number, end: number): boolean {
  if (end - start !== wire.length) return false;
  // Keys of one stream share their start: compare from the end, where they differ.
  for (let i = wire.length - 1; i >= 0; i--) if (buf[start + i] !== wire.charCodeAt(i)) return false;
  return true;
}

function valuesByKey(frames: readonly ReplyFrame[]): Map<string, GetResult> {
  const found = new Map<string, GetResult>();
  for (const frame of frames) {
    if (frame.kind !== "VALUE") continue;
    const value = frame as ValueFrame;
    found.set(
      value.key,
      value.cas === undefined
        ? { value: value.value, flags: value.flags }
        : {
            value: value.value,
            flags: value.flags,
            cas: value.cas,
          },
    );
  }
  return found;
}

function expectStatus(frame: ReplyFrame, command: string, yes: string, no: string): boolean {
  if (frame.kind === yes) return true;
  if (frame.kind === no) return false;
  throw unexpected(command, frame);
}

function unexpected(command: string, frame: ReplyFrame): ProtocolError {
  return new ProtocolError(
    `${command}: the server answered ${frame.kind}, which is not a reply to ${command}`,
  );
}
