// `npm run fuzz`: the long property-based fuzzing run (10 minutes by default) over the codec, the engine
// and the embedded server, with executions per property, executions per second, peak memory and, on a
// failure, the counterexample and how to replay it. Exits non-zero when a property failed.
import { parseArgs } from "node:util";
import { randomInt } from "node:crypto";
import type fc from "fast-check";
import { engineProperty, replyParserProperty, requestParserProperty } from "./properties.js";
import { replayInMain } from "./replay.js";
import { describeResult, runProperty, type PropertyResult } from "./run.js";
import {
  RSS_BOUND,
  SERVER_BATCH,
  serverProperty,
  ServerProcess,
  type ServerFuzzState,
} from "./server-target.js";

const DEFAULT_SECONDS = 600; // the whole run, shared between the selected properties

const HELP = `Usage: node dist/test/fuzz/main.js [options]

Property-based fuzzing (fast-check) of the request and reply parsers, the server's engine and the
embedded server over real connections.

Options:
  --seconds N     length of the whole run, shared by the properties (default ${DEFAULT_SECONDS})
  --seed N        fast-check seed (default: random, printed)
  --only GROUP    codec, engine or server, or one property: request-parser, reply-parser
  --path P        replay one failing case (with --seed and --only PROPERTY, as a failure prints them)
  -h, --help      this text
`;

const GROUPS: Record<string, readonly string[]> = {
  codec: ["request-parser", "reply-parser"],
  engine: ["engine"],
  server: ["server"],
  "request-parser": ["request-parser"],
  "reply-parser": ["reply-parser"],
};

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${HELP}`);
  process.exit(2);
}

function wholeNumber(text: string | undefined, what: string, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) fail(`${what} "${text}" is not a whole number`);
  return Number(text);
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        seconds: { type: "string" },
        seed: { type: "string" },
        only: { type: "string" },
        path: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const seconds = wholeNumber(values.seconds, "--seconds", DEFAULT_SECONDS);
  const seed = wholeNumber(values.seed, "--seed", randomInt(2 ** 31));
  const names = values.only === undefined ? [...GROUPS.codec!, "engine", "server"] : GROUPS[values.only];
  if (names === undefined) fail(`--only "${values.only}" is none of ${Object.keys(GROUPS).join(", ")}`);
  if (values.path !== undefined && names.length !== 1)
    fail("--path replays one property: give --only PROPERTY");
  const share = seconds / names.length;
  process.stdout.write(`fuzzing ${names.join(", ")} for ${seconds} s, seed ${seed}\n`);

  let state: ServerFuzzState | undefined;
  const results: PropertyResult[] = [];
  try {
    for (const name of names) {
      const settings = { seconds: share, seed, path: values.path };
      let property: fc.IRawProperty<unknown>;
      if (name === "server") {
        state = { server: await ServerProcess.start(), peakRss: 0 };
        property = serverProperty(state) as fc.IRawProperty<unknown>;
      } else if (name === "engine") {
        property = engineProperty() as fc.IRawProperty<unknown>;
      } else if (name === "reply-parser") {
        property = replyParserProperty() as fc.IRawProperty<unknown>;
      } else {
        property = requestParserProperty() as fc.IRawProperty<unknown>;
      }
      const batch = name === "server" ? SERVER_BATCH : undefined;
      const result = await runProperty(name, property, settings, replayInMain(name), batch);
      results.push(result);
      process.stdout.write(`${describeResult(result)}\n`);
      if (result.report !== undefined) process.stdout.write(`${result.report}\n`);
    }
  } finally {
    const memory = state?.server.memory();
    const alive = state?.server.alive;
    await state?.server.stop();
    const mib = (bytes: number) => `${Math.round(bytes / 1048576)} MiB`;
    process.stdout.write(`fuzzer peak RSS ${mib(process.resourceUsage().maxRSS * 1024)}\n`);
    if (state !== undefined) {
      process.stdout.write(
        `server peak RSS ${memory ? mib(memory.peak) : "unknown"} (bound ${mib(RSS_BOUND)}), ` +
          `${alive ? "alive" : "DEAD"} at the end\n`,
      );
      if (memory !== undefined && memory.peak > RSS_BOUND) {
        process.stdout.write("FAILED: the server's resident memory went over its bound\n");
        results.push({
          name: "server memory",
          executions: 0,
          seconds: 0,
          failed: true,
          seed,
          report: undefined,
        });
      }
      if (!alive)
        results.push({
          name: "server alive",
          executions: 0,
          seconds: 0,
          failed: true,
          seed,
          report: undefined,
        });
    }
  }
  const total = results.reduce((sum, r) => sum + r.executions, 0);
  const failed = results.filter((r) => r.failed);
  process.stdout.write(
    `${total} executions in all; ${failed.length === 0 ? "no failure" : `${failed.length} FAILED`}\n`,
  );
  return failed.length === 0 ? 0 : 1;
}

// `node --test dist/test/` runs every file under dist/test, this one included: there it does nothing (the
// bounded run lives in the *.test.js files beside it).
if (process.env.NODE_TEST_CONTEXT === undefined) process.exitCode = await main();
