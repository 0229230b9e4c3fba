// What the overview shows, as JSON (GET /api/overview): each memcached server's health, each stream's
// drainer, the collector's last pass and jobs by state. Each part is read on its own, so one that fails
// (a server down, memcached unreachable for the job list) shows its error and the rest still shows.
import { publishedMetrics, type DrainerMetrics } from "../../log/drainer.js";
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
  /** For a standby drainer: the active one's figures as it publishes them in memcached (about 1 s old). */
  activeElsewhere: {
    owner: string;
    head: Cursor | null;
    cursor: Cursor | null;
    lag: number;
    entriesPerSecond: number;
    lastDrainAt: number | null;
  } | null;
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
    if (s.lastError !== null) warnings.push(`drainer of stream ${s.stream}: ${s.lastError}`);
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

async function streamView(
  source: DashboardSource,
  m: DrainerMetrics,
  address: Parameters<typeof publishedMetrics>[1],
): Promise<StreamView> {
  let activeElsewhere: StreamView["activeElsewhere"] = null;
  if (!m.active) {
    const published = await publishedMetrics(source.client, address).catch(() => undefined);
    if (published !== undefined && published.owner !== m.owner) {
      activeElsewhere = {
        owner: published.owner,
        head: published.head ?? null,
        cursor: published.cursor ?? null,
        lag: published.lag,
        entriesPerSecond: published.entriesPerSecond,
        lastDrainAt: published.lastDrainAt ?? null,
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
    activeElsewhere,
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
