// Consistent hashing that puts every key on the server libmemcached's ketama would pick, so memipc shares a
// pool with PHP's Memcached, pylibmc and other libmemcached-based clients. Pure: no sockets, no clock.
import { createHash } from "node:crypto";
import { ConfigError } from "../errors.js";

/** One memcached server of a pool; `weight` (default 1) scales its share in a weighted continuum. */
export interface KetamaServer {
  readonly host: string;
  readonly port: number;
  readonly weight?: number;
}

/**
 * libmemcached's two ketama behaviours, by their libmemcached and pylibmc names. They place keys differently,
 * so a pool's clients must all use the same one.
 */
export const KetamaBehavior = {
  /**
   * MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED (distribution CONSISTENT_WEIGHTED, key hash MD5): libketama's own
   * scheme. What PHP's `Memcached::OPT_LIBKETAMA_COMPATIBLE` and pylibmc's `{"ketama_weighted": True}` turn
   * on. 160 points per server scaled by weight, 4 points per MD5 digest. The default.
   */
  weighted: "ketama_weighted",
  /**
   * MEMCACHED_BEHAVIOR_KETAMA (distribution CONSISTENT_KETAMA, libmemcached's default one-at-a-time key hash):
   * what pylibmc's `{"ketama": True}` and PHP's `OPT_DISTRIBUTION => DISTRIBUTION_CONSISTENT` give. 100 points
   * per server, each the key hash of its name. A server weight above 1 switches libmemcached (and this ring)
   * to the weighted continuum of ketama_weighted, while keys keep the one-at-a-time hash.
   */
  ketama: "ketama",
} as const;
export type KetamaBehavior = (typeof KetamaBehavior)[keyof typeof KetamaBehavior];

/** libmemcached's key hashes that a ketama pool uses (MEMCACHED_BEHAVIOR_HASH: "md5", "default"). */
export const KetamaHash = {
  md5: "md5",
  /** Bob Jenkins' one-at-a-time, libmemcached's MEMCACHED_HASH_DEFAULT. */
  oneAtATime: "one_at_a_time",
} as const;
export type KetamaHash = (typeof KetamaHash)[keyof typeof KetamaHash];

export interface KetamaOptions {
  /** Which libmemcached behaviour to match; KetamaBehavior.weighted when absent. */
  behavior?: KetamaBehavior;
  /**
   * The key hash (libmemcached's MEMCACHED_BEHAVIOR_HASH), for a pool whose clients changed it after choosing
   * the behaviour. Absent: what the behaviour sets (MD5 for ketama_weighted, one-at-a-time for ketama).
   * In the unweighted continuum it hashes the point names too.
   */
  hash?: KetamaHash;
  /** Indexes of servers to leave off the ring (dead ones), as libmemcached's auto-eject rebuild does. */
  exclude?: Iterable<number>;
}

export const MEMCACHED_DEFAULT_PORT = 11211; // libmemcached leaves the port out of this one's point names
const POINTS_PER_SERVER = 100; // MEMCACHED_POINTS_PER_SERVER: the unweighted continuum
const POINTS_PER_SERVER_KETAMA = 160; // MEMCACHED_POINTS_PER_SERVER_KETAMA: the weighted one, at average weight
const POINTS_PER_DIGEST = 4; // a 16-byte MD5 digest gives four 32-bit points
const MAX_WEIGHT = 0xffffffff; // libmemcached keeps weights in a uint32_t

export class KetamaRing {
  readonly servers: readonly KetamaServer[];
  readonly behavior: KetamaBehavior;
  readonly hash: KetamaHash;
  /** True for libketama's continuum (160 points per server scaled by weight, MD5 of the point names). */
  readonly weighted: boolean;
  /** Indexes of the servers on the ring, ascending. */
  readonly live: readonly number[];
  readonly #keyHash: (bytes: Uint8Array, length: number) => number;
  // The continuum: point values ascending, and the server index owning each point.
  readonly #values: Uint32Array;
  readonly #owners: Uint32Array;
  readonly #pointCounts: Uint32Array;

  constructor(servers: readonly KetamaServer[], options: KetamaOptions = {}) {
    const behavior = options.behavior ?? KetamaBehavior.weighted;
    if (behavior !== KetamaBehavior.weighted && behavior !== KetamaBehavior.ketama) {
      throw new ConfigError(`unknown ketama behavior ${String(behavior)}: use "ketama_weighted" or "ketama"`);
    }
    const hash =
      options.hash ?? (behavior === KetamaBehavior.weighted ? KetamaHash.md5 : KetamaHash.oneAtATime);
    if (hash !== KetamaHash.md5 && hash !== KetamaHash.oneAtATime) {
      throw new ConfigError(`unknown ketama hash ${String(hash)}: use "md5" or "one_at_a_time"`);
    }
    this.servers = Object.freeze(servers.map((server, index) => checkServer(server, index)));
    this.behavior = behavior;
    this.hash = hash;
    this.#keyHash = hash === KetamaHash.md5 ? md5Word : oneAtATimeWord;
    this.live = Object.freeze(liveIndexes(this.servers.length, options.exclude));
    // libmemcached turns the weighted continuum on for good when a server with a weight above 1 joins.
    this.weighted =
      behavior === KetamaBehavior.weighted || this.servers.some((server) => weightOf(server) > 1);

    this.#pointCounts = new Uint32Array(this.servers.length);
    const points: { value: number; owner: number }[] = [];
    if (this.weighted) {
      // libmemcached computes each share in single precision; rounding the same way keeps the point counts equal.
      let totalWeight = 0;
      for (const index of this.live) totalWeight += weightOf(this.servers[index]!);
      const liveCount = Math.fround(this.live.length);
      for (const index of this.live) {
        const share = Math.fround(Math.fround(weightOf(this.servers[index]!)) / Math.fround(totalWeight));
        const perServer = Math.fround(Math.fround(share * POINTS_PER_SERVER_KETAMA) / POINTS_PER_DIGEST);
        const digests = Math.floor(Math.fround(Math.fround(perServer * liveCount) + Math.fround(1e-10)));
        for (let i = 0; i < digests; i++) {
          const digest = createHash("md5").update(pointName(this.servers[index]!, i)).digest();
          for (let part = 0; part < POINTS_PER_DIGEST; part++) {
            points.push({ value: digest.readUInt32LE(part * 4), owner: index });
          }
        }
        this.#pointCounts[index] = digests * POINTS_PER_DIGEST;
      }
    } else {
      for (const index of this.live) {
        for (let i = 0; i < POINTS_PER_SERVER; i++) {
          const name = Buffer.from(pointName(this.servers[index]!, i), "utf8");
          points.push({ value: this.#keyHash(name, name.length), owner: index });
        }
        this.#pointCounts[index] = POINTS_PER_SERVER;
      }
    }
    // libmemcached breaks ties between equal points by server index.
    points.sort((a, b) => a.value - b.value || a.owner - b.owner);
    this.#values = Uint32Array.from(points, (point) => point.value);
    this.#owners = Uint32Array.from(points, (point) => point.owner);
  }

  /** The same servers and options, with `indexes` (into `servers`) off the ring as well. */
  without(indexes: Iterable<number>): KetamaRing {
    const excluded = new Set(this.servers.keys());
    for (const index of this.live) excluded.delete(index);
    for (const index of indexes) excluded.add(index);
    return new KetamaRing(this.servers, { behavior: this.behavior, hash: this.hash, exclude: excluded });
  }

  /** The key's position on the ring: libmemcached's key hash (string keys as their UTF-8 bytes). */
  hashKey(key: string | Uint8Array): number {
    const bytes = keyBytes(key);
    return this.#keyHash(bytes, typeof key === "string" && bytes === keyScratch ? key.length : bytes.length);
  }

  /** The index (into `servers`) of the server that holds `key`. */
  serverFor(key: string | Uint8Array): number {
    // libmemcached skips hashing when there is nothing to choose from.
    if (this.live.length === 1) return this.live[0]!;
    return this.#owners[this.#pointAt(this.hashKey(key))]!;
  }

  /**
   * Up to `count` distinct servers for `key`: its own, then the next ones clockwise, the order to fail over in.
   * In the unweighted continuum the second is exactly where libmemcached sends the key once the first is
   * ejected. In a weighted one, ejecting a server can also change the others' point counts (each has its share
   * of 160 points per live server), so for libmemcached's exact placement after an ejection use `without`.
   */
  serversFor(key: string | Uint8Array, count: number): number[] {
    const wanted = Math.min(Math.max(0, Math.floor(count)), this.live.length);
    if (wanted === 0) return [];
    if (this.live.length === 1) return [this.live[0]!];
    const found: number[] = [];
    const seen = new Set<number>();
    const start = this.#pointAt(this.hashKey(key));
    for (let step = 0; step < this.#values.length && found.length < wanted; step++) {
      const owner = this.#owners[(start + step) % this.#values.length]!;
      if (seen.has(owner)) continue;
      seen.add(owner);
      found.push(owner);
    }
    return found;
  }

  /** How many points server `index` has on the ring (0 when it is left off). */
  pointsOf(index: number): number {
    return this.#pointCounts[index] ?? 0;
  }

  /** Every point on the ring. */
  get size(): number {
    return this.#values.length;
  }

  /** The continuum, ascending: each point's value and the index of the server owning it (a copy). */
  points(): { value: number; server: number }[] {
    return Array.from(this.#values, (value, at) => ({ value, server: this.#owners[at]! }));
  }

  /** The first point at or after `hash`, wrapping past the top of the ring to the first one. */
  #pointAt(hash: number): number {
    const values = this.#values;
    let low = 0;
    let high = values.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (values[middle]! < hash) low = middle + 1;
      else high = middle;
    }
    return low === values.length ? 0 : low;
  }
}

/** libmemcached's name for a server's `i`th point (or digest): "host:port-i", or "host-i" on port 11211. */
export function pointName(server: KetamaServer, i: number): string {
  return server.port === MEMCACHED_DEFAULT_PORT
    ? `${server.host}-${i}`
    : `${server.host}:${server.port}-${i}`;
}

/** libhashkit's MD5 key hash: the digest's first four bytes, little-endian. */
export function md5Hash(key: Uint8Array): number {
  return md5Word(key, key.length);
}

/**
 * libhashkit's one-at-a-time hash. It reads the key through a `char *`, which is signed on x86 and x86-64
 * (where this is checked against pylibmc), so bytes from 0x80 enter sign-extended; done the same way here.
 */
export function oneAtATimeHash(key: Uint8Array): number {
  return oneAtATimeWord(key, key.length);
}

// Every request hashes its key, so string keys are not copied into a fresh Buffer: an ASCII key's bytes are
// its char codes, written into this scratch array (hashing is synchronous, so one array serves every ring).
const keyScratch = new Uint8Array(512);

/** The key's UTF-8 bytes: `keyScratch` (the first key.length bytes) for an ASCII string key. */
function keyBytes(key: string | Uint8Array): Uint8Array {
  if (typeof key !== "string") return key;
  const length = key.length;
  if (length <= keyScratch.length) {
    let at = 0;
    for (; at < length; at++) {
      const code = key.charCodeAt(at);
      if (code >= 0x80) break;
      keyScratch[at] = code;
    }
    if (at === length) return keyScratch;
  }
  return Buffer.from(key, "utf8");
}

function oneAtATimeWord(bytes: Uint8Array, length: number): number {
  let value = 0;
  for (let at = 0; at < length; at++) {
    const byte = bytes[at]!;
    value = (value + (byte >= 0x80 ? byte | 0xffffff00 : byte)) | 0;
    value = (value + (value << 10)) | 0;
    value ^= value >>> 6;
  }
  value = (value + (value << 3)) | 0;
  value ^= value >>> 11;
  value = (value + (value << 15)) | 0;
  return value >>> 0;
}

// MD5 (RFC 1321) of the first `length` bytes, first word of the digest only. Written out because node:crypto's
// per-call cost dominates for short keys (about 2-5 µs per key against 0.4 µs here); node:crypto still hashes
// the point names, and the tests hold this equal to it for every length up to several blocks.
const MD5_SINES = Int32Array.from(
  { length: 64 },
  (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) | 0,
);
const MD5_SHIFTS = Uint8Array.from([7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21]);
const md5Block = new Int32Array(16);

function md5Word(bytes: Uint8Array, length: number): number {
  let a0 = 0x67452301;
  let b0 = 0xefcdab89 | 0;
  let c0 = 0x98badcfe | 0;
  let d0 = 0x10325476;
  const blocks = ((length + 8) >>> 6) + 1; // the message, a 0x80 byte, zeros, and its 64-bit bit length
  for (let block = 0, base = 0; block < blocks; block++, base += 64) {
    for (let word = 0; word < 16; word++) {
      const at = base + word * 4;
      if (at + 3 < length) {
        md5Block[word] = bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24);
        continue;
      }
      let value = 0;
      for (let j = 0; j < 4; j++) {
        const p = at + j;
        value |= (p < length ? bytes[p]! : p === length ? 0x80 : 0) << (8 * j);
      }
      md5Block[word] = value;
    }
    if (block === blocks - 1) {
      md5Block[14] = length << 3;
      md5Block[15] = Math.floor(length / 0x20000000);
    }
    let a = a0;
    let b = b0;
    let c = c0;
    let d = d0;
    for (let i = 0; i < 64; i++) {
      let f: number;
      let g: number;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const x = (a + f + MD5_SINES[i]! + md5Block[g]!) | 0;
      const shift = MD5_SHIFTS[((i >>> 4) << 2) | (i & 3)]!;
      a = d;
      d = c;
      c = b;
      b = (b + ((x << shift) | (x >>> (32 - shift)))) | 0;
    }
    a0 = (a0 + a) | 0;
    b0 = (b0 + b) | 0;
    c0 = (c0 + c) | 0;
    d0 = (d0 + d) | 0;
  }
  return a0 >>> 0;
}

function weightOf(server: KetamaServer): number {
  // libmemcached turns weight 0 into the default, 1.
  return server.weight === undefined || server.weight === 0 ? 1 : server.weight;
}

function checkServer(server: KetamaServer, index: number): KetamaServer {
  const where = `server ${index} (${String(server?.host)}:${String(server?.port)})`;
  if (typeof server?.host !== "string" || server.host === "") {
    throw new ConfigError(`${where}: host must be a non-empty string`);
  }
  if (!Number.isInteger(server.port) || server.port < 1 || server.port > 65535) {
    throw new ConfigError(`${where}: port must be an integer from 1 to 65535`);
  }
  const weight = server.weight;
  if (weight !== undefined && (!Number.isInteger(weight) || weight < 0 || weight > MAX_WEIGHT)) {
    throw new ConfigError(`${where}: weight must be an integer from 0 to ${MAX_WEIGHT} (0 counts as 1)`);
  }
  return Object.freeze({ host: server.host, port: server.port, weight: weightOf(server) });
}

function liveIndexes(serverCount: number, exclude: Iterable<number> | undefined): number[] {
  if (serverCount === 0) throw new ConfigError("a ketama ring needs at least one server");
  const excluded = new Set<number>();
  for (const index of exclude ?? []) {
    if (!Number.isInteger(index) || index < 0 || index >= serverCount) {
      throw new ConfigError(`cannot exclude server ${index}: the ring has servers 0 to ${serverCount - 1}`);
    }
    excluded.add(index);
  }
  const live: number[] = [];
  for (let index = 0; index < serverCount; index++) if (!excluded.has(index)) live.push(index);
  if (live.length === 0) throw new ConfigError("every server of the ketama ring is excluded: no server left");
  return live;
}
