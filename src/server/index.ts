// The embedded server's public surface.
export { MemcachedServer, startServer } from "./server.js";
export {
  defaultOptions,
  resolveOptions,
  parseSize,
  type ServerOptions,
  DEFAULT_HOST,
  DEFAULT_PORT,
  DEFAULT_MEMORY_LIMIT,
  DEFAULT_MAX_ITEM_SIZE,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_IDLE_TIMEOUT,
} from "./options.js";
