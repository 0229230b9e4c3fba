// Reading each memcached server's `stats`, one server at a time when needed, so a server that does not answer
// shows as down instead of failing the whole read (the dashboard's overview and GET /metrics both use it).
import { Client } from "../../client/index.js";

/**
 * Names to show servers by, by the client's "host:port": the daemon reaches its embedded server on an
 * internal port, and shows it by the address everyone else uses.
 */
export type ServerNames = Readonly<Record<string, string>>;

/** One server's `stats`, or why it gave none. */
export interface ServerStatsReading {
  /** "host:port", as the client names it. */
  server: string;
  up: boolean;
  /** Empty when the server is down. */
  stats: Map<string, string>;
  /** Why the server is shown as down. */
  error: string | undefined;
}

/**
 * Every server's `stats`, in the client's server order. One request per server through `client`; when that
 * fails for a pool, each server is asked again on a connection of its own (closed after), so the ones that
 * answer are still shown.
 */
export async function readServerStats(
  client: Client,
  names: ServerNames = {},
): Promise<ServerStatsReading[]> {
  const shown = (server: string): string => names[server] ?? server;
  try {
    const all = await client.stats();
    return [...all].map(([server, stats]) => ({ server: shown(server), up: true, stats, error: undefined }));
  } catch (error) {
    if (client.servers.length === 1) {
      return [
        {
          server: shown(serverName(client.servers[0]!)),
          up: false,
          stats: new Map(),
          error: messageOf(error),
        },
      ];
    }
  }
  return Promise.all(
    client.servers.map(async (address): Promise<ServerStatsReading> => {
      const server = shown(serverName(address));
      const one = new Client({ ...client.options, servers: [address] });
      try {
        const stats = (await one.stats()).values().next().value ?? new Map<string, string>();
        return { server, up: true, stats, error: undefined };
      } catch (error) {
        return { server, up: false, stats: new Map(), error: messageOf(error) };
      } finally {
        one.close();
      }
    }),
  );
}

/** A server's figures, as the dashboard shows them. Numbers are absent when the server does not report them. */
export interface ServerFigures {
  server: string;
  up: boolean;
  error: string | null;
  version: string | null;
  /** s since the server started. */
  uptime: number | null;
  items: number | null;
  /** bytes of items stored, and the memory limit for them. */
  bytes: number | null;
  limitBytes: number | null;
  hits: number | null;
  misses: number | null;
  /** hits / (hits + misses); null before the first get. */
  hitRatio: number | null;
  connections: number | null;
  /** Items evicted to make room: undrained log entries and uncollected counters can be among them. */
  evictions: number | null;
}

export function serverFigures(reading: ServerStatsReading): ServerFigures {
  const s = reading.stats;
  const number = (name: string): number | null => {
    const text = s.get(name);
    const value = text === undefined ? NaN : Number(text);
    return Number.isFinite(value) ? value : null;
  };
  const hits = number("get_hits");
  const misses = number("get_misses");
  const gets = (hits ?? 0) + (misses ?? 0);
  return {
    server: reading.server,
    up: reading.up,
    error: reading.error ?? null,
    version: s.get("version") ?? null,
    uptime: number("uptime"),
    items: number("curr_items"),
    bytes: number("bytes"),
    limitBytes: number("limit_maxbytes"),
    hits,
    misses,
    hitRatio: gets === 0 ? null : (hits ?? 0) / gets,
    connections: number("curr_connections"),
    evictions: number("evictions"),
  };
}

function serverName(address: { host: string; port: number }): string {
  return `${address.host}:${address.port}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
