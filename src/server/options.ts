// Server settings: defaults, and the checks that reject bad values at start-up.
import { ConfigError } from "../errors.js";

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 11211;
export const DEFAULT_MEMORY_LIMIT = 64 * 1024 * 1024; // bytes, as memcached's -m 64
export const DEFAULT_MAX_ITEM_SIZE = 1024 * 1024; // bytes, as memcached's -I 1m
export const DEFAULT_MAX_CONNECTIONS = 1024; // as memcached's -c 1024
export const DEFAULT_IDLE_TIMEOUT = 0; // seconds; 0 keeps idle connections, as memcached's default
export const DEFAULT_MAX_LINE_LENGTH = 2048; // bytes a command line may reach before memcached gives up on it

export interface ServerOptions {
  /** Address to bind; loopback unless told otherwise. */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Bytes of item memory before the least recently used items are evicted. */
  memoryLimit: number;
  /** Largest item (key, value and header) in bytes. */
  maxItemSize: number;
  /** Connections accepted at once; more are closed straight away. */
  maxConnections: number;
  /** Seconds a connection may stay silent before it is closed; 0 never closes it. */
  idleTimeout: number;
  /** Version string reported by `version` and `stats`. */
  version: string;
  /**
   * A file of `user:password` lines (memcached's -Y): when set, every connection must authenticate with a
   * `set` whose data is `user password` before anything else. Unset: no authentication, as memcached.
   */
  authFile?: string | undefined;
  /** PEM certificate chain and private key files: when both are set, the server speaks TLS only. */
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  /** PEM CA file: with TLS, clients must present a certificate signed by it. */
  tlsCa?: string | undefined;
}

export function defaultOptions(): ServerOptions {
  return {
    host: DEFAULT_HOST,
    port: DEFAULT_PORT,
    memoryLimit: DEFAULT_MEMORY_LIMIT,
    maxItemSize: DEFAULT_MAX_ITEM_SIZE,
    maxConnections: DEFAULT_MAX_CONNECTIONS,
    idleTimeout: DEFAULT_IDLE_TIMEOUT,
    version: "1.6.18",
  };
}

export function resolveOptions(given: Partial<ServerOptions> = {}): ServerOptions {
  const options = { ...defaultOptions(), ...dropUndefined(given) };
  const { port, memoryLimit, maxItemSize, maxConnections, idleTimeout } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`port ${port} is not a TCP port: give a whole number from 0 to 65535`);
  }
  if (!Number.isInteger(maxItemSize) || maxItemSize < 1024 || maxItemSize > 1024 * 1024 * 1024) {
    throw new ConfigError(`max item size ${maxItemSize} bytes is out of range: give 1k to 1024m`);
  }
  if (!Number.isInteger(memoryLimit) || memoryLimit < maxItemSize) {
    throw new ConfigError(
      `memory limit ${memoryLimit} bytes is smaller than the max item size ${maxItemSize}: raise --memory or lower --max-item-size`,
    );
  }
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new ConfigError(`max connections ${maxConnections} must be a whole number of at least 1`);
  }
  if (!Number.isFinite(idleTimeout) || idleTimeout < 0) {
    throw new ConfigError(`idle timeout ${idleTimeout} must be 0 (never) or a number of seconds`);
  }
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    throw new ConfigError(
      "TLS needs both a certificate and its private key: give --tls-cert and --tls-key, or neither",
    );
  }
  if (options.tlsCa !== undefined && options.tlsCert === undefined) {
    throw new ConfigError("--tls-ca checks client certificates over TLS: give --tls-cert and --tls-key too");
  }
  return options;
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Parses sizes as memcached's flags take them: "64m", "512k", "1g", or plain bytes. */
export function parseSize(text: string, what: string): number {
  const match = /^(\d+)([kmg]?)b?$/i.exec(text.trim());
  if (!match)
    throw new ConfigError(`${what} "${text}" is not a size: write bytes or a number with k, m or g`);
  const unit = { "": 1, k: 1024, m: 1024 * 1024, g: 1024 * 1024 * 1024 }[match[2]!.toLowerCase()]!;
  return Number(match[1]) * unit;
}
