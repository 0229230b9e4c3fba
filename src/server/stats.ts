// Counters and the `stats` command, with memcached's field names in memcached's order.
import type { Engine } from "./engine.js";

export class ServerStats {
  readonly #now: () => number;
  readonly startedAt: number;
  currConnections = 0;
  totalConnections = 0;
  rejectedConnections = 0;
  cmdGet = 0;
  cmdSet = 0;
  cmdFlush = 0;
  cmdTouch = 0;
  cmdMeta = 0;
  getHits = 0;
  getMisses = 0;
  deleteMisses = 0;
  deleteHits = 0;
  incrMisses = 0;
  incrHits = 0;
  decrMisses = 0;
  decrHits = 0;
  casMisses = 0;
  casHits = 0;
  casBadval = 0;
  touchHits = 0;
  touchMisses = 0;
  storeTooLarge = 0;
  storeNoMemory = 0;
  authCmds = 0;
  authErrors = 0;
  bytesRead = 0;
  bytesWritten = 0;
  detailEnabled = false;

  constructor(now: () => number) {
    this.#now = now;
    this.startedAt = now();
  }

  reset(): void {
    for (const name of RESETTABLE) this[name] = 0;
  }

  /** The reply to `stats [args]`, ready to send. */
  report(args: string[], engine: Engine): string {
    if (args.length === 0) return lines(this.general(engine));
    const sub = args[0]!;
    switch (sub) {
      case "reset":
        this.reset();
        engine.store.counters.evictions = 0;
        return "RESET\r\n";
      case "detail":
        if (args.length < 2) return "CLIENT_ERROR usage: stats detail on|off|dump\r\n";
        if (args[1] === "on" || args[1] === "off") {
          this.detailEnabled = args[1] === "on";
          return "OK\r\n";
        }
        if (args[1] === "dump") return "END\r\n";
        return "CLIENT_ERROR usage: stats detail on|off|dump\r\n";
      case "settings":
        return lines(this.settings(engine));
      case "cachedump": {
        if (args.length < 3) return "CLIENT_ERROR bad command line\r\n";
        if (!/^\d+$/.test(args[1]!) || !/^\d+$/.test(args[2]!))
          return "CLIENT_ERROR bad command line format\r\n";
        if (Number(args[1]) >= 64) return "CLIENT_ERROR Illegal slab id\r\n";
        return "END\r\n";
      }
      case "conns":
        return "END\r\n";
      case "items":
        return lines(this.items(engine));
      case "slabs":
        return lines([
          ["active_slabs", engine.store.count > 0 ? 1 : 0],
          ["total_malloced", engine.store.bytes],
        ]);
      case "sizes":
        return "STAT sizes_status disabled\r\nEND\r\n";
      default:
        return "ERROR\r\n";
    }
  }

  general(engine: Engine): [string, string | number][] {
    const now = this.#now();
    const usage = process.cpuUsage();
    const store = engine.store;
    const c = store.counters;
    return [
      ["pid", process.pid],
      ["uptime", now - this.startedAt],
      ["time", now],
      ["version", engine.options.version],
      ["libevent", "node-" + process.versions.node],
      ["pointer_size", 64],
      ["rusage_user", (usage.user / 1e6).toFixed(6)],
      ["rusage_system", (usage.system / 1e6).toFixed(6)],
      ["max_connections", engine.options.maxConnections],
      ["curr_connections", this.currConnections],
      ["total_connections", this.totalConnections],
      ["rejected_connections", this.rejectedConnections],
      ["connection_structures", this.currConnections],
      ["cmd_get", this.cmdGet],
      ["cmd_set", this.cmdSet],
      ["cmd_flush", this.cmdFlush],
      ["cmd_touch", this.cmdTouch],
      ["cmd_meta", this.cmdMeta],
      ["get_hits", this.getHits],
      ["get_misses", this.getMisses],
      ["get_expired", c.getExpired],
      ["get_flushed", c.getFlushed],
      ["delete_misses", this.deleteMisses],
      ["delete_hits", this.deleteHits],
      ["incr_misses", this.incrMisses],
      ["incr_hits", this.incrHits],
      ["decr_misses", this.decrMisses],
      ["decr_hits", this.decrHits],
      ["cas_misses", this.casMisses],
      ["cas_hits", this.casHits],
      ["cas_badval", this.casBadval],
      ["touch_hits", this.touchHits],
      ["touch_misses", this.touchMisses],
      ["store_too_large", this.storeTooLarge],
      ["store_no_memory", this.storeNoMemory],
      ["auth_cmds", this.authCmds],
      ["auth_errors", this.authErrors],
      ["bytes_read", this.bytesRead],
      ["bytes_written", this.bytesWritten],
      ["limit_maxbytes", store.memoryLimit],
      ["accepting_conns", 1],
      ["threads", 1],
      ["bytes", store.bytes],
      ["curr_items", store.count],
      ["total_items", c.totalItems],
      ["expired_unfetched", c.expiredUnfetched],
      ["evicted_unfetched", c.evictedUnfetched],
      ["evicted_active", c.evictedActive],
      ["evictions", c.evictions],
      ["reclaimed", c.reclaimed],
    ];
  }

  settings(engine: Engine): [string, string | number][] {
    const o = engine.options;
    return [
      ["maxbytes", engine.store.memoryLimit],
      ["maxconns", o.maxConnections],
      ["tcpport", o.port],
      ["udpport", 0],
      ["inter", o.host],
      ["verbosity", engine.verbosity],
      ["evictions", "on"],
      ["cas_enabled", "yes"],
      ["item_size_max", o.maxItemSize],
      ["idle_timeout", o.idleTimeout],
      ["flush_enabled", "yes"],
    ];
  }

  items(engine: Engine): [string, string | number][] {
    const store = engine.store;
    if (store.count === 0) return [];
    return [
      ["items:1:number", store.count],
      ["items:1:evicted", store.counters.evictions],
      ["items:1:reclaimed", store.counters.reclaimed],
    ];
  }
}

const RESETTABLE = [
  "totalConnections",
  "rejectedConnections",
  "cmdGet",
  "cmdSet",
  "cmdFlush",
  "cmdTouch",
  "cmdMeta",
  "getHits",
  "getMisses",
  "deleteMisses",
  "deleteHits",
  "incrMisses",
  "incrHits",
  "decrMisses",
  "decrHits",
  "casMisses",
  "casHits",
  "casBadval",
  "touchHits",
  "touchMisses",
  "storeTooLarge",
  "storeNoMemory",
  "authCmds",
  "authErrors",
  "bytesRead",
  "bytesWritten",
] as const;

function lines(stats: [string, string | number][]): string {
  let text = "";
  for (const [name, value] of stats) text += `STAT ${name} ${value}\r\n`;
  return text + "END\r\n";
}
