// One site-log entry and a few counts per web request, made after the response has finished so they never
// delay or fail it. The framework adapters (node:http, Express, Fastify) only say when a request started and
// finished; this file builds the entry and hands it to a LogProducer and a StatsWriter.
import type { IncomingMessage, ServerResponse } from "node:http";
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { Client, type ClientOptions } from "../client/index.js";
import { ConfigError, OverloadError } from "../errors.js";
import { DEFAULT_NAMESPACE, DEFAULT_STREAM, streamAddress } from "../log/layout.js";
import { LogProducer } from "../log/producer.js";
import { StatsWriter } from "../stats/writer.js";
import { validateName } from "../stats/layout.js";

export const DEFAULT_SERVERS = "127.0.0.1:11211"; // the embedded server's address (memipc serve)
export const DEFAULT_STATS_PREFIX = "http"; // counters are http.requests, http.status.2xx, timer http.latency
export const DEFAULT_MAX_PENDING = 10_000; // requests whose append or counts are in flight; more are dropped
export const DEFAULT_WARN_EVERY = 30_000; // ms between two warnings of the default onError
export const MAX_PATH_LENGTH = 2048; // characters of the path kept in an entry; longer ones are cut
export const MAX_USER_LENGTH = 256; // characters of a user id kept in an entry

/** What to count per request. Each counter is in the current stats bucket (see StatsWriter). */
export interface CountOptions {
  /** `<prefix>.requests`: every request. */
  requests: boolean;
  /** `<prefix>.status.1xx` … `<prefix>.status.5xx`: requests by status class. */
  statuses: boolean;
  /** `<prefix>.latency`: a timer of the response time in ms (count, p50, p90, p99, max in reports). */
  latency: boolean;
  /** The first part of the names. */
  prefix: string;
}

/** The site-log entry of one request (the producer adds its time, `t`, and node, `n`, around it). */
export interface RequestEntry {
  kind: "http";
  method: string;
  /** The path, without the query string unless `keepQuery` is set. */
  path: string;
  status: number;
  /** Milliseconds from the request's start to the end of its response, to 0.1 ms. */
  duration: number;
  /** The client's address ("" when unknown). */
  client: string;
  /** From the `userId` option, when it gave one. */
  user?: string;
  /** The connection closed before the response was complete (the client went away). */
  aborted?: true;
}

/** Where an acknowledged entry was stored: its stream, epoch and sequence number. */
export interface AppendedPosition {
  stream: string;
  /** The stream's partition (0 unless `partitions` is above 1). */
  partition: number;
  epoch: number;
  seq: number;
}

export interface RequestLogOptions<Req = IncomingMessage> {
  /** The client to use (not closed by close()). Give this or `servers`, not both. */
  client: Client | undefined;
  /** memcached servers, "host:port[,host:port…]": a client of its own, closed by close(). */
  servers: ClientOptions["servers"] | undefined;
  /** Settings for the client made from `servers` (timeouts, failover…). */
  clientOptions: Partial<Omit<ClientOptions, "servers">>;
  namespace: string;
  /** The log stream entries go to. */
  stream: string;
  /** The stream's partitions (default 1); this node's entries go to the partition of its name. */
  partitions: number;
  /** This node's name, recorded with each entry. Default: the host name. */
  node: string;
  /** Append one entry per request (false: count only). */
  log: boolean;
  /** What to count; false counts nothing, true everything. */
  count: boolean | Partial<CountOptions>;
  /** Keep the query string in the logged path. Off by default: query strings can hold secrets. */
  keepQuery: boolean;
  /** The user behind a request, asked once its response has finished; undefined or null when anonymous. */
  userId: ((request: Req) => string | number | null | undefined) | undefined;
  /** The client's address; default: the framework's `ip` (Express, Fastify), else the socket's address. */
  clientAddress: ((request: Req) => string | undefined) | undefined;
  /** Requests whose append or counts may be in flight at once; beyond it entries are dropped (and reported). */
  maxPending: number;
  /** Failures to append or count, and entries dropped. Default: a warning on stderr, at most one per 30 s. */
  onError: (error: Error) => void;
  /** Called with each entry memcached has acknowledged, and where it went. */
  onAppended: ((position: AppendedPosition, entry: RequestEntry) => void) | undefined;
}

/** What an adapter knows once a request has finished. */
export interface FinishedRequest {
  method: string | undefined;
  /** The request target as received (path and query). */
  url: string | undefined;
  status: number;
  /** performance.now() when the request started. */
  start: number;
  aborted: boolean;
  /** The socket's remote address, used when no `ip` or `clientAddress` gives one. */
  socketAddress: string | undefined;
}

/**
 * The request log behind every adapter. Build one per process (it holds a producer, a stats writer and
 * perhaps a client) and call `track(req, res)` per request, or use an adapter: withRequestLog (node:http),
 * expressRequestLog, fastifyRequestLog.
 */
export class RequestLog<Req = IncomingMessage> {
  readonly options: Readonly<RequestLogOptions<Req>>;
  readonly count: Readonly<CountOptions> | undefined;
  readonly #client: Client;
  readonly #ownClient: boolean;
  readonly #producer: LogProducer | undefined;
  readonly #stats: StatsWriter | undefined;
  readonly #names: { requests: string; latency: string; status: string };
  #pending = 0;
  #idle: Array<() => void> = [];
  #closing: Promise<void> | undefined;
  #appended = 0;
  #failed = 0;
  #dropped = 0;

  constructor(options: Partial<RequestLogOptions<Req>> = {}) {
    if (options.client !== undefined && options.servers !== undefined) {
      throw new ConfigError("give the request log a client or servers, not both");
    }
    const servers = options.servers ?? (process.env.MEMIPC_MEMCACHED || DEFAULT_SERVERS);
    this.options = {
      client: options.client,
      servers: options.client === undefined ? servers : undefined,
      clientOptions: options.clientOptions ?? {},
      namespace: options.namespace ?? (process.env.MEMIPC_NAMESPACE || DEFAULT_NAMESPACE),
      stream: options.stream ?? DEFAULT_STREAM,
      partitions: options.partitions ?? 1,
      node: options.node ?? hostname(),
      log: options.log ?? true,
      count: options.count ?? true,
      keepQuery: options.keepQuery ?? false,
      userId: options.userId,
      clientAddress: options.clientAddress,
      maxPending: options.maxPending ?? DEFAULT_MAX_PENDING,
      onError: options.onError ?? rateLimitedWarning(DEFAULT_WARN_EVERY),
      onAppended: options.onAppended,
    };
    const o = this.options;
    for (const name of ["userId", "clientAddress", "onError", "onAppended"] as const) {
      if (o[name] !== undefined && typeof o[name] !== "function") {
        throw new ConfigError(`the request log's ${name} option must be a function`);
      }
    }
    if (!Number.isInteger(o.maxPending) || o.maxPending < 1) {
      throw new ConfigError(`maxPending ${o.maxPending} must be a whole number of 1 or more`);
    }
    try {
      streamAddress({ namespace: o.namespace, stream: o.stream });
    } catch (error) {
      throw new ConfigError(`request log: ${(error as Error).message}`, { cause: error });
    }
    this.count = countOptions(o.count);
    const prefix = this.count?.prefix ?? DEFAULT_STATS_PREFIX;
    this.#names = {
      requests: `${prefix}.requests`,
      latency: `${prefix}.latency`,
      status: `${prefix}.status`,
    };
    if (this.count !== undefined) {
      validateName(this.#names.requests, "count prefix + .requests");
      validateName(`${this.#names.status}.2xx`, "count prefix + .status.2xx");
    }
    this.#ownClient = o.client === undefined;
    this.#client = o.client ?? new Client({ ...o.clientOptions, servers: o.servers! });
    this.#producer = o.log
      ? new LogProducer(this.#client, {
          namespace: o.namespace,
          stream: o.stream,
          node: o.node,
          partitions: o.partitions,
        })
      : undefined;
    this.#stats =
      this.count === undefined ? undefined : new StatsWriter(this.#client, { namespace: o.namespace });
  }

  /** Requests whose append or counts are still in flight. */
  get pending(): number {
    return this.#pending;
  }

  /** Entries memcached acknowledged, appends or counts that failed, and requests dropped (maxPending). */
  get metrics(): { appended: number; failed: number; dropped: number; pending: number } {
    return { appended: this.#appended, failed: this.#failed, dropped: this.#dropped, pending: this.#pending };
  }

  /**
   * Logs `req` once `res` has finished (or its connection closed first). Call it when the request arrives,
   * before anything is written; it returns at once and never throws.
   */
  track(req: Req & IncomingMessage, res: ServerResponse): void {
    const start = performance.now();
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      res.off("finish", end);
      res.off("close", end);
      this.finish(req, {
        method: req.method,
        url: originalUrl(req) ?? req.url,
        status: res.statusCode,
        start,
        aborted: !res.writableFinished,
        socketAddress: req.socket?.remoteAddress,
      });
    };
    res.once("finish", end);
    res.once("close", end);
  }

  /** Appends the entry of a finished request and counts it; failures go to onError, never to the caller. */
  finish(request: Req, finished: FinishedRequest): void {
    if (this.#closing !== undefined) return;
    try {
      if (this.#pending >= this.options.maxPending) {
        this.#dropped++;
        this.#report(
          new OverloadError(
            `request log: ${this.#pending} requests are still waiting for memcached, so this one was not ` +
              "logged; check that memcached is up and reachable, or raise maxPending",
          ),
        );
        return;
      }
      const entry = this.#entry(request, finished);
      const sends: Array<Promise<unknown>> = [];
      if (this.#producer !== undefined) sends.push(this.#append(entry));
      if (this.#stats !== undefined) sends.push(this.#countRequest(entry));
      if (sends.length === 0) return;
      this.#pending++;
      void Promise.allSettled(sends).then(() => this.#settled());
    } catch (error) {
      this.#report(error);
    }
  }

  /**
   * Stops logging new requests and waits for the appends and counts in flight (each ends within the client's
   * timeout); then closes the client if the request log made it.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#pending > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
      if (this.#ownClient) this.#client.close();
    })();
    return this.#closing;
  }

  #entry(request: Req, finished: FinishedRequest): RequestEntry {
    const entry: RequestEntry = {
      kind: "http",
      method: finished.method ?? "",
      path: logPath(finished.url ?? "", this.options.keepQuery),
      status: finished.status,
      duration: Math.round((performance.now() - finished.start) * 10) / 10,
      client: this.#address(request, finished) ?? "",
    };
    const user = this.#user(request);
    if (user !== undefined) entry.user = user;
    if (finished.aborted) entry.aborted = true;
    return entry;
  }

  #address(request: Req, finished: FinishedRequest): string | undefined {
    if (this.options.clientAddress !== undefined) {
      try {
        return this.options.clientAddress(request);
      } catch (error) {
        this.#report(
          new ConfigError(`request log: clientAddress threw: ${messageOf(error)}`, { cause: error }),
        );
      }
    }
    const ip = (request as { ip?: unknown }).ip;
    return typeof ip === "string" ? ip : finished.socketAddress;
  }

  #user(request: Req): string | undefined {
    if (this.options.userId === undefined) return undefined;
    let user: string | number | null | undefined;
    try {
      user = this.options.userId(request);
    } catch (error) {
      this.#report(new ConfigError(`request log: userId threw: ${messageOf(error)}`, { cause: error }));
      return undefined;
    }
    if (user === undefined || user === null || user === "") return undefined;
    return String(user).slice(0, MAX_USER_LENGTH);
  }

  async #append(entry: RequestEntry): Promise<void> {
    let position: AppendedPosition;
    try {
      const { partition, epoch, seq } = await this.#producer!.append(entry);
      position = { stream: this.options.stream, partition, epoch, seq };
    } catch (error) {
      this.#failed++;
      this.#report(error);
      return;
    }
    this.#appended++;
    try {
      this.options.onAppended?.(position, entry);
    } catch (error) {
      this.#report(new ConfigError(`request log: onAppended threw: ${messageOf(error)}`, { cause: error }));
    }
  }

  async #countRequest(entry: RequestEntry): Promise<void> {
    const count = this.count!;
    const stats = this.#stats!;
    const sends: Array<Promise<void>> = [];
    if (count.requests) sends.push(stats.incr(this.#names.requests));
    if (count.statuses) sends.push(stats.incr(`${this.#names.status}.${statusClass(entry.status)}`));
    if (count.latency) sends.push(stats.timing(this.#names.latency, entry.duration));
    // One tick's counts share one flush, so they fail together: report the first failure only.
    const failed = (await Promise.allSettled(sends)).find((r) => r.status === "rejected");
    if (failed !== undefined) {
      this.#failed++;
      this.#report(failed.reason);
    }
  }

  #settled(): void {
    this.#pending--;
    if (this.#pending > 0) return;
    const idle = this.#idle;
    this.#idle = [];
    for (const resolve of idle) resolve();
  }

  #report(error: unknown): void {
    try {
      this.options.onError(error instanceof Error ? error : new Error(String(error)));
    } catch {
      // An onError that throws must not reach the web server either.
    }
  }
}

function countOptions(count: boolean | Partial<CountOptions>): CountOptions | undefined {
  if (count === false) return undefined;
  if (count !== true && (typeof count !== "object" || count === null)) {
    throw new ConfigError("count must be true, false or { requests, statuses, latency, prefix }");
  }
  const o = count === true ? {} : count;
  const resolved: CountOptions = {
    requests: o.requests ?? true,
    statuses: o.statuses ?? true,
    latency: o.latency ?? true,
    prefix: o.prefix ?? DEFAULT_STATS_PREFIX,
  };
  return resolved.requests || resolved.statuses || resolved.latency ? resolved : undefined;
}

/** The path to log: without the query string unless asked, and at most MAX_PATH_LENGTH characters. */
export function logPath(url: string, keepQuery: boolean): string {
  let path = url;
  if (!keepQuery) {
    const query = path.indexOf("?");
    if (query >= 0) path = path.slice(0, query);
  }
  return path.length > MAX_PATH_LENGTH ? `${path.slice(0, MAX_PATH_LENGTH)}…` : path;
}

/** "2xx" for 200–299 and so on; "other" for a status outside 100–599. */
export function statusClass(status: number): string {
  return Number.isInteger(status) && status >= 100 && status <= 599
    ? `${Math.floor(status / 100)}xx`
    : "other";
}

function originalUrl(req: unknown): string | undefined {
  const url = (req as { originalUrl?: unknown }).originalUrl;
  return typeof url === "string" ? url : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The default onError: one line on stderr, then silence for `every` ms (counting what was left out, which the
 * next line reports), so a memcached outage does not flood the web server's log.
 */
export function rateLimitedWarning(
  every: number,
  write: (line: string) => void = (line) => void process.stderr.write(line),
): (error: Error) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (error: Error): void => {
    const now = Date.now();
    if (now - last < every) {
      suppressed++;
      return;
    }
    const more = suppressed > 0 ? ` (and ${suppressed} more failures since the last warning)` : "";
    last = now;
    suppressed = 0;
    write(`memipc request log: ${error.message}${more}\n`);
  };
}
