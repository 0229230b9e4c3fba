// Who may use the HTTP API: loopback binding needs nothing; any other address needs a bearer token, given in
// the Authorization header, as ?token= (for EventSource and plain links, which cannot set headers), or in the
// cookie a page opened with ?token= sets, so the page's own scripts, assets and API calls carry it.
import { createHash, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import type { IncomingMessage } from "node:http";
import { ConfigError } from "../errors.js";

export const MIN_TOKEN_LENGTH = 16; // characters: shorter tokens are guessable over the network

/** True for addresses that only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (bare === "localhost") return true;
  if (isIP(bare) === 4) return bare.startsWith("127.");
  if (isIP(bare) === 6) return bare === "::1" || /^::ffff:127\./i.test(bare);
  return false;
}

/**
 * Checks the token option against the host: refused when the server would be reachable from elsewhere
 * without one, or when the token is too short or holds characters a header cannot carry.
 */
export function checkToken(host: string, token: string | undefined): void {
  if (token === undefined || token === "") {
    if (isLoopback(host)) return;
    throw new ConfigError(
      `the HTTP server would listen on ${host}, which other machines can reach, without a token: ` +
        `give one (--token or MEMIPC_TOKEN, e.g. from "openssl rand -hex 16") or listen on 127.0.0.1`,
    );
  }
  if (token.length < MIN_TOKEN_LENGTH || !/^[\x21-\x7e]+$/.test(token)) {
    throw new ConfigError(
      `the HTTP token must be at least ${MIN_TOKEN_LENGTH} printable ASCII characters without spaces ` +
        `(e.g. from "openssl rand -hex 16")`,
    );
  }
}

/** Compares tokens in constant time (digests of equal length, so the length does not leak either). */
export class TokenCheck {
  readonly #digest: Buffer;

  constructor(token: string) {
    this.#digest = digest(token);
  }

  /** True when the request carries the token: `Authorization: Bearer T`, `?token=T` or the cookie. */
  allows(request: IncomingMessage, url: URL): boolean {
    const header = request.headers.authorization;
    const bearer =
      header !== undefined && /^Bearer\s+/i.test(header) ? header.replace(/^Bearer\s+/i, "") : "";
    const given = bearer !== "" ? bearer : (url.searchParams.get("token") ?? cookieToken(request) ?? "");
    return given !== "" && timingSafeEqual(digest(given), this.#digest);
  }

  /**
   * The cookie to set on an answer to a request that gave the token as ?token=: HttpOnly (scripts cannot read
   * it) and SameSite=Strict (other sites cannot send it, so they cannot cancel jobs through a visitor).
   */
  cookieFor(url: URL): string | undefined {
    const token = url.searchParams.get("token");
    if (token === null || token === "") return undefined;
    return `${TOKEN_COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict`;
  }
}

export const TOKEN_COOKIE = "memipc_token";

function cookieToken(request: IncomingMessage): string | undefined {
  for (const part of (request.headers.cookie ?? "").split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === TOKEN_COOKIE) {
      try {
        return decodeURIComponent(value.join("="));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}
