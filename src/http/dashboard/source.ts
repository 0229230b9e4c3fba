// What the dashboard reads: the daemon's running parts (drainers, collector) for their figures, memcached for
// server stats and jobs, and the data folder for the log files, the stats database and the daily reports.
import type { Client } from "../../client/index.js";
import type { LogDrainer } from "../../log/drainer.js";
import type { Progress } from "../../progress/index.js";
import type { StatsDb } from "../../sinks/stats-db.js";
import type { Collector } from "../../stats/collector.js";
import type { ServerNames } from "./server-stats.js";

export interface DashboardSource {
  /** The daemon's client: the embedded server, a memcached or a pool. */
  client: Client;
  /** How to show servers whose client address is not the one others use (the embedded server's). */
  serverNames?: ServerNames;
  namespace: string;
  /** The log streams this daemon drains (their drainers, in the same order). */
  streams: readonly string[];
  drainers: readonly LogDrainer[];
  collector: Collector | undefined;
  progress: Progress;
  /** The stats database the collector writes, when it runs here. */
  db: StatsDb | undefined;
  /** Folder of the drainers' files (DATA/logs). */
  logsDir: string;
  /** Folder of the daily reports (DATA/reports). */
  reportsDir: string;
}
