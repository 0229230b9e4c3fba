// `memipc stats-list`: the names counted in the latest time buckets and their values, read straight from
// memcached (no collector needed).
import { bucketStart, DEFAULT_BUCKET_SECONDS } from "../stats/layout.js";
import { readBuckets } from "../stats/reader.js";
import {
  COMMON_ROWS,
  connect,
  connectionFrom,
  optionTable,
  parseFlags,
  wholeNumber,
  writeOut,
} from "./common.js";

const DEFAULT_BUCKETS = 5;

export const STATS_LIST_HELP = `Usage: memipc stats-list [options]

Lists every counter, gauge and timer written in the latest --buckets time buckets (the current one
included), with its value in each: a counter's count, a gauge's last value, a timer's count and mean in ms.
It reads memcached directly, so it shows what the writers wrote whether or not a collector runs.

${optionTable([
  ...COMMON_ROWS,
  ["--bucket SECONDS", "bucket size: must match the writers", String(DEFAULT_BUCKET_SECONDS)],
  ["--buckets N", "how many buckets back, the current one included", String(DEFAULT_BUCKETS)],
  ["--json", "one JSON object instead of a table", "off"],
])}`;

interface Row {
  kind: "counter" | "gauge" | "timer";
  name: string;
  /** One per bucket, oldest first; undefined where the name was not written. */
  values: Array<number | { count: number; meanMs: number } | undefined>;
}

export async function runStatsList(args: string[]): Promise<void> {
  const { values } = parseFlags("stats-list", args, {
    bucket: { type: "string" },
    buckets: { type: "string" },
    json: { type: "boolean" },
  });
  const connection = connectionFrom(values, process.env);
  const bucketSeconds =
    values.bucket === undefined ? DEFAULT_BUCKET_SECONDS : wholeNumber(values.bucket, "--bucket", 1, 86_400);
  const count =
    values.buckets === undefined ? DEFAULT_BUCKETS : wholeNumber(values.buckets, "--buckets", 1, 1440);
  const address = { namespace: connection.namespace, bucketSeconds };
  const newest = bucketStart(address, Date.now());
  const starts = Array.from({ length: count }, (_, i) => newest - (count - 1 - i) * bucketSeconds);
  const client = connect(connection);
  let buckets;
  try {
    buckets = await readBuckets(client, address, starts);
  } finally {
    client.close();
  }
  const rows = new Map<string, Row>();
  const row = (kind: Row["kind"], name: string): Row => {
    const key = `${kind}:${name}`;
    let found = rows.get(key);
    if (found === undefined)
      rows.set(key, (found = { kind, name, values: new Array(count).fill(undefined) }));
    return found;
  };
  for (const [i, bucket] of buckets.entries()) {
    if (bucket === undefined) continue;
    for (const c of bucket.counters) row("counter", c.name).values[i] = c.value;
    for (const g of bucket.gauges) row("gauge", g.name).values[i] = g.value;
    for (const t of bucket.timers) {
      row("timer", t.name).values[i] = {
        count: t.count,
        meanMs: t.count === 0 ? 0 : t.sumUs / t.count / 1000,
      };
    }
  }
  const sorted = [...rows.values()].sort(
    (a, b) => a.name.localeCompare(b.name) || a.kind.localeCompare(b.kind),
  );
  if (values.json) {
    await writeOut(JSON.stringify({ bucketSeconds, starts, stats: sorted }) + "\n");
    return;
  }
  if (sorted.length === 0) {
    await writeOut(
      `nothing counted in the last ${count} buckets of ${bucketSeconds} s (namespace ${connection.namespace})\n`,
    );
    return;
  }
  const header = ["NAME", "KIND", ...starts.map((s) => new Date(s * 1000).toISOString().slice(11, 19))];
  const table = [header, ...sorted.map((r) => [r.name, r.kind, ...r.values.map(cell)])];
  const widths = header.map((_, c) => Math.max(...table.map((line) => line[c]!.length)));
  const lines = table.map((line) =>
    line.map((text, c) => (c < 2 ? text.padEnd(widths[c]!) : text.padStart(widths[c]!))).join("  "),
  );
  await writeOut(`${lines.join("\n")}\n(bucket starts in UTC; the last column is the current bucket)\n`);
}

function cell(value: Row["values"][number]): string {
  if (value === undefined) return "-";
  if (typeof value === "number") return String(value);
  return `${value.count}×${value.meanMs.toFixed(1)}ms`;
}
