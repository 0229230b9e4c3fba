#!/usr/bin/env node
// The `memipc` command: a thin table of subcommands over the library.
import { parseArgs } from "node:util";
import { ConfigError, MemipcError } from "../errors.js";
import { COLLECT_HELP, runCollect } from "./collect.js";
import { INCR_HELP, runIncr, runTiming, TIMING_HELP } from "./count.js";
import { DEMO_HELP, runDemo } from "./demo.js";
import { DRAIN_HELP, runDrain } from "./drain.js";
import { HTTP_HELP, runHttp } from "./http.js";
import { LOG_HELP, runLog } from "./log.js";
import { PROGRESS_HELP, runProgress } from "./progress.js";
import { REPORT_HELP, runReport } from "./report.js";
import { runServer, SERVER_HELP } from "./server.js";
import { CONFIG_HELP, runConfig, runServe, SERVE_HELP } from "./serve.js";
import { runStatsList, STATS_LIST_HELP } from "./stats-list.js";
import { runTail, TAIL_HELP } from "./tail.js";

interface Command {
  summary: string;
  help: string;
  run(args: string[]): Promise<void>;
}

const COMMANDS: Record<string, Command> = {
  serve: {
    summary: "everything in one process: server, drainers, collector, reports, dashboard",
    help: SERVE_HELP,
    run: runServe,
  },
  config: {
    summary: "print the configuration serve would use, and where each value came from",
    help: CONFIG_HELP,
    run: runConfig,
  },
  server: { summary: "run the embedded memcached-compatible server", help: SERVER_HELP, run: runServer },
  log: { summary: "append entries to a log stream (arguments, or stdin lines)", help: LOG_HELP, run: runLog },
  drain: {
    summary: "run a log stream's drainer: entries to files, in order, once",
    help: DRAIN_HELP,
    run: runDrain,
  },
  tail: { summary: "show a log stream's latest entries; -f follows", help: TAIL_HELP, run: runTail },
  incr: { summary: "add to a counter in the current time bucket", help: INCR_HELP, run: runIncr },
  timing: { summary: "record how long something took (ms)", help: TIMING_HELP, run: runTiming },
  collect: {
    summary: "run the stats collector: closed buckets into SQLite, never twice",
    help: COLLECT_HELP,
    run: runCollect,
  },
  http: { summary: "serve the HTTP API, job pages and embed script", help: HTTP_HELP, run: runHttp },
  progress: {
    summary: "jobs: list, watch ID, cancel ID, or run a demo job",
    help: PROGRESS_HELP,
    run: runProgress,
  },
  report: {
    summary: "a day's stats summary: text, md, csv, json or html",
    help: REPORT_HELP,
    run: runReport,
  },
  "stats-list": {
    summary: "names counted in the latest buckets, with their values",
    help: STATS_LIST_HELP,
    run: runStatsList,
  },
  demo: {
    summary: "a simulated web farm against memipc serve: logged requests, a report job",
    help: DEMO_HELP,
    run: runDemo,
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `Usage: memipc <command> [options]\n\nCommands:\n${lines.join("\n")}\n\nRun "memipc <command> --help" for a command's options.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`memipc: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: { help: { type: "boolean", short: "h" } },
    strict: false,
  });
  if (values.help) {
    process.stdout.write(command.help);
    return 0;
  }
  await command.run(rest);
  return 0;
}

// A reader that goes away (`memipc tail | head`) is not an error.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0);
  throw error;
});

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof MemipcError || (error instanceof TypeError && "code" in error)) {
      process.stderr.write(`memipc: ${error.message}\n`);
    } else {
      process.stderr.write(
        `memipc: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
    }
    // Exit 2 for bad flags or settings (nothing was done), 1 for failures while running.
    process.exitCode = error instanceof ConfigError ? 2 : 1;
  },
);
