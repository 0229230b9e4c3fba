// A server without the meta protocol, as older memcached versions and some memcached-compatible proxies are:
// a loopback TCP proxy in front of a real server that passes text commands through unchanged and turns
// every meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`) into an unknown command, which the server answers
// with ERROR, in order with the replies around it.
import net from "node:net";

const STORAGE = new Set(["set", "add", "replace", "append", "prepend", "cas"]);
const UNKNOWN = Buffer.from("meta_commands_not_supported\r\n");

export interface TextOnlyProxy {
  readonly port: number;
  /** Meta commands refused so far. */
  readonly refused: number;
  close(): Promise<void>;
}

export async function startTextOnlyProxy(upstreamPort: number): Promise<TextOnlyProxy> {
  const sockets = new Set<net.Socket>();
  let refused = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    upstream.pipe(client);
    let pending: Buffer = Buffer.alloc(0);
    let skip = 0; // bytes of a refused `ms` data block still to drop
    let pass = 0; // bytes of a storage command's data block still to pass on
    client.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      for (;;) {
        if (skip > 0 || pass > 0) {
          const n = Math.min(pending.length, skip > 0 ? skip : pass);
          if (pass > 0) upstream.write(pending.subarray(0, n));
          if (skip > 0) skip -= n;
          else pass -= n;
          pending = pending.subarray(n);
          if (skip > 0 || pass > 0) return;
          continue;
        }
        const end = pending.indexOf("\n");
        if (end < 0) return;
        const line = pending.subarray(0, end + 1);
        pending = pending.subarray(end + 1);
        const tokens = line.toString("latin1").trim().split(/ +/);
        const verb = tokens[0] ?? "";
        if (/^m[gsdane]$/.test(verb)) {
          refused++;
          upstream.write(UNKNOWN);
          if (verb === "ms") skip = Number(tokens[2] ?? 0) + 2;
        } else {
          upstream.write(line);
          if (STORAGE.has(verb)) pass = Number(tokens[4] ?? 0) + 2;
        }
      }
    });
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", closeBoth).on("error", closeBoth);
    upstream.on("close", closeBoth).on("error", closeBoth);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get refused() {
      return refused;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
