// What the overview shows, as JSON (GET /api/overview): each memcached server's health, each stream's
// drainer (each partition's, for a partitioned stream), the collector's last pass and jobs by state. Each
// part is read on its own, so one that fails (a server down, memcached unreachable for the job list) shows
// its error and the rest still shows.
import { publishedMetrics, type DrainerMetrics } from "../../log/drainer.js";
import type { PartitionMetrics } from "../../log/partitioned-drainer.js";
import type { JobView } from "../../progress/index.js";
import type { Cursor } from "../../sinks/file-sink.js";
import { readServerStats, serverFigures, type ServerFigures } from "./server-stats.js";
import type { DashboardSource } from "./source.js";

export const RECENT_JOBS = 10; // jobs listed on the overview (newest first); all are counted by state
export const JOB_STATES = ["running", "stalled", "done", "failed", "cancelled"] as const;

export interface Overview {
  /** ms since the Unix epoch when this was read. */
  time: number;
  namespace: string;
  servers: ServerFigures[];
  /** Things that need someone's attention, in words (servers down, evictions, drainer errors). */
  warnings: string[];
  streams: StreamView[];
  /** null when no collector runs in this process. */
  collector: CollectorView | null;
  jobs: JobsView;
}

/** A stream's drainer in this process. */
export interface StreamView {
  stream: string;
  /** "active": it holds the lease and drains; "standby": another drainer does (or nobody yet). */
  state: "active" | "standby";
  owner: string;
  layout: string;
  /** The counter as last read, and the last position durably written. */
  head: Cursor | null;
  cursor: Cursor | null;
  /** Numbers taken by producers and not yet written. */
  lag: number;
  entriesPerSecond: number;
  /** Written by this process since it started. */
  entries: number;
  gaps: number;
  late: number;
  /** ms since the Unix epoch of the last write; null before the first. */
  lastDrainAt: number | null;
  lastError: string | null;
  /**
   * Each partition's figures, for a partitioned stream (null when it has one partition); the stream's `head`
   * and `cursor` are then null, and its lag, entries, gaps and late are the partitions' sums.
   */
  partitions: PartitionView[] | null;
  /** Servers of the pool whose entries the drainer could not read lately (their missing entries become gaps). */
  unreachable: string[];
  /** For a standby drainer: the active one's figures as it publishes them in memcached (about 1 s old). */
  activeElsewhere: {
    owner: string;
    head: Cursor | null;
    cursor: Cursor | null;
    lag: number;
    entriesPerSecond: number;
    lastDrainAt: number | null;
    /** As in the active drainer's published figures, for a partitioned stream; null otherwise. */
    partitions: PartitionView[] | null;
  } | null;
}

/** One partition of a partitioned stream: its counter, its durable position and what was drained of it. */
export interface PartitionView {
  partition: number;
  head: Cursor | null;
  cursor: Cursor | null;
  lag: number;
  entries: number;
  gaps: number;
  late: number;
}

export interface CollectorView {
  passes: number;
  /** Buckets and values stored, and legacy counters taken, by this process. */
  buckets: number;
  values: number;
  legacy: number;
  /** ms since the Unix epoch when the last pass ended; null before the first. */
  lastPassAt: number | null;
  lastError: string | null;
  /** ms since the Unix epoch: start of the newest bucket stored. */
  newestBucketAt: number | null;
}

export interface JobsView {
  /** Jobs of the last 24 hours. */
  total: number;
  byState: Record<(typeof JOB_STATES)[number], number>;
  /** The newest few. */
  recent: Array<
    Pick<JobView, "id" | "label" | "state" | "done" | "total" | "message" | "startedAt" | "updatedAt">
  >;
  /** Why the jobs could not be read (then the figures above are zero). */
  error: string | null;
}

/** Reads everything the overview shows. Never rejects: a part that cannot be read carries its error. */
export async function readOverview(source: DashboardSource): Promise<Overview> {
  const [readings, streams, jobs] = await Promise.all([
    readServerStats(source.client, source.serverNames),
    Promise.all(source.drainers.map((drainer) => streamView(source, drainer.metrics, drainer.address))),
    readJobs(source),
  ]);
  const servers = readings.map(serverFigures);
  const warnings: string[] = [];
  for (const s of servers) {
    if (!s.up) warnings.push(`memcached ${s.server} does not answer: ${s.error ?? "no reply"}`);
    if (s.evictions !== null && s.evictions > 0) {
      warnings.push(
        `memcached ${s.server} has evicted ${s.evictions} items to make room: log entries not drained yet can be ` +
          "lost that way (they become gaps); give it more memory (memcached -m, memipc server --memory) or " +
          "keep the drainers running",
      );
    }
  }
  for (const s of streams) {
    // The drainer's error about unreachable servers names them: it is told once, in the warning that explains.
    const told = s.unreachable.some((server) => s.lastError?.includes(server) === true);
    if (s.unreachable.length > 0) {
      warnings.push(
        `drainer of stream ${s.stream} cannot read memcached ${s.unreachable.join(", ")}: log entries stored ` +
          "there are not being read; the missing ones become gaps after the hole timeout (and are written as late " +
          "entries if the server comes back with them within the late window, ten minutes by default); bring " +
          "the server back or check the network between this node and it" +
          (told ? ` (last error: ${s.lastError})` : ""),
      );
    }
    if (s.lastError !== null && !told) warnings.push(`drainer of stream ${s.stream}: ${s.lastError}`);
  }
  const collector = source.collector?.metrics;
  if (collector?.lastError !== undefined) warnings.push(`collector: ${collector.lastError}`);
  return {
    time: Date.now(),
    namespace: source.namespace,
    servers,
    warnings,
    streams,
    collector:
      collector === undefined
        ? null
        : {
            passes: collector.passes,
            buckets: collector.buckets,
            values: collector.values,
            legacy: collector.legacy,
            lastPassAt: collector.lastPass ?? null,
            lastError: collector.lastError ?? null,
            newestBucketAt: collector.newest === undefined ? null : collector.newest * 1000,
          },
    jobs,
  };
}

/** A drainer's metrics: a PartitionedDrainer's carry each partition's. */
type Metrics = DrainerMetrics & { partitions?: PartitionMetrics[] };

async function streamView(
  source: DashboardSource,
  m: Metrics,
  address: Parameters<typeof publishedMetrics>[1],
): Promise<StreamView> {
  let activeElsewhere: StreamView["activeElsewhere"] = null;
  if (!m.active) {
    const published: Metrics | undefined = await publishedMetrics(source.client, address).catch(
      () => undefined,
    );
    if (published !== undefined && published.owner !== m.owner) {
      activeElsewhere = {
        owner: published.owner,
        head: published.head ?? null,
        cursor: published.cursor ?? null,
        lag: published.lag,
        entriesPerSecond: published.entriesPerSecond,
        lastDrainAt: published.lastDrainAt ?? null,
        // Published by another process, maybe of another version: only a list of objects is taken.
        partitions: Array.isArray(published.partitions)
          ? published.partitions.filter((p) => typeof p === "object" && p !== null).map(partitionView)
          : null,
      };
    }
  }
  return {
    stream: m.stream,
    state: m.active ? "active" : "standby",
    owner: m.owner,
    layout: m.layout,
    head: m.head ?? null,
    cursor: m.cursor ?? null,
    lag: m.lag,
    entriesPerSecond: m.entriesPerSecond,
    entries: m.entries,
    gaps: m.gaps,
    late: m.late,
    lastDrainAt: m.lastDrainAt ?? null,
    lastError: m.lastError ?? null,
    partitions: m.partitions === undefined ? null : m.partitions.map(partitionView),
    unreachable: m.unreachable.map((server) => source.serverNames?.[server] ?? server),
    activeElsewhere,
  };
}

function partitionView(p: PartitionMetrics): PartitionView {
  return {
    partition: p.partition,
    head: p.head ?? null,
    cursor: p.cursor ?? null,
    lag: p.lag,
    entries: p.entries,
    gaps: p.gaps,
    late: p.late,
  };
}

async function readJobs(source: DashboardSource): Promise<JobsView> {
  const byState = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as JobsView["byState"];
  let jobs: JobView[];
  try {
    jobs = await source.progress.list();
  } catch (error) {
    return { total: 0, byState, recent: [], error: `jobs could not be read: ${(error as Error).message}` };
  }
  for (const job of jobs) if (job.state in byState) byState[job.state as keyof typeof byState]++;
  return {
    total: jobs.length,
    byState,
    recent: jobs.slice(0, RECENT_JOBS).map((j) => ({
      id: j.id,
      label: j.label,
      state: j.state,
      done: j.done,
      total: j.total,
      message: j.message,
      startedAt: j.startedAt,
      updatedAt: j.updatedAt,
    })),
    error: null,
  };
}
