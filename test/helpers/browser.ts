// Debian's chromium, headless, driven by playwright-core: for tests that render memipc's pages. Missing, it
// fails the test under CI=true and skips it elsewhere.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestContext } from "node:test";
import { chromium, type Browser } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
/** The flags for a sandbox without a network beyond loopback: no background traffic, no GPU. */
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Where tests keep screenshots: test-artifacts/ in the project (this file runs from dist/test/helpers/). */
export const ARTIFACTS = join(fileURLToPath(new URL("../../../", import.meta.url)), "test-artifacts");

/** A headless chromium closed when the test ends, or undefined (test skipped) when it is not installed outside CI. */
export async function launchChromium(t: TestContext): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM)) {
    const why = `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)`;
    if (process.env.CI === "true") assert.fail(why);
    t.skip(why);
    return undefined;
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  return browser;
}
