// Waiting in tests for something another process, socket or timer brings about: polled, and bounded.
import { setTimeout as sleep } from "node:timers/promises";

export const WAIT_TIMEOUT_MS = 15_000; // what a test waits for has happened by then
const POLL_MS = 20;

/** Polls `check` every 20 ms until it returns true; fails naming `what` after `timeout` ms. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeout = WAIT_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(POLL_MS);
  }
}
