// `memipc server`: the embedded server alone, in the foreground, until SIGINT or SIGTERM.
import { parseArgs } from "node:util";
import { ConfigError } from "../errors.js";
import { paceCollections } from "../server/collector.js";
import { defaultOptions, parseSize, startServer, type ServerOptions } from "../server/index.js";

export const SERVER_HELP = `Usage: memipc server [options]

Runs the embedded memcached-compatible server in the foreground.

Options (flag, then environment variable, then default):
  --listen ADDR          address to bind      MEMIPC_LISTEN          127.0.0.1
  --port N               TCP port (0: any)    MEMIPC_PORT            11211
  --memory SIZE          item memory, LRU     MEMIPC_MEMORY          64m
  --max-item-size SIZE   largest item         MEMIPC_MAX_ITEM_SIZE   1m
  --max-connections N    open connections     MEMIPC_MAX_CONNECTIONS 1024
  --idle-timeout SECS    close idle clients   MEMIPC_IDLE_TIMEOUT    0 (never)
  -Y, --auth-file FILE   user:password lines  MEMIPC_AUTH_FILE       none (no authentication)
  --tls-cert FILE        PEM certificate      MEMIPC_TLS_CERT        none (plain TCP)
  --tls-key FILE         its PEM private key  MEMIPC_TLS_KEY         none
  --tls-ca FILE          require client certs MEMIPC_TLS_CA          none (any client)
  -h, --help             this text

SIZE is bytes or a number with k, m or g (64m, 512k).
Binding anything but a loopback address exposes the cache to the network: memcached's
protocol has no authentication by default, so firewall the port, or give an auth file.
With --auth-file (memcached's -Y), a connection must first send a set whose data is
"user password" (any key); everything before gets CLIENT_ERROR unauthenticated.
SIGHUP reads the auth file again. Passwords travel in clear text unless TLS is on.
`;

function integer(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new ConfigError(`${what} "${text}" is not a whole number`);
  return Number(text);
}

/** Flags override environment variables, which override defaults. */
export function serverOptionsFrom(args: string[], env: NodeJS.ProcessEnv): ServerOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        listen: { type: "string" },
        port: { type: "string", short: "p" },
        memory: { type: "string", short: "m" },
        "max-item-size": { type: "string", short: "I" },
        "max-connections": { type: "string", short: "c" },
        "idle-timeout": { type: "string" },
        "auth-file": { type: "string", short: "Y" },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "tls-ca": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}: see "memipc server --help"`, { cause: error });
  }
  const options = defaultOptions();
  /** The flag's value, else the environment's, with the name to quote if it is wrong. */
  const pick = (flag: string, value: string | undefined, name: string): [string, string] | undefined => {
    if (value !== undefined) return [value, flag];
    const fromEnv = env[name];
    return fromEnv === undefined ? undefined : [fromEnv, name];
  };
  const listen = pick("--listen", values.listen, "MEMIPC_LISTEN");
  if (listen) options.host = listen[0];
  const port = pick("--port", values.port, "MEMIPC_PORT");
  if (port) options.port = integer(...port);
  const memory = pick("--memory", values.memory, "MEMIPC_MEMORY");
  if (memory) options.memoryLimit = parseSize(...memory);
  const maxItem = pick("--max-item-size", values["max-item-size"], "MEMIPC_MAX_ITEM_SIZE");
  if (maxItem) options.maxItemSize = parseSize(...maxItem);
  const maxConnections = pick("--max-connections", values["max-connections"], "MEMIPC_MAX_CONNECTIONS");
  if (maxConnections) options.maxConnections = integer(...maxConnections);
  const idle = pick("--idle-timeout", values["idle-timeout"], "MEMIPC_IDLE_TIMEOUT");
  if (idle) options.idleTimeout = integer(...idle);
  options.authFile = pick("--auth-file", values["auth-file"], "MEMIPC_AUTH_FILE")?.[0];
  options.tlsCert = pick("--tls-cert", values["tls-cert"], "MEMIPC_TLS_CERT")?.[0];
  options.tlsKey = pick("--tls-key", values["tls-key"], "MEMIPC_TLS_KEY")?.[0];
  options.tlsCa = pick("--tls-ca", values["tls-ca"], "MEMIPC_TLS_CA")?.[0];
  return options;
}

export async function runServer(args: string[]): Promise<void> {
  const options = serverOptionsFrom(args, process.env);
  let server;
  try {
    server = await startServer(options);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") {
      throw new ConfigError(
        `${options.host}:${options.port} is already in use: stop what listens there or pick another --port`,
        { cause: error },
      );
    }
    if (code === "EADDRNOTAVAIL") {
      throw new ConfigError(`cannot bind ${options.host}: it is not an address of this machine`, {
        cause: error,
      });
    }
    throw error;
  }
  // The store is most of what this process holds, so full collections may be paced to keep near --memory.
  paceCollections(server);
  const mb = (n: number) => `${Math.round((n / 1024 / 1024) * 10) / 10}m`;
  process.stdout.write(
    `memipc server listening on ${server.host}:${server.port} ` +
      `(memory ${mb(options.memoryLimit)}, max item ${mb(options.maxItemSize)}, ` +
      `max connections ${options.maxConnections}` +
      `${options.authFile === undefined ? "" : `, authentication: ${server.engine.credentials!.size} users`}` +
      `${options.tlsCert === undefined ? "" : ", TLS"})\n`,
  );
  // As memcached: SIGHUP reads the auth file again; if it cannot, the users loaded before stay.
  const reload = () => {
    try {
      server.engine.reloadCredentials();
      process.stdout.write(`memipc server: auth file reloaded, ${server.engine.credentials!.size} users\n`);
    } catch (error) {
      process.stderr.write(`memipc server: ${(error as Error).message}; the users loaded before stay\n`);
    }
  };
  if (options.authFile !== undefined) process.on("SIGHUP", reload);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.stdout.write("memipc server stopping\n");
      process.off("SIGHUP", reload);
      void server.close().then(resolve);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
