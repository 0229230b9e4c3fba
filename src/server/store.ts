// The item store: a hash map for lookups and a linked list in LRU order, with memcached's expiry, flush, CAS
// and memory rules, and a memory charge that counts what an item really costs this process.

export const ItemBit = {
  fetched: 1,
  active: 2,
  stale: 4,
  tokenSent: 8,
  keyBinary: 16,
} as const;

export interface Item {
  key: string;
  /**
   * The value's bytes: a latin1 string (one character per byte) when shorter than SMALL_VALUE, else a buffer
   * of its own. See storedValue.
   */
  value: Buffer | string;
  flags: number;
  /** Unix second at which the item is gone; 0 never. */
  exptime: number;
  cas: number;
  /** Unix second of the last store or bump (memcached's it->time). */
  time: number;
  bits: number;
  /** Bytes charged against the memory limit. */
  size: number;
  /** Replies not yet sent that hold this item (memcached's extra references). */
  refs: number;
  /**
   * The whole reply to `get` for an item with a buffer value ("VALUE key flags bytes\r\n", the value,
   * "\r\n"), built on the first get and kept, so a hit costs one copy; `value` then points into it.
   */
  wire: Buffer | undefined;
  /** Neighbours in LRU order: `prev` is colder, `next` warmer. */
  prev: Item | undefined;
  next: Item | undefined;
}

const REALTIME_MAXDELTA = 60 * 60 * 24 * 30; // seconds: larger TTLs are unix times
const ITEM_HEADER = 48 + 8; // bytes memcached spends per item on its header and CAS
/**
 * Bytes an item costs this process beyond memcached's count (measured on Node 20, 64-bit: 300 to 550 bytes):
 * the Item object, its value's string or Buffer view, the key string and its Map entry. Charged against
 * the memory limit so that many tiny items cannot hold several times the limit, as memcached charges its
 * item headers.
 */
export const ITEM_OVERHEAD = 512;
/** Bytes of heap an item's objects take once it is gone (the Item, its buffer views, the key string). */
const ITEM_HEAP = 300;

/**
 * Values shorter than this (bytes) are kept as latin1 strings. A small buffer is a heap object of about 100
 * bytes that also keeps alive the 8 KiB pool slab it was cut from (and with it every dead value in that
 * slab); a string costs its length plus 16 bytes, lives in V8's heap and moves when the heap is compacted.
 * Larger values stay buffers outside the heap, so V8's heap does not grow with the memory limit.
 */
export const SMALL_VALUE = 256;
/** Values up to this many bytes may come from Node's shared 8 KiB pool (Buffer.poolSize >>> 1). */
const POOLED_MAX = 4096;

/**
 * A value as the store keeps it: small values as strings, others in storage of their own, never as a view
 * into a shared pool slab or a network chunk that would keep more memory alive than the value needs.
 */
export function storedValue(value: Buffer | string): Buffer | string {
  if (typeof value === "string") return value.length < SMALL_VALUE ? value : Buffer.from(value, "latin1");
  if (value.length < SMALL_VALUE) return value.toString("latin1");
  if (value.length >= POOLED_MAX || value.buffer.byteLength === value.length) return value;
  const own = Buffer.allocUnsafeSlow(value.length);
  value.copy(own);
  return own;
}

/** A value's bytes as a buffer (a new one for a small value). */
export function valueBytes(value: Buffer | string): Buffer {
  return typeof value === "string" ? Buffer.from(value, "latin1") : value;
}

/** Bytes an item costs, counted as memcached's ITEM_ntotal does (the item size limit applies to this). */
export function itemSize(keyLength: number, flags: number, valueLength: number): number {
  return ITEM_HEADER + keyLength + 1 + (flags === 0 ? 0 : 4) + valueLength + 2;
}

/** Bytes an item is charged against the memory limit. */
function charge(item: Item): number {
  return item.size + ITEM_OVERHEAD;
}

export interface StoreCounters {
  evictions: number;
  reclaimed: number;
  expiredUnfetched: number;
  evictedUnfetched: number;
  evictedActive: number;
  totalItems: number;
  getExpired: number;
  getFlushed: number;
  crawlerReclaimed: number;
  crawlerChecked: number;
}

export class Store {
  readonly #items = new Map<string, Item>();
  /** The coldest item, evicted first; `#warmest` is where stored items go. */
  #coldest: Item | undefined;
  #warmest: Item | undefined;
  #bytes = 0;
  #casId = 0;
  #oldestLive = 0;
  #oldestCas = 0;
  #crawler: MapIterator<Item> | undefined;
  /** Bytes of items let go since the start (values, built replies, item objects): garbage to collect. */
  released = 0;
  memoryLimit: number;
  /** Seconds since the epoch, as the server's clock ticks them. */
  readonly now: () => number;
  /** memcached's process_started: absolute times at or before it mean "already expired". */
  readonly processStarted: number;
  readonly counters: StoreCounters = {
    evictions: 0,
    reclaimed: 0,
    expiredUnfetched: 0,
    evictedUnfetched: 0,
    evictedActive: 0,
    totalItems: 0,
    getExpired: 0,
    getFlushed: 0,
    crawlerReclaimed: 0,
    crawlerChecked: 0,
  };

  constructor(memoryLimit: number, now: () => number) {
    this.memoryLimit = memoryLimit;
    this.now = now;
    this.processStarted = now() - 62;
  }

  /** Bytes charged against the memory limit: memcached's item sizes plus ITEM_OVERHEAD per item. */
  get bytes(): number {
    return this.#bytes;
  }

  get count(): number {
    return this.#items.size;
  }

  nextCas(): number {
    return ++this.#casId;
  }

  /** Turns a TTL as sent into an absolute expiry second (memcached's realtime()). */
  expiry(ttl: number): number {
    if (ttl < 0) ttl = REALTIME_MAXDELTA + 1;
    if (ttl === 0) return 0;
    if (ttl > REALTIME_MAXDELTA) return ttl <= this.processStarted ? this.processStarted + 1 : ttl;
    return this.now() + ttl;
  }

  #isFlushed(item: Item): boolean {
    const oldestLive = this.#oldestLive;
    if (oldestLive === 0 || oldestLive > this.now()) return false;
    return item.time <= oldestLive || (this.#oldestCas !== 0 && item.cas !== 0 && item.cas < this.#oldestCas);
  }

  /** Looks an item up, dropping it if it expired or was flushed (memcached's do_item_get). */
  peek(key: string): Item | undefined {
    const item = this.#items.get(key);
    if (item === undefined) return undefined;
    if (this.#isFlushed(item)) {
      this.counters.getFlushed++;
      this.#unlink(item);
      return undefined;
    }
    if (item.exptime !== 0 && item.exptime <= this.now()) {
      this.counters.getExpired++;
      if ((item.bits & ItemBit.fetched) === 0) this.counters.expiredUnfetched++;
      this.#unlink(item);
      return undefined;
    }
    return item;
  }

  /** A fetch that counts as a hit: marks the item fetched, then active (memcached's do_item_bump). */
  bump(item: Item): void {
    if ((item.bits & ItemBit.active) !== 0) return;
    if ((item.bits & ItemBit.fetched) === 0) {
      item.bits |= ItemBit.fetched;
    } else {
      item.bits |= ItemBit.active;
      item.time = this.now();
    }
  }

  get(key: string, bump: boolean): Item | undefined {
    const item = this.peek(key);
    if (item !== undefined && bump) this.bump(item);
    return item;
  }

  /** memcached's do_item_update: refreshes the access time. */
  touchTime(item: Item): void {
    item.time = this.now();
  }

  /** The reply to `get` for an item with a buffer value, built once. */
  wireOf(item: Item & { value: Buffer }): Buffer {
    if (item.wire !== undefined) return item.wire;
    const value = item.value;
    const header = `VALUE ${item.key} ${item.flags} ${value.length}\r\n`;
    const wire = Buffer.allocUnsafe(header.length + value.length + 2);
    wire.write(header, 0, "latin1");
    wire.set(value, header.length);
    wire[wire.length - 2] = 13;
    wire[wire.length - 1] = 10;
    item.wire = wire;
    item.value = wire.subarray(header.length, header.length + value.length);
    return wire;
  }

  newItem(key: string, value: Buffer | string, flags: number, exptime: number): Item {
    return {
      key,
      value: storedValue(value),
      flags,
      exptime,
      cas: 0,
      time: 0,
      bits: 0,
      size: itemSize(key.length, flags, value.length),
      refs: 0,
      wire: undefined,
      prev: undefined,
      next: undefined,
    };
  }

  /** Adds an item, giving it a new CAS unique, replacing any item under the same key. */
  link(item: Item): void {
    const old = this.#items.get(item.key);
    if (old !== undefined) this.#unlink(old);
    item.time = this.now();
    item.cas = this.nextCas();
    this.#makeRoom(charge(item));
    this.#items.set(item.key, item);
    this.#append(item);
    this.#bytes += charge(item);
    this.counters.totalItems++;
  }

  unlink(item: Item): void {
    if (this.#items.get(item.key) === item) this.#unlink(item);
  }

  #unlink(item: Item): void {
    this.#items.delete(item.key);
    this.#detach(item);
    this.#bytes -= charge(item);
    this.released += (item.wire ?? item.value).length + ITEM_HEAP;
  }

  /** Puts an item at the warm end of the LRU list. */
  #append(item: Item): void {
    item.prev = this.#warmest;
    item.next = undefined;
    if (this.#warmest === undefined) this.#coldest = item;
    else this.#warmest.next = item;
    this.#warmest = item;
  }

  #detach(item: Item): void {
    if (item.prev === undefined) this.#coldest = item.next;
    else item.prev.next = item.next;
    if (item.next === undefined) this.#warmest = item.prev;
    else item.next.prev = item.prev;
    item.prev = undefined;
    item.next = undefined;
  }

  /** Changes an item's value where it stands (incr/decr that fit), keeping its place and TTL. */
  rewrite(item: Item, value: Buffer | string): void {
    this.released += (item.wire ?? item.value).length;
    item.value = storedValue(value);
    item.wire = undefined;
    item.cas = this.nextCas();
    item.time = this.now();
  }

  flush(delay: number): void {
    const newOldest = delay > 0 ? this.expiry(delay) : this.now();
    // A time at or before the server's start makes memcached's oldest_live 0, which disables the flush;
    // the CAS unique it takes is still used up.
    this.#oldestLive = newOldest - 1 <= this.processStarted ? 0 : newOldest - 1;
    if (newOldest - 1 <= this.now()) this.#oldestCas = this.nextCas();
  }

  /**
   * Evicts from the cold end until `size` more bytes fit. An item fetched twice since it was last
   * considered gets a second chance (moved to the warm end), as memcached's segmented LRU gives one.
   * Walking a linked list keeps each eviction O(1): a Map walked from its start would step over the holes
   * its deletions leave, which made storing into a full cache of tiny items quadratic.
   */
  #makeRoom(size: number): void {
    const limit = this.memoryLimit;
    if (this.#bytes + size <= limit) return;
    const now = this.now();
    let secondChances = this.#items.size;
    let item = this.#coldest;
    while (item !== undefined && this.#bytes + size > limit) {
      const next = item.next;
      const expired = (item.exptime !== 0 && item.exptime <= now) || this.#isFlushed(item);
      if (!expired && (item.bits & ItemBit.active) !== 0 && secondChances-- > 0) {
        item.bits &= ~ItemBit.active;
        this.#detach(item);
        this.#append(item);
      } else {
        this.#unlink(item);
        if (expired) {
          this.counters.reclaimed++;
        } else {
          this.counters.evictions++;
          if ((item.bits & ItemBit.fetched) === 0) this.counters.evictedUnfetched++;
          if ((item.bits & ItemBit.active) !== 0) this.counters.evictedActive++;
        }
      }
      item = next ?? this.#coldest;
    }
  }

  /**
   * A light crawler: looks at up to `limit` items, resuming where the last call stopped and wrapping
   * around, and drops the expired or flushed ones so memory is freed even for keys nobody reads again.
   */
  reap(limit: number): number {
    const now = this.now();
    let dropped = 0;
    for (let looked = 0; looked < limit; looked++) {
      this.#crawler ??= this.#items.values();
      const next = this.#crawler.next();
      if (next.done) {
        this.#crawler = undefined;
        break;
      }
      const item = next.value;
      this.counters.crawlerChecked++;
      if (this.#items.get(item.key) !== item) continue;
      if ((item.exptime !== 0 && item.exptime <= now) || this.#isFlushed(item)) {
        this.#unlink(item);
        this.counters.crawlerReclaimed++;
        dropped++;
      }
    }
    return dropped;
  }
}
