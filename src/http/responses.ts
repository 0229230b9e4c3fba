// Writing JSON answers and errors: every error is `{"error": "what went wrong and what to do"}` with the
// status that says which kind it is.
import type { ServerResponse } from "node:http";

/** Sends `body` as JSON with `status`; nothing is cached (jobs change every moment). */
export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    ...headers,
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
  });
  response.end(text);
}

export function sendError(
  response: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  sendJson(response, status, { error: message }, headers);
}
