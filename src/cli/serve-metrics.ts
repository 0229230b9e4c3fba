// The daemon's figures in the Prometheus text format (GET /metrics), and its health (GET /healthz): per stream
// the drainer's head, cursor, lag, rate, gaps and late entries; the collector's passes; each memcached
// server's items, memory, hits, connections and evictions; jobs by state.
import type { Client } from "../client/index.js";
import type { LogDrainer } from "../log/drainer.js";
import type { Progress } from "../progress/index.js";
import type { Collector } from "../stats/collector.js";
import { readServerStats, type ServerNames } from "../http/dashboard/server-stats.js";

export interface DaemonParts {
  client: Client;
  drainers: readonly LogDrainer[];
  collector: Collector | undefined;
  progress: Progress;
  serverNames?: ServerNames;
}

/** memcached `stats` fields exported, with their metric names and help. */
const SERVER_STATS: ReadonlyArray<[stat: string, metric: string, type: "gauge" | "counter", help: string]> = [
  ["curr_items", "memipc_memcached_items", "gauge", "items stored"],
  ["bytes", "memipc_memcached_bytes", "gauge", "bytes of items stored"],
  ["limit_maxbytes", "memipc_memcached_limit_bytes", "gauge", "memory limit for items"],
  ["get_hits", "memipc_memcached_get_hits_total", "counter", "gets that found their key"],
  ["get_misses", "memipc_memcached_get_misses_total", "counter", "gets that did not"],
  [
    "evictions",
    "memipc_memcached_evictions_total",
    "counter",
    "items evicted to make room: undrained log entries may be lost",
  ],
  ["curr_connections", "memipc_memcached_connections", "gauge", "open connections"],
];

class Exposition {
  readonly #lines: string[] = [];
  readonly #declared = new Set<string>();

  add(
    name: string,
    type: "gauge" | "counter",
    help: string,
    value: number | undefined,
    labels: Record<string, string> = {},
  ): void {
    if (value === undefined || !Number.isFinite(value)) return;
    if (!this.#declared.has(name)) {
      this.#declared.add(name);
      this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    }
    const pairs = Object.entries(labels).map(
      ([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`,
    );
    this.#lines.push(`${name}${pairs.length === 0 ? "" : `{${pairs.join(",")}}`} ${value}`);
  }

  toString(): string {
    return this.#lines.join("\n") + "\n";
  }
}

export async function daemonMetrics(parts: DaemonParts): Promise<string> {
  const out = new Exposition();
  for (const drainer of parts.drainers) {
    const m = drainer.metrics;
    const labels = { stream: m.stream };
    out.add(
      "memipc_log_active",
      "gauge",
      "1 when this process's drainer holds the stream's lease",
      m.active ? 1 : 0,
      labels,
    );
    out.add(
      "memipc_log_head_seq",
      "gauge",
      "the stream counter's sequence number as last read",
      m.head?.seq,
      labels,
    );
    out.add(
      "memipc_log_cursor_seq",
      "gauge",
      "the last sequence number durably written",
      m.cursor?.seq,
      labels,
    );
    out.add("memipc_log_lag", "gauge", "numbers taken by producers and not yet written", m.lag, labels);
    out.add(
      "memipc_log_entries_per_second",
      "gauge",
      "entries written per second over the last 10 s",
      m.entriesPerSecond,
      labels,
    );
    out.add("memipc_log_entries_total", "counter", "entries written by this process", m.entries, labels);
    out.add(
      "memipc_log_gaps_total",
      "counter",
      "gap records written (holes that timed out, resets)",
      m.gaps,
      labels,
    );
    out.add("memipc_log_late_total", "counter", "late entries written after their gap", m.late, labels);
    out.add(
      "memipc_log_last_drain_timestamp_seconds",
      "gauge",
      "when the drainer last wrote",
      m.lastDrainAt === undefined ? undefined : m.lastDrainAt / 1000,
      labels,
    );
  }
  if (parts.collector !== undefined) {
    const m = parts.collector.metrics;
    out.add("memipc_collector_passes_total", "counter", "collection passes done by this process", m.passes);
    out.add("memipc_collector_buckets_total", "counter", "buckets stored by this process", m.buckets);
    out.add("memipc_collector_values_total", "counter", "values stored by this process", m.values);
    out.add(
      "memipc_collector_last_pass_timestamp_seconds",
      "gauge",
      "when the last pass ended",
      m.lastPass === undefined ? undefined : m.lastPass / 1000,
    );
    out.add(
      "memipc_collector_newest_bucket_timestamp_seconds",
      "gauge",
      "start of the newest bucket stored",
      m.newest,
    );
  }
  for (const { server, up, stats } of await readServerStats(parts.client, parts.serverNames)) {
    out.add("memipc_memcached_up", "gauge", "1 when the server answered stats", up ? 1 : 0, { server });
    for (const [stat, metric, type, help] of SERVER_STATS) {
      const value = stats.get(stat);
      out.add(metric, type, help, value === undefined ? undefined : Number(value), { server });
    }
  }
  const byState = new Map<string, number>();
  for (const job of await parts.progress.list()) byState.set(job.state, (byState.get(job.state) ?? 0) + 1);
  for (const state of ["running", "stalled", "done", "failed", "cancelled"]) {
    out.add("memipc_jobs", "gauge", "jobs of the last 24 hours by state", byState.get(state) ?? 0, { state });
  }
  return out.toString();
}

/** Healthy when every memcached server answers; the detail names the ones that do not. */
export async function daemonHealth(
  parts: DaemonParts,
): Promise<{ ok: boolean; detail: Record<string, unknown> }> {
  const readings = await readServerStats(parts.client, parts.serverNames);
  const servers = readings.filter((r) => r.up).map((r) => r.server);
  const down = readings.filter((r) => !r.up);
  if (down.length === 0) return { ok: true, detail: { servers } };
  return {
    ok: false,
    detail: {
      servers,
      down: down.map((r) => ({ server: r.server, error: r.error })),
      error: down.map((r) => `${r.server}: ${r.error}`).join("; "),
    },
  };
}
