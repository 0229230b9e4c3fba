// Differential conformance: every case in the table runs on real memcached and on the embedded
// server in the same run, and the replies must be identical byte for byte after the case's declared
// normalizers. MEMIPC_CONFORMANCE_TARGET=memcached runs the table against a second memcached instead
// (a check of the table itself); MEMIPC_CONFORMANCE_REPORT=FILE also writes every difference to FILE.
import assert from "node:assert/strict";
import { appendFileSync, writeFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { memcachedAvailable, requireMemcached } from "../helpers/real-memcached.js";
import { CASES } from "./cases.js";
import { NORMALIZERS } from "./normalize.js";
import {
  comparable,
  compareRuns,
  describeSent,
  expectedOutcome,
  runScript,
  startMemcachedTarget,
  startTargetUnderTest,
  targetUnderTest,
  type Target,
} from "./runner.js";

const REPORT_FILE = process.env.MEMIPC_CONFORMANCE_REPORT;
/** Writes every case's bytes and real memcached's normalized reply to this file (for reviewing the table). */
const DUMP_FILE = process.env.MEMIPC_CONFORMANCE_DUMP;
/** Runs only the cases whose name contains this text (for chasing one difference). */
const ONLY = process.env.MEMIPC_CONFORMANCE_ONLY;
const CASE_TEST_TIMEOUT_MS = 30_000;

describe("conformance table", () => {
  it("holds at least 300 cases with unique names, each sending bytes", () => {
    assert.ok(CASES.length >= 300, `only ${CASES.length} cases`);
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length);
    for (const c of CASES)
      assert.ok(
        c.steps.some((s) => s.writes.length > 0),
        `${c.name} sends nothing`,
      );
  });

  it("gives every normalizer a reason", () => {
    for (const [name, normalizer] of Object.entries(NORMALIZERS)) {
      assert.ok(normalizer.reason.length > 40, `normalizer ${name} needs a written reason`);
    }
  });
});

describe(`conformance: ${targetUnderTest()} replies like memcached`, () => {
  let reference: Target | undefined;
  let stockReference: Target | undefined;
  let candidate: Target | undefined;
  let stockCandidate: Target | undefined;
  let differences = 0;

  before(async () => {
    if (REPORT_FILE) writeFileSync(REPORT_FILE, "");
    if (DUMP_FILE) writeFileSync(DUMP_FILE, "");
    if (!memcachedAvailable()) return;
    reference = await startMemcachedTarget();
    stockReference = await startMemcachedTarget("memcached with default options", true);
    candidate = await startTargetUnderTest();
    // The embedded server has one configuration: it serves the stock cases too.
    stockCandidate = targetUnderTest() === "embedded" ? candidate : await startTargetUnderTest(true);
  });

  after(async () => {
    const targets = new Set([reference, stockReference, candidate, stockCandidate]);
    await Promise.all([...targets].map((target) => target?.stop()));
    if (REPORT_FILE) appendFileSync(REPORT_FILE, `${differences} of ${CASES.length} cases differ\n`);
  });

  for (const c of CASES) {
    if (ONLY !== undefined && !c.name.includes(ONLY)) continue;
    it(c.name, { timeout: CASE_TEST_TIMEOUT_MS }, async (t) => {
      if (!requireMemcached(t)) return;
      assert.ok(reference && stockReference && candidate && stockCandidate, "servers did not start");
      const against = c.reference === "stock" ? stockReference : reference;
      const tested = c.reference === "stock" ? stockCandidate : candidate;
      const [ref, got] = await Promise.all([runScript(against, c), runScript(tested, c)]);
      if (ref.outcome !== expectedOutcome(c.end) || ref.stoppedAtStep !== undefined) {
        assert.fail(
          `case "${c.name}" does not end as declared (${c.end}) on real memcached: the read ended by ` +
            `${ref.outcome}${ref.stoppedAtStep !== undefined ? ` at step ${ref.stoppedAtStep + 1}` : ""}; ` +
            `fix the case.\nsent: ${describeSent(ref.sent)}`,
        );
      }
      if (DUMP_FILE) {
        const rows = comparable(ref, c.normalize, c.end).map((row) => `      ${row}`);
        appendFileSync(DUMP_FILE, `case: ${c.name}\nsent: ${describeSent(ref.sent)}\n${rows.join("\n")}\n\n`);
      }
      const difference = compareRuns(
        c.name,
        { label: against.label, run: ref },
        { label: tested.label, run: got },
        c.normalize,
        c.end,
      );
      if (difference !== undefined) {
        differences++;
        if (REPORT_FILE) appendFileSync(REPORT_FILE, `${difference}\n\n`);
        assert.fail(difference);
      }
    });
  }
});
