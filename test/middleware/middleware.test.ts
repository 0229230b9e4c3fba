// The request log in real web servers: node:http, Express and Fastify apps on port 0 send real requests; each
// request becomes one entry that a real drainer writes to a file, and counters and a latency timer in
// memcached. A memcached that is down, or one that never answers, neither breaks nor delays a response.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, describe, it } from "node:test";
import express, { type Request } from "express";
import Fastify, { type FastifyRequest } from "fastify";
import { Client } from "../../src/client/index.js";
import { Drainer } from "../../src/log/drainer.js";
import {
  RequestLog,
  expressRequestLog,
  fastifyRequestLog,
  logPath,
  statusClass,
  withRequestLog,
  type AppendedPosition,
  type RequestEntry,
} from "../../src/middleware/index.js";
import { rateLimitedWarning } from "../../src/middleware/request-log.js";
import { startServer, type MemcachedServer } from "../../src/server/index.js";
import { openFileSink } from "../../src/sinks/index.js";
import { bucketStart, counterKey, timerKey } from "../../src/stats/layout.js";
import { readLog, type EntryLine } from "../helpers/log-files.js";
import { waitFor } from "../helpers/wait.js";

const WAIT_MS = 10_000; // what a test waits for (entries drained, counters landed) has happened by then
const FAST_MS = 250; // a response whose logging is stuck must still come back within this

const namespace = `mw${randomBytes(4).toString("hex")}`;
let memcached: MemcachedServer;
let client: Client;
const cleanups: Array<() => Promise<void> | void> = [];

before(async () => {
  memcached = await startServer({ port: 0 });
  client = new Client({ servers: `127.0.0.1:${memcached.port}` });
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  client.close();
  await memcached.close();
});

function streamName(): string {
  return `s${randomBytes(4).toString("hex")}`;
}

/** A drainer for `stream` into a temporary folder; its entries read back on demand. */
async function drain(stream: string): Promise<{ entries(): EntryLine[] }> {
  const dir = await mkdtemp(join(tmpdir(), "memipc-mw-"));
  const drainer = new Drainer(client, {
    namespace,
    stream,
    lease: false,
    pollEvery: 10,
    openSink: () => openFileSink(dir, { stream }),
  });
  const stop = new AbortController();
  const running = drainer.run(stop.signal);
  cleanups.push(async () => {
    stop.abort();
    await running;
    await rm(dir, { recursive: true, force: true });
  });
  return {
    entries: () => readLog(dir, stream, { tornTail: true }).filter((r): r is EntryLine => r.kind === "entry"),
  };
}

/** A counter's value summed over the last few buckets (a test may cross a bucket boundary). */
async function counter(name: string): Promise<number> {
  return sumBuckets((start) => counterKey({ namespace, bucketSeconds: 60 }, start, name));
}

async function timerCount(name: string): Promise<number> {
  return sumBuckets((start) => timerKey({ namespace, bucketSeconds: 60 }, start, name, "n"));
}

async function sumBuckets(key: (start: number) => string): Promise<number> {
  const now = bucketStart({ namespace, bucketSeconds: 60 }, Date.now());
  const values = await client.getMany([now - 120, now - 60, now].map(key));
  return values.reduce((sum, v) => sum + (v === undefined ? 0 : Number(v.toString())), 0);
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () =>
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    );
  });
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** What onAppended reported, in order. */
function recorder(): {
  positions: AppendedPosition[];
  entries: RequestEntry[];
  onAppended: (p: AppendedPosition, e: RequestEntry) => void;
} {
  const positions: AppendedPosition[] = [];
  const entries: RequestEntry[] = [];
  return {
    positions,
    entries,
    onAppended: (position, entry) => {
      positions.push(position);
      entries.push(entry);
    },
  };
}

/** The drained entries' payloads, by path, checked against the positions onAppended reported. */
function checkDrained(
  lines: EntryLine[],
  positions: readonly AppendedPosition[],
  stream: string,
): Map<string, RequestEntry> {
  assert.equal(lines.length, positions.length, "one entry per acknowledged append");
  const drained = new Set(lines.map((l) => `${l.epoch}:${l.seq}`));
  for (const p of positions) {
    assert.equal(p.stream, stream);
    assert.ok(drained.has(`${p.epoch}:${p.seq}`), `acknowledged ${p.epoch}:${p.seq} is in the files`);
  }
  const byPath = new Map<string, RequestEntry>();
  for (const line of lines) {
    const entry = line.data as RequestEntry;
    assert.equal(entry.kind, "http");
    assert.ok(typeof entry.duration === "number" && entry.duration >= 0, JSON.stringify(entry));
    assert.match(entry.client, /127\.0\.0\.1$/);
    byPath.set(`${entry.method} ${entry.path}`, entry);
  }
  return byPath;
}

describe("request log", () => {
  it("node:http: the wrapped handler's requests are drained as entries, query strings stripped, user recorded, and counted", async () => {
    const stream = streamName();
    const drained = await drain(stream);
    const seen = recorder();
    const handler = withRequestLog(
      (req: IncomingMessage, res: ServerResponse) => {
        const path = (req.url ?? "/").split("?")[0];
        if (path === "/hello") res.end("hello");
        else if (path === "/boom") {
          res.statusCode = 500;
          res.end("boom");
        } else {
          res.statusCode = 404;
          res.end("not found");
        }
      },
      {
        client,
        namespace,
        stream,
        node: "web-test",
        userId: (req) => req.headers["x-user"] as string | undefined,
        count: { prefix: "nodehttp" },
        onAppended: seen.onAppended,
      },
    );
    const server = createServer(handler);
    const url = await listen(server);
    cleanups.push(() => closeServer(server));

    assert.equal(
      (await fetch(`${url}/hello?token=secret&x=1`, { headers: { "x-user": "u42" } })).status,
      200,
    );
    assert.equal((await fetch(`${url}/missing`)).status, 404);
    assert.equal((await fetch(`${url}/boom`, { method: "POST" })).status, 500);
    await waitFor(() => seen.positions.length === 3, "three acknowledged appends");
    await waitFor(() => drained.entries().length === 3, "three drained entries");
    const byPath = checkDrained(drained.entries(), seen.positions, stream);
    const hello = byPath.get("GET /hello");
    assert.ok(hello, `the query string is stripped: ${[...byPath.keys()].join(", ")}`);
    assert.equal(hello.status, 200);
    assert.equal(hello.user, "u42");
    assert.equal(byPath.get("GET /missing")?.status, 404);
    assert.equal(byPath.get("GET /missing")?.user, undefined, "an anonymous request has no user field");
    assert.equal(byPath.get("POST /boom")?.status, 500);
    assert.ok(drained.entries().every((l) => l.node === "web-test"));
    assert.ok(
      !JSON.stringify(drained.entries()).includes("secret"),
      "the query string is nowhere in the log",
    );

    await waitFor(async () => (await counter("nodehttp.requests")) === 3, "nodehttp.requests to reach 3");
    assert.equal(await counter("nodehttp.status.2xx"), 1);
    assert.equal(await counter("nodehttp.status.4xx"), 1);
    assert.equal(await counter("nodehttp.status.5xx"), 1);
    assert.equal(await timerCount("nodehttp.latency"), 3);
    await handler.close();
    assert.equal(handler.requestLog.metrics.appended, 3);
    assert.equal(handler.requestLog.metrics.failed, 0);
  });

  it("node:http: track(req, res) with keepQuery keeps the query string; count: false and log: false do what they say", async () => {
    const stream = streamName();
    const drained = await drain(stream);
    const seen = recorder();
    const log = new RequestLog({
      client,
      namespace,
      stream,
      keepQuery: true,
      count: false,
      onAppended: seen.onAppended,
    });
    const countOnly = new RequestLog({
      client,
      namespace,
      stream,
      log: false,
      count: { prefix: "countonly", latency: false },
    });
    const server = createServer((req, res) => {
      log.track(req, res);
      countOnly.track(req, res);
      res.end("ok");
    });
    const url = await listen(server);
    cleanups.push(() => closeServer(server));
    await fetch(`${url}/search?q=shoes`);
    await waitFor(() => drained.entries().length === 1, "the drained entry");
    assert.equal((drained.entries()[0]!.data as RequestEntry).path, "/search?q=shoes");
    await waitFor(async () => (await counter("countonly.requests")) === 1, "countonly.requests to reach 1");
    assert.equal(await timerCount("countonly.latency"), 0);
    assert.equal(await counter("http.requests"), 0, "count: false counts nothing");
    await Promise.all([log.close(), countOnly.close()]);
    assert.equal(drained.entries().length, 1, "log: false appends nothing");
  });

  it("express: the middleware logs routes, routers (originalUrl), errors and 404s, with req.user", async () => {
    const stream = streamName();
    const drained = await drain(stream);
    const seen = recorder();
    const app = express();
    const log = expressRequestLog<Request>({
      client,
      namespace,
      stream,
      userId: (req) => (req as Request & { user?: { id: number } }).user?.id,
      count: { prefix: "express" },
      onAppended: seen.onAppended,
    });
    app.use(log);
    app.use((req, _res, next) => {
      if (req.headers.authorization === "Bearer alice")
        (req as Request & { user?: { id: number } }).user = { id: 7 };
      next();
    });
    app.get("/items/:id", (req, res) => {
      res.json({ id: req.params.id });
    });
    const api = express.Router();
    api.get("/things", (_req, res) => {
      res.send("things");
    });
    app.use("/api", api);
    app.get("/fail", () => {
      throw new Error("planned failure");
    });
    // Express prints errors it handles itself; answer quietly.
    app.use((_error: unknown, _req: Request, res: express.Response, _next: express.NextFunction) => {
      res.status(500).send("failed");
    });
    const server = createServer(app);
    const url = await listen(server);
    cleanups.push(() => closeServer(server));

    assert.equal(
      (await fetch(`${url}/items/12?session=abc`, { headers: { authorization: "Bearer alice" } })).status,
      200,
    );
    assert.equal((await fetch(`${url}/api/things?page=2`)).status, 200);
    assert.equal((await fetch(`${url}/fail`)).status, 500);
    assert.equal((await fetch(`${url}/nowhere`)).status, 404);
    await waitFor(() => drained.entries().length === 4, "four drained entries");
    await waitFor(() => seen.positions.length === 4, "four acknowledged appends");
    const byPath = checkDrained(drained.entries(), seen.positions, stream);
    assert.deepEqual([...byPath.keys()].sort(), [
      "GET /api/things",
      "GET /fail",
      "GET /items/12",
      "GET /nowhere",
    ]);
    assert.equal(byPath.get("GET /items/12")!.user, "7");
    assert.equal(byPath.get("GET /items/12")!.status, 200);
    assert.equal(byPath.get("GET /api/things")!.user, undefined);
    assert.equal(byPath.get("GET /fail")!.status, 500);
    assert.equal(byPath.get("GET /nowhere")!.status, 404);
    await waitFor(async () => (await counter("express.requests")) === 4, "express.requests to reach 4");
    assert.equal(await counter("express.status.2xx"), 2);
    assert.equal(await counter("express.status.4xx"), 1);
    assert.equal(await counter("express.status.5xx"), 1);
    assert.equal(await timerCount("express.latency"), 4);
    await log.close();
  });

  it("fastify: the plugin's hooks log every route of the app, and app.close() waits for the appends", async () => {
    const stream = streamName();
    const drained = await drain(stream);
    const seen = recorder();
    const app = Fastify();
    await app.register(fastifyRequestLog, {
      client,
      namespace,
      stream,
      userId: (request: FastifyRequest) => request.headers["x-user"] as string | undefined,
      count: { prefix: "fastify" },
      onAppended: seen.onAppended,
    });
    app.get("/hello", async () => ({ hello: "world" }));
    await app.register(
      async (child) => {
        child.get("/report", async (_request, reply) => reply.code(201).send({ ok: true }));
      },
      { prefix: "/v1" },
    );
    app.get("/broken", async () => {
      throw new Error("planned failure");
    });
    app.log.level = "silent";
    await app.listen({ port: 0, host: "127.0.0.1" });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    let closed = false;
    cleanups.push(async () => {
      if (!closed) await app.close();
    });

    assert.equal(
      (await fetch(`${url}/hello?password=hunter2`, { headers: { "x-user": "bob" } })).status,
      200,
    );
    assert.equal((await fetch(`${url}/v1/report`)).status, 201);
    assert.equal((await fetch(`${url}/broken`)).status, 500);
    assert.equal((await fetch(`${url}/nothing`)).status, 404);
    await app.close();
    closed = true;
    assert.equal(seen.positions.length, 4, "close waited for every append");
    await waitFor(() => drained.entries().length === 4, "four drained entries");
    const byPath = checkDrained(drained.entries(), seen.positions, stream);
    assert.deepEqual([...byPath.keys()].sort(), [
      "GET /broken",
      "GET /hello",
      "GET /nothing",
      "GET /v1/report",
    ]);
    assert.equal(byPath.get("GET /hello")!.user, "bob");
    assert.equal(byPath.get("GET /v1/report")!.status, 201);
    assert.equal(byPath.get("GET /broken")!.status, 500);
    assert.equal(byPath.get("GET /nothing")!.status, 404);
    assert.ok(!JSON.stringify(drained.entries()).includes("hunter2"));
    await waitFor(async () => (await counter("fastify.requests")) === 4, "fastify.requests to reach 4");
    assert.equal(await counter("fastify.status.2xx"), 2);
    assert.equal(await counter("fastify.status.4xx"), 1);
    assert.equal(await counter("fastify.status.5xx"), 1);
    assert.equal(await timerCount("fastify.latency"), 4);
  });

  for (const down of ["a closed port", "a server that never answers"] as const) {
    it(`a memcached that is down (${down}) neither breaks nor delays responses; failures go to onError`, async () => {
      let port: number;
      const sockets = new Set<Socket>();
      if (down === "a closed port") {
        const probe = createTcpServer();
        await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
        port = (probe.address() as AddressInfo).port;
        await new Promise<void>((resolve) => probe.close(() => resolve()));
      } else {
        const silent = createTcpServer((socket) => {
          sockets.add(socket);
          socket.on("error", () => undefined);
        });
        await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
        port = (silent.address() as AddressInfo).port;
        cleanups.push(
          () =>
            new Promise<void>((resolve) => {
              for (const socket of sockets) socket.destroy();
              silent.close(() => resolve());
            }),
        );
      }
      const errors: Error[] = [];
      const handler = withRequestLog((_req, res) => res.end("still fine"), {
        servers: `127.0.0.1:${port}`,
        clientOptions: { timeout: 300, connectTimeout: 300 },
        namespace,
        onError: (error) => errors.push(error),
      });
      const server = createServer(handler);
      const url = await listen(server);
      cleanups.push(() => closeServer(server));
      const slowest = { ms: 0 };
      for (let round = 0; round < 5; round++) {
        const times = await Promise.all(
          Array.from({ length: 20 }, async () => {
            const began = performance.now();
            const response = await fetch(`${url}/page?round=${round}`);
            assert.equal(response.status, 200);
            assert.equal(await response.text(), "still fine");
            return performance.now() - began;
          }),
        );
        slowest.ms = Math.max(slowest.ms, ...times);
      }
      assert.ok(slowest.ms < FAST_MS, `the slowest response took ${slowest.ms.toFixed(1)} ms`);
      const began = performance.now();
      await handler.close();
      assert.ok(performance.now() - began < WAIT_MS, "close() ends once the appends have failed");
      assert.ok(errors.length > 0, "failures are reported to onError");
      assert.equal(handler.requestLog.metrics.appended, 0);
      assert.ok(handler.requestLog.metrics.failed > 0);
      assert.equal(handler.requestLog.pending, 0);
    });
  }

  it("an onError, userId or clientAddress that throws never reaches the response", async () => {
    const handler = withRequestLog((_req, res) => res.end("ok"), {
      client,
      namespace,
      stream: streamName(),
      count: { prefix: "throwing" }, // "http.*" stays untouched for the count: false test
      userId: () => {
        throw new Error("user lookup failed");
      },
      clientAddress: () => {
        throw new Error("address lookup failed");
      },
      onError: () => {
        throw new Error("onError failed");
      },
    });
    const server = createServer(handler);
    const url = await listen(server);
    cleanups.push(() => closeServer(server));
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${url}/`)).status, 200);
    await handler.close();
    assert.equal(handler.requestLog.metrics.appended, 3);
  });

  it("the default onError prints one line per period, then says how many it left out", () => {
    const lines: string[] = [];
    const warn = rateLimitedWarning(60_000, (line) => void lines.push(line));
    for (let i = 0; i < 5; i++) warn(new Error(`memcached down ${i}`));
    assert.deepEqual(lines, ["memipc request log: memcached down 0\n"]);
    const quick = rateLimitedWarning(0, (line) => void lines.push(line));
    quick(new Error("a"));
    quick(new Error("b"));
    assert.equal(lines.length, 3);
  });

  it("paths and status classes: the query string goes unless kept, long paths are cut", () => {
    assert.equal(logPath("/a/b?token=x", false), "/a/b");
    assert.equal(logPath("/a/b?token=x", true), "/a/b?token=x");
    assert.equal(logPath(`/${"x".repeat(5000)}`, false).length, 2049);
    assert.deepEqual([200, 302, 404, 503, 99, 600].map(statusClass), [
      "2xx",
      "3xx",
      "4xx",
      "5xx",
      "other",
      "other",
    ]);
    assert.throws(() => new RequestLog({ client, servers: "127.0.0.1:1" }), /a client or servers, not both/);
    assert.throws(() => new RequestLog({ client, stream: "no spaces" }), /stream "no spaces"/);
    assert.throws(
      () => new RequestLog({ client, count: { prefix: "bad prefix" } }),
      /must be 1 to 100 letters/,
    );
  });
});
