// The HTTP API, event streams, job page and embeddable progress bar.
export {
  startHttpServer,
  defaultHttpOptions,
  DEFAULT_HTTP_HOST,
  DEFAULT_HTTP_PORT,
  DEFAULT_POLL_INTERVAL,
  DEFAULT_SSE_HEARTBEAT,
  DEFAULT_SSE_RETRY,
  DEFAULT_MAX_STREAMS,
  type HttpServer,
  type HttpServerOptions,
} from "./server.js";
export { isLoopback, MIN_TOKEN_LENGTH } from "./auth.js";
export { JobFeeds, type FeedWatcher } from "./job-feeds.js";
export { jobEvent } from "./event-stream.js";
