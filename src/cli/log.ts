// `memipc log`: appends one entry made of the arguments, or one entry per line of standard input.
import { hostname } from "node:os";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { ConfigError, LogError } from "../errors.js";
import { LogProducer, PartitionBy, type Appended, type AppendOptions } from "../log/producer.js";
import { connect, parseStreamFlags, streamOptionTable } from "./common.js";

export const LOG_WINDOW = 1000; // stdin lines appended at once; reading waits until they are stored
const PROGRESS_EVERY = 1000; // ms between progress lines on a terminal

export const LOG_HELP = `Usage: memipc log [options] TEXT…
       memipc log [options] -

Appends an entry to a log stream. The TEXT arguments, joined by spaces, form one entry (as logger(1) does);
with "-" instead, each line of standard input is one entry (a final line break adds no empty entry).
Prints nothing on success; exits non-zero with the error if an entry could not be stored.

${streamOptionTable([
  ["--node NAME", "who logs, stored with each entry", "the host name"],
  ["--partition-by BY", "node (one partition per node) or round-robin", "node"],
  ["--key KEY", "the partition of KEY (entries with one key stay in order)"],
  ["-v, --verbose", 'print "seq=N epoch=E" (and "partition=P") per entry stored'],
])}
With --partitions P, each entry goes to one of the stream's P partitions, each with its own counter (spread
over the servers of a pool): all of a node's entries to the partition of its name, or entries in turn with
--partition-by round-robin, or those with the same --key to the key's partition. The drainer must be given
at least as many partitions.

Examples:
  memipc log --stream orders "order 1234 paid"
  tail -F /var/log/app.log | memipc log --stream app -
  memipc log --memcached a:11211,b:11211,c:11211 --partitions 4 --key order-1234 "order 1234 paid"
`;

export async function runLog(args: string[]): Promise<void> {
  const { values, positionals, connection, address, partitions } = parseStreamFlags(
    "log",
    args,
    {
      node: { type: "string" },
      "partition-by": { type: "string" },
      key: { type: "string" },
      verbose: { type: "boolean", short: "v" },
    },
    true,
  );
  const partitionBy = values["partition-by"] ?? PartitionBy.node;
  if (partitionBy !== PartitionBy.node && partitionBy !== PartitionBy.roundRobin) {
    throw new ConfigError(`--partition-by "${partitionBy}" is not known: use "node" or "round-robin"`);
  }
  if (values.key !== undefined && values["partition-by"] !== undefined) {
    throw new ConfigError("--key places every entry by the key: give --key or --partition-by, not both");
  }
  const placement: AppendOptions = values.key === undefined ? {} : { key: values.key };
  const fromStdin = positionals.length === 1 && positionals[0] === "-";
  if (positionals.length === 0) {
    throw new ConfigError(
      'nothing to log: give the entry\'s TEXT, or "-" to read entries from standard input',
    );
  }
  if (!fromStdin && positionals.includes("-") && positionals.length > 1) {
    throw new ConfigError('"-" reads entries from standard input and takes no TEXT with it');
  }
  const node = values.node ?? hostname();
  if (node.length === 0 || node.length > 255) throw new ConfigError("--node must be 1 to 255 characters");
  const client = connect(connection);
  try {
    const producer = new LogProducer(client, { ...address, node, partitions, partitionBy });
    const report = values.verbose === true ? (partitions > 1 ? printPlace : printSeq) : undefined;
    if (fromStdin) await logLines(producer, process.stdin, report, placement);
    else {
      const appended = await producer.append(positionals.join(" "), placement);
      report?.(appended);
    }
  } finally {
    client.close();
  }
}

function printSeq({ epoch, seq }: Appended): void {
  process.stdout.write(`seq=${seq} epoch=${epoch}\n`);
}

function printPlace({ partition, epoch, seq }: Appended): void {
  process.stdout.write(`seq=${seq} epoch=${epoch} partition=${partition}\n`);
}

/**
 * Appends each line of `input` as one entry, in order. Lines go out LOG_WINDOW at a time (one reservation
 * each), with at most two windows in flight; reading pauses while lines wait, so any amount of input runs in
 * bounded memory. Stops at the first failure, naming its line.
 */
export async function logLines(
  producer: LogProducer,
  input: Readable,
  report?: (appended: Appended) => void,
  placement: AppendOptions = {},
): Promise<number> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  const progress = process.stderr.isTTY ? new Progress() : undefined;
  // readline still emits the rest of a chunk after pause(): `queued` holds those (at most a chunk's worth).
  const queued: string[] = [];
  let ended = false;
  let failed: unknown;
  let wake: (() => void) | undefined;
  const signal = () => {
    wake?.();
    wake = undefined;
  };
  lines.on("line", (line) => {
    queued.push(line);
    if (queued.length >= LOG_WINDOW) lines.pause();
    signal();
  });
  lines.once("close", () => {
    ended = true;
    signal();
  });
  input.once("error", (error) => {
    failed ??= error;
    ended = true;
    signal();
  });

  const inFlight: Promise<void>[] = [];
  let count = 0;
  /** Appends one window and reports it once stored; the first failure (by line) is kept in `failed`. */
  const send = (batch: string[], firstLine: number): Promise<void> => {
    const appends = batch.map((line) => producer.append(line, placement));
    return Promise.allSettled(appends).then((results) => {
      for (let i = 0; i < results.length; i++) {
        const result = results[i]!;
        if (result.status === "rejected") {
          const reason = result.reason as Error;
          failed ??= new LogError(`line ${firstLine + i} was not logged: ${reason.message}`, {
            cause: reason,
          });
          return;
        }
        report?.(result.value);
      }
    });
  };
  try {
    while (failed === undefined) {
      if (queued.length === 0) {
        if (ended) break;
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      const batch = queued.splice(0, LOG_WINDOW);
      if (queued.length < LOG_WINDOW && !ended) lines.resume();
      inFlight.push(send(batch, count + 1));
      count += batch.length;
      if (inFlight.length >= 2) await inFlight.shift();
      progress?.update(count);
    }
    await Promise.all(inFlight);
  } finally {
    lines.close();
    progress?.done(count);
  }
  if (failed !== undefined) throw failed;
  return count;
}

/** A progress line on a terminal's stderr, rewritten in place at most once a second. */
class Progress {
  readonly #started = Date.now();
  #shownAt = Date.now();
  #shown = false;

  update(count: number): void {
    const now = Date.now();
    if (now - this.#shownAt < PROGRESS_EVERY) return;
    this.#shownAt = now;
    this.#shown = true;
    process.stderr.write(`\rmemipc log: ${count} entries, ${this.#rate(count, now)}/s   `);
  }

  done(count: number): void {
    if (this.#shown) {
      process.stderr.write(`\rmemipc log: ${count} entries, ${this.#rate(count, Date.now())}/s   \n`);
    }
  }

  #rate(count: number, now: number): number {
    return Math.round((count * 1000) / Math.max(1, now - this.#started));
  }
}
