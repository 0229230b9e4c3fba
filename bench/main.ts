// Benchmark entry point: `npm run bench -- NAME [options]` runs one named scenario; no name lists them.
// Scenarios are listed rather than all run, because each one takes a minute or more.
import { clientScenario } from "./client.js";
import { logScenario } from "./log.js";
import { scaleScenario } from "./scale.js";
import { serverScenario } from "./server.js";
import { statsScenario } from "./stats.js";

export interface Scenario {
  /** The name given on the command line. */
  readonly name: string;
  /** One line: what it compares. */
  readonly summary: string;
  /** The scenario's options, one per line, for `--help`. */
  readonly options: string;
  /** Runs the scenario with the arguments that followed its name; throws on failure. */
  run(args: readonly string[]): Promise<void>;
}

const SCENARIOS: readonly Scenario[] = [
  serverScenario,
  clientScenario,
  logScenario,
  scaleScenario,
  statsScenario,
];

function listing(): string {
  const width = Math.max(...SCENARIOS.map((scenario) => scenario.name.length));
  const rows = SCENARIOS.map((scenario) => `  ${scenario.name.padEnd(width)}  ${scenario.summary}`);
  return [
    "usage: npm run bench -- NAME [--json] [options]",
    "",
    "scenarios:",
    ...rows,
    "",
    "`npm run bench -- NAME --help` shows a scenario's options.",
  ].join("\n");
}

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "--list") {
    console.log(listing());
    return 0;
  }
  const scenario = SCENARIOS.find((candidate) => candidate.name === name);
  if (scenario === undefined) {
    console.error(`bench: no scenario named "${name}"\n\n${listing()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`npm run bench -- ${scenario.name} [options]\n\n${scenario.summary}\n\n${scenario.options}`);
    return 0;
  }
  await scenario.run(rest);
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
