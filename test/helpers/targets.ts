// The servers a shared suite runs against: the embedded server and a real memcached. Suites are written once
// and run for each target (the only thing that differs between their runs is how the server starts).
import { startServer } from "../../src/server/index.js";
import { startRealMemcached } from "./real-memcached.js";

export interface RunningServer {
  readonly host: string;
  readonly port: number;
  stop(): Promise<void>;
}

export interface Target {
  readonly name: string;
  /** Needs the memcached binary (skipped without it, a failure under CI=true). */
  readonly real: boolean;
  start(): Promise<RunningServer>;
}

export const TARGETS: readonly Target[] = [
  {
    name: "embedded server",
    real: false,
    async start() {
      const server = await startServer({ port: 0 });
      return { host: "127.0.0.1", port: server.port, stop: () => server.close() };
    },
  },
  {
    name: "real memcached",
    real: true,
    async start() {
      const memcached = await startRealMemcached();
      return { host: memcached.host, port: memcached.port, stop: () => memcached.stop() };
    },
  },
];
