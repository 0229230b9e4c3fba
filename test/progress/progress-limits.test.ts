// Progress given labels, messages, ids and results that cannot be stored: each is refused with InputError
// before anything is written, and a result too large to store leaves the job running so it can end with a
// smaller one. Run against the embedded server, real memcached and a pool.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { InputError } from "../../src/errors.js";
import { MAX_LABEL, MAX_MESSAGE, Progress } from "../../src/progress/progress.js";
import { requireMemcached } from "../helpers/real-memcached.js";
import { ALL_TARGETS, useTarget } from "../helpers/targets.js";

function inputError(pattern: RegExp): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof InputError, `an InputError, not ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  };
}

for (const target of ALL_TARGETS) {
  describe(`progress limits (${target.name})`, () => {
    const use = useTarget(target);

    it("progress: bad labels, ids, messages and results get InputError and write nothing", async (t) => {
      if (!use.server) return void requireMemcached(t);
      const client = use.client;
      const progress = new Progress(client, {
        namespace: "pr" + randomBytes(4).toString("hex"),
        throttle: 0,
      });
      const refusedStarts: Array<[string, string, RegExp]> = [
        [
          "x".repeat(MAX_LABEL + 1),
          "long-label",
          /label is \d+ characters, over the 200 allowed: shorten it/,
        ],
        ["half \udc00", "lone-label", /label is not UTF-8 text/],
        ["ok", "has space", /job id "has space" must be 1 to 100 letters/],
        ["ok", "line\nbreak", /job id "line\\nbreak" must be/],
        ["ok", "x".repeat(101), /must be 1 to 100 letters/],
      ];
      for (const [label, id, pattern] of refusedStarts) {
        await assert.rejects(progress.start(label, { id }), inputError(pattern));
      }
      for (const id of ["long-label", "lone-label"]) assert.equal(await progress.get(id), undefined);
      assert.deepEqual(await progress.list(), [], "no job was listed");

      const job = await progress.start("<b>export</b>", { id: "export-1", total: 10 });
      t.after(() => job.cancel().catch(() => undefined));
      assert.throws(
        () => job.update({ message: "y".repeat(MAX_MESSAGE + 1) }),
        inputError(/over the 2000 allowed/),
      );
      assert.throws(
        () => job.update({ done: 5, message: "\ud83d" }),
        inputError(/message is not UTF-8 text/),
      );
      assert.equal(job.record.done, 0, "a refused update changes nothing");
      // A result too large for memcached: refused, and the job is still running to be ended properly.
      await assert.rejects(
        job.done({ rows: "z".repeat(2 * 1024 * 1024) }),
        inputError(/the job is still running/),
      );
      assert.equal((await progress.get("export-1"))?.state, "running");
      await job.done({ rows: 10 });
      assert.equal((await progress.get("export-1"))?.state, "done");
      // A failure's reason is never refused: it is cut and made text.
      const failing = await progress.start("import", { id: "import-1" });
      await failing.fail(new Error("bad \ud800 " + "w".repeat(5000)));
      const failed = await progress.get("import-1");
      assert.equal(failed?.state, "failed");
      assert.equal(failed?.error?.length, MAX_MESSAGE);
      assert.ok(failed?.error?.startsWith("bad \ufffd "));
    });
  });
}
