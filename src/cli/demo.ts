// `memipc demo`: a small web farm against a running `memipc serve`. Web servers (child processes) log and
// count every request with the request log, a round-robin proxy stands in front of them, a load generator
// visits a mix of pages, and a report job started through one server is watched through the others.
import { fork, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Client } from "../client/index.js";
import { ConfigError, ConnectionClosedError } from "../errors.js";
import { DEFAULT_STREAM, streamAddress } from "../log/layout.js";
import { Progress } from "../progress/index.js";
import {
  COMMON_ROWS,
  connectionFrom,
  optionTable,
  parseFlags,
  sleep,
  stopSignal,
  wholeNumber,
} from "./common.js";
import { startLoad, type Load } from "./demo-load.js";
import { startProxy, type DemoProxy } from "./demo-proxy.js";
import type { DemoWebConfig, DemoWebMessage } from "./demo-web.js";

const DEMO_WEB = fileURLToPath(new URL("./demo-web.js", import.meta.url));
export const DEFAULT_DEMO_RATE = 50; // requests per second
export const DEFAULT_DEMO_PORT = 8081; // the proxy's port
export const DEFAULT_DEMO_WEB = 3; // web servers
export const DEFAULT_DEMO_STEPS = 300; // steps of a report job
export const DEFAULT_DEMO_STEP_MS = 300; // ms per step: a report takes about 90 s
export const DEFAULT_DASHBOARD = "http://127.0.0.1:8080";
const READY_TIMEOUT = 15_000; // ms a web server may take to start
const STOP_TIMEOUT = 12_000; // ms a web server may take to stop before it is killed
const STATUS_EVERY = 10_000; // ms between status lines
const REPORT_PAUSE = 5_000; // ms between one report job's end and the next one's start
const REPORT_ID = "demo-report";

export const DEMO_HELP = `Usage: memipc demo [options]

Runs a small web farm against a running "memipc serve" until SIGINT or SIGTERM (or --duration): web servers
(child processes) that log every request to the site log and count it, a round-robin proxy in front of them,
visitors requesting a mix of pages (some slow, some missing, some failing), and a report job started through
one web server whose page, opened through the proxy, is served by all of them. Watch it all on the dashboard.

${optionTable([
  ...COMMON_ROWS,
  ["-s, --stream S", "the log stream the web servers append to", DEFAULT_STREAM],
  ["--http URL", "the dashboard's address, printed for you to open", DEFAULT_DASHBOARD],
  ["--rate N", "requests per second", String(DEFAULT_DEMO_RATE)],
  ["--duration S", "stop after S seconds (0: run until stopped)", "0"],
  ["--port P", "the proxy's port on 127.0.0.1 (0: any free port)", String(DEFAULT_DEMO_PORT)],
  ["--web N", "web servers behind the proxy", String(DEFAULT_DEMO_WEB)],
  ["--steps N", "steps of each report job", String(DEFAULT_DEMO_STEPS)],
  ["--step-ms MS", "ms per report step", String(DEFAULT_DEMO_STEP_MS)],
  ["--acked FILE", "write every acknowledged log append (stream, epoch, seq) to FILE, JSON Lines"],
])}`;

export async function runDemo(args: string[]): Promise<void> {
  const { values } = parseFlags("demo", args, {
    stream: { type: "string", short: "s" },
    http: { type: "string" },
    rate: { type: "string" },
    duration: { type: "string" },
    port: { type: "string" },
    web: { type: "string" },
    steps: { type: "string" },
    "step-ms": { type: "string" },
    acked: { type: "string" },
  });
  const connection = connectionFrom(values, process.env);
  const stream = values.stream ?? DEFAULT_STREAM;
  try {
    streamAddress({ namespace: connection.namespace, stream });
  } catch (error) {
    throw new ConfigError(`--${(error as Error).message}`, { cause: error });
  }
  const dashboard = values.http ?? DEFAULT_DASHBOARD;
  if (!URL.canParse(dashboard))
    throw new ConfigError(`--http "${dashboard}" is not a URL, e.g. ${DEFAULT_DASHBOARD}`);
  const rate = wholeNumber(values.rate ?? String(DEFAULT_DEMO_RATE), "--rate", 1, 10_000);
  const duration = wholeNumber(values.duration ?? "0", "--duration", 0, 31 * 86_400);
  const port = wholeNumber(values.port ?? String(DEFAULT_DEMO_PORT), "--port", 0, 65_535);
  const web = wholeNumber(values.web ?? String(DEFAULT_DEMO_WEB), "--web", 1, 16);
  const steps = wholeNumber(values.steps ?? String(DEFAULT_DEMO_STEPS), "--steps", 1, 1_000_000);
  const stepMs = wholeNumber(values["step-ms"] ?? String(DEFAULT_DEMO_STEP_MS), "--step-ms", 1, 3_600_000);
  if (values.acked !== undefined) writeFileSync(values.acked, ""); // the run's positions only

  const stop = stopSignal();
  const timer = duration > 0 ? setTimeout(() => stop.stop(), duration * 1000) : undefined;
  const client = new Client({ servers: connection.servers });
  const children: ChildProcess[] = [];
  let proxy: DemoProxy | undefined;
  let load: Load | undefined;
  let reporting: Promise<void> | undefined;
  let status: NodeJS.Timeout | undefined;
  try {
    try {
      await client.version();
    } catch (error) {
      throw new ConnectionClosedError(
        `memcached at ${connection.servers} did not answer (${(error as Error).message}): start "memipc serve" ` +
          "first, or point --memcached at your servers",
        { cause: error },
      );
    }
    const ports = await Promise.all(
      Array.from({ length: web }, (_, i) => {
        const config: DemoWebConfig = {
          name: `web-${i + 1}`,
          servers: connection.servers,
          namespace: connection.namespace,
          stream,
          acked: values.acked,
          steps,
          stepMs,
        };
        const child = fork(DEMO_WEB, [JSON.stringify(config)], {
          stdio: ["ignore", "inherit", "inherit", "ipc"],
        });
        child.on("error", () => undefined); // failures show as the exit below
        children.push(child);
        return ready(child, config.name);
      }),
    );
    proxy = await startProxy("127.0.0.1", port, ports);
    const progress = new Progress(client, { namespace: connection.namespace });
    const jobId = await startReport(proxy.url);
    process.stdout.write(
      `memipc demo: ${web} web servers behind a round-robin proxy, ${rate} requests/s, logging to stream ` +
        `"${stream}" (namespace "${connection.namespace}")\n` +
        `  proxy       ${proxy.url}\n` +
        `  report job  ${proxy.url}/jobs/${encodeURIComponent(jobId)}\n` +
        `  dashboard   ${dashboard}\n` +
        "Ctrl-C stops it.\n",
    );
    load = startLoad(proxy.url, rate);
    reporting = keepReporting(proxy.url, progress, jobId, stop.signal);
    let reported = { sent: 0, byClass: {} as Record<string, number> };
    status = setInterval(() => {
      const counts = load!.counts;
      const classes = Object.keys(counts.byClass)
        .sort()
        .map((c) => `${c} ${(counts.byClass[c] ?? 0) - (reported.byClass[c] ?? 0)}`)
        .join(", ");
      const sent = counts.sent - reported.sent;
      reported = { sent: counts.sent, byClass: { ...counts.byClass } };
      void progress.get(jobId).then(
        (job) =>
          process.stdout.write(
            `demo: ${sent} requests in the last ${STATUS_EVERY / 1000} s (${classes}); report job ` +
              `${job === undefined ? "not found" : `${job.state} ${job.done}/${job.total ?? "?"}`}\n`,
          ),
        () => undefined,
      );
    }, STATUS_EVERY);
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) resolve();
      stop.signal.addEventListener("abort", () => resolve(), { once: true });
      for (const child of children) {
        child.once("exit", () => {
          if (!stop.signal.aborted) process.stderr.write("memipc demo: a web server exited; stopping\n");
          resolve();
        });
      }
    });
    process.stdout.write("demo: stopping\n");
  } finally {
    clearTimeout(timer);
    clearInterval(status);
    await load?.stop();
    await reporting;
    await proxy?.close();
    await Promise.all(children.map((child) => stopChild(child)));
    client.close();
    stop.dispose();
  }
  const counts = load?.counts;
  if (counts !== undefined) {
    const classes = Object.entries(counts.byClass)
      .sort()
      .map(([c, n]) => `${c} ${n}`)
      .join(", ");
    process.stdout.write(`demo: stopped after ${counts.sent} requests (${classes})\n`);
  }
}

/** Resolves with the web server's port once it says it listens. */
function ready(child: ChildProcess, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new ConnectionClosedError(`${name} did not start within ${READY_TIMEOUT} ms`)),
      READY_TIMEOUT,
    );
    child.on("message", (message: DemoWebMessage) => {
      clearTimeout(timer);
      if (message.type === "ready") resolve(message.port);
      else reject(new ConnectionClosedError(`${name} could not start: ${message.message}`));
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new ConnectionClosedError(`${name} exited (status ${code}) before it was ready`));
    });
  });
}

/** Asks a web server to stop (it finishes its appends and writes its acked positions); kills it if it hangs. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // The child may be stopping already (Ctrl-C reaches the whole process group): then the channel is closing.
  if (child.connected) child.send("stop", (error) => error && child.kill("SIGTERM"));
  else child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT);
  await exited;
  clearTimeout(timer);
}

/** Starts a report job through the proxy (on whichever web server it picks); returns its id. */
async function startReport(proxyUrl: string, id = REPORT_ID): Promise<string> {
  const response = await fetch(`${proxyUrl}/report?id=${encodeURIComponent(id)}`, { method: "POST" });
  if (response.status === 409 && id === REPORT_ID) {
    // Another demo's report runs under that id: use one of our own.
    return startReport(proxyUrl, `${REPORT_ID}-${randomBytes(3).toString("hex")}`);
  }
  if (response.status !== 202) {
    throw new ConnectionClosedError(
      `starting the report job answered ${response.status}: ${await response.text()}`,
    );
  }
  return ((await response.json()) as { id: string }).id;
}

/** Watches the report job and starts it again, under the same id, a few seconds after each run ends. */
async function keepReporting(
  proxyUrl: string,
  progress: Progress,
  id: string,
  signal: AbortSignal,
): Promise<void> {
  let current = id;
  while (!signal.aborted) {
    try {
      // watch ends when the job does (done, failed, cancelled from its page) or disappears.
      for await (const _job of progress.watch(current, { signal })) {
        // each change: nothing to do here, the job's page shows it
      }
      await sleep(REPORT_PAUSE, signal);
      if (!signal.aborted) current = await startReport(proxyUrl, current);
    } catch (error) {
      if (signal.aborted) return;
      process.stderr.write(`memipc demo: the report job: ${(error as Error).message} (retrying)\n`);
      await sleep(REPORT_PAUSE, signal);
    }
  }
}
