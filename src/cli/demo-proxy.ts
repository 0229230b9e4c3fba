// `memipc demo`'s load balancer: a round-robin HTTP proxy in front of the web servers. Each request goes to
// the next server in turn (event streams too), with X-Forwarded-For set, so a job started through one server
// is watched through the others.
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { ConfigError } from "../errors.js";

export interface DemoProxy {
  readonly url: string;
  /** Requests passed to each web server, by its index. */
  readonly served: readonly number[];
  close(): Promise<void>;
}

/** Starts the proxy on `host:port` (0: a free port) in front of the web servers on 127.0.0.1:`ports`. */
export async function startProxy(host: string, port: number, ports: readonly number[]): Promise<DemoProxy> {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const served = ports.map(() => 0);
  let next = 0;
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const index = next;
    next = (next + 1) % ports.length;
    served[index]!++;
    const forwarded = [req.headers["x-forwarded-for"], req.socket.remoteAddress].filter(Boolean).join(", ");
    const upstream = httpRequest(
      {
        host: "127.0.0.1",
        port: ports[index],
        method: req.method,
        path: req.url,
        headers: { ...req.headers, "x-forwarded-for": forwarded },
        agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => {
      if (res.headersSent) res.destroy();
      else {
        res.writeHead(502, { "Content-Type": "text/plain" });
        res.end(`web server ${index + 1} did not answer\n`);
      }
    });
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };
  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "EADDRINUSE"
          ? new ConfigError(
              `port ${port} on ${host} is in use: choose another with --port (0: any free port)`,
            )
          : error,
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`,
    served,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      });
      return closing;
    },
  };
}
