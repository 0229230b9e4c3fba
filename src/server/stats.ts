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

  /**
   * `stats`: every field memcached 1.6 reports, in its order, so tools that read them by name work.
   * Fields that describe memcached internals memipc does not have (slab mover, LRU crawler, extstore
   * buffers) keep memcached's idle values.
   */
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
      ["response_obj_oom", 0],
      ["response_obj_count", this.currConnections],
      ["response_obj_bytes", 0],
      ["read_buf_count", this.currConnections],
      ["read_buf_bytes", 0],
      ["read_buf_bytes_free", 0],
      ["read_buf_oom", 0],
      ["reserved_fds", 0],
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
      ["listen_disabled_num", 0],
      ["time_in_listen_disabled_us", 0],
      ["threads", 1],
      ["conn_yields", 0],
      ["hash_power_level", 16],
      ["hash_bytes", 524288],
      ["hash_is_expanding", 0],
      ["slab_reassign_rescues", 0],
      ["slab_reassign_chunk_rescues", 0],
      ["slab_reassign_evictions_nomem", 0],
      ["slab_reassign_inline_reclaim", 0],
      ["slab_reassign_busy_items", 0],
      ["slab_reassign_busy_deletes", 0],
      ["slab_reassign_running", 0],
      ["slabs_moved", 0],
      ["lru_crawler_running", 0],
      ["lru_crawler_starts", 0],
      ["lru_maintainer_juggles", 0],
      ["malloc_fails", 0],
      ["log_worker_dropped", 0],
      ["log_worker_written", 0],
      ["log_watcher_skipped", 0],
      ["log_watcher_sent", 0],
      ["log_watchers", 0],
      ["unexpected_napi_ids", 0],
      ["round_robin_fallback", 0],
      ["bytes", store.bytes],
      ["curr_items", store.count],
      ["total_items", c.totalItems],
      ["slab_global_page_pool", 0],
      ["expired_unfetched", c.expiredUnfetched],
      ["evicted_unfetched", c.evictedUnfetched],
      ["evicted_active", c.evictedActive],
      ["evictions", c.evictions],
      ["reclaimed", c.reclaimed],
      ["crawler_reclaimed", c.crawlerReclaimed],
      ["crawler_items_checked", c.crawlerChecked],
      ["lrutail_reflocked", 0],
      ["moves_to_cold", 0],
      ["moves_to_warm", 0],
      ["moves_within_lru", 0],
      ["direct_reclaims", 0],
      ["lru_bumps_dropped", 0],
    ];
  }

  /** `stats settings`: memcached's fields in its order; memipc's own values where it has the setting. */
  settings(engine: Engine): [string, string | number][] {
    const o = engine.options;
    return [
      ["maxbytes", engine.store.memoryLimit],
      ["maxconns", o.maxConnections],
      ["tcpport", o.port],
      ["udpport", 0],
      ["inter", o.host],
      ["verbosity", engine.verbosity],
      ["oldest", 0],
      ["evictions", "on"],
      ["domain_socket", "NULL"],
      ["umask", 700],
      ["shutdown_command", "no"],
      ["growth_factor", "1.25"],
      ["chunk_size", 48],
      ["num_threads", 1],
      ["num_threads_per_udp", 1],
      ["stat_key_prefix", ":"],
      ["detail_enabled", this.detailEnabled ? "yes" : "no"],
      ["reqs_per_event", 20],
      ["cas_enabled", "yes"],
      ["tcp_backlog", 1024],
      ["binding_protocol", "ascii"],
      ["auth_enabled_sasl", "no"],
      ["auth_enabled_ascii", o.authFile ?? "no"],
      ["item_size_max", o.maxItemSize],
      ["maxconns_fast", "yes"],
      ["hashpower_init", 0],
      ["slab_reassign", "no"],
      ["slab_automove", 0],
      ["slab_automove_ratio", "0.80"],
      ["slab_automove_window", 30],
      ["slab_chunk_max", Math.floor(o.maxItemSize / 2)],
      ["lru_crawler", "yes"],
      ["lru_crawler_sleep", 100],
      ["lru_crawler_tocrawl", 0],
      ["tail_repair_time", 0],
      ["flush_enabled", "yes"],
      ["dump_enabled", "yes"],
      ["hash_algorithm", "node-map"],
      ["lru_maintainer_thread", "no"],
      ["lru_segmented", "yes"],
      ["hot_lru_pct", 20],
      ["warm_lru_pct", 40],
      ["hot_max_factor", "0.20"],
      ["warm_max_factor", "2.00"],
      ["temp_lru", "no"],
      ["temporary_ttl", 61],
      ["idle_timeout", o.idleTimeout],
      ["watcher_logbuf_size", 262144],
      ["worker_logbuf_size", 65536],
      ["read_buf_mem_limit", 0],
      ["track_sizes", "no"],
      ["inline_ascii_response", "no"],
      ["ext_item_size", 512],
      ["ext_item_age", 4294967295],
      ["ext_low_ttl", 0],
      ["ext_recache_rate", 2000],
      ["ext_wbuf_size", 4194304],
      ["ext_compact_under", 0],
      ["ext_drop_under", 0],
      ["ext_max_sleep", 1000000],
      ["ext_max_frag", "0.80"],
      ["slab_automove_freeratio", "0.010"],
      ["ext_drop_unread", "no"],
      ["ssl_enabled", o.tlsCert === undefined ? "no" : "yes"],
      ["ssl_chain_cert", o.tlsCert ?? "(null)"],
      ["ssl_key", o.tlsKey ?? "(null)"],
      // memcached's mode 2: a client certificate is required.
      ["ssl_verify_mode", o.tlsCa === undefined ? 0 : 2],
      ["ssl_keyformat", 1],
      ["ssl_ciphers", "NULL"],
      ["ssl_ca_cert", o.tlsCa ?? "NULL"],
      ["ssl_wbuf_size", 16384],
      ["ssl_session_cache", "no"],
      ["ssl_kernel_tls", "no"],
      ["ssl_min_version", "tlsv1.2"],
      ["num_napi_ids", "(null)"],
      ["memory_file", "(null)"],
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
