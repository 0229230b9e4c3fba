// Reading back what a drainer wrote (a file sink's JSON Lines files, in name order) and checking it against
// what the producers were told: every appended entry exactly once at its (partition, epoch, seq), positions
// in order within each partition's epoch, epochs never revisited, and which gaps were recorded.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "../../src/client/index.js";
import { Drainer } from "../../src/log/drainer.js";
import { openFileSink } from "../../src/sinks/index.js";
import { waitFor } from "./wait.js";
import { entryKey, headKey, partitionAddress, splitHead, type StreamAddress } from "../../src/log/layout.js";

export interface EntryLine {
  kind: "entry";
  /** The partition ("part"; 0 when the line has none). */
  part: number;
  epoch: number;
  seq: number;
  node: string;
  data: unknown;
  late: boolean;
  /** Where it is: file name and line number (1-based), for messages. */
  at: string;
}

export interface GapLine {
  kind: "gap";
  part: number;
  epoch: number;
  from: number;
  to: number;
  reason: string;
  at: string;
}

export type LogLine = EntryLine | GapLine;

/** The stream's files in the sink's order: by day, then by the `.n` index (none counts as 0). */
export function logFiles(dir: string, stream: string): string[] {
  const escaped = stream.replace(/[.\\^$*+?()[\]{}|-]/g, "\\$&");
  const pattern = new RegExp(`^${escaped}-(\\d{4}-\\d{2}-\\d{2})(?:\\.(\\d+))?\\.jsonl$`);
  return readdirSync(dir)
    .map((name) => ({ name, match: pattern.exec(name) }))
    .filter((f) => f.match !== null)
    .map((f) => ({ name: f.name, day: f.match![1]!, index: Number(f.match![2] ?? 0) }))
    .sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : a.index - b.index))
    .map((f) => f.name);
}

/**
 * Every record of the stream, in file order. Each line must be one of the sink's records; a torn last line
 * (no newline yet) is skipped only when `tornTail` allows it, as while a drainer is still writing.
 */
export function readLog(dir: string, stream: string, options: { tornTail?: boolean } = {}): LogLine[] {
  const records: LogLine[] = [];
  const files = logFiles(dir, stream);
  files.forEach((name, f) => {
    const text = readFileSync(join(dir, name), "utf8");
    const lines = text.split("\n");
    const tail = lines.pop()!; // "" when the file ends with a newline
    if (tail !== "" && !(options.tornTail === true && f === files.length - 1)) {
      throw new Error(`${name}: ends in a partial line ${JSON.stringify(tail.slice(0, 200))}`);
    }
    lines.forEach((line, i) => {
      // Checkpoints (partitioned streams) only say where each partition stood.
      if (!line.startsWith('{"checkpoint":')) records.push(parseRecord(line, `${name}:${i + 1}`));
    });
  });
  return records;
}

function parseRecord(line: string, at: string): LogLine {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`${at}: not JSON: ${JSON.stringify(line.slice(0, 200))}`);
  }
  const gap = value.gap as Record<string, unknown> | undefined;
  if (typeof value.epoch !== "number") throw new Error(`${at}: no epoch: ${line}`);
  const part = value.part ?? 0;
  if (typeof part !== "number") throw new Error(`${at}: a malformed part: ${line}`);
  if (gap !== undefined) {
    if (typeof gap.from !== "number" || typeof gap.to !== "number" || typeof gap.reason !== "string") {
      throw new Error(`${at}: a malformed gap: ${line}`);
    }
    return { kind: "gap", part, epoch: value.epoch, from: gap.from, to: gap.to, reason: gap.reason, at };
  }
  if (typeof value.seq !== "number" || typeof value.node !== "string" || !("data" in value)) {
    throw new Error(`${at}: a malformed entry: ${line}`);
  }
  return {
    kind: "entry",
    part,
    epoch: value.epoch,
    seq: value.seq,
    node: value.node,
    data: value.data,
    late: value.late === true,
    at,
  };
}

/** What a producer worker was told: [i, epoch, seq, partition] per successful append (see ProducerResults). */
export interface Appends {
  id: number;
  ok: readonly (readonly [number, number, number, number?])[];
}

/** Where an append went, as checkLog reports a missing one. */
export interface Told {
  p: number;
  i: number;
  part: number;
  epoch: number;
  seq: number;
}

export interface LogCheck {
  entries: EntryLine[];
  gaps: GapLine[];
  /** Epochs in the order they first appear. */
  epochs: number[];
  /** Everything wrong, one line each (the first few hundred). */
  problems: string[];
  /** Appends the producers were told succeeded that are not in the files, keyed "p/i". */
  missing: Map<string, Told>;
}

const MAX_PROBLEMS = 200;

/**
 * Checks records against the appends. Always, per partition: within an epoch the positions of non-late
 * records (seq of entries, `to` of gaps) strictly increase and gaps never overlap an earlier position; an
 * epoch once left never comes back (except in late entries, which must fall in an earlier gap); no position
 * and no payload appears twice; every entry's data is `{p, i}` and matches what producer p was told about
 * (partition, epoch, seq).
 * Missing appends are listed in `missing` (the caller decides which losses are allowed) and also counted as
 * problems unless `allowMissing` says so.
 */
export function checkLog(
  records: readonly LogLine[],
  appends: readonly Appends[],
  options: { allowMissing?: (m: Told) => boolean } = {},
): LogCheck {
  const problems: string[] = [];
  const problem = (text: string): void => {
    if (problems.length < MAX_PROBLEMS) problems.push(text);
    else if (problems.length === MAX_PROBLEMS) problems.push("… (more problems left out)");
  };
  const entries: EntryLine[] = [];
  const gaps: GapLine[] = [];
  const epochs: number[] = [];
  const last = new Map<string, number>(); // "part:epoch" -> last non-late position
  const current = new Map<number, number>(); // part -> epoch being written
  const positions = new Map<string, string>(); // "part:epoch:seq" -> where
  const payloads = new Map<string, EntryLine>(); // "p/i" -> entry
  for (const record of records) {
    const late = record.kind === "entry" && record.late;
    const epochOf = `${record.part}:${record.epoch}`;
    if (!epochs.includes(record.epoch)) epochs.push(record.epoch);
    if (!late) {
      if (current.get(record.part) !== record.epoch) {
        if (last.has(epochOf)) {
          problem(
            `${record.at}: epoch ${record.epoch} of partition ${record.part} comes back after epoch ${current.get(record.part)}`,
          );
        }
        current.set(record.part, record.epoch);
      }
      const position = record.kind === "gap" ? record.to : record.seq;
      const first = record.kind === "gap" ? record.from : record.seq;
      const previous = last.get(epochOf) ?? 0;
      if (first <= previous || position < first) {
        problem(
          `${record.at}: ${describe(record)} is not after the previous position ${previous} of epoch ${epochOf}`,
        );
      }
      last.set(epochOf, Math.max(previous, position));
    }
    if (record.kind === "gap") {
      gaps.push(record);
      continue;
    }
    entries.push(record);
    if (
      late &&
      !gaps.some(
        (g) =>
          g.part === record.part && g.epoch === record.epoch && g.from <= record.seq && record.seq <= g.to,
      )
    ) {
      problem(`${record.at}: late ${describe(record)} is not covered by an earlier gap`);
    }
    const key = `${record.part}:${record.epoch}:${record.seq}`;
    const seen = positions.get(key);
    if (seen !== undefined) problem(`${record.at}: ${describe(record)} is a duplicate of ${seen}`);
    else positions.set(key, record.at);
    const data = record.data as { p?: unknown; i?: unknown } | null;
    if (
      typeof data !== "object" ||
      data === null ||
      typeof data.p !== "number" ||
      typeof data.i !== "number"
    ) {
      problem(`${record.at}: data ${JSON.stringify(record.data)} is not {p, i}`);
      continue;
    }
    const id = `${data.p}/${data.i}`;
    const twin = payloads.get(id);
    if (twin !== undefined) problem(`${record.at}: entry ${id} written twice (also at ${twin.at})`);
    else payloads.set(id, record);
  }

  const missing: LogCheck["missing"] = new Map();
  for (const producer of appends) {
    for (const [i, epoch, seq, part = 0] of producer.ok) {
      const id = `${producer.id}/${i}`;
      const found = payloads.get(id);
      if (found === undefined) {
        const m = { p: producer.id, i, part, epoch, seq };
        missing.set(id, m);
        if (!options.allowMissing?.(m)) {
          problem(`entry ${id} (partition ${part} epoch ${epoch} seq ${seq}) is missing`);
        }
      } else if (found.part !== part || found.epoch !== epoch || found.seq !== seq) {
        problem(
          `${found.at}: entry ${id} is at ${found.part}/${found.epoch}:${found.seq}, its producer was told ${part}/${epoch}:${seq}`,
        );
      }
    }
  }
  return { entries, gaps, epochs, problems, missing };
}

/**
 * For single-epoch runs: each producer's entries appear with i increasing in file order (a producer hands
 * its appends to the counter in call order, and within an epoch the drainer writes in seq order).
 */
export function checkProducerOrder(entries: readonly EntryLine[]): string[] {
  const problems: string[] = [];
  const lastI = new Map<number, number>();
  for (const entry of entries) {
    const { p, i } = entry.data as { p: number; i: number };
    const previous = lastI.get(p);
    if (previous !== undefined && i <= previous && problems.length < MAX_PROBLEMS) {
      problems.push(`${entry.at}: producer ${p} entry ${i} comes after its entry ${previous}`);
    }
    lastI.set(p, i);
  }
  return problems;
}

function describe(record: LogLine): string {
  const part = record.part === 0 ? "" : `partition ${record.part} `;
  return record.kind === "gap"
    ? `${part}gap ${record.epoch}:${record.from}-${record.to} (${record.reason})`
    : `${part}entry ${record.epoch}:${record.seq}`;
}

/** Lists problems for an assertion message: the count, then the first ones. */
export function report(problems: readonly string[], context = ""): string {
  return `${problems.length} problem(s)${context ? ` (${context})` : ""}:\n  ${problems.slice(0, 30).join("\n  ")}`;
}

/** A producer worker's results file (see test/log/workers/producer.ts). */
export interface ProducerResultsFile extends Appends {
  ok: [number, number, number, number][];
  failed: number[];
  errors: Record<string, number>;
}

export function readResults(file: string): ProducerResultsFile {
  return JSON.parse(readFileSync(file, "utf8")) as ProducerResultsFile;
}

/** The stream's counter as epoch and sequence (it must exist). */
export async function readHead(
  client: Client,
  address: StreamAddress,
): Promise<{ epoch: number; seq: number }> {
  return splitHead(BigInt((await client.get(headKey(address)))!.value.toString("latin1").trim()));
}

/** Keys of appended entries still in memcached (a drainer deletes what it made durable). */
export async function leftoverKeys(
  client: Client,
  address: StreamAddress,
  appends: readonly Appends[],
): Promise<string[]> {
  const keys = appends.flatMap((producer) =>
    producer.ok.map(([, epoch, seq, part = 0]) => entryKey(partitionAddress(address, part), epoch, seq)),
  );
  const left: string[] = [];
  for (let i = 0; i < keys.length; i += LEFTOVER_CHUNK) {
    const found = await client.getMulti(keys.slice(i, i + LEFTOVER_CHUNK));
    left.push(...found.keys());
  }
  return left;
}

const LEFTOVER_CHUNK = 2000; // keys per getMulti while looking for leftovers

/** "epoch:from-to" ranges of entry keys (…:<epoch>:<seq>), for messages. */
export function keyRanges(keys: readonly string[]): string[] {
  const positions = keys
    .map((key) => key.split(":").slice(-2).map(Number) as [number, number])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const ranges: string[] = [];
  let start: [number, number] | undefined;
  let end: [number, number] | undefined;
  for (const at of [...positions, undefined]) {
    if (at !== undefined && end !== undefined && at[0] === end[0] && at[1] === end[1] + 1) {
      end = at;
      continue;
    }
    if (start !== undefined) ranges.push(`${start[0]}:${start[1]}-${end![1]}`);
    start = at;
    end = at;
  }
  return ranges;
}

/** Runs a drainer of `stream` (no lease) into `dir` until it has caught up, then returns what it wrote. */
export async function drainToFiles(client: Client, stream: string, dir: string): Promise<LogLine[]> {
  const drainer = new Drainer(client, {
    stream,
    lease: false,
    pollEvery: 10,
    openSink: () => openFileSink(dir, { stream }),
  });
  const controller = new AbortController();
  const done = drainer.run(controller.signal);
  try {
    await waitFor(() => drainer.caughtUp(), `the drainer of ${stream} to catch up`);
  } finally {
    controller.abort();
    await done;
  }
  return readLog(dir, stream);
}
