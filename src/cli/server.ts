// `memipc server`: the embedded server alone, in the foreground, until SIGINT or SIGTERM.
import { parseArgs } from "node:util";
import { ConfigError } from "../errors.js";
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
  -h, --help             this text

SIZE is bytes or a number with k, m or g (64m, 512k).
Binding anything but a loopback address exposes the cache to the network: memcached's
protocol has no authentication by default, so firewall the port.
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
  const mb = (n: number) => `${Math.round((n / 1024 / 1024) * 10) / 10}m`;
  process.stdout.write(
    `memipc server listening on ${server.host}:${server.port} ` +
      `(memory ${mb(options.memoryLimit)}, max item ${mb(options.maxItemSize)}, ` +
      `max connections ${options.maxConnections})\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.stdout.write("memipc server stopping\n");
      void server.close().then(resolve);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
