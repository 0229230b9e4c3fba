// The HTTP server and dashboard under hostile requests, over raw sockets: bodies, targets and headers over
// their limits are refused (413 without reading the body, 414, 431) as JSON; a client that sends its headers
// slowly is answered 408 and cut off; bad ids and names in every route are 400 (never 500); and no path,
// encoding or symbolic link gets a file outside the reports folder or the assets served.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { dashboardRoutes } from "../../src/http/dashboard/index.js";
import {
  DEFAULT_MAX_BODY,
  DEFAULT_MAX_HEADER_SIZE,
  DEFAULT_MAX_URL_LENGTH,
  startHttpServer,
  type HttpServer,
} from "../../src/http/server.js";
import { Progress } from "../../src/progress/index.js";
import { startServer, type MemcachedServer } from "../../src/server/index.js";
import { dashboardSource } from "../helpers/dashboard-source.js";
import { waitFor } from "../helpers/wait.js";

const HEADERS_TIMEOUT_MS = 500; // the test server's: a slow client is cut off quickly
const CLOSED_WITHIN_MS = 10_000; // the server has closed a refused connection by then
const SLOW_BYTE_EVERY_MS = 100; // a slow client sends a byte of its headers this often
const CHUNK = 8192; // bytes per chunk of a body sent without a declared length
/** Bytes a client sends at most: past what socket buffers take in, so the server must have read or cut. */
const MAX_SENT = 16 * 1024 * 1024;

/** A raw connection: what it received, and whether the server closed it. */
class Raw {
  readonly socket: Socket;
  received = "";
  closed = false;

  constructor(port: number) {
    this.socket = connect(port, "127.0.0.1");
    this.socket.setEncoding("latin1");
    this.socket.on("data", (chunk: string) => (this.received += chunk));
    this.socket.on("error", () => undefined); // a reset after a refusal is expected
    this.socket.on("close", () => (this.closed = true));
  }

  static async open(port: number): Promise<Raw> {
    const raw = new Raw(port);
    await new Promise<void>((resolve) => raw.socket.once("connect", resolve));
    return raw;
  }

  write(text: string): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed || this.socket.destroyed) return resolve();
      this.socket.write(text, () => resolve());
    });
  }

  /** The status and JSON error of the first answer, once it is all in. */
  async answer(): Promise<{ status: number; error: string; head: string }> {
    await waitFor(() => {
      const cut = this.received.indexOf("\r\n\r\n");
      if (cut < 0) return this.closed;
      const length = /content-length: (\d+)/i.exec(this.received.slice(0, cut));
      return this.closed || (length !== null && this.received.length >= cut + 4 + Number(length[1]));
    }, "an answer");
    const cut = this.received.indexOf("\r\n\r\n");
    assert.ok(cut > 0, `an answer, got ${JSON.stringify(this.received.slice(0, 200))}`);
    const head = this.received.slice(0, cut);
    const body = this.received.slice(cut + 4);
    return {
      status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]),
      head,
      error: (JSON.parse(body) as { error: string }).error,
    };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

describe("http hardening", { timeout: 60_000 }, () => {
  let dir: string;
  let reportsDir: string;
  let secret: string;
  let memcached: MemcachedServer;
  let client: Client;
  let http: HttpServer;
  let base: string;
  let namespace: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "memipc-http-hardening-"));
    reportsDir = join(dir, "data", "reports");
    mkdirSync(reportsDir, { recursive: true });
    secret = `secret-${randomBytes(8).toString("hex")}`;
    // Files a request must never reach: beside the reports folder, above it, and an absolute path.
    writeFileSync(join(dir, "data", "secret.json"), JSON.stringify({ secret }));
    writeFileSync(join(dir, "secret.txt"), secret);
    writeFileSync(join(reportsDir, "2026-01-10.json"), JSON.stringify({ day: "2026-01-10" }));
    symlinkSync(join(dir, "data", "secret.json"), join(reportsDir, "2026-01-07.json"));
    symlinkSync("../../secret.txt", join(reportsDir, "2026-01-06.text"));
    symlinkSync(dir, join(reportsDir, "2026-01-05.md"));
    memcached = await startServer({ port: 0 });
    client = new Client({ servers: `127.0.0.1:${memcached.port}` });
    namespace = "hh" + randomBytes(4).toString("hex");
    const progress = new Progress(client, { namespace });
    await progress.start("a job", { id: "job-1", total: 10 });
    http = await startHttpServer({
      client,
      namespace,
      port: 0,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: 2 * HEADERS_TIMEOUT_MS,
      routes: dashboardRoutes(
        dashboardSource(client, namespace, join(dir, "data"), { streams: ["log"], progress, reportsDir }),
      ),
    });
    base = http.url;
  });

  after(async () => {
    await http?.close();
    client?.close();
    await memcached?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("http limits: a body over the limit is 413 before it is read, and its connection is closed", async () => {
    const raw = await Raw.open(http.port);
    await raw.write(
      `POST /api/jobs/no-such-job/cancel HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n` +
        "x".repeat(1000),
    );
    const { status, error, head } = await raw.answer();
    assert.equal(status, 413, head);
    assert.match(error, new RegExp(`over ${DEFAULT_MAX_BODY} bytes`));
    assert.match(head, /connection: close/i);
    await waitFor(() => raw.closed, "the connection to close", CLOSED_WITHIN_MS);

    // Without a declared length, the body is cut off once past the limit, even under an answer that goes on
    // (an event stream) and with the default timeouts, which would let it flow for half a minute.
    const plain = await startHttpServer({ client, namespace, port: 0 });
    const chunked = await Raw.open(plain.port);
    try {
      await chunked.write(
        `GET /api/jobs/job-1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`,
      );
      let sent = 0;
      while (!chunked.closed && sent < MAX_SENT) {
        await chunked.write(`${CHUNK.toString(16)}\r\n${"y".repeat(CHUNK)}\r\n`);
        sent += CHUNK;
      }
      await waitFor(() => chunked.closed, `the connection to close (${sent} bytes sent)`, CLOSED_WITHIN_MS);
    } finally {
      chunked.destroy();
      await plain.close();
    }
  });

  it("http limits: a target over the limit is 414, headers over the limit 431, both as JSON", async () => {
    const long = await Raw.open(http.port);
    await long.write(`GET /api/jobs/${"a".repeat(DEFAULT_MAX_URL_LENGTH)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const tooLong = await long.answer();
    assert.equal(tooLong.status, 414, tooLong.head);
    assert.match(tooLong.error, /longer than 8192 characters/);
    long.destroy();

    const big = await Raw.open(http.port);
    await big.write(
      `GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-Filler: ${"b".repeat(DEFAULT_MAX_HEADER_SIZE)}\r\n\r\n`,
    );
    const tooBig = await big.answer();
    assert.equal(tooBig.status, 431, tooBig.head);
    assert.match(tooBig.error, /over 16384 bytes/);
    await waitFor(() => big.closed, "the connection to close", CLOSED_WITHIN_MS);

    const broken = await Raw.open(http.port);
    await broken.write(`GET /api/jobs HTTP/1.1\r\nHost x\r\n\r\n`);
    const bad = await broken.answer();
    assert.equal(bad.status, 400, bad.head);
    assert.match(bad.error, /not valid HTTP/);
  });

  it("http limits: a client sending its headers a byte at a time is answered 408 and cut off (slow loris)", async () => {
    const slow = await Raw.open(http.port);
    await slow.write("GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    const deadline = Date.now() + CLOSED_WITHIN_MS;
    while (!slow.closed && Date.now() < deadline) {
      await slow.write("z");
      await new Promise((resolve) => setTimeout(resolve, SLOW_BYTE_EVERY_MS));
    }
    assert.ok(slow.closed, `the server still held the connection after ${CLOSED_WITHIN_MS} ms`);
    assert.match(slow.received, /^HTTP\/1\.1 408 /);
  });

  it("http bad ids: job ids, stream names and report names with junk are 400 as JSON, never 500", async () => {
    const cases: Array<[string, string, number]> = [
      ["GET", "/api/jobs/%00", 400],
      ["GET", "/api/jobs/a%0D%0ASet-Cookie:%20x=1", 400],
      ["GET", "/api/jobs/%ff%fe", 400],
      ["GET", "/api/jobs/%E0%A4%A", 400],
      ["GET", "/api/jobs/%C0%AE%C0%AE", 400],
      ["GET", `/api/jobs/${"j".repeat(101)}`, 400],
      ["GET", "/api/jobs/..%2f..%2fetc%2fpasswd", 400],
      ["GET", "/api/jobs/%3Cscript%3E/events", 400],
      ["POST", "/api/jobs/%2e%2e/cancel", 404], // URL rules make it /api/cancel: not a route
      ["POST", "/api/jobs/%252e%252e/cancel", 400],
      ["GET", "/jobs/%3Cimg%20src%3Dx%3E", 400],
      ["GET", "/jobs/%ff", 400],
      ["GET", "/api/log/entries?stream=%00", 400],
      ["GET", "/api/log/entries?stream=..%2f..%2fsecret", 400],
      ["GET", "/api/log/entries?stream=%ff%fe", 400],
      ["GET", `/api/log/entries?stream=${"s".repeat(300)}`, 400],
      ["GET", "/api/log/events?stream=%3Cscript%3E", 400],
      ["GET", "/api/log/entries?stream=nope", 404],
      ["GET", "/reports/%ff.json", 400],
      ["GET", "/reports/2026-01-10.json%00", 400],
      ["GET", `/reports/${"r".repeat(4000)}`, 400],
    ];
    for (const [method, path, expected] of cases) {
      const raw = await Raw.open(http.port);
      await raw.write(`${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const { status, error, head } = await raw.answer();
      assert.equal(status, expected, `${method} ${path}: ${head}`);
      assert.ok(error.length > 0, path);
      assert.doesNotMatch(head, /set-cookie/i, path);
      raw.destroy();
    }
    // The job that is there is still served: nothing above broke the server.
    assert.equal((await fetch(`${base}/api/jobs/job-1`)).status, 200);
  });

  it("http traversal: no path, encoding or link reaches a file outside the reports folder or the assets", async () => {
    const paths = [
      "/reports/..%2fsecret.json",
      "/reports/..%2f..%2fsecret.txt",
      "/reports/%2e%2e%2fsecret.json",
      "/reports/%252e%252e%252fsecret.json",
      "/reports/..%5csecret.json",
      "/reports/..\\secret.json",
      "/reports/%2fetc%2fpasswd",
      `/reports/${encodeURIComponent(join(dir, "secret.txt"))}`,
      "/reports/secret.json%00.json",
      "/reports/2026-01-07.json", // a link to ../secret.json
      "/reports/2026-01-06.text", // a relative link two folders up
      "/reports/2026-01-05.md", // a link to a folder
      "/reports/../secret.txt",
      "/reports/%2E%2E/%2E%2E/secret.txt",
      "/assets/..%2f..%2fpackage.json",
      "/assets/%2e%2e%2fdashboard.js",
      "/assets/..%5c..%5csecret.txt",
      "/assets/dashboard.js%00",
      `/assets/${encodeURIComponent(join(dir, "secret.txt"))}`,
      "/secret.txt",
      "/data/secret.json",
    ];
    for (const path of paths) {
      const raw = await Raw.open(http.port);
      await raw.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const { status, head } = await raw.answer();
      assert.ok(status === 400 || status === 404, `${path}: ${head}`);
      assert.ok(!raw.received.includes(secret), `${path} served the secret`);
      raw.destroy();
    }
    const listed = (await (await fetch(`${base}/api/reports`)).json()) as { reports: Array<{ day: string }> };
    assert.deepEqual(
      listed.reports.map((r) => r.day),
      ["2026-01-10"],
      "links are not listed",
    );
    const served = await fetch(`${base}/reports/2026-01-10.json`);
    assert.equal(served.status, 200);
  });
});
