// `memipc http`: the HTTP API, job pages and embeddable progress bar alone, in the foreground until SIGINT or
// SIGTERM.
import { ConfigError } from "../errors.js";
import {
  DEFAULT_HTTP_HOST,
  DEFAULT_HTTP_PORT,
  DEFAULT_POLL_INTERVAL,
  isLoopback,
  startHttpServer,
} from "../http/index.js";
import {
  COMMON_ROWS,
  connect,
  connectionFrom,
  optionTable,
  parseFlags,
  pick,
  stopSignal,
  wholeNumber,
} from "./common.js";

export const HTTP_HELP = `Usage: memipc http [options]

Serves the progress of jobs over HTTP until SIGINT or SIGTERM: a JSON API, Server-Sent Events, a page per
job with a live progress bar and a Cancel button, and a script that shows the same bar on a web app's own
pages. Any number of these servers, on any nodes, show the same jobs: nothing is kept in one process.

${optionTable([
  ...COMMON_ROWS,
  ["--port N", "TCP port (0: any free port)", String(DEFAULT_HTTP_PORT)],
  ["--listen ADDR", "address to bind", DEFAULT_HTTP_HOST],
  ["--token T", "required on every request (see below)", "MEMIPC_TOKEN, else none"],
  ["--poll MS", "ms between reads of a watched job", String(DEFAULT_POLL_INTERVAL)],
])}
Routes: GET /api/jobs, GET /api/jobs/ID, GET /api/jobs/ID/events (Server-Sent Events), POST
/api/jobs/ID/cancel, GET /jobs/ID (the page) and GET /embed.js. However many browsers watch a job, this
process reads it from memcached once per --poll interval. docs/HTTP.md has the details.

On a loopback address no token is needed. Any other address (0.0.0.0, a LAN address) requires one: at least
16 characters, e.g. from "openssl rand -hex 16"; prefer MEMIPC_TOKEN to --token, which other users can see
in the process list. Clients send "Authorization: Bearer T", or add ?token=T to page and event URLs.
`;

export async function runHttp(args: string[]): Promise<void> {
  const { values } = parseFlags("http", args, {
    port: { type: "string", short: "p" },
    listen: { type: "string" },
    token: { type: "string" },
    poll: { type: "string" },
  });
  const connection = connectionFrom(values, process.env);
  const port = values.port === undefined ? DEFAULT_HTTP_PORT : wholeNumber(values.port, "--port", 0, 65_535);
  const host = values.listen ?? DEFAULT_HTTP_HOST;
  if (host === "") throw new ConfigError("--listen needs an address, e.g. 127.0.0.1 or 0.0.0.0");
  const token = pick("--token", values.token, process.env, "MEMIPC_TOKEN")?.[0];
  const pollInterval =
    values.poll === undefined ? DEFAULT_POLL_INTERVAL : wholeNumber(values.poll, "--poll", 10, 60_000);
  const client = connect(connection);
  const stop = stopSignal();
  try {
    const server = await startHttpServer({
      client,
      namespace: connection.namespace,
      host,
      port,
      pollInterval,
      token,
    });
    const shown = token === undefined ? "" : " (token required)";
    process.stdout.write(`memipc http: listening on ${server.url}/${shown}\n`);
    process.stdout.write(
      `memipc http: jobs at ${server.url}/api/jobs, a job's page at ${server.url}/jobs/ID\n`,
    );
    if (!isLoopback(host)) {
      process.stderr.write(`memipc http: ${host} is reachable from other machines; serve it behind TLS\n`);
    }
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) return resolve();
      stop.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    await server.close();
  } finally {
    stop.dispose();
    client.close();
  }
}
