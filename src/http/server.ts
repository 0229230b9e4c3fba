// The HTTP face of progress: a JSON API, Server-Sent Events, a job page and an embeddable script, on Node's
// http module. Stateless: every answer comes from memcached (event streams share one poller per job), so
// any number of these servers behind a load balancer answer alike. Requests are bounded: a long target, large
// headers or body, or a request that arrives too slowly is refused before it costs memory or a connection.
import {
  STATUS_CODES,
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Duplex } from "node:stream";
import type { Client } from "../client/index.js";
import { ConfigError, ConnectionClosedError, OverloadError, TimeoutError } from "../errors.js";
import { DEFAULT_NAMESPACE } from "../progress/layout.js";
import { Progress, validateJobId } from "../progress/index.js";
import { TokenCheck, checkToken } from "./auth.js";
import { serveEventStream } from "./event-stream.js";
import { JobFeeds } from "./job-feeds.js";
import { PAGE_CSP, jobPage } from "./page.js";
import { sendError, sendJson } from "./responses.js";
import { EMBED_JS } from "./widget.js";

export const DEFAULT_HTTP_HOST = "127.0.0.1";
export const DEFAULT_HTTP_PORT = 8080;
export const DEFAULT_POLL_INTERVAL = 500; // ms between reads of a watched job
export const DEFAULT_SSE_HEARTBEAT = 15_000; // ms between comment lines on an idle event stream
export const DEFAULT_SSE_RETRY = 2000; // ms a browser waits before reconnecting a dropped stream
export const DEFAULT_MAX_STREAMS = 10_000; // event streams open at once; more are refused with 503
export const DEFAULT_MAX_URL_LENGTH = 8192; // characters of a request target; longer ones get 414
export const DEFAULT_MAX_HEADER_SIZE = 16_384; // bytes of request line and headers; more get 431
export const DEFAULT_MAX_BODY = 16_384; // bytes of a request body (no route reads one); more get 413
export const DEFAULT_HEADERS_TIMEOUT = 10_000; // ms for a request's headers to arrive; slower gets 408
export const DEFAULT_REQUEST_TIMEOUT = 30_000; // ms for a whole request (headers and body) to arrive
const TIMEOUT_CHECK_EVERY = 1000; // ms between checks for requests arriving too slowly (Node's default: 30 s)
const EMBED_MAX_AGE = 300; // s browsers may cache /embed.js
const BASE_URL = "http://memipc.invalid"; // request targets are paths: resolved against any base

export interface HttpServerOptions {
  /** Where jobs are read: the embedded server, a real memcached or a pool. Not closed by close(). */
  client: Client;
  namespace: string;
  /** Address to bind; anything but loopback requires `token`. */
  host: string;
  /** TCP port; 0 picks a free one (see `port` on the result). */
  port: number;
  /** ms between reads of a job that event streams watch (one read per job, however many watch). */
  pollInterval: number;
  /** Required on every request when set: `Authorization: Bearer <token>` or `?token=<token>`. */
  token: string | undefined;
  /** ms between heartbeat comments on an event stream. */
  heartbeat: number;
  /** ms a browser waits before reconnecting a dropped event stream (sent as `retry:`). */
  retry: number;
  /** Origins whose pages may call the API (CORS): "*" for any, or a list; [] for none. */
  allowOrigins: "*" | string[];
  /** Event streams open at once. */
  maxStreams: number;
  /** Serves GET /metrics (Prometheus text format) when given: the daemon's figures. */
  metrics: (() => Promise<string>) | undefined;
  /** Serves GET /healthz when given (no token needed: load balancers call it): 200 when ok, else 503. */
  health: (() => Promise<{ ok: boolean; detail: Record<string, unknown> }>) | undefined;
  /** More routes (the dashboard), asked after the token check and before "not found". */
  routes: HttpRoutes | undefined;
  /** Characters of a request's target (path and query); a longer one is answered 414. */
  maxUrlLength: number;
  /** Bytes of a request's line and headers; more are answered 431 (fixed here, whatever node's flags say). */
  maxHeaderSize: number;
  /** Bytes of a request body; a larger one is answered 413 without being read, and the connection closed. */
  maxBody: number;
  /** ms for a request's headers to arrive (slow clients holding connections open get 408). */
  headersTimeout: number;
  /** ms for a whole request to arrive; at least headersTimeout. Answers (event streams) are not limited. */
  requestTimeout: number;
}

/** A set of routes served alongside the jobs API. */
export interface HttpRoutes {
  /** Answers the request and resolves true when its path is one of these routes; false passes it on. */
  handle(request: IncomingMessage, response: ServerResponse, url: URL): Promise<boolean>;
  /** Ends what the routes hold open (event streams, timers) when the server closes. */
  close(): void;
}

export function defaultHttpOptions(): Omit<HttpServerOptions, "client"> {
  return {
    namespace: DEFAULT_NAMESPACE,
    host: DEFAULT_HTTP_HOST,
    port: DEFAULT_HTTP_PORT,
    pollInterval: DEFAULT_POLL_INTERVAL,
    token: undefined,
    heartbeat: DEFAULT_SSE_HEARTBEAT,
    retry: DEFAULT_SSE_RETRY,
    allowOrigins: "*",
    maxStreams: DEFAULT_MAX_STREAMS,
    metrics: undefined,
    health: undefined,
    routes: undefined,
    maxUrlLength: DEFAULT_MAX_URL_LENGTH,
    maxHeaderSize: DEFAULT_MAX_HEADER_SIZE,
    maxBody: DEFAULT_MAX_BODY,
    headersTimeout: DEFAULT_HEADERS_TIMEOUT,
    requestTimeout: DEFAULT_REQUEST_TIMEOUT,
  };
}

export interface HttpServer {
  readonly host: string;
  readonly port: number;
  /** Where it listens, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  /** Event streams open now. */
  readonly streams: number;
  /** Jobs polled now, and memcached reads the pollers made so far. */
  readonly polling: number;
  readonly reads: number;
  /** Ends every event stream, stops the pollers and closes the listening socket. */
  close(): Promise<void>;
}

type Route =
  | { kind: "list" }
  | { kind: "job" | "events" | "cancel" | "page"; id: string }
  | { kind: "embed" | "metrics" | "health" };

const ALLOWED: Record<Route["kind"], string> = {
  list: "GET, HEAD",
  job: "GET, HEAD",
  events: "GET",
  cancel: "POST",
  page: "GET, HEAD",
  embed: "GET, HEAD",
  metrics: "GET, HEAD",
  health: "GET, HEAD",
};

/** Starts the HTTP server; resolves once it listens. */
export async function startHttpServer(
  options: Partial<HttpServerOptions> & { client: Client },
): Promise<HttpServer> {
  const o: HttpServerOptions = { ...defaultHttpOptions(), ...definedOnly(options), client: options.client };
  checkOptions(o);
  const progress = new Progress(o.client, { namespace: o.namespace });
  const feeds = new JobFeeds(progress, o.pollInterval);
  const tokenCheck = o.token === undefined || o.token === "" ? undefined : new TokenCheck(o.token);
  const streams = new Set<ServerResponse>();

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const cors = corsHeaders(o.allowOrigins, request.headers.origin);
    if ((request.url ?? "").length > o.maxUrlLength) {
      return sendError(
        response,
        414,
        `the request's target is longer than ${o.maxUrlLength} characters: ids and names are short`,
        cors,
      );
    }
    if (!bodyWithin(request, response, o.maxBody, cors)) return;
    const url = URL.canParse(request.url ?? "/", BASE_URL)
      ? new URL(request.url ?? "/", BASE_URL)
      : undefined;
    if (url === undefined)
      return sendError(response, 400, "the request's target is not a valid URL path", cors);
    const method = request.method ?? "GET";
    let route = routeOf(url.pathname);
    if (
      (route?.kind === "metrics" && o.metrics === undefined) ||
      (route?.kind === "health" && o.health === undefined)
    ) {
      route = undefined;
    }
    if (route?.kind === "health" && (method === "GET" || method === "HEAD")) {
      const health = await o.health!();
      return sendJson(response, health.ok ? 200 : 503, { ok: health.ok, ...health.detail }, cors);
    }
    if (method === "OPTIONS" && route !== undefined) {
      // A CORS preflight carries no credentials, so it is answered before the token check.
      response.writeHead(204, {
        ...cors,
        Allow: `${ALLOWED[route.kind]}, OPTIONS`,
        "Access-Control-Allow-Methods": ALLOWED[route.kind],
        "Access-Control-Allow-Headers": "Authorization, Last-Event-ID",
        "Access-Control-Max-Age": "600",
      });
      response.end();
      return;
    }
    if (tokenCheck !== undefined && !tokenCheck.allows(request, url)) {
      return sendError(
        response,
        401,
        "this server needs its token: send Authorization: Bearer <token>, or add ?token=<token> to the URL",
        { ...cors, "WWW-Authenticate": 'Bearer realm="memipc"' },
      );
    }
    const cookie = tokenCheck?.cookieFor(url);
    if (cookie !== undefined) response.setHeader("Set-Cookie", cookie);
    if (route === undefined && o.routes !== undefined && (await o.routes.handle(request, response, url))) {
      return;
    }
    if (route === undefined) {
      return sendError(
        response,
        404,
        `nothing at ${url.pathname}: see /api/jobs, /api/jobs/ID, /api/jobs/ID/events, /jobs/ID and /embed.js`,
        cors,
      );
    }
    if (!ALLOWED[route.kind].split(", ").includes(method)) {
      return sendError(
        response,
        405,
        `${method} is not allowed on ${url.pathname}: use ${ALLOWED[route.kind]}`,
        {
          ...cors,
          Allow: ALLOWED[route.kind],
        },
      );
    }
    if ("id" in route && !validId(route.id)) {
      return sendError(
        response,
        400,
        `job id ${JSON.stringify(route.id)} is not valid: 1 to 100 letters, digits, "_", "." or "-"`,
        cors,
      );
    }
    switch (route.kind) {
      case "list":
        return sendJson(response, 200, { jobs: await progress.list() }, cors);
      case "job": {
        const view = await progress.get(route.id);
        if (view === undefined) return sendError(response, 404, notFound(route.id), cors);
        return sendJson(response, 200, view, cors);
      }
      case "cancel": {
        if (await progress.cancel(route.id)) return sendJson(response, 202, { cancelled: true }, cors);
        const view = await progress.get(route.id);
        if (view === undefined) return sendError(response, 404, notFound(route.id), cors);
        return sendError(response, 409, `job ${route.id} has ended (${view.state}): nothing to cancel`, cors);
      }
      case "events": {
        if (streams.size >= o.maxStreams) {
          return sendError(response, 503, `too many event streams open (${o.maxStreams}): try again later`, {
            ...cors,
            "Retry-After": "5",
          });
        }
        streams.add(response);
        try {
          await serveEventStream(request, response, route.id, feeds, {
            heartbeat: o.heartbeat,
            retry: o.retry,
            headers: cors,
          });
        } finally {
          streams.delete(response);
        }
        return;
      }
      case "page": {
        const view = await progress.get(route.id);
        const html = jobPage(route.id, view);
        response.writeHead(view === undefined ? 404 : 200, {
          "Content-Type": "text/html; charset=utf-8",
          "Content-Length": Buffer.byteLength(html),
          "Cache-Control": "no-store",
          "Content-Security-Policy": PAGE_CSP,
          "X-Content-Type-Options": "nosniff",
          "X-Frame-Options": "DENY",
          "Referrer-Policy": "no-referrer",
        });
        response.end(html);
        return;
      }
      case "metrics": {
        const text = await o.metrics!();
        response.writeHead(200, {
          "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
          "Content-Length": Buffer.byteLength(text),
          "Cache-Control": "no-store",
        });
        response.end(text);
        return;
      }
      case "health":
        return; // answered before the token check
      case "embed":
        response.writeHead(200, {
          ...cors,
          "Content-Type": "text/javascript; charset=utf-8",
          "Content-Length": Buffer.byteLength(EMBED_JS),
          "Cache-Control": `public, max-age=${EMBED_MAX_AGE}`,
          "X-Content-Type-Options": "nosniff",
        });
        response.end(EMBED_JS);
        return;
    }
  };

  const server: Server = createServer(
    {
      maxHeaderSize: o.maxHeaderSize,
      headersTimeout: o.headersTimeout,
      requestTimeout: o.requestTimeout,
      connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_EVERY, o.headersTimeout),
    },
    (request, response) => {
      handle(request, response).catch((error: unknown) => {
        if (response.headersSent) {
          response.destroy();
          return;
        }
        const cors = corsHeaders(o.allowOrigins, request.headers.origin);
        if (unavailable(error)) {
          sendError(response, 503, `memcached could not be reached: ${(error as Error).message}`, cors);
        } else {
          sendError(response, 500, `internal error: ${(error as Error).message}`, cors);
        }
      });
    },
  );
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => refuseClient(error, socket, o));
  await listen(server, o.host, o.port);
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : o.port;
  const shownHost = o.host.includes(":") ? `[${o.host}]` : o.host;
  let closing: Promise<void> | undefined;
  return {
    host: o.host,
    port,
    url: `http://${shownHost}:${port}`,
    get streams() {
      return streams.size;
    },
    get polling() {
      return feeds.polling;
    },
    get reads() {
      return feeds.reads;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        feeds.close();
        o.routes?.close();
        for (const response of streams) response.end();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function checkOptions(o: HttpServerOptions): void {
  if (typeof o.client !== "object" || o.client === null) {
    throw new ConfigError('startHttpServer needs a client: new Client({ servers: "127.0.0.1:11211" })');
  }
  if (typeof o.host !== "string" || o.host === "") throw new ConfigError("the HTTP host must be an address");
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65_535) {
    throw new ConfigError(`HTTP port ${o.port} must be a whole number from 0 to 65535 (0: any free port)`);
  }
  whole(o.pollInterval, "poll interval", 10, 60_000);
  whole(o.heartbeat, "SSE heartbeat", 10, 3_600_000);
  whole(o.retry, "SSE retry", 0, 3_600_000);
  whole(o.maxStreams, "maxStreams", 1, 1_000_000);
  for (const [value, what] of [
    [o.maxUrlLength, "maxUrlLength"],
    [o.maxHeaderSize, "maxHeaderSize"],
    [o.maxBody, "maxBody"],
  ] as const) {
    if (!Number.isInteger(value) || value < 0 || value > 1 << 30) {
      throw new ConfigError(`${what} ${value} must be a whole number of bytes from 0 to 1073741824`);
    }
  }
  whole(o.headersTimeout, "headersTimeout", 1, 3_600_000);
  whole(o.requestTimeout, "requestTimeout", 1, 3_600_000);
  if (o.requestTimeout < o.headersTimeout) {
    throw new ConfigError(
      `requestTimeout ${o.requestTimeout} ms must be at least headersTimeout ${o.headersTimeout} ms`,
    );
  }
  if (o.allowOrigins !== "*" && !Array.isArray(o.allowOrigins)) {
    throw new ConfigError('allowOrigins must be "*" or a list of origins such as "https://app.example"');
  }
  checkToken(o.host, o.token);
}

function whole(value: number, what: string, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${what} ${value} ms must be a whole number from ${min} to ${max}`);
  }
}

/**
 * False (the request answered 413) when it declares a body over `max` bytes: nothing of it is read and the
 * connection is closed. A body without a declared length is discarded as it comes, and its connection cut
 * once it passes `max`.
 */
function bodyWithin(
  request: IncomingMessage,
  response: ServerResponse,
  max: number,
  headers: Record<string, string>,
): boolean {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > max) {
    response.once("finish", () => request.socket.destroySoon());
    sendError(
      response,
      413,
      `the request's body (${declared} bytes) is over ${max} bytes: no route here takes a body, send none`,
      { ...headers, Connection: "close" },
    );
    return false;
  }
  let seen = 0;
  request.on("data", (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > max) request.socket.destroy();
  });
  request.resume(); // no route reads a body
  return true;
}

/** Answers a request that broke the HTTP rules or the limits before a route saw it, then closes. */
function refuseClient(error: NodeJS.ErrnoException, socket: Duplex, o: HttpServerOptions): void {
  if (error.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, message] =
    error.code === "HPE_HEADER_OVERFLOW"
      ? [431, `the request's line and headers are over ${o.maxHeaderSize} bytes: send fewer or shorter ones`]
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [
            408,
            `the request did not arrive within ${o.headersTimeout} ms (headers) or ${o.requestTimeout} ms`,
          ]
        : [400, `the request is not valid HTTP/1.1 (${error.code ?? error.message})`];
  const body = JSON.stringify({ error: message });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Options without the keys set to undefined, so they do not hide the defaults. */
function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function routeOf(path: string): Route | undefined {
  const parts = path.split("/").slice(1);
  if (path === "/embed.js") return { kind: "embed" };
  if (path === "/metrics") return { kind: "metrics" };
  if (path === "/healthz") return { kind: "health" };
  if (parts[0] === "jobs" && parts.length === 2) return { kind: "page", id: segment(parts[1]!) };
  if (parts[0] !== "api" || parts[1] !== "jobs") return undefined;
  if (parts.length === 2) return { kind: "list" };
  const id = segment(parts[2]!);
  if (parts.length === 3) return { kind: "job", id };
  if (parts.length === 4 && parts[3] === "events") return { kind: "events", id };
  if (parts.length === 4 && parts[3] === "cancel") return { kind: "cancel", id };
  return undefined;
}

/** A path segment decoded; one that does not decode is kept as it is (and then refused as an id). */
function segment(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function validId(id: string): boolean {
  try {
    validateJobId(id);
    return true;
  } catch {
    return false;
  }
}

function notFound(id: string): string {
  return `there is no job ${id} (it never started, or it expired)`;
}

function corsHeaders(allowed: "*" | string[], origin: string | string[] | undefined): Record<string, string> {
  if (allowed === "*") return { "Access-Control-Allow-Origin": "*" };
  const from = Array.isArray(origin) ? origin[0] : origin;
  if (from !== undefined && allowed.includes(from)) {
    return { "Access-Control-Allow-Origin": from, Vary: "Origin" };
  }
  return allowed.length === 0 ? {} : { Vary: "Origin" };
}

function unavailable(error: unknown): boolean {
  return (
    error instanceof TimeoutError || error instanceof ConnectionClosedError || error instanceof OverloadError
  );
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      if (error.code === "EADDRINUSE") {
        reject(
          new ConfigError(
            `port ${port} on ${host} is in use: choose another (--port) or stop what holds it`,
            { cause: error },
          ),
        );
      } else if (error.code === "EADDRNOTAVAIL") {
        reject(
          new ConfigError(`${host} is not an address of this machine: choose another (--listen)`, {
            cause: error,
          }),
        );
      } else {
        reject(error);
      }
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}
