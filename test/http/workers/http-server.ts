// An HTTP server process for the browser tests: startHttpServer on a free port, against the memcached the
// settings name; prints {"event":"listening","port":N} and serves until SIGTERM. Settings come in
// MEMIPC_HTTP_SERVER; without them (as when the test runner loads every file) it does nothing.
import { Client } from "../../../src/client/index.js";
import { startHttpServer } from "../../../src/http/index.js";

export const HTTP_SERVER_ENV = "MEMIPC_HTTP_SERVER";

export interface HttpServerSettings {
  /** memcached's port on 127.0.0.1. */
  port: number;
  namespace: string;
  pollInterval: number;
}

export interface HttpServerLine {
  event: "listening";
  port: number;
  pid: number;
}

const raw = process.env[HTTP_SERVER_ENV];
if (raw !== undefined) await serve(JSON.parse(raw) as HttpServerSettings);

async function serve(settings: HttpServerSettings): Promise<void> {
  const client = new Client({ servers: `127.0.0.1:${settings.port}` });
  const server = await startHttpServer({
    client,
    namespace: settings.namespace,
    port: 0,
    pollInterval: settings.pollInterval,
  });
  const line: HttpServerLine = { event: "listening", port: server.port, pid: process.pid };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  process.once("SIGTERM", () => {
    void server.close().then(() => {
      client.close();
      process.exit(0);
    });
  });
}
