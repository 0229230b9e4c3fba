// What every `memipc` command that talks to memcached shares: flag parsing (flag, then environment, then
// default), the `--memcached` and `--namespace` flags, credentials and TLS for the servers, the stream
// flags, and small value parsers.
import { readFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { Client, checkCredentials, parseServers, type ClientAuth, type ClientTls } from "../client/index.js";
import { ConfigError } from "../errors.js";
import {
  DEFAULT_NAMESPACE,
  DEFAULT_SEED_NAMES,
  DEFAULT_STREAM,
  Layout,
  MAX_PARTITIONS,
  checkPartitions,
  streamAddress,
  type StreamAddress,
} from "../log/layout.js";
import { parseSize } from "../server/index.js";
import { parseAuthFile } from "../server/auth.js";
import type { SinkFormat } from "../sinks/index.js";

export const DEFAULT_MEMCACHED = "127.0.0.1:11211";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Flags every command takes. */
const COMMON_OPTIONS = {
  memcached: { type: "string" },
  failover: { type: "boolean" },
  namespace: { type: "string" },
  "memcached-auth-file": { type: "string" },
  "memcached-tls": { type: "boolean" },
  "memcached-tls-ca": { type: "string" },
  "memcached-tls-cert": { type: "string" },
  "memcached-tls-key": { type: "string" },
  "memcached-tls-servername": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

/** Flags of the commands that name a log stream. */
export const STREAM_OPTIONS = {
  stream: { type: "string", short: "s" },
  partitions: { type: "string", short: "p" },
  layout: { type: "string" },
  "seed-counter": { type: "string" },
  "seed-process": { type: "string" },
  "seed-prefix": { type: "string" },
} as const satisfies Options;

/** One row of a command's option table: the flag, what it does, and its default (env variable first). */
export type HelpRow = [flag: string, what: string, fallback?: string];

export const COMMON_ROWS: HelpRow[] = [
  ["--memcached LIST", "servers, host:port[,host:port…]", `MEMIPC_MEMCACHED, else ${DEFAULT_MEMCACHED}`],
  ["--failover", "a dead server's keys go to the next one (else fail)", "MEMIPC_FAILOVER, else off"],
  ["--namespace NS", "key prefix", `MEMIPC_NAMESPACE, else ${DEFAULT_NAMESPACE}`],
  [
    "--memcached-auth-file F",
    "log in as the first user:password line of F",
    "MEMIPC_MEMCACHED_AUTH_FILE (or MEMIPC_MEMCACHED_AUTH=user:pass)",
  ],
  ["--memcached-tls", "connect with TLS", "MEMIPC_MEMCACHED_TLS, else off (on with any of the next four)"],
  [
    "--memcached-tls-ca F",
    "PEM CA the servers' certificates are checked with",
    "MEMIPC_MEMCACHED_TLS_CA, else system CAs",
  ],
  [
    "--memcached-tls-cert F",
    "PEM client certificate, with --memcached-tls-key",
    "MEMIPC_MEMCACHED_TLS_CERT, else none",
  ],
  ["--memcached-tls-key F", "PEM key of the client certificate", "MEMIPC_MEMCACHED_TLS_KEY, else none"],
  [
    "--memcached-tls-servername N",
    "name the certificates must carry",
    "MEMIPC_MEMCACHED_TLS_SERVERNAME, else the host",
  ],
];

export const STREAM_ROWS: HelpRow[] = [
  ["-s, --stream S", "the log stream (letters, digits, _ . -)", DEFAULT_STREAM],
  ["-p, --partitions P", "the stream's partitions (1 to 256)", "MEMIPC_PARTITIONS, else 1"],
  ["--layout L", "default, or seed: the original idiom's keys", Layout.default],
  ["--seed-counter NAME", "seed layout: the counter key", DEFAULT_SEED_NAMES.counter],
  ["--seed-process NAME", "seed layout: the key old readers keep", DEFAULT_SEED_NAMES.process],
  ["--seed-prefix PREFIX", "seed layout: entries are PREFIX<n>", DEFAULT_SEED_NAMES.entryPrefix],
];

/** The "Options" part of a help text: flags, then what they do, then defaults, in aligned columns. */
export function optionTable(rows: readonly HelpRow[]): string {
  const all: HelpRow[] = [...rows, ["-h, --help", "this text"]];
  const flagWidth = Math.max(...all.map(([flag]) => flag.length)) + 2;
  const whatWidth = Math.max(...all.map(([, what]) => what.length)) + 2;
  const lines = all.map(([flag, what, fallback]) =>
    `  ${flag.padEnd(flagWidth)}${fallback === undefined ? what : what.padEnd(whatWidth) + fallback}`.trimEnd(),
  );
  return `Options (a flag beats its environment variable, which beats the default):\n${lines.join("\n")}\n`;
}

/** The option table of a command that names a log stream: the common and stream rows, then `rows`. */
export function streamOptionTable(rows: readonly HelpRow[]): string {
  return optionTable([...COMMON_ROWS, ...STREAM_ROWS, ...rows]);
}

/** Where to find memcached and which namespace to use. */
export interface Connection {
  servers: string;
  namespace: string;
  /** On a pool, keys of a server marked dead go to the next server on the ring instead of failing. */
  failover: boolean;
  /** Credentials sent on every connection (memcached's -Y authentication). */
  auth?: ClientAuth | undefined;
  /** TLS settings, when the servers speak TLS. */
  tls?: ClientTls | undefined;
}

/** The flags that say how to reach the servers securely (see COMMON_OPTIONS). */
export interface SecurityFlags {
  "memcached-auth-file"?: string | undefined;
  "memcached-tls"?: boolean | undefined;
  "memcached-tls-ca"?: string | undefined;
  "memcached-tls-cert"?: string | undefined;
  "memcached-tls-key"?: string | undefined;
  "memcached-tls-servername"?: string | undefined;
}

type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{
    args: string[];
    options: typeof COMMON_OPTIONS & O;
    strict: true;
    allowPositionals: true;
  }>
>;

/**
 * Parses `args` strictly with the common flags plus `options`. Unknown flags, missing values and (unless
 * `positionals` is true) stray arguments are a ConfigError that points at the command's help.
 */
export function parseFlags<O extends Options>(
  command: string,
  args: string[],
  options: O,
  positionals = false,
): Parsed<O> {
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({
      args,
      options: { ...COMMON_OPTIONS, ...options },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}: see "memipc ${command} --help"`, { cause: error });
  }
  if (!positionals && parsed.positionals.length > 0) {
    throw new ConfigError(`unexpected argument "${parsed.positionals[0]}": see "memipc ${command} --help"`);
  }
  return parsed;
}

/** The flag's value, else the environment variable's, else undefined; with the name to quote if it is wrong. */
export function pick(
  flag: string,
  value: string | undefined,
  env: NodeJS.ProcessEnv,
  name?: string,
): [string, string] | undefined {
  if (value !== undefined) return [value, flag];
  const fromEnv = name === undefined ? undefined : env[name];
  return fromEnv === undefined || fromEnv === "" ? undefined : [fromEnv, name!];
}

/** `--memcached` and `--namespace`, checked: a bad address or name fails here, before anything connects. */
export function connectionFrom(
  values: {
    memcached?: string | undefined;
    namespace?: string | undefined;
    failover?: boolean | undefined;
  } & SecurityFlags,
  env: NodeJS.ProcessEnv,
): Connection {
  const [servers, serversFrom] = pick("--memcached", values.memcached, env, "MEMIPC_MEMCACHED") ?? [
    DEFAULT_MEMCACHED,
    "the default",
  ];
  try {
    parseServers(servers);
  } catch (error) {
    throw new ConfigError(`${serversFrom}: ${(error as Error).message}`, { cause: error });
  }
  const [namespace, namespaceFrom] = pick("--namespace", values.namespace, env, "MEMIPC_NAMESPACE") ?? [
    DEFAULT_NAMESPACE,
    "the default",
  ];
  try {
    streamAddress({ namespace });
  } catch (error) {
    throw new ConfigError(`${namespaceFrom}: ${(error as Error).message}`, { cause: error });
  }
  return {
    servers,
    namespace,
    failover: values.failover === true || booleanEnv(env, "MEMIPC_FAILOVER"),
    auth: credentialsFrom(values, env),
    tls: tlsFrom(values, env),
  };
}

/**
 * The credentials to log in with: the first line of --memcached-auth-file or MEMIPC_MEMCACHED_AUTH_FILE (the
 * server's own auth file will do), or MEMIPC_MEMCACHED_AUTH=user:password. Never a flag holding the password,
 * which other users of the machine could read in the process list.
 */
export function credentialsFrom(values: SecurityFlags, env: NodeJS.ProcessEnv): ClientAuth | undefined {
  const file = pick(
    "--memcached-auth-file",
    values["memcached-auth-file"],
    env,
    "MEMIPC_MEMCACHED_AUTH_FILE",
  );
  const inline = env.MEMIPC_MEMCACHED_AUTH || undefined;
  if (file !== undefined && inline !== undefined && file[1] !== "--memcached-auth-file") {
    throw new ConfigError(
      "MEMIPC_MEMCACHED_AUTH_FILE and MEMIPC_MEMCACHED_AUTH are both set: keep one of them",
    );
  }
  let auth: ClientAuth;
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file[0], "latin1");
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new ConfigError(
        `${file[1]}: ${file[0]} cannot be read (${reason}): give a file holding user:password`,
        {
          cause: error,
        },
      );
    }
    const first = parseAuthFile(text, file[0])[0]!;
    auth = { username: first.user, password: first.password };
  } else if (inline !== undefined) {
    const colon = inline.indexOf(":");
    if (colon < 0) throw new ConfigError("MEMIPC_MEMCACHED_AUTH must be user:password");
    auth = { username: inline.slice(0, colon), password: inline.slice(colon + 1) };
  } else {
    return undefined;
  }
  checkCredentials(auth);
  return auth;
}

/** TLS settings from the --memcached-tls* flags and their variables; undefined for plain TCP. */
export function tlsFrom(values: SecurityFlags, env: NodeJS.ProcessEnv): ClientTls | undefined {
  const file = (flag: keyof SecurityFlags, name: string): Buffer | undefined => {
    const given = pick(`--${flag}`, values[flag] as string | undefined, env, name);
    if (given === undefined) return undefined;
    try {
      return readFileSync(given[0]);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new ConfigError(`${given[1]}: ${given[0]} cannot be read (${reason}): give a PEM file`, {
        cause: error,
      });
    }
  };
  const ca = file("memcached-tls-ca", "MEMIPC_MEMCACHED_TLS_CA");
  const cert = file("memcached-tls-cert", "MEMIPC_MEMCACHED_TLS_CERT");
  const key = file("memcached-tls-key", "MEMIPC_MEMCACHED_TLS_KEY");
  const servername = pick(
    "--memcached-tls-servername",
    values["memcached-tls-servername"],
    env,
    "MEMIPC_MEMCACHED_TLS_SERVERNAME",
  )?.[0];
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError(
      "a client certificate needs its key: give --memcached-tls-cert and --memcached-tls-key",
    );
  }
  const on =
    values["memcached-tls"] === true ||
    booleanEnv(env, "MEMIPC_MEMCACHED_TLS") ||
    [ca, cert, key, servername].some((v) => v !== undefined);
  if (!on) return undefined;
  return { ca, cert, key, servername };
}

/** An on/off environment variable: true, 1, false, 0 or unset (off). */
export function booleanEnv(env: NodeJS.ProcessEnv, name: string): boolean {
  const text = env[name];
  if (text === undefined || text === "" || text === "false" || text === "0") return false;
  if (text === "true" || text === "1") return true;
  throw new ConfigError(`${name} "${text}" must be true or false`);
}

/** The stream's address from the stream flags (see STREAM_OPTIONS). */
export function addressFrom(
  values: {
    stream?: string | undefined;
    layout?: string | undefined;
    "seed-counter"?: string | undefined;
    "seed-process"?: string | undefined;
    "seed-prefix"?: string | undefined;
  },
  connection: Connection,
): StreamAddress {
  const layout = values.layout ?? Layout.default;
  if (layout !== Layout.default && layout !== Layout.seed) {
    throw new ConfigError(`--layout "${layout}" is not known: use "default" or "seed"`);
  }
  const seedFlags = (["seed-counter", "seed-process", "seed-prefix"] as const).filter(
    (flag) => values[flag] !== undefined,
  );
  if (layout !== Layout.seed && seedFlags.length > 0) {
    throw new ConfigError(`--${seedFlags[0]} only applies with --layout seed`);
  }
  for (const flag of seedFlags) {
    if (!/^[^\s\x00-\x1f\x7f]{1,200}$/.test(values[flag]!)) {
      throw new ConfigError(`--${flag} "${values[flag]}" must be 1 to 200 characters without spaces`);
    }
  }
  let address: StreamAddress;
  try {
    address = streamAddress({
      layout,
      namespace: connection.namespace,
      ...(values.stream === undefined ? {} : { stream: values.stream }),
      seed: {
        counter: values["seed-counter"] ?? DEFAULT_SEED_NAMES.counter,
        process: values["seed-process"] ?? DEFAULT_SEED_NAMES.process,
        entryPrefix: values["seed-prefix"] ?? DEFAULT_SEED_NAMES.entryPrefix,
      },
    });
  } catch (error) {
    throw new ConfigError(`--${(error as Error).message}`, { cause: error });
  }
  return address;
}

/**
 * Parses the flags of a command that names a log stream (the common and stream flags plus `options`, as
 * parseFlags does), then checks where memcached is and the stream's address.
 */
export function parseStreamFlags<O extends Options>(
  command: string,
  args: string[],
  options: O,
  positionals = false,
): Parsed<typeof STREAM_OPTIONS & O> & {
  connection: Connection;
  address: StreamAddress;
  partitions: number;
} {
  const parsed = parseFlags(command, args, { ...STREAM_OPTIONS, ...options }, positionals);
  const values = parsed.values as Parameters<typeof connectionFrom>[0] &
    Parameters<typeof addressFrom>[0] & { partitions?: string | undefined };
  const connection = connectionFrom(values, process.env);
  const address = addressFrom(values, connection);
  const [text, from] = pick("--partitions", values.partitions, process.env, "MEMIPC_PARTITIONS") ?? ["1", ""];
  const partitions = wholeNumber(text, from, 1, MAX_PARTITIONS);
  try {
    checkPartitions(partitions, address.layout);
  } catch (error) {
    throw new ConfigError(`${from}: ${(error as Error).message}`, { cause: error });
  }
  return { ...parsed, connection, address, partitions };
}

/** `--format`: jsonl (the default) or raw. */
export function formatFrom(text: string | undefined): SinkFormat {
  const format = text ?? "jsonl";
  if (format !== "jsonl" && format !== "raw") {
    throw new ConfigError(`--format "${format}" is not known: use "jsonl" or "raw"`);
  }
  return format;
}

/** A client for the connection's servers. */
export function connect(connection: Connection): Client {
  return new Client({
    servers: connection.servers,
    failover: connection.failover,
    auth: connection.auth,
    tls: connection.tls,
  });
}

/** A whole number from `min` to `max`, or a ConfigError naming the flag. */
export function wholeNumber(text: string, flag: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text)) throw new ConfigError(`${flag} "${text}" is not a whole number`);
  const value = Number(text);
  if (value < min || value > max) {
    throw new ConfigError(`${flag} ${text} is out of range: use ${min} to ${max}`);
  }
  return value;
}

/** A size in bytes ("64m", "512k", "1g" or bytes), at least 1. */
export function size(text: string, flag: string): number {
  const bytes = parseSize(text, flag);
  if (bytes < 1) throw new ConfigError(`${flag} "${text}" must be at least 1 byte`);
  return bytes;
}

/** Resolves after `ms`, or at once when `signal` is aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * An AbortSignal that fires on the first SIGINT or SIGTERM (a second one exits at once, status 130), or on
 * `stop()` (e.g. after --duration); `dispose()` removes the handlers.
 */
export function stopSignal(): { signal: AbortSignal; stop: () => void; dispose: () => void } {
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return {
    signal: controller.signal,
    stop: () => controller.abort(),
    dispose: () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}

/** One line per entry: `seq time node data`; a string payload as is (line breaks as \n), anything else as JSON. */
export function formatEntryLine(
  seq: number | string,
  time: number | undefined,
  node: string | undefined,
  data: unknown,
): string {
  const text = typeof data === "string" ? data : JSON.stringify(data === undefined ? null : data);
  const when = time === undefined || !Number.isFinite(time) ? "-" : new Date(time).toISOString();
  return `${seq} ${when} ${node === undefined || node === "" ? "-" : node} ${text.replace(/\r/g, "\\r").replace(/\n/g, "\\n")}\n`;
}

/** Writes to stdout, waiting when the pipe is full; rejects when the reader went away (EPIPE). */
export function writeOut(text: string): Promise<void> {
  if (process.stdout.write(text)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      process.stdout.off("drain", onDrain);
      process.stdout.off("error", onError);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    process.stdout.once("drain", onDrain);
    process.stdout.once("error", onError);
  });
}
