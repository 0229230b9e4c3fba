// The servers a shared suite runs against: the embedded server, a real memcached, and (ALL_TARGETS) a pool of
// three. Suites are written once and run for each target (only how the servers start differs between runs).
import { after, before } from "node:test";
import { Client } from "../../src/client/index.js";
import { startServer } from "../../src/server/index.js";
import { memcachedAvailable, startRealMemcached } from "./real-memcached.js";

export interface RunningServer {
  readonly host: string;
  /** The (first) server's port. */
  readonly port: number;
  /** Every server, "host:port,…": one, or the pool's. */
  readonly servers: string;
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
      const servers = `127.0.0.1:${server.port}`;
      return { host: "127.0.0.1", port: server.port, servers, stop: () => server.close() };
    },
  },
  {
    name: "real memcached",
    real: true,
    async start() {
      const memcached = await startRealMemcached();
      const servers = `${memcached.host}:${memcached.port}`;
      return { host: memcached.host, port: memcached.port, servers, stop: () => memcached.stop() };
    },
  },
];

/** Three real memcached servers, keys spread over them by the client's consistent hashing. */
export const POOL_TARGET: Target = {
  name: "pool of three real memcached",
  real: true,
  async start() {
    const pool = await Promise.all([0, 1, 2].map(() => startRealMemcached()));
    return {
      host: pool[0]!.host,
      port: pool[0]!.port,
      servers: pool.map((m) => `${m.host}:${m.port}`).join(","),
      stop: async () => void (await Promise.all(pool.map((m) => m.stop()))),
    };
  },
};

/** The three kinds of backend every primitive must work on: the embedded server, memcached, and a pool. */
export const ALL_TARGETS: readonly Target[] = [...TARGETS, POOL_TARGET];

/** A suite's servers and a client of them, as `useTarget` keeps them. */
export interface TargetUse {
  /** Undefined when the target needs the memcached binary and it is missing: tests call requireMemcached. */
  readonly server: RunningServer | undefined;
  readonly client: Client;
}

/** Starts `target` before the enclosing suite's tests, with a client of it, and stops both after them. */
export function useTarget(target: Target): TargetUse {
  let server: RunningServer | undefined;
  let client: Client | undefined;
  before(async () => {
    server = target.real && !memcachedAvailable() ? undefined : await target.start();
    if (server) client = new Client({ servers: server.servers });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });
  return {
    get server() {
      return server;
    },
    get client() {
      if (client === undefined) throw new Error(`${target.name} was not started: check server first`);
      return client;
    },
  };
}

/** A `stats` counter summed over every server of the client (one, or the pool's). */
export async function statTotal(client: Client, name: string): Promise<number> {
  let total = 0;
  for (const stats of (await client.stats()).values()) total += Number(stats.get(name) ?? NaN);
  return total;
}
