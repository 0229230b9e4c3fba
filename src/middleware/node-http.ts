// The request log for a plain node:http server: wrap the request handler, or call `track(req, res)` first
// thing in it.
import type { IncomingMessage, ServerResponse } from "node:http";
import { RequestLog, type RequestLogOptions } from "./request-log.js";

/** A node:http request handler (what createServer takes). */
export type RequestHandler<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
> = (req: Req, res: Res) => unknown;

/** The wrapped handler: call it as the original; `close()` waits for the appends in flight. */
export type LoggedHandler<Req extends IncomingMessage, Res extends ServerResponse> = RequestHandler<
  Req,
  Res
> & {
  readonly requestLog: RequestLog<Req>;
  close(): Promise<void>;
};

/**
 * Wraps a node:http request handler so each request is logged and counted once its response has finished:
 * `createServer(withRequestLog(handler, { servers: "127.0.0.1:11211" }))`. The handler runs exactly as
 * before (its return value and exceptions pass through); logging happens afterwards and never throws.
 */
export function withRequestLog<Req extends IncomingMessage, Res extends ServerResponse>(
  handler: RequestHandler<Req, Res>,
  options: Partial<RequestLogOptions<Req>> | RequestLog<Req> = {},
): LoggedHandler<Req, Res> {
  const log = options instanceof RequestLog ? options : new RequestLog<Req>(options);
  const logged = (req: Req, res: Res): unknown => {
    log.track(req, res);
    return handler(req, res);
  };
  return Object.assign(logged, { requestLog: log, close: () => log.close() });
}
