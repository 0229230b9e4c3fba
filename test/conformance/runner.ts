// Runs conformance scripts against a target (real memcached, or the embedded server) and compares
// two targets' replies after the declared normalizers.
import { countMnCommands, RawSession, type ReadOutcome, type ScriptEnd } from "../helpers/raw-session.js";
import { startServer } from "../../src/server/index.js";
import { startRealMemcached } from "../helpers/real-memcached.js";
import { diffRows, escapeBytes, normalize, render, type NormalizerName } from "./normalize.js";
import type { ConformanceCase, Piece, ReplyContext, Step } from "./script.js";

export const CASE_TIMEOUT_MS = 5000; // one step's reply that has not ended by then is reported as a timeout

export interface Target {
  readonly label: string;
  readonly host: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** What the second target is: the embedded server (default), or a second real memcached (self-check). */
export type TargetKind = "embedded" | "memcached";

export function targetUnderTest(): TargetKind {
  const kind = process.env.MEMIPC_CONFORMANCE_TARGET ?? "embedded";
  if (kind !== "embedded" && kind !== "memcached") {
    throw new Error(
      `MEMIPC_CONFORMANCE_TARGET=${kind}: give "embedded" (default) or "memcached" (self-check)`,
    );
  }
  return kind;
}

/** MEMIPC_CONFORMANCE_EXACT_CAS=1 compares absolute CAS uniques (see rankCas in normalize.ts). */
export const exactCas = (): boolean => process.env.MEMIPC_CONFORMANCE_EXACT_CAS === "1";

/**
 * memcached's LRU maintainer and LRU crawler threads take references on items at moments of their
 * own; an incr/decr rewrites a value in place (space-padded) only when nobody else holds the item, so
 * with those threads running the same script sometimes gets "99 " and sometimes "99". Without them
 * the reference is deterministic; nothing else a client sees in these tests depends on them.
 */
export const REFERENCE_MEMCACHED_ARGS = ["-o", "no_lru_maintainer,no_lru_crawler"];

/** A real memcached as a target; `stock` keeps memcached's default options (background threads on). */
export async function startMemcachedTarget(label = "memcached", stock = false): Promise<Target> {
  const server = await startRealMemcached(stock ? {} : { extraArgs: REFERENCE_MEMCACHED_ARGS });
  return {
    label: `${label} (pid ${server.pid})`,
    host: server.host,
    port: server.port,
    stop: () => server.stop(),
  };
}

export async function startEmbeddedTarget(): Promise<Target> {
  const server = await startServer({ host: "127.0.0.1", port: 0 });
  return { label: "embedded", host: server.host, port: server.port, stop: () => server.close() };
}

/** The target under test; in the self-check, `stock` picks memcached's default options as for the reference. */
export function startTargetUnderTest(stock = false): Promise<Target> {
  if (targetUnderTest() === "embedded") return startEmbeddedTarget();
  return startMemcachedTarget(stock ? "memcached #2 with default options" : "memcached #2", stock);
}

/** One run of one script on one target. */
export interface ScriptRun {
  /** Bytes sent, with dynamic pieces as they were resolved on this target. */
  readonly sent: Buffer;
  readonly reply: Buffer;
  /** How the last read ended; a non-final step that did not end stops the script there. */
  readonly outcome: ReadOutcome;
  /** The step whose read did not end as planned, when one did not. */
  readonly stoppedAtStep?: number;
}

export interface Script {
  readonly steps: readonly Step[];
  readonly end: ScriptEnd;
}

export async function runScript(
  target: Target,
  script: Script,
  timeoutMs = CASE_TIMEOUT_MS,
): Promise<ScriptRun> {
  const session = await RawSession.open(target.host, target.port, timeoutMs);
  const sent: Buffer[] = [];
  const replies: Buffer[] = [];
  const context: ReplyContext = {
    get replies() {
      return Buffer.concat(replies);
    },
  };
  try {
    for (let i = 0; i < script.steps.length; i++) {
      const step = script.steps[i]!;
      if (step.pauseMs > 0) await sleep(step.pauseMs);
      const writes = step.writes.map((piece) => resolvePiece(piece, context));
      sent.push(...writes);
      await session.sendPieces(writes);
      const last = i === script.steps.length - 1;
      const mnCount = countMnCommands(Buffer.concat(writes));
      const read = last
        ? await session.finish(script.end, timeoutMs, mnCount)
        : await session.readToSentinel(timeoutMs, mnCount);
      replies.push(read.bytes);
      if (last) return { sent: Buffer.concat(sent), reply: Buffer.concat(replies), outcome: read.outcome };
      if (read.outcome !== "done") {
        return {
          sent: Buffer.concat(sent),
          reply: Buffer.concat(replies),
          outcome: read.outcome,
          stoppedAtStep: i,
        };
      }
    }
    return { sent: Buffer.concat(sent), reply: Buffer.concat(replies), outcome: "done" };
  } finally {
    session.close();
  }
}

function resolvePiece(piece: Piece, context: ReplyContext): Buffer {
  const bytes = typeof piece === "function" ? piece(context) : piece;
  return typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes;
}

/** The outcome every run of a script should have on real memcached. */
export function expectedOutcome(end: ScriptEnd): ReadOutcome {
  return end === "close" ? "closed" : "done";
}

/** The reply as compared: normalized segments, plus a marker when the read did not end as planned. */
export function comparable(run: ScriptRun, normalizers: readonly NormalizerName[], end: ScriptEnd): string[] {
  const rows = render(normalize(run.reply, normalizers, { exactCas: exactCas() }));
  if (run.outcome !== expectedOutcome(end) || run.stoppedAtStep !== undefined) {
    rows.push(
      run.outcome === "timeout"
        ? `«no end within ${CASE_TIMEOUT_MS} ms${run.stoppedAtStep !== undefined ? ` at step ${run.stoppedAtStep + 1}` : ""}»`
        : `«connection ${run.outcome}${run.stoppedAtStep !== undefined ? ` at step ${run.stoppedAtStep + 1}` : ""}»`,
    );
  } else if (run.outcome === "closed") {
    rows.push("«connection closed by the server»");
  }
  return rows;
}

/** A readable report when the replies differ after normalizing, else undefined. */
export function compareRuns(
  name: string,
  reference: { label: string; run: ScriptRun },
  candidate: { label: string; run: ScriptRun },
  normalizers: readonly NormalizerName[],
  end: ScriptEnd,
): string | undefined {
  const expected = comparable(reference.run, normalizers, end);
  const actual = comparable(candidate.run, normalizers, end);
  if (expected.length === actual.length && expected.every((row, i) => row === actual[i])) return undefined;
  return [
    `case: ${name}`,
    `sent: ${describeSent(reference.run.sent)}`,
    // Pieces computed from replies (CAS uniques) can resolve differently when the replies differ.
    candidate.run.sent.equals(reference.run.sent)
      ? undefined
      : `sent to ${candidate.label}: ${describeSent(candidate.run.sent)}`,
    normalizers.length > 0 ? `normalizers: ${normalizers.join(", ")}` : undefined,
    `- ${reference.label} replied:`,
    ...expected.map((row) => `      ${row}`),
    `+ ${candidate.label} replied:`,
    ...actual.map((row) => `      ${row}`),
    `first difference:`,
    diffRows(expected, actual),
  ]
    .filter((row) => row !== undefined)
    .join("\n");
}

/** The bytes sent, escaped, with long runs of one byte folded so megabyte values stay readable. */
export function describeSent(bytes: Buffer): string {
  const escaped = escapeBytes(bytes.toString("latin1"));
  const folded = escaped.replace(
    /([^\\])\1{63,}/g,
    (run: string, ch: string) => `${ch}${ch}${ch}«×${run.length}»`,
  );
  return folded.length > 2000 ? `${folded.slice(0, 2000)}…(${bytes.length} bytes in all)` : folded;
}

export function runCaseOn(target: Target, c: ConformanceCase): Promise<ScriptRun> {
  return runScript(target, c);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
