// A job whose process dies (SIGKILL: no last write) shows as stalled through the API: the event stream says so
// within stallAfter plus one poll interval of the kill, and not before its heartbeats could have stopped.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { Client } from "../../src/client/index.js";
import { startHttpServer } from "../../src/http/index.js";
import type { JobView } from "../../src/progress/index.js";
import { startServer } from "../../src/server/index.js";
import { WorkerProcess } from "../log/workers/control.js";
import { fetchJson, openEventStream } from "./http-client.js";
import { JOB_ENV, type JobLine, type JobSettings } from "./workers/job.js";

const STALL_AFTER = 1500; // ms
const HEARTBEAT = 300; // ms
const POLL = 250; // ms
const SLACK = 400; // ms for timers and scheduling on a busy machine
const JOB_WORKER = fileURLToPath(new URL("./workers/job.js", import.meta.url));

test(
  "http: a job process killed with SIGKILL shows as stalled within stallAfter + a poll interval",
  { timeout: 30_000 },
  async (t) => {
    const memcached = await startServer({ port: 0 });
    t.after(() => memcached.close());
    const client = new Client({ servers: `127.0.0.1:${memcached.port}` });
    t.after(() => client.close());
    const namespace = "s" + randomBytes(4).toString("hex");
    const http = await startHttpServer({ client, namespace, port: 0, pollInterval: POLL });
    t.after(() => http.close());

    const settings: JobSettings = {
      port: memcached.port,
      namespace,
      id: "doomed",
      label: "a job that dies",
      steps: 1000,
      stepMs: 100,
      finalMessage: "never reached",
      heartbeat: HEARTBEAT,
      stallAfter: STALL_AFTER,
    };
    const worker = new WorkerProcess<JobLine>("job", JOB_WORKER, { [JOB_ENV]: JSON.stringify(settings) });
    t.after(() => worker.stop());
    await worker.waitFor((line) => line.step >= 5, 10_000, "five steps");

    const stream = await openEventStream(`${http.url}/api/jobs/doomed/events`);
    t.after(() => stream.close());
    await stream.waitFor(
      (s) => s.jobs<JobView>().some((j) => j.state === "running"),
      3000,
      "a running event",
    );
    worker.kill("SIGKILL");
    const killedAt = Date.now();
    await worker.exited;

    await stream.waitFor(
      (s) => s.jobs<JobView>().some((j) => j.state === "stalled"),
      STALL_AFTER + POLL + 3000,
      "a stalled event",
    );
    const took = Date.now() - killedAt;
    t.diagnostic(`stalled shown ${took} ms after the kill (stallAfter ${STALL_AFTER}, poll ${POLL})`);
    assert.ok(took <= STALL_AFTER + POLL + SLACK, `stalled after ${took} ms`);
    assert.ok(took >= STALL_AFTER - HEARTBEAT - SLACK, `not stalled too early: ${took} ms`);
    assert.ok(!stream.isEnded, "stalled is not final: the stream stays open, the job may come back");

    const { status, json } = await fetchJson<JobView>(`${http.url}/api/jobs/doomed`);
    assert.equal(status, 200);
    assert.equal(json.state, "stalled");
    assert.ok(json.done > 0, "the steps written before the kill are kept");
    assert.equal(json.done, stream.jobs<JobView>().at(-1)!.done);
  },
);
