// One web server of `memipc demo`'s farm, run as a child process: a few pages with their own latencies and
// failures, every request logged and counted by the request log, a report job started by POST /report, and
// the jobs API and pages (src/http) served alongside, so any server of the farm shows any server's job.
import { appendFileSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "../client/index.js";
import { ConfigError } from "../errors.js";
import { startHttpServer, type HttpServer } from "../http/index.js";
import { withRequestLog } from "../middleware/node-http.js";
import { RequestLog } from "../middleware/request-log.js";
import { JobState, Progress, type Job } from "../progress/index.js";

const ACKED_FLUSH_EVERY = 500; // ms between writes of the acknowledged positions to the --acked file
const EXIT_AFTER = 10_000; // ms a stopping server may take before it exits anyway

/** What the demo hands each web server (as JSON, its only argument). */
export interface DemoWebConfig {
  name: string;
  servers: string;
  namespace: string;
  stream: string;
  /** Append each acknowledged entry's position here (JSON Lines), if set. */
  acked: string | undefined;
  /** Steps of a report job, and ms per step. */
  steps: number;
  stepMs: number;
}

/** Messages from a web server to the demo. */
export type DemoWebMessage =
  { type: "ready"; name: string; port: number } | { type: "failed"; message: string };

const PRODUCTS = 100; // /products/1 … /products/100 exist; others are 404

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? "") as DemoWebConfig;
  const client = new Client({ servers: config.servers });
  const progress = new Progress(client, { namespace: config.namespace });
  const jobs = await startHttpServer({ client, namespace: config.namespace, host: "127.0.0.1", port: 0 });
  const acked: string[] = [];
  const flushAcked = (): void => {
    if (config.acked === undefined || acked.length === 0) return;
    appendFileSync(config.acked, acked.join(""));
    acked.length = 0;
  };
  const flusher = setInterval(flushAcked, ACKED_FLUSH_EVERY);
  const log = new RequestLog({
    client,
    namespace: config.namespace,
    stream: config.stream,
    node: config.name,
    userId: (req) => /(?:^|;\s*)user=([^;]+)/.exec(req.headers.cookie ?? "")?.[1],
    // Behind the demo's proxy the socket is the proxy's: the client is the first X-Forwarded-For address.
    clientAddress: (req) =>
      String(req.headers["x-forwarded-for"] ?? "")
        .split(",")[0]!
        .trim() || req.socket.remoteAddress,
    onAppended: (position) => {
      if (config.acked !== undefined) acked.push(`${JSON.stringify({ ...position, node: config.name })}\n`);
    },
  });
  const reports = new Map<string, Job>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    res.setHeader("X-Served-By", config.name);
    const url = new URL(req.url ?? "/", "http://demo.invalid");
    const path = url.pathname;
    if (
      path === "/api/jobs" ||
      path.startsWith("/api/jobs/") ||
      path.startsWith("/jobs/") ||
      path === "/embed.js"
    ) {
      return forward(req, res, jobs);
    }
    req.resume();
    const method = req.method ?? "GET";
    if (method === "POST" && path === "/report")
      return startReport(url.searchParams.get("id") ?? "demo-report", res);
    if (method !== "GET" && method !== "HEAD")
      return send(res, 405, "text/plain", `${method} is not served here\n`);
    if (path === "/") {
      await sleep(jitter(2, 15));
      return send(res, 200, "text/html; charset=utf-8", homePage(config.name));
    }
    if (path === "/products") {
      await sleep(jitter(10, 40));
      return sendJson(res, 200, { products: Array.from({ length: 20 }, (_, i) => i + 1) });
    }
    const product = /^\/products\/(\d+)$/.exec(path);
    if (product !== null) {
      await sleep(jitter(5, 30));
      const id = Number(product[1]);
      return id >= 1 && id <= PRODUCTS
        ? sendJson(res, 200, { id, name: `product ${id}`, price: (id * 7) % 90 })
        : sendJson(res, 404, { error: `no product ${id}` });
    }
    if (path === "/search") {
      await sleep(jitter(30, 150));
      return sendJson(res, 200, { q: url.searchParams.get("q"), hits: Math.floor(Math.random() * 50) });
    }
    if (path === "/cart") {
      if (!/(?:^|;\s*)user=/.test(req.headers.cookie ?? "")) {
        res.writeHead(302, { Location: "/login" });
        res.end();
        return;
      }
      await sleep(jitter(10, 60));
      return sendJson(res, 200, { items: Math.floor(Math.random() * 5) });
    }
    if (path === "/slow") {
      await sleep(jitter(400, 900));
      return send(res, 200, "text/plain", "finally\n");
    }
    if (path === "/error") {
      await sleep(jitter(5, 50));
      return send(res, 500, "text/plain", "something broke (on purpose)\n");
    }
    return send(res, 404, "text/plain", `nothing at ${path}\n`);
  };

  const startReport = async (id: string, res: ServerResponse): Promise<void> => {
    let job: Job;
    try {
      job = await progress.start("monthly sales report", { id, total: config.steps });
    } catch (error) {
      if (error instanceof ConfigError) return sendJson(res, 409, { error: error.message });
      throw error;
    }
    reports.set(job.id, job);
    void runReport(job).finally(() => reports.delete(job.id));
    sendJson(res, 202, { id: job.id, page: `/jobs/${encodeURIComponent(job.id)}`, node: config.name });
  };

  const runReport = async (job: Job): Promise<void> => {
    try {
      for (let step = 1; step <= config.steps; step++) {
        if (job.cancelled) return await job.cancel("stopped from the page");
        await sleep(config.stepMs);
        if (job.record.state !== JobState.running) return;
        job.update({ done: step, message: `summing region ${step} of ${config.steps}` });
      }
      await job.done({ rows: config.steps * 12, servedBy: config.name });
    } catch {
      // Ended by stop() (cancelled), or memcached went away: the job shows as stalled, then expires.
    }
  };

  const server = createServer(
    withRequestLog((req, res) => {
      handle(req, res).catch((error: unknown) => {
        if (res.headersSent) res.destroy();
        else send(res, 500, "text/plain", `internal error: ${(error as Error).message}\n`);
      });
    }, log),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      setTimeout(() => process.exit(1), EXIT_AFTER).unref();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      });
      await Promise.allSettled([...reports.values()].map((job) => job.cancel("the demo stopped")));
      await log.close();
      clearInterval(flusher);
      flushAcked();
      await jobs.close();
      client.close();
      if (process.connected) process.disconnect();
    })());
  process.on("message", (message) => {
    if (message === "stop") void stop();
  });
  process.on("disconnect", () => void stop()); // the demo went away
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
  tell({ type: "ready", name: config.name, port: (server.address() as AddressInfo).port });
}

/** Passes a request to the jobs API server (event streams included) and its answer back. */
function forward(req: IncomingMessage, res: ServerResponse, target: HttpServer): void {
  const upstream = httpRequest(
    { host: target.host, port: target.port, method: req.method, path: req.url, headers: req.headers },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on("error", () => {
    if (!res.headersSent) send(res, 502, "text/plain", "the jobs API did not answer\n");
    else res.destroy();
  });
  res.on("close", () => upstream.destroy());
  req.pipe(upstream);
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, "application/json", `${JSON.stringify(value)}\n`);
}

function jitter(min: number, max: number): number {
  return min + Math.random() * (max - min);
}

function homePage(name: string): string {
  return `<!doctype html><meta charset="utf-8"><title>memipc demo shop</title>
<h1>memipc demo shop</h1><p>Served by ${name}.</p>
<ul><li><a href="/products">products</a></li><li><a href="/search?q=shoes">search</a></li>
<li><a href="/cart">cart</a></li><li><a href="/slow">a slow page</a></li><li><a href="/error">a broken page</a></li>
<li><a href="/api/jobs">jobs (JSON)</a></li></ul>\n`;
}

function tell(message: DemoWebMessage): void {
  process.send?.(message);
}

main().catch((error: unknown) => {
  tell({ type: "failed", message: error instanceof Error ? error.message : String(error) });
  process.exitCode = 1;
  if (process.connected) process.disconnect();
});
