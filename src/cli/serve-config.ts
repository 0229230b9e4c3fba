// The daemon's configuration: defaults, then a JSON file (memipc.config.json), then MEMIPC_* environment
// variables, then flags, each later one winning; every value remembers where it came from, for
// `memipc config print` and for error messages that name the key at fault.
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError } from "../errors.js";
import { DEFAULT_REPORT_TIME } from "../sinks/report-files.js";
import { checkTimeZone, localTimeZone } from "../sinks/report.js";
import { DEFAULT_LEASE_TTL } from "../log/drainer.js";
import { MAX_PARTITIONS } from "../log/layout.js";
import { DEFAULT_GRACE } from "../stats/collector.js";
import { DEFAULT_BUCKET_SECONDS, validateName } from "../stats/layout.js";

export const CONFIG_FILE = "memipc.config.json";

type Kind = "string" | "port" | "list" | "boolean" | "count";

interface Key {
  /** camelCase, as in the file. */
  name: string;
  kind: Kind;
  env: string;
  /** The flag (without --); booleans that default to true are turned off by --no-<flag>. */
  flag: string;
  fallback: string | number | boolean | string[] | undefined;
  what: string;
  /** A count's smallest and largest values. */
  range?: [number, number];
}

export const KEYS: readonly Key[] = [
  {
    name: "memcached",
    kind: "string",
    env: "MEMIPC_MEMCACHED",
    flag: "memcached",
    fallback: undefined,
    what: `existing servers host:port[,…]; unset: the embedded server`,
  },
  {
    name: "namespace",
    kind: "string",
    env: "MEMIPC_NAMESPACE",
    flag: "namespace",
    fallback: "memipc",
    what: "key prefix",
  },
  {
    name: "listen",
    kind: "string",
    env: "MEMIPC_LISTEN",
    flag: "listen",
    fallback: "127.0.0.1",
    what: "embedded server: address",
  },
  {
    name: "port",
    kind: "port",
    env: "MEMIPC_PORT",
    flag: "port",
    fallback: 11211,
    what: "embedded server: TCP port",
  },
  {
    name: "memory",
    kind: "string",
    env: "MEMIPC_MEMORY",
    flag: "memory",
    fallback: "64m",
    what: "embedded server: item memory",
  },
  {
    name: "authFile",
    kind: "string",
    env: "MEMIPC_AUTH_FILE",
    flag: "auth-file",
    fallback: undefined,
    what: "embedded server: user:password file (memcached -Y)",
  },
  {
    name: "tlsCert",
    kind: "string",
    env: "MEMIPC_TLS_CERT",
    flag: "tls-cert",
    fallback: undefined,
    what: "embedded server: PEM certificate (TLS on)",
  },
  {
    name: "tlsKey",
    kind: "string",
    env: "MEMIPC_TLS_KEY",
    flag: "tls-key",
    fallback: undefined,
    what: "embedded server: PEM private key",
  },
  {
    name: "tlsCa",
    kind: "string",
    env: "MEMIPC_TLS_CA",
    flag: "tls-ca",
    fallback: undefined,
    what: "embedded server: PEM CA clients must be signed by",
  },
  {
    name: "memcachedAuthFile",
    kind: "string",
    env: "MEMIPC_MEMCACHED_AUTH_FILE",
    flag: "memcached-auth-file",
    fallback: undefined,
    what: "existing servers: log in as the file's first user:password",
  },
  {
    name: "memcachedTls",
    kind: "boolean",
    env: "MEMIPC_MEMCACHED_TLS",
    flag: "memcached-tls",
    fallback: false,
    what: "existing servers: connect with TLS",
  },
  {
    name: "memcachedTlsCa",
    kind: "string",
    env: "MEMIPC_MEMCACHED_TLS_CA",
    flag: "memcached-tls-ca",
    fallback: undefined,
    what: "existing servers: PEM CA of their certificates (TLS on)",
  },
  {
    name: "failover",
    kind: "boolean",
    env: "MEMIPC_FAILOVER",
    flag: "failover",
    fallback: false,
    what: "on a pool: a dead server's keys go to the next server",
  },
  {
    name: "dataDir",
    kind: "string",
    env: "MEMIPC_DATA_DIR",
    flag: "data-dir",
    fallback: "./data",
    what: "logs/, stats.db and reports/ go here",
  },
  {
    name: "streams",
    kind: "list",
    env: "MEMIPC_STREAMS",
    flag: "streams",
    fallback: ["log"],
    what: "log streams to drain",
  },
  {
    name: "partitions",
    kind: "count",
    env: "MEMIPC_PARTITIONS",
    flag: "partitions",
    fallback: 1,
    range: [1, MAX_PARTITIONS],
    what: "partitions of each stream (at least the producers')",
  },
  {
    name: "leaseTtl",
    kind: "count",
    env: "MEMIPC_LEASE_TTL",
    flag: "lease-ttl",
    fallback: DEFAULT_LEASE_TTL,
    range: [2, 3600],
    what: "seconds before a standby daemon takes over",
  },
  {
    name: "drain",
    kind: "boolean",
    env: "MEMIPC_DRAIN",
    flag: "drain",
    fallback: true,
    what: "run the drainers",
  },
  {
    name: "collect",
    kind: "boolean",
    env: "MEMIPC_COLLECT",
    flag: "collect",
    fallback: true,
    what: "run the stats collector and daily reports",
  },
  {
    name: "legacy",
    kind: "list",
    env: "MEMIPC_LEGACY",
    flag: "legacy",
    fallback: [],
    what: "legacy plain counters to collect",
  },
  {
    name: "statsBucket",
    kind: "count",
    env: "MEMIPC_STATS_BUCKET",
    flag: "stats-bucket",
    fallback: DEFAULT_BUCKET_SECONDS,
    range: [1, 86_400],
    what: "seconds per stats bucket (the writers' too)",
  },
  {
    name: "statsGrace",
    kind: "count",
    env: "MEMIPC_STATS_GRACE",
    flag: "stats-grace",
    fallback: DEFAULT_GRACE,
    range: [0, 3600],
    what: "seconds after a bucket ends before it is stored",
  },
  {
    name: "reportAt",
    kind: "string",
    env: "MEMIPC_REPORT_AT",
    flag: "report-at",
    fallback: DEFAULT_REPORT_TIME,
    what: "local time of the daily report",
  },
  {
    name: "timeZone",
    kind: "string",
    env: "MEMIPC_TZ",
    flag: "tz",
    fallback: undefined,
    what: "IANA zone of days; unset: the system's",
  },
  {
    name: "httpListen",
    kind: "string",
    env: "MEMIPC_HTTP_LISTEN",
    flag: "http-listen",
    fallback: "127.0.0.1",
    what: "HTTP: address",
  },
  {
    name: "httpPort",
    kind: "port",
    env: "MEMIPC_HTTP_PORT",
    flag: "http-port",
    fallback: 8080,
    what: "HTTP: TCP port",
  },
  {
    name: "token",
    kind: "string",
    env: "MEMIPC_TOKEN",
    flag: "token",
    fallback: undefined,
    what: "HTTP: required off loopback",
  },
];

export interface ServeConfig {
  memcached: string | undefined;
  authFile: string | undefined;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  tlsCa: string | undefined;
  memcachedAuthFile: string | undefined;
  memcachedTls: boolean;
  memcachedTlsCa: string | undefined;
  failover: boolean;
  namespace: string;
  listen: string;
  port: number;
  memory: string;
  dataDir: string;
  streams: string[];
  partitions: number;
  leaseTtl: number;
  drain: boolean;
  collect: boolean;
  legacy: string[];
  statsBucket: number;
  statsGrace: number;
  reportAt: string;
  timeZone: string;
  httpListen: string;
  httpPort: number;
  token: string | undefined;
}

/** Where each value came from: "default", "file <path>", "env NAME" or "flag --name". */
export type Sources = Record<keyof ServeConfig, string>;

export function configOptions() {
  const options: Record<string, { type: "string" | "boolean" }> = { config: { type: "string" } };
  for (const key of KEYS) {
    if (key.kind !== "boolean") options[key.flag] = { type: "string" };
    else if (key.fallback === false) options[key.flag] = { type: "boolean" };
    else options[`no-${key.flag}`] = { type: "boolean" };
  }
  return options;
}

/** Resolves the configuration from `args` (flags), `env` and the config file (--config, MEMIPC_CONFIG, or ./memipc.config.json). */
export function resolveServeConfig(
  values: Record<string, string | boolean | undefined>,
  env: NodeJS.ProcessEnv,
): { config: ServeConfig; sources: Sources; file: string | undefined } {
  const explicit = (values.config as string | undefined) ?? (env.MEMIPC_CONFIG || undefined);
  const file = explicit ?? (existsSync(CONFIG_FILE) ? CONFIG_FILE : undefined);
  const fromFile = file === undefined ? {} : readConfigFile(resolve(file), explicit !== undefined);
  const config: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const key of KEYS) {
    let value: unknown = key.fallback;
    let source = "default";
    if (key.name in fromFile) {
      value = fromJson(key, fromFile[key.name], `${key.name} in ${file}`);
      source = `file ${file}`;
    }
    const fromEnv = env[key.env];
    if (fromEnv !== undefined && fromEnv !== "") {
      value = fromText(key, fromEnv, key.env);
      source = `env ${key.env}`;
    }
    if (key.kind === "boolean" && values[`no-${key.flag}`] === true) {
      value = false;
      source = `flag --no-${key.flag}`;
    } else if (key.kind === "boolean" && key.fallback === false && values[key.flag] === true) {
      value = true;
      source = `flag --${key.flag}`;
    } else if (key.kind !== "boolean" && values[key.flag] !== undefined) {
      value = fromText(key, values[key.flag] as string, `--${key.flag}`);
      source = `flag --${key.flag}`;
    }
    config[key.name] = value;
    sources[key.name] = source;
  }
  const c = config as unknown as ServeConfig;
  if (c.timeZone === undefined) c.timeZone = localTimeZone();
  check(c, sources as Sources);
  return { config: c, sources: sources as Sources, file };
}

function readConfigFile(path: string, explicit: boolean): Record<string, unknown> {
  if (!existsSync(path)) {
    if (explicit) throw new ConfigError(`config file ${path} does not exist: fix --config / MEMIPC_CONFIG`);
    return {};
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold one JSON object, e.g. {"httpPort": 8080}`);
  }
  const names = new Set(KEYS.map((k) => k.name));
  for (const name of Object.keys(parsed)) {
    if (!names.has(name)) {
      throw new ConfigError(
        `config file ${path}: unknown key "${name}"; the keys are ${[...names].join(", ")}`,
      );
    }
  }
  return parsed as Record<string, unknown>;
}

function fromJson(key: Key, value: unknown, where: string): unknown {
  switch (key.kind) {
    case "boolean":
      if (typeof value !== "boolean") throw new ConfigError(`${where} must be true or false`);
      return value;
    case "port":
      if (typeof value === "number") return port(String(value), where);
      throw new ConfigError(`${where} must be a TCP port number (0 to 65535)`);
    case "count":
      if (typeof value === "number") return count(key, String(value), where);
      throw new ConfigError(`${where} must be a whole number from ${key.range![0]} to ${key.range![1]}`);
    case "list":
      if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value;
      throw new ConfigError(`${where} must be a list of names, e.g. ["log", "orders"]`);
    default:
      if (typeof value !== "string") throw new ConfigError(`${where} must be a string`);
      return value;
  }
}

function fromText(key: Key, text: string, where: string): unknown {
  switch (key.kind) {
    case "boolean":
      if (text === "true" || text === "1") return true;
      if (text === "false" || text === "0") return false;
      throw new ConfigError(`${where} "${text}" must be true or false`);
    case "port":
      return port(text, where);
    case "count":
      return count(key, text, where);
    case "list":
      return text.split(",").filter((s) => s !== "");
    default:
      return text;
  }
}

function count(key: Key, text: string, where: string): number {
  const [min, max] = key.range!;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max))
    throw new ConfigError(`${where} "${text}" must be a whole number from ${min} to ${max}`);
  return n;
}

function port(text: string, where: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= 65535)) throw new ConfigError(`${where} "${text}" is not a TCP port: give 0 to 65535`);
  return n;
}

function check(c: ServeConfig, sources: Sources): void {
  const at = (name: keyof ServeConfig) => `${name} (from ${sources[name]})`;
  try {
    validateName(c.namespace, "namespace");
  } catch (error) {
    throw new ConfigError(`${at("namespace")}: ${(error as Error).message}`);
  }
  for (const stream of c.streams) {
    try {
      validateName(stream, "stream");
    } catch (error) {
      throw new ConfigError(`${at("streams")}: ${(error as Error).message}`);
    }
  }
  if (c.drain && c.streams.length === 0)
    throw new ConfigError(`${at("streams")}: name at least one stream, or turn drain off`);
  if (!/^([01]\d|2[0-3]):[0-5]\d$/.test(c.reportAt)) {
    throw new ConfigError(`${at("reportAt")}: "${c.reportAt}" is not a time of day: use HH:MM, e.g. 00:05`);
  }
  try {
    checkTimeZone(c.timeZone);
  } catch {
    throw new ConfigError(
      `${at("timeZone")}: "${c.timeZone}" is not a time zone: use an IANA name such as "Europe/Berlin"`,
    );
  }
  for (const name of ["authFile", "tlsCert", "tlsKey", "tlsCa"] as const) {
    if (c.memcached !== undefined && c[name] !== undefined) {
      throw new ConfigError(
        `${at(name)} is for the embedded server, but ${at("memcached")} names existing servers: ` +
          "for those, use memcachedAuthFile and memcachedTls*",
      );
    }
  }
  for (const name of ["memcachedAuthFile", "memcachedTlsCa"] as const) {
    if (c.memcached === undefined && c[name] !== undefined) {
      throw new ConfigError(
        `${at(name)} is for existing servers (memcached), but none is named: for the embedded server use authFile and tls*`,
      );
    }
  }
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) {
    throw new ConfigError(`${at("tlsCert")} and ${at("tlsKey")}: give both, or neither`);
  }
  if (c.memcached !== undefined && sources.port !== "default") {
    throw new ConfigError(
      `${at("port")} is for the embedded server, but ${at("memcached")} names existing servers: give one or the other`,
    );
  }
}

/** `key = value   (source)` lines, aligned. */
export function formatConfig(config: ServeConfig, sources: Sources): string {
  const rows = KEYS.map((key) => {
    const value = config[key.name as keyof ServeConfig];
    const shown =
      key.name === "token" && value !== undefined
        ? "(set, not shown)"
        : value === undefined
          ? "(unset)"
          : JSON.stringify(value);
    return [key.name, shown, sources[key.name as keyof ServeConfig]] as const;
  });
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  return rows.map(([k, v, s]) => `${k.padEnd(w0)}  ${v.padEnd(w1)}  ${s}`).join("\n") + "\n";
}

/** The option rows of the help texts: flag, what, env and default. */
export function configHelpRows(): Array<[string, string, string]> {
  return KEYS.map((key) => [
    key.kind === "boolean"
      ? key.fallback === false
        ? `--${key.flag}`
        : `--no-${key.flag}`
      : `--${key.flag} ${key.kind === "list" ? "A,B" : key.kind === "port" || key.kind === "count" ? "N" : "X"}`,
    key.what,
    `${key.env}, else ${key.fallback === undefined ? "unset" : JSON.stringify(key.fallback)}`,
  ]);
}

export function parseServeFlags(command: string, args: string[]) {
  try {
    return parseArgs({
      args,
      options: { ...configOptions(), help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}: see "memipc ${command} --help"`, { cause: error });
  }
}
