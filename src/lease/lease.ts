// A lock with a time-to-live in memcached, so several drainer or collector processes can run and exactly
// one works at a time: `add` takes it, compare-and-swap renews it, and a key that is not renewed expires.
//
// Safety rule. memcached counts TTL in whole seconds on a clock that ticks once a second, so a key stored
// with TTL n may expire up to 1 s early (after n - 1 s). The holder therefore treats the lease as lost once
// no renew has succeeded for (ttl - 1 s - margin), measured from when that renew was *sent*; the standby
// only takes over after the key has expired (its `add` succeeds). The holder's deadline always falls
// before the earliest moment the key can expire, so the two never work at the same time — provided the
// holder checks `held` (or its signal) before each step of work and is not paused for longer than the
// margin (a stopped or swapped-out process can still overrun; keep steps short and idempotent).
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Client, MetaReply } from "../client/index.js";
import { ConfigError, LeaseLostError, ProtocolError } from "../errors.js";

export const DEFAULT_NAMESPACE = "memipc";
export const DEFAULT_TTL_SECONDS = 10; // s the key lives without a renew
export const DEFAULT_MARGIN = 200; // ms kept between the holder's deadline and the key's earliest expiry
export const DEFAULT_POLL_EVERY = 1000; // ms between attempts to take a lease someone else holds
/** memcached's TTL granularity: a key may expire this much (ms) before its TTL has passed. */
export const TTL_GRANULARITY = 1000;

/** Milliseconds since the epoch; injected by tests. */
export type Clock = () => number;

export interface LeaseOptions {
  /** What is guarded, e.g. "drain:site"; part of the key. */
  name: string;
  /** Who holds it, shown by status(); default `${hostname}:${pid}:${random}`. */
  owner?: string;
  /** Key prefix; default "memipc". */
  namespace?: string;
  /** Seconds the key lives without a renew; a whole number, at least 2 (see the safety rule). */
  ttlSeconds?: number;
  /** ms between renews while holding; default the smaller of ttl/3 and half the safe window. */
  renewEvery?: number;
  /** ms between attempts to take the lease while someone else holds it. */
  pollEvery?: number;
  /** ms of safety between the holder's deadline and the earliest expiry of the key. */
  margin?: number;
  /**
   * Route the lease key as with the client's failover on: when its server is marked dead, the lease moves to
   * the next server on the ring, where it is taken again, instead of being unobtainable until the server
   * is back. Default: on for a pool, whatever the client's setting. Clients that disagree for a moment on
   * whether a server is dead can then both hold the lease for that moment: the outputs' fences (FileSink,
   * the stats database) are what keep the two from writing over each other.
   */
  failover?: boolean;
  clock?: Clock;
}

export interface LeaseStatus {
  /** Who holds the lease now, as stored in memcached; undefined when nobody does. */
  owner: string | undefined;
  /** True when this Lease holds it. */
  held: boolean;
  /** Seconds until the key expires unless renewed (memcached's view, whole seconds). */
  expiresInSeconds?: number;
}

/** The value stored under the key: JSON, so a client in any language can read who holds it. */
interface LeaseValue {
  owner: string;
  /** Random per acquisition: tells this holding apart from an earlier one by the same owner. */
  token: string;
  /** ms since the epoch, on the holder's clock; for people reading the key (memcached's TTL decides). */
  expiresAt: number;
}

export function defaultOwner(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
}

export class Lease {
  readonly key: string;
  readonly owner: string;
  readonly ttlSeconds: number;
  readonly renewEvery: number;
  readonly pollEvery: number;
  /** ms after a successful renew was sent during which this process may work. */
  readonly safeWindow: number;
  readonly #client: Client;
  readonly #clock: Clock;
  readonly #route: { failover: boolean };
  /** Set while this process holds the lease. */
  #token: string | undefined;
  /** Clock time after which this holding is no longer safe to work under. */
  #deadline = 0;
  #controller: AbortController | undefined;
  #watchdog: ReturnType<typeof setTimeout> | undefined;
  #renewTimer: ReturnType<typeof setTimeout> | undefined;
  /** The renew in flight: a second concurrent one would see the first one's new CAS and think it lost. */
  #renewing: Promise<boolean> | undefined;

  constructor(client: Client, options: LeaseOptions) {
    const ttl = options.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    const margin = options.margin ?? DEFAULT_MARGIN;
    if (typeof options.name !== "string" || options.name === "") {
      throw new ConfigError('lease name is empty: pass what the lease guards, e.g. { name: "drain:site" }');
    }
    if (!Number.isInteger(ttl) || ttl < 2) {
      throw new ConfigError(
        `lease ttlSeconds ${ttl} is not a whole number of at least 2: memcached counts TTL in whole ` +
          "seconds and may expire a key up to 1 s early, so a 1 s lease would leave no time to work",
      );
    }
    if (!Number.isFinite(margin) || margin < 0)
      throw new ConfigError(`lease margin ${margin} ms is negative`);
    this.safeWindow = ttl * 1000 - TTL_GRANULARITY - margin;
    if (this.safeWindow <= 0) {
      throw new ConfigError(
        `lease margin ${margin} ms leaves no safe window within ttlSeconds ${ttl}: raise ttlSeconds or lower margin`,
      );
    }
    this.renewEvery = options.renewEvery ?? Math.min((ttl * 1000) / 3, this.safeWindow / 2);
    if (!(this.renewEvery > 0 && this.renewEvery < this.safeWindow)) {
      throw new ConfigError(
        `lease renewEvery ${this.renewEvery} ms must be above 0 and below the safe window of ` +
          `${this.safeWindow} ms (ttl - 1 s - margin), or the lease is lost between renews: renew more often`,
      );
    }
    this.pollEvery = options.pollEvery ?? DEFAULT_POLL_EVERY;
    if (!(this.pollEvery > 0)) throw new ConfigError(`lease pollEvery ${this.pollEvery} ms must be above 0`);
    this.ttlSeconds = ttl;
    this.key = `${options.namespace ?? DEFAULT_NAMESPACE}:lease:${options.name}`;
    this.owner = options.owner ?? defaultOwner();
    this.#client = client;
    this.#clock = options.clock ?? Date.now;
    this.#route = { failover: options.failover ?? client.servers.length > 1 };
  }

  /** True while this process holds the lease and is inside its safe window: check before each step of work. */
  get held(): boolean {
    return this.#token !== undefined && this.#clock() < this.#deadline;
  }

  /** Fires when this holding ends: reason is a LeaseLostError on loss, an AbortError on release. */
  get signal(): AbortSignal | undefined {
    return this.#controller?.signal;
  }

  /** Takes the lease if nobody holds it (one atomic `add` with the TTL). When already held, renews it. */
  async tryAcquire(): Promise<boolean> {
    if (this.#token !== undefined) return this.renew();
    const token = randomBytes(8).toString("hex");
    const sentAt = this.#clock();
    const added = await this.#client.add(this.key, this.#encode(token, sentAt), {
      ttl: this.ttlSeconds,
      ...this.#route,
    });
    if (!added) return false;
    this.#token = token;
    this.#controller = new AbortController();
    this.#extend(sentAt);
    return true;
  }

  /**
   * Extends the lease if this process still holds it: reads the key with its CAS unique (`mg v c`) and
   * writes it back only if unchanged (`ms C<cas> T<ttl>`), never a blind set. False (and the signal
   * fires) when the key expired, was deleted or belongs to someone else. A network error rejects and
   * leaves the lease held until its deadline, so a caller may retry.
   */
  renew(): Promise<boolean> {
    if (this.#renewing !== undefined) return this.#renewing;
    const renewing = this.#renew().finally(() => {
      if (this.#renewing === renewing) this.#renewing = undefined;
    });
    this.#renewing = renewing;
    return renewing;
  }

  async #renew(): Promise<boolean> {
    const token = this.#token;
    if (token === undefined) return false;
    if (this.#clock() >= this.#deadline) {
      this.#lose(`renewing ${this.key} came too late: another process may already hold it`);
      return false;
    }
    const sentAt = this.#clock();
    const current = await this.#client.mg(this.key, ["v", "c"], this.#route);
    if (this.#token !== token) return false; // released meanwhile
    if (current.code !== "VA") {
      this.#lose(`lease ${this.key} is gone (expired or deleted): stop work; another process may take it`);
      return false;
    }
    const holder = decode(current.value!);
    if (holder.token !== token) {
      this.#lose(`lease ${this.key} is now held by ${JSON.stringify(holder.owner)}: stop work`);
      return false;
    }
    const cas = metaFlag(current, "c");
    if (cas === undefined)
      throw new ProtocolError("the server did not return a CAS unique for mg c: use memcached 1.6+");
    const stored = await this.#client.ms(
      this.key,
      this.#encode(token, sentAt),
      [`C${cas}`, `T${this.ttlSeconds}`],
      this.#route,
    );
    if (this.#token !== token) return false;
    if (stored.code !== "HD") {
      this.#lose(
        `lease ${this.key} changed while renewing (${stored.code}): another process holds it; stop work`,
      );
      return false;
    }
    this.#extend(sentAt);
    return true;
  }

  /**
   * Gives the lease up so a standby can take it at once: deletes the key only if it is still ours
   * (`md C<cas>`). Waits for a renew in flight first. A network error rejects; the key then expires by TTL.
   */
  async release(): Promise<void> {
    const token = this.#token;
    if (token === undefined) return;
    await this.#renewing?.catch(() => undefined);
    if (this.#token !== token) return; // the renew found it lost
    this.#end();
    this.#controller?.abort();
    const current = await this.#client.mg(this.key, ["v", "c"], this.#route);
    if (current.code !== "VA" || decode(current.value!).token !== token) return;
    const cas = metaFlag(current, "c");
    // EX or NF here means someone else took or removed it in between: not ours to delete.
    if (cas !== undefined) await this.#client.md(this.key, [`C${cas}`], this.#route);
  }

  /**
   * Waits until this process holds the lease (trying every pollEvery ms), then keeps renewing it in the
   * background. Resolves with a signal that fires when the lease is lost (reason: LeaseLostError) or
   * released; the caller must stop work when it fires. Aborting `signal` stops waiting (rejects with its
   * reason) or, once held, releases the lease. Errors talking to memcached while waiting are retried.
   */
  async hold(signal?: AbortSignal): Promise<AbortSignal> {
    for (;;) {
      signal?.throwIfAborted();
      let acquired = false;
      try {
        acquired = await this.tryAcquire();
      } catch {
        // memcached unreachable or slow: a standby keeps waiting rather than failing the process.
      }
      if (acquired) break;
      await sleep(this.pollEvery, signal);
    }
    const held = this.#controller!.signal;
    if (signal !== undefined) {
      const onAbort = (): void => void this.release().catch(() => undefined);
      signal.addEventListener("abort", onAbort, { once: true });
      held.addEventListener("abort", () => signal.removeEventListener("abort", onAbort), { once: true });
    }
    this.#scheduleRenew();
    return held;
  }

  /**
   * Holds the lease while `task` runs and releases it after. The task gets the lease's signal and must
   * stop when it fires (throwing signal.reason is the usual way). A failed release is ignored: the key
   * expires by its TTL.
   */
  async run<T>(task: (signal: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    const held = await this.hold(signal);
    try {
      return await task(held);
    } finally {
      await this.release().catch(() => undefined);
    }
  }

  /**
   * Works under the lease until `signal` aborts: stands by until the lease is held, runs `work` with a signal
   * that fires when the lease is lost or `signal` aborts, releases the lease only once `work` has settled,
   * and stands by again after a loss. An error while waiting goes to `onError` and the wait starts again
   * `retryAfter` ms later (default 1000). Resolves when `signal` aborts and the work in flight has settled.
   */
  async serve(
    work: (signal: AbortSignal) => Promise<void>,
    options: { signal?: AbortSignal; onError?: (error: Error) => void; retryAfter?: number } = {},
  ): Promise<void> {
    const { signal, onError } = options;
    while (!signal?.aborted) {
      // The caller's signal may stop the wait; once held, the lease is released only after the work in
      // flight has settled (hold() would release it at once on abort).
      const waiting = new AbortController();
      const stopWaiting = (): void => waiting.abort(signal?.reason);
      signal?.addEventListener("abort", stopWaiting, { once: true });
      let held: AbortSignal;
      try {
        held = await this.hold(waiting.signal);
      } catch (error) {
        if (signal?.aborted) break;
        onError?.(error as Error);
        await sleep(options.retryAfter ?? 1000, signal).catch(() => undefined);
        continue;
      } finally {
        signal?.removeEventListener("abort", stopWaiting);
      }
      try {
        await work(signal === undefined ? held : AbortSignal.any([signal, held]));
      } finally {
        if (!held.aborted) await this.release().catch(() => undefined);
      }
    }
  }

  /** Who holds the lease now, read from memcached (for the dashboard). */
  async status(): Promise<LeaseStatus> {
    const reply = await this.#client.mg(this.key, ["v", "t"], this.#route);
    if (reply.code !== "VA") return { owner: undefined, held: false };
    const holder = decode(reply.value!);
    const ttl = Number(metaFlag(reply, "t"));
    const status: LeaseStatus = { owner: holder.owner, held: holder.token === this.#token && this.held };
    if (Number.isFinite(ttl) && ttl >= 0) status.expiresInSeconds = ttl;
    return status;
  }

  #encode(token: string, sentAt: number): string {
    const value: LeaseValue = { owner: this.owner, token, expiresAt: sentAt + this.ttlSeconds * 1000 };
    return JSON.stringify(value);
  }

  /** A write sent at `sentAt` succeeded: the key cannot expire before sentAt + ttl - 1 s. */
  #extend(sentAt: number): void {
    this.#deadline = sentAt + this.safeWindow;
    clearTimeout(this.#watchdog);
    // The watchdog, not the renew loop, enforces the rule: a renew stuck on a slow server must not
    // keep the worker going past the deadline.
    this.#watchdog = setTimeout(
      () => {
        if (this.#clock() >= this.#deadline) {
          this.#lose(
            `renewing ${this.key} has not succeeded for ${this.safeWindow} ms (ttl - 1 s - margin): ` +
              "stop work; another process may take the lease once the key expires. Check memcached's reachability.",
          );
        } else this.#extend(this.#deadline - this.safeWindow);
      },
      Math.max(0, this.#deadline - this.#clock()),
    );
    this.#watchdog.unref();
  }

  #scheduleRenew(): void {
    if (this.#renewTimer !== undefined || this.#token === undefined) return;
    const token = this.#token;
    const tick = async (): Promise<void> => {
      this.#renewTimer = undefined;
      if (this.#token !== token) return;
      try {
        if (!(await this.renew())) return;
      } catch {
        // Try again at the next tick; the watchdog ends the holding if this goes on too long.
      }
      if (this.#token === token && this.#renewTimer === undefined) {
        this.#renewTimer = setTimeout(() => void tick(), this.renewEvery);
        this.#renewTimer.unref();
      }
    };
    this.#renewTimer = setTimeout(() => void tick(), this.renewEvery);
    // A lease alone does not keep a process alive; if nothing else runs, the key expires by TTL.
    this.#renewTimer.unref();
  }

  #lose(message: string): void {
    if (this.#token === undefined) return;
    this.#end();
    this.#controller?.abort(new LeaseLostError(message));
  }

  #end(): void {
    this.#token = undefined;
    this.#deadline = 0;
    clearTimeout(this.#watchdog);
    clearTimeout(this.#renewTimer);
    this.#watchdog = undefined;
    this.#renewTimer = undefined;
  }
}

/** Reads a stored value; anything not written by a Lease (a raw set) counts as someone else's. */
function decode(value: Buffer): { owner: string; token: string | undefined } {
  const text = value.toString("utf8");
  try {
    const parsed = JSON.parse(text) as Partial<LeaseValue>;
    if (typeof parsed.owner === "string" && typeof parsed.token === "string") {
      return { owner: parsed.owner, token: parsed.token };
    }
  } catch {
    // not JSON: fall through
  }
  return { owner: text, token: undefined };
}

function metaFlag(reply: MetaReply, flag: string): string | undefined {
  return reply.flags.find((f) => f.flag === flag)?.token;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
