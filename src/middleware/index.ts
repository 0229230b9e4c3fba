// Request logging for web apps: one site-log entry and a few counters per request, for node:http, Express
// and Fastify.
export {
  RequestLog,
  logPath,
  statusClass,
  DEFAULT_STATS_PREFIX,
  type RequestLogOptions,
  type RequestEntry,
  type AppendedPosition,
  type CountOptions,
  type FinishedRequest,
} from "./request-log.js";
export { withRequestLog, type RequestHandler, type LoggedHandler } from "./node-http.js";
export { expressRequestLog, type ExpressRequestLog } from "./express.js";
export {
  fastifyRequestLog,
  type FastifyRequestLogOptions,
  type FastifyInstanceLike,
  type FastifyRequestLike,
  type FastifyReplyLike,
} from "./fastify.js";
