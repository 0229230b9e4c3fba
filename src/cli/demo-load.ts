// `memipc demo`'s visitors: requests to the proxy at a steady rate, a mix of pages (some slow, some missing,
// some failing), some from signed-in users, some with query strings that must not reach the log.
import { Agent, request as httpRequest } from "node:http";

const TICK = 20; // ms between scheduling rounds
const MAX_IN_FLIGHT = 500; // requests waiting for an answer; beyond it the round is skipped (and counted)
const REQUEST_TIMEOUT = 10_000; // ms a request may take
const USERS = 40; // signed-in visitors u1 … u40
const WORDS = ["shoes", "socks", "hats", "gloves", "scarves", "boots", "coats"];

/** The pages visited, with how often (weights). */
const PAGES: ReadonlyArray<readonly [number, () => string]> = [
  [24, () => "/"],
  [20, () => `/products/${1 + Math.floor(Math.random() * 115)}`], // over 100: 404
  [10, () => "/products"],
  [12, () => `/search?q=${pickOne(WORDS)}&session=${Math.random().toString(36).slice(2, 10)}`],
  [10, () => "/cart"], // 302 without a user
  [8, () => `/old-page-${Math.floor(Math.random() * 500)}`], // 404
  [4, () => "/error"], // 500
  [5, () => "/slow"],
  [4, () => "/api/jobs"],
];
const TOTAL_WEIGHT = PAGES.reduce((sum, [weight]) => sum + weight, 0);

export interface LoadCounts {
  sent: number;
  /** Answers by status class ("2xx"…), and "failed" for no answer. */
  byClass: Record<string, number>;
  skipped: number;
}

export interface Load {
  readonly counts: LoadCounts;
  /** Stops sending and waits (at most `ms`) for the requests in flight. */
  stop(ms?: number): Promise<void>;
}

/** Sends about `rate` requests a second to `baseUrl` until stopped. */
export function startLoad(baseUrl: string, rate: number): Load {
  const url = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 128 });
  const counts: LoadCounts = { sent: 0, byClass: {}, skipped: 0 };
  const began = Date.now();
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const settle = (outcome: string): void => {
    counts.byClass[outcome] = (counts.byClass[outcome] ?? 0) + 1;
    inFlight--;
    if (inFlight === 0) idle?.();
  };
  const send = (): void => {
    counts.sent++;
    inFlight++;
    const signedIn = Math.random() < 0.6;
    const request = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: pickPage(),
        agent,
        timeout: REQUEST_TIMEOUT,
        headers: signedIn ? { Cookie: `user=u${1 + Math.floor(Math.random() * USERS)}` } : {},
      },
      (response) => {
        response.resume();
        response.on("end", () => settle(`${Math.floor((response.statusCode ?? 0) / 100)}xx`));
        response.on("error", () => settle("failed"));
      },
    );
    request.on("timeout", () => request.destroy());
    request.on("error", () => settle("failed"));
    request.end();
  };
  const timer = setInterval(() => {
    const due = Math.floor(((Date.now() - began) / 1000) * rate) - counts.sent - counts.skipped;
    for (let i = 0; i < due; i++) {
      if (inFlight >= MAX_IN_FLIGHT) counts.skipped++;
      else send();
    }
  }, TICK);
  return {
    counts,
    async stop(ms = 5000) {
      clearInterval(timer);
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          idle = resolve;
          setTimeout(resolve, ms).unref();
        });
      }
      agent.destroy();
    },
  };
}

function pickPage(): string {
  let at = Math.random() * TOTAL_WEIGHT;
  for (const [weight, page] of PAGES) {
    at -= weight;
    if (at < 0) return page();
  }
  return "/";
}

function pickOne<T>(list: readonly T[]): T {
  return list[Math.floor(Math.random() * list.length)]!;
}
