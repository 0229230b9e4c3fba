// Connection limits of `memipc server` as its own process, checked against real memcached where memcached defines
// the behaviour: the polite refusal past max connections, the silent close of an idle connection, and 10,000
// connections opened and closed (some reset, some mid-command) leaving no connection, descriptor or memory behind.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createConnection, type Socket } from "node:net";
import { MiB, Pipe, startServerProcess } from "../helpers/server-process.js";
import { requireMemcached, startRealMemcached } from "../helpers/real-memcached.js";
import { waitFor } from "../helpers/wait.js";

const TEST_TIMEOUT_MS = 60_000;
const REFUSAL = "ERROR Too many open connections\r\n";

interface Opened {
  socket: Socket;
  received: () => string;
  closed: Promise<void>;
}

/** Opens a connection that collects what it receives and notes when it closes. */
function open(t: TestContext, port: number): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    t.after(() => socket.destroy());
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    socket.on("error", () => undefined);
    const closed = new Promise<void>((done) => socket.once("close", () => done()));
    socket.once("connect", () => resolve({ socket, received: () => text, closed }));
    socket.once("error", reject);
  });
}

const REFUSAL_WAIT_MS = 300; // a connection past the limit is closed by then; one within it stays open

/**
 * Opens connections until one is refused (at most `most`), then checks the others still answer and that a slot
 * frees when one closes. Returns the refused connection's bytes, how many were kept and `stats` after.
 */
async function refusal(t: TestContext, port: number, most: number) {
  const kept: Opened[] = [];
  let extra: Opened | undefined;
  while (extra === undefined && kept.length < most) {
    const c = await open(t, port);
    const refused = await Promise.race([
      c.closed.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), REFUSAL_WAIT_MS)),
    ]);
    if (refused) extra = c;
    else kept.push(c);
  }
  assert.ok(extra !== undefined, `no connection was refused among ${most}`);
  const control = kept[0]!;
  control.socket.write("version\r\n");
  await waitFor(() => control.received().endsWith("\r\n"), "the first connection still answers");
  kept.at(-1)!.socket.destroy();
  await kept.at(-1)!.closed;
  // The slot frees once the server has seen the close: a new connection is then served.
  let stats: Map<string, string> | undefined;
  let refusedRetries = 0;
  await waitFor(async () => {
    const next = await Pipe.open(port);
    try {
      stats = await next.stats();
      return true;
    } catch {
      refusedRetries++;
      return false; // refused: the close has not been seen yet
    } finally {
      next.close();
    }
  }, "a connection served after one of the others closed");
  return {
    refused: extra.received(),
    kept: kept.length,
    answered: control.received(),
    // The retries refused while the close was not seen yet are counted too.
    rejected: String(Number(stats!.get("rejected_connections")) - refusedRetries),
  };
}

test(
  "max connections: the connection past the limit gets memcached's refusal and is closed; a slot frees",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const server = await startServerProcess(t, ["--max-connections", "5"]);
    const ours = await refusal(t, server.port, 10);
    assert.equal(ours.kept, 5, "--max-connections 5 keeps five");
    assert.equal(ours.refused, REFUSAL);
    assert.match(ours.answered, /^VERSION \S+\r\n$/);
    assert.equal(ours.rejected, "1");

    if (!requireMemcached(t)) return;
    // memcached keeps some descriptors for itself: with -c 20 it takes fewer than 20 clients.
    const real = await startRealMemcached({ extraArgs: ["-c", "20", "-t", "1"] });
    t.after(() => real.stop());
    const theirs = await refusal(t, real.port, 20);
    assert.equal(theirs.refused, ours.refused, "the same bytes as memcached's refusal");
    assert.equal(theirs.rejected, "1");
  },
);

test(
  "idle timeout: a silent connection is closed without a byte, as memcached closes it; a talking one stays",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const check = async (port: number, who: string) => {
      const silent = await open(t, port);
      const talking = await open(t, port);
      let answers = 0;
      talking.socket.on("data", () => answers++);
      const closedAt = silent.closed.then(() => answers);
      // Talk every 300 ms until the silent one is closed (bounded by the test's timeout).
      let closed = false;
      void silent.closed.then(() => (closed = true));
      while (!closed) {
        talking.socket.write("version\r\n");
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      const answersWhenClosed = await closedAt;
      assert.equal(silent.received(), "", `${who}: nothing is sent before the close`);
      assert.ok(answersWhenClosed > 0, `${who}: the talking connection was answered meanwhile`);
      assert.ok(!talking.socket.destroyed, `${who}: the talking connection is still open`);
      talking.socket.destroy();
    };
    const server = await startServerProcess(t, ["--idle-timeout", "1"]);
    await check(server.port, "memipc");
    if (!requireMemcached(t)) return;
    const real = await startRealMemcached({ extraArgs: ["-o", "idle_timeout=1"] });
    t.after(() => real.stop());
    await check(real.port, "memcached");
  },
);

const LOOP_CONNECTIONS = 10_000;
const LOOP_PARALLEL = 100; // connections open at once

test(
  "10,000 connections opened and closed (some reset, some mid-command) leak no connection, fd or memory",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const server = await startServerProcess(t, []);
    const control = await Pipe.open(server.port);
    t.after(() => control.close());
    const statsBefore = await control.stats();
    const fdsBefore = server.openFds();
    const rssBefore = server.rss();
    const started = Date.now();
    let served = 0;
    let next = 0;
    const one = async (i: number) => {
      const c = await open(t, server.port);
      switch (i % 4) {
        case 0: // a whole command, then a polite close
          c.socket.write("version\r\n");
          await waitFor(() => c.received().endsWith("\r\n"), "a version reply");
          served++;
          c.socket.end();
          break;
        case 1: // a reset with nothing sent
          c.socket.resetAndDestroy();
          break;
        case 2: // half a set's data block, then a reset
          c.socket.write("set half 0 0 100\r\n0123456789");
          c.socket.resetAndDestroy();
          break;
        case 3: // half a command line, then a close
          c.socket.end("get hal");
          break;
      }
      await c.closed;
    };
    await Promise.all(
      Array.from({ length: LOOP_PARALLEL }, async () => {
        while (next < LOOP_CONNECTIONS) await one(next++);
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    await waitFor(
      async () => (await control.stats()).get("curr_connections") === statsBefore.get("curr_connections"),
      "curr_connections back to where it was",
    );
    await waitFor(() => server.openFds() === fdsBefore, `open fds back to ${fdsBefore}`);
    const stats = await control.stats();
    const total = Number(stats.get("total_connections")) - Number(statsBefore.get("total_connections"));
    const rssAfter = server.rss();
    t.diagnostic(
      `${LOOP_CONNECTIONS} connections in ${seconds.toFixed(1)} s (${Math.round(LOOP_CONNECTIONS / seconds)}/s); ` +
        `fds ${fdsBefore} -> ${server.openFds()}; rss ${(rssBefore / MiB).toFixed(1)} -> ` +
        `${(rssAfter / MiB).toFixed(1)} MiB (peak ${(server.peakRss() / MiB).toFixed(1)}); total_connections +${total}`,
    );
    assert.equal(served, LOOP_CONNECTIONS / 4);
    assert.equal(total, LOOP_CONNECTIONS, "total_connections counts every connection");
    assert.equal(stats.get("get_hits"), "0", "the half-sent set stored nothing");
    assert.equal(
      await (async () => (await control.write("get half\r\n"), control.until("END\r\n")))(),
      "END\r\n",
    );
    assert.ok(
      rssAfter - rssBefore < 64 * MiB,
      `rss grew ${((rssAfter - rssBefore) / MiB).toFixed(1)} MiB over ${LOOP_CONNECTIONS} connections`,
    );
  },
);

const SLOW_LIMIT_MB = 64; // the server's --memory in the slow-reader test
const SLOW_KEYS = 96;
const SLOW_VALUE = 512 * 1024; // bytes; SLOW_KEYS of them fill three quarters of the limit
const SLOW_CLIENTS = 4;
/**
 * What the slow-reader test allows on top of the idle server and twice the limit: V8 lets 64 MiB of dead
 * Buffer memory (overwritten values) build up before it collects, and each slow connection may hold a slice
 * of its reply and a value being written. Replies built whole, as before slicing, peak 50 MiB or more above it.
 */
const SLOW_ALLOWANCE = 64 * MiB;

/** A value that names its key and generation in its first bytes, so a reply can be checked without a copy. */
function slowValue(key: string, generation: number): Buffer {
  const value = Buffer.alloc(SLOW_VALUE, 0x2e);
  value.write(`${key} g${generation} `, 0, "latin1");
  return value;
}

/** Keys served so far: gat counts its hits as touches. */
function hits(stats: Map<string, string>): number {
  return Number(stats.get("get_hits")) + Number(stats.get("touch_hits"));
}

/** Checks a whole multi-get or mg reply: every key once, in order, with a value some generation stored. */
function checkSlowReply(reply: Buffer, keys: readonly string[], meta: boolean, who: string): void {
  let at = 0;
  for (const key of keys) {
    const eol = reply.indexOf("\r\n", at, "latin1");
    const line = reply.toString("latin1", at, eol);
    const header = meta ? /^VA (\d+)$/.exec(line) : new RegExp(`^VALUE ${key} 0 (\\d+)( \\d+)?$`).exec(line);
    assert.ok(header, `${who}: a value line for ${key}, got ${JSON.stringify(line.slice(0, 80))}`);
    assert.equal(Number(header[1]), SLOW_VALUE, `${who}: ${key}'s length`);
    const value = reply.subarray(eol + 2, eol + 2 + SLOW_VALUE);
    assert.match(value.toString("latin1", 0, key.length + 8), new RegExp(`^${key} g\\d+ `), `${who}: ${key}`);
    assert.equal(reply.toString("latin1", eol + 2 + SLOW_VALUE, eol + 4 + SLOW_VALUE), "\r\n");
    at = eol + 4 + SLOW_VALUE;
  }
  assert.equal(reply.toString("latin1", at), meta ? "MN\r\n" : "END\r\n", `${who}: the reply's end`);
}

test(
  "slow readers: clients that read nothing while their keys are overwritten hold a slice of their reply each",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const server = await startServerProcess(t, ["--memory", `${SLOW_LIMIT_MB}m`]);
    const idle = server.rss();
    const writer = await Pipe.open(server.port);
    const control = await Pipe.open(server.port);
    t.after(() => (writer.close(), control.close()));
    const prefix = `slow${process.pid}`;
    const keys = Array.from({ length: SLOW_KEYS }, (_, k) => `${prefix}-${k}`);
    const writeGeneration = async (generation: number) => {
      for (const key of keys) {
        await writer.write(`set ${key} 0 0 ${SLOW_VALUE} noreply\r\n`);
        await writer.write(slowValue(key, generation));
        await writer.write("\r\n");
      }
      assert.equal(await writer.sync(), "", `generation ${generation} stored`);
    };
    // Each slow client asks for every key, reads nothing, and then the keys are overwritten: without
    // slicing, each would hold a whole generation of values the store has let go.
    const requests = [
      `get ${keys.join(" ")}\r\n`,
      `gets ${keys.join(" ")}\r\n`,
      `gat 0 ${keys.join(" ")}\r\n`,
      keys.map((key) => `mg ${key} v\r\n`).join("") + "mn\r\n",
    ];
    const slow: { socket: Socket; chunks: Buffer[]; meta: boolean }[] = [];
    for (let c = 0; c < SLOW_CLIENTS; c++) {
      await writeGeneration(c);
      const hitsBefore = hits(await control.stats());
      const socket = createConnection({ host: "127.0.0.1", port: server.port });
      t.after(() => socket.destroy());
      socket.on("error", () => undefined);
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      socket.pause();
      const chunks: Buffer[] = [];
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      socket.write(requests[c % requests.length]!);
      slow.push({ socket, chunks, meta: c % requests.length === 3 });
      await waitFor(
        async () => hits(await control.stats()) > hitsBefore,
        `the server started answering slow client ${c}`,
      );
      // Served while the others wait.
      const key = `${prefix}-control-${c}`;
      await control.write(`set ${key} 0 0 2\r\nok\r\nget ${key}\r\n`);
      assert.equal(await control.sync(), `STORED\r\nVALUE ${key} 0 2\r\nok\r\nEND\r\n`);
    }
    await writeGeneration(SLOW_CLIENTS);
    const peak = server.peakRss();
    const bound = idle + 2 * SLOW_LIMIT_MB * MiB + SLOW_ALLOWANCE;
    t.diagnostic(
      `${SLOW_CLIENTS} slow readers of ${SLOW_KEYS} x ${SLOW_VALUE / 1024} KiB: peak rss ${(peak / MiB).toFixed(1)} ` +
        `MiB (idle ${(idle / MiB).toFixed(1)}, bound ${(bound / MiB).toFixed(1)}) for --memory ${SLOW_LIMIT_MB}m`,
    );
    assert.ok(
      peak <= bound,
      `peak rss ${(peak / MiB).toFixed(1)} MiB exceeds ${(bound / MiB).toFixed(1)} MiB`,
    );
    // Once they read, each slow client gets its whole reply, byte-exact.
    for (const [c, client] of slow.entries()) {
      const done = client.meta ? "MN\r\n" : "END\r\n";
      client.socket.resume();
      await waitFor(
        () => client.chunks.length > 0 && client.chunks.at(-1)!.toString("latin1").endsWith(done),
        `slow client ${c}'s whole reply`,
        30_000,
      );
      checkSlowReply(Buffer.concat(client.chunks), keys, client.meta, `slow client ${c}`);
      client.chunks.length = 0;
    }
  },
);
