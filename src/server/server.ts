// The embedded memcached-compatible server: a TCP listener, its connections and one shared engine.
import net from "node:net";
import tls from "node:tls";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { ConfigError } from "../errors.js";
import { Connection } from "./connection.js";
import { Engine } from "./engine.js";
import { resolveOptions, type ServerOptions } from "./options.js";

const REAP_INTERVAL = 1000; // ms between sweeps for expired items
const REAP_BATCH = 2000; // items looked at per sweep

export class MemcachedServer {
  readonly options: ServerOptions;
  readonly engine: Engine;
  readonly #server: net.Server;
  readonly #connections = new Set<Connection>();
  /** A loopback listener for the hosting process's own clients, which closePublic() leaves open. */
  #internal: net.Server | undefined;
  readonly #internalConnections = new Set<Connection>();
  #reaper: NodeJS.Timeout | undefined;

  constructor(options: ServerOptions) {
    this.options = options;
    this.engine = new Engine(options, () => Math.floor(Date.now() / 1000));
    const accept = (socket: net.Socket) => this.#accept(socket, this.#connections);
    this.#server =
      options.tlsCert === undefined
        ? net.createServer({ noDelay: true }, accept)
        : tlsServer(options, accept);
  }

  get host(): string {
    const address = this.#server.address();
    return typeof address === "object" && address ? address.address : this.options.host;
  }

  get port(): number {
    const address = this.#server.address();
    return typeof address === "object" && address ? address.port : this.options.port;
  }

  get connectionCount(): number {
    return this.#connections.size + this.#internalConnections.size;
  }

  async listen(): Promise<void> {
    this.#server.listen({ host: this.options.host, port: this.options.port, backlog: 1024 });
    await once(this.#server, "listening");
    this.#reaper = setInterval(() => this.engine.store.reap(REAP_BATCH), REAP_INTERVAL);
    this.#reaper.unref();
  }

  /**
   * Opens a second listener on 127.0.0.1 (a free port, returned) for the hosting process's own clients, so
   * that after closePublic() they can still read what others stored, e.g. to drain it before the process ends.
   */
  async listenInternal(): Promise<number> {
    if (this.#internal === undefined) {
      const internal = net.createServer({ noDelay: true }, (socket) =>
        this.#accept(socket, this.#internalConnections),
      );
      internal.listen({ host: "127.0.0.1", port: 0 });
      await once(internal, "listening");
      this.#internal = internal;
    }
    return (this.#internal.address() as net.AddressInfo).port;
  }

  /**
   * Stops the public listener and closes the connections accepted on it: no one else can store anything from
   * now on (a reply already sent stays true). Connections to the internal listener stay open.
   */
  async closePublic(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const connection of this.#connections) connection.socket.destroy();
    await closed;
  }

  #accept(socket: net.Socket, connections: Set<Connection>): void {
    const stats = this.engine.stats;
    socket.on("error", () => socket.destroy());
    if (this.#connections.size + this.#internalConnections.size >= this.options.maxConnections) {
      // As memcached does when it runs out of connection slots.
      stats.rejectedConnections++;
      socket.end("ERROR Too many open connections\r\n");
      return;
    }
    stats.totalConnections++;
    stats.currConnections++;
    const connection = new Connection(socket, this.engine);
    connections.add(connection);
    if (this.options.idleTimeout > 0) {
      socket.setTimeout(this.options.idleTimeout * 1000, () => socket.destroy());
    }
    socket.on("close", () => {
      connections.delete(connection);
      stats.currConnections--;
    });
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    if (this.#reaper) clearInterval(this.#reaper);
    const internal = this.#internal;
    const closed = Promise.all([
      this.closePublic(),
      internal === undefined ? undefined : new Promise<void>((resolve) => internal.close(() => resolve())),
    ]);
    for (const connection of this.#internalConnections) connection.socket.destroy();
    await closed;
  }
}

/** A TLS listener from the options' PEM files; a file that cannot be read or used is a ConfigError. */
function tlsServer(options: ServerOptions, accept: (socket: net.Socket) => void): tls.Server {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new ConfigError(`TLS ${what} ${file} cannot be read (${reason}): give a readable PEM file`, {
        cause: error,
      });
    }
  };
  const verify = options.tlsCa !== undefined;
  try {
    return tls.createServer(
      {
        cert: read(options.tlsCert!, "certificate"),
        key: read(options.tlsKey!, "key"),
        ...(verify ? { ca: read(options.tlsCa!, "CA"), requestCert: true, rejectUnauthorized: true } : {}),
        noDelay: true,
      },
      accept,
    );
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(
      `TLS certificate ${options.tlsCert} and key ${options.tlsKey} cannot be used (${(error as Error).message}): ` +
        "give a PEM certificate and the private key that belongs to it",
      { cause: error },
    );
  }
}

export async function startServer(options: Partial<ServerOptions> = {}): Promise<MemcachedServer> {
  const server = new MemcachedServer(resolveOptions(options));
  await server.listen();
  return server;
}
