// Job progress on a pool of three real memcached with one server killed: list returns every job it can
// still read and says which servers it could not reach and which jobs it left out; get of a job stored on
// the dead server fails with a typed error; on a single server list still fails as a whole.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, it } from "node:test";
import { Client } from "../../src/client/index.js";
import { isUnreachable } from "../../src/errors.js";
import { HOUR_MS, INDEX_HOURS, indexKey, jobKey } from "../../src/progress/layout.js";
import { Progress } from "../../src/progress/progress.js";
import { requireMemcached, startRealMemcached, type RealMemcached } from "../helpers/real-memcached.js";

const T0 = Date.UTC(2026, 10, 24, 10, 30, 0);
const JOBS = 24;
const TIMEOUT = 300; // ms

function namespace(): string {
  return "pp" + randomBytes(4).toString("hex");
}

function serverOf(client: Client, key: string): string {
  const s = client.servers[client.serverIndex(key)]!;
  return `${s.host}:${s.port}`;
}

describe("progress on a pool of three real memcached, one killed", () => {
  const started: RealMemcached[] = [];
  const clients: Client[] = [];
  after(async () => {
    for (const client of clients) client.close();
    await Promise.all(started.map((s) => s.stop()));
  });

  it("progress: list returns the jobs the live servers hold and names the dead one; get of a job on it rejects", async (t) => {
    if (!requireMemcached(t)) return;
    const servers = await Promise.all([0, 1, 2].map(() => startRealMemcached()));
    started.push(...servers);
    const client = new Client({
      servers: servers.map((s) => `127.0.0.1:${s.port}`).join(","),
      timeout: TIMEOUT,
      connectTimeout: TIMEOUT,
    });
    clients.push(client);
    const ns = namespace();
    let now = T0;
    const progress = new Progress(client, { namespace: ns, clock: () => now, throttle: 0 });
    // Jobs started over the last hours, so their hourly indexes spread over the servers as their records do.
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      now = T0 - (i % 8) * HOUR_MS;
      const job = await progress.start(`job ${i}`, { id: `${ns}-job-${i}`, total: 10 });
      job.update({ done: i % 10 });
      await job.done();
      ids.push(job.id);
    }
    now = T0 + 60_000;
    const all = await progress.listJobs();
    assert.equal(all.unreachable, undefined);
    assert.deepEqual(all.jobs.map((j) => j.id).sort(), [...ids].sort());

    const dead = servers[0]!;
    const deadName = `127.0.0.1:${dead.port}`;
    await dead.kill("SIGKILL");
    const hourOf = (i: number): number => T0 - (i % 8) * HOUR_MS;
    const indexLost = (i: number): boolean => serverOf(client, indexKey(ns, hourOf(i))) === deadName;
    const recordLost = (id: string): boolean => serverOf(client, jobKey(ns, id)) === deadName;
    const readable = ids.filter((id, i) => !indexLost(i) && !recordLost(id));
    const listedUnread = ids.filter((id, i) => !indexLost(i) && recordLost(id));
    assert.ok(readable.length > 0 && readable.length < JOBS, `${readable.length} jobs readable`);

    const list = await progress.listJobs();
    assert.deepEqual(list.jobs.map((j) => j.id).sort(), [...readable].sort());
    assert.ok(list.unreachable !== undefined, "list says what it could not read");
    assert.deepEqual(list.unreachable.servers, [deadName]);
    assert.ok(isUnreachable(list.unreachable.error), list.unreachable.error.message);
    assert.deepEqual([...list.unreachable.jobs].sort(), [...listedUnread].sort());
    const hoursOnDead = Array.from({ length: INDEX_HOURS }, (_, h) => indexKey(ns, now - h * HOUR_MS)).filter(
      (key) => serverOf(client, key) === deadName,
    ).length;
    assert.equal(list.unreachable.hours, hoursOnDead);
    // list() keeps its shape: the same jobs, newest first.
    const plain = await progress.list();
    assert.deepEqual(
      plain.map((j) => j.id),
      list.jobs.map((j) => j.id),
    );
    for (let i = 1; i < plain.length; i++) assert.ok(plain[i - 1]!.startedAt >= plain[i]!.startedAt);

    // Asked for by id: a job on a live server is there; one on the dead server fails, typed.
    const onLive = ids.find((id) => !recordLost(id))!;
    assert.equal((await progress.get(onLive))?.id, onLive);
    const onDead = ids.find((id) => recordLost(id));
    assert.ok(onDead !== undefined, "some job is stored on the dead server");
    await assert.rejects(progress.get(onDead), (error) => isUnreachable(error));
  });

  it("progress: on a single server that does not answer, list fails with a typed error", async (t) => {
    if (!requireMemcached(t)) return;
    const server = await startRealMemcached();
    started.push(server);
    const client = new Client({
      servers: `127.0.0.1:${server.port}`,
      timeout: TIMEOUT,
      connectTimeout: TIMEOUT,
    });
    clients.push(client);
    const progress = new Progress(client, { namespace: namespace() });
    await (await progress.start("one")).done();
    await server.kill("SIGKILL");
    await assert.rejects(progress.list(), (error) => isUnreachable(error));
    await assert.rejects(progress.listJobs(), (error) => isUnreachable(error));
  });
});
