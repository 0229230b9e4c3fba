// What the dashboard reads, for tests that start one in process: nothing drained or collected unless given,
// jobs under the namespace, and the log and report folders under `dir`.
import { join } from "node:path";
import type { Client } from "../../src/client/index.js";
import type { DashboardSource } from "../../src/http/dashboard/source.js";
import { Progress } from "../../src/progress/progress.js";

export function dashboardSource(
  client: Client,
  namespace: string,
  dir: string,
  parts: Partial<DashboardSource> = {},
): DashboardSource {
  return {
    client,
    namespace,
    streams: [],
    drainers: [],
    collector: undefined,
    progress: parts.progress ?? new Progress(client, { namespace }),
    db: undefined,
    logsDir: join(dir, "logs"),
    reportsDir: join(dir, "reports"),
    ...parts,
  };
}
