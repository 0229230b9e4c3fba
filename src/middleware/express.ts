// The request log as Express middleware: `app.use(expressRequestLog({ servers: "127.0.0.1:11211" }))`,
// before the routes. Typed structurally, so memipc does not depend on Express.
import type { IncomingMessage, ServerResponse } from "node:http";
import { RequestLog, type RequestLogOptions } from "./request-log.js";

/** Express middleware that logs each request; `close()` waits for the appends in flight. */
export type ExpressRequestLog<Req extends IncomingMessage> = ((
  req: Req,
  res: ServerResponse,
  next: (error?: unknown) => void,
) => void) & {
  readonly requestLog: RequestLog<Req>;
  close(): Promise<void>;
};

/**
 * Middleware that logs and counts every request once its response has finished. The path is Express's
 * `originalUrl` (the full path, also inside routers), the address `req.ip` (which honours "trust proxy"),
 * and `userId` gets Express's request, so `(req) => req.user?.id` works after an authentication middleware.
 */
export function expressRequestLog<Req extends IncomingMessage = IncomingMessage>(
  options: Partial<RequestLogOptions<Req>> | RequestLog<Req> = {},
): ExpressRequestLog<Req> {
  const log = options instanceof RequestLog ? options : new RequestLog<Req>(options);
  const middleware = (req: Req, res: ServerResponse, next: (error?: unknown) => void): void => {
    log.track(req, res);
    next();
  };
  return Object.assign(middleware, { requestLog: log, close: () => log.close() });
}
