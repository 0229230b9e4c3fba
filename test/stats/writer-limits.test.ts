// Stats producers given names and values that cannot be stored: every kind of bad counter, gauge or timer name
// and every bad amount is refused with InputError before anything reaches memcached (no item is created). Run
// against the embedded server, real memcached and a pool.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { InputError } from "../../src/errors.js";
import { StatsWriter } from "../../src/stats/writer.js";
import { requireMemcached } from "../helpers/real-memcached.js";
import { ALL_TARGETS, statTotal, useTarget } from "../helpers/targets.js";

const BAD_NAMES = [
  "",
  "has space",
  "new\naccount",
  "tab\there",
  "nul\0",
  "x".repeat(101),
  "ünicode",
  "\ud800",
];

for (const target of ALL_TARGETS) {
  describe(`stats writer limits (${target.name})`, () => {
    const use = useTarget(target);

    it("stats: bad names and amounts get InputError before anything is written", async (t) => {
      if (!use.server) return void requireMemcached(t);
      const client = use.client;
      const writer = new StatsWriter(client, { namespace: "st" + randomBytes(4).toString("hex") });
      const before = await statTotal(client, "curr_items");
      const calls: Array<[string, () => Promise<void>, RegExp]> = [];
      for (const name of BAD_NAMES) {
        const shown = JSON.stringify(name).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        const pattern = new RegExp(
          `stat name ${shown} must be 1 to 100 letters, digits.*; nothing was counted`,
        );
        calls.push([`incr ${shown}`, () => writer.incr(name), pattern]);
        calls.push([`gauge ${shown}`, () => writer.gauge(name, 1), pattern]);
        calls.push([`timing ${shown}`, () => writer.timing(name, 5), pattern]);
      }
      calls.push(["incr by 0", () => writer.incr("ok", 0), /1 or more/]);
      calls.push(["incr by 2^53", () => writer.incr("ok", 2 ** 53), /whole number/]);
      calls.push(["gauge Infinity", () => writer.gauge("ok", Infinity), /finite/]);
      calls.push(["timing NaN", () => writer.timing("ok", NaN), /duration/]);
      for (const [what, call, pattern] of calls) {
        await assert.rejects(call(), (error: unknown) => {
          assert.ok(error instanceof InputError, `${what}: an InputError, not ${String(error)}`);
          assert.match(error.message, pattern, what);
          return true;
        });
      }
      assert.equal(await statTotal(client, "curr_items"), before, "no item was written");
      // The same writer still counts: the count of items does show a write.
      await writer.incr("accounts.created");
      assert.ok((await statTotal(client, "curr_items")) > before);
    });
  });
}
