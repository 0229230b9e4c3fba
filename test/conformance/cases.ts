// The conformance table: every script the suite runs against real memcached and the embedded server.
// Each case names its group and behaviour, the bytes it sends (built by the helpers in script.ts, in
// one write, in pieces, or in steps), how it ends, and which fields it masks, each mask with its
// reason in normalize.ts. Suite-wide, CAS uniques are compared by rank (see rankCas in normalize.ts);
// MEMIPC_CONFORMANCE_EXACT_CAS=1 compares the absolute numbers instead.
//
// The reference memcached runs without its LRU maintainer and crawler threads (see
// REFERENCE_MEMCACHED_ARGS in runner.ts: they make incr's in-place rewrite racy); cases marked
// `reference: "stock"` (the `stats` name lists) compare with a memcached on default options.
//
// Not compared at all, with the reason:
// - `stats items`, `stats slabs`, `stats conns`, `stats sizes_enable`: named after memcached's slab
//   classes and file descriptors, which the embedded store does not have.
// - `shutdown`, `cache_memlimit`, `slabs`, `lru`, `lru_crawler`, `watch`, `misbehave`, `debugtime`:
//   memcached administration outside memipc's command set (DESIGN.md "Server").
// - the binary protocol (a first byte of 0x80): memipc serves the text and meta protocols only.
// - eviction order under a memory limit: it follows memcached's per-slab-class LRUs.
// - TTL-1 expiry checked in the same second, and `flush_all` with a delay under 2 s: memcached's
//   clock ticks once a second at an instant of its own, so the outcome is a race on both servers.
// - a remaining TTL (`t`) after a negative meta TTL (N-1, T-1): memcached reports a number derived
//   from its own uptime (an unsigned wrap), which no other process can share.
import { addMetaCases } from "./meta-cases.js";
import { CaseTable, type ConformanceCase } from "./script.js";
import { addTextCases } from "./text-cases.js";

function buildCases(): ConformanceCase[] {
  const table = new CaseTable();
  addTextCases(table);
  addMetaCases(table);
  return table.cases;
}

export const CASES: readonly ConformanceCase[] = buildCases();
