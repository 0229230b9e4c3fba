// The memory limit seen from outside: `memipc server` runs as its own process, adversarial store patterns (many
// tiny items, a few huge ones, constant overwrite, append growth) run against it over sockets, and its resident
// memory (VmHWM) stays bounded, evictions are counted and the server still answers.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { MiB, Pipe, startServerProcess, type ServerProcess } from "../helpers/server-process.js";

/**
 * The server's --memory in these tests, in MiB; MEMIPC_LIMITS_MEMORY_MB runs them at another limit (the
 * patterns scale with it) to show the overhead stays fixed.
 */
const LIMIT_MB = Number(process.env.MEMIPC_LIMITS_MEMORY_MB ?? 64);
if (!Number.isInteger(LIMIT_MB) || LIMIT_MB < 16) {
  throw new Error(
    `MEMIPC_LIMITS_MEMORY_MB=${process.env.MEMIPC_LIMITS_MEMORY_MB} is not a whole number of MiB, 16 or more`,
  );
}
const TEST_TIMEOUT_MS = 60_000 * Math.max(1, LIMIT_MB / 64);
/**
 * The fixed overhead: what the idle server holds resident (the Node runtime and the code), measured at start,
 * plus this allowance for what does not shrink with a smaller limit: V8's young generation, heap pages and
 * malloc arenas not yet given back to the system, and the least garbage let build up between the paced full
 * collections (8 MiB). Measured peaks: up to 35 MiB above 1.5 x the limit plus the idle server at --memory
 * 64m, below it at 256m.
 */
const ALLOWANCE = 48 * MiB;
/** The bound, in multiples of the limit on top of the fixed overhead. */
const BOUND_FACTOR = 1.5;
const PREFIX = randomBytes(3).toString("hex");

interface Measured {
  server: ServerProcess;
  idle: number;
  bound: number;
}

async function startMeasured(t: TestContext, args: readonly string[] = []): Promise<Measured> {
  const server = await startServerProcess(t, ["--memory", `${LIMIT_MB}m`, ...args]);
  const idle = server.rss();
  return { server, idle, bound: BOUND_FACTOR * LIMIT_MB * MiB + idle + ALLOWANCE };
}

/** Checks the acceptance: peak RSS within the bound, evictions counted, the server still answering. */
async function checkAfter(t: TestContext, name: string, m: Measured, pipe: Pipe): Promise<void> {
  const stats = await pipe.stats();
  const peak = m.server.peakRss();
  const evictions = Number(stats.get("evictions"));
  t.diagnostic(
    `${name}: peak rss ${(peak / MiB).toFixed(1)} MiB (idle ${(m.idle / MiB).toFixed(1)}, now ` +
      `${(m.server.rss() / MiB).toFixed(1)}, bound ${(m.bound / MiB).toFixed(1)}, peak - ${BOUND_FACTOR} x ` +
      `limit ${((peak - BOUND_FACTOR * LIMIT_MB * MiB) / MiB).toFixed(1)}) for --memory ${LIMIT_MB}m; ` +
      `evictions ${evictions}, curr_items ${stats.get("curr_items")}, bytes ${stats.get("bytes")}`,
  );
  assert.ok(evictions > 0, `${name}: evictions are counted (${evictions})`);
  assert.ok(
    peak <= m.bound,
    `${name}: peak rss ${(peak / MiB).toFixed(1)} MiB exceeds ${BOUND_FACTOR} x ${LIMIT_MB} MiB + idle ` +
      `${(m.idle / MiB).toFixed(1)} MiB + ${ALLOWANCE / MiB} MiB`,
  );
  const key = `${PREFIX}-check`;
  assert.equal(
    await ask(pipe, `set ${key} 0 0 2\r\nok\r\nget ${key}\r\n`),
    `STORED\r\nVALUE ${key} 0 2\r\nok\r\nEND\r\n`,
  );
}

async function ask(pipe: Pipe, requests: string): Promise<string> {
  await pipe.write(requests);
  return pipe.sync();
}

/** A deterministic pseudo-random source (xorshift32), so a failing run can be replayed. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

/** Tiny sets sent: about 11 times what the limit holds, so the whole store is evicted many times over. */
const SMALL_ITEMS = 20_000 * LIMIT_MB;
const SMALL_BATCH = 5000;

test(
  "memory limit: many tiny items are charged their per-item overhead and evicted within bounds",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const m = await startMeasured(t);
    const pipe = await Pipe.open(m.server.port);
    t.after(() => pipe.close());
    for (let i = 0; i < SMALL_ITEMS; i += SMALL_BATCH) {
      let batch = "";
      for (let j = i; j < i + SMALL_BATCH; j++) {
        const value = String(j % 1000);
        batch += `set ${PREFIX}${j.toString(36)} 0 0 ${value.length} noreply\r\n${value}\r\n`;
      }
      await pipe.write(batch);
      if (i % (SMALL_BATCH * 20) === 0) await pipe.sync();
    }
    await pipe.sync();
    await checkAfter(t, "tiny items", m, pipe);
    // memcached's own count (about 75 bytes for these items) would keep some 900,000 of them under the limit.
    const items = Number((await pipe.stats()).get("curr_items"));
    assert.ok(items <= (LIMIT_MB * MiB) / 300, `${items} tiny items kept: each is charged its real overhead`);
  },
);

test(
  "memory limit: a few huge items near the item size limit, at -I 1m and 8m",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    for (const itemSize of [1, 8]) {
      // Two and a half times the limit of them, so the store fills and then evicts.
      const count = Math.ceil((2.5 * LIMIT_MB) / itemSize);
      const m = await startMeasured(t, ["--max-item-size", `${itemSize}m`]);
      const pipe = await Pipe.open(m.server.port);
      t.after(() => pipe.close());
      const length = itemSize * MiB - 100;
      const value = randomBytes(length);
      for (let i = 0; i < count; i++) {
        await pipe.write(`set ${PREFIX}-huge-${i} 0 0 ${length} noreply\r\n`);
        await pipe.write(value);
        await pipe.write("\r\n");
        if (i % 8 === 7) assert.equal(await pipe.sync(), "");
      }
      assert.equal(await pipe.sync(), "", "every huge item was accepted");
      await checkAfter(t, `huge items at -I ${itemSize}m`, m, pipe);
      await m.server.stop();
    }
  },
);

const OVERWRITE_KEYS = 250 * LIMIT_MB;
const OVERWRITE_SETS = 470 * LIMIT_MB;
const OVERWRITE_MAX = 32 * 1024;

test(
  "memory limit: constant overwrite of the same keys with values of changing sizes",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const m = await startMeasured(t);
    const pipe = await Pipe.open(m.server.port);
    t.after(() => pipe.close());
    const next = random(0x0e1);
    const source = randomBytes(OVERWRITE_MAX);
    for (let i = 0; i < OVERWRITE_SETS; i++) {
      // Mostly small values with now and then a large one, so small items are scattered among freed space.
      const length = next() < 0.7 ? 1 + Math.floor(next() * 200) : Math.floor(next() * OVERWRITE_MAX);
      const key = `${PREFIX}-ow-${Math.floor(next() * OVERWRITE_KEYS)}`;
      await pipe.write(`set ${key} 0 0 ${length} noreply\r\n`);
      await pipe.write(Buffer.concat([source.subarray(0, length), Buffer.from("\r\n")]));
      if (i % 2000 === 1999) assert.equal(await pipe.sync(), "");
    }
    assert.equal(await pipe.sync(), "");
    await checkAfter(t, "constant overwrite", m, pipe);
  },
);

const GROW_KEYS = Math.ceil(1.6 * LIMIT_MB);
const GROW_CHUNK = 32 * 1024;

test(
  "memory limit: append and prepend growth up to the item size limit",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const m = await startMeasured(t);
    const pipe = await Pipe.open(m.server.port);
    t.after(() => pipe.close());
    const chunk = Buffer.concat([randomBytes(GROW_CHUNK), Buffer.from("\r\n")]);
    let batch = "";
    for (let k = 0; k < GROW_KEYS; k++) batch += `set ${PREFIX}-grow-${k} 0 0 1 noreply\r\nx\r\n`;
    assert.equal(await ask(pipe, batch), "");
    let refused = 0;
    // 33 rounds of 32 KiB reach the 1 MiB item size limit; the last rounds are refused.
    for (let round = 0; round < 34; round++) {
      for (let k = 0; k < GROW_KEYS; k++) {
        const verb = k % 2 === 0 ? "append" : "prepend";
        await pipe.write(`${verb} ${PREFIX}-grow-${k} 0 0 ${GROW_CHUNK}\r\n`);
        await pipe.write(chunk);
      }
      const replies = await pipe.sync();
      refused += replies.split("NOT_STORED\r\n").length - 1;
    }
    t.diagnostic(`${refused} appends refused at the item size limit or after eviction`);
    assert.ok(refused > 0, "growth stopped at the item size limit");
    await checkAfter(t, "append growth", m, pipe);
  },
);
