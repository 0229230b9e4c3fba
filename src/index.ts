// memipc's public API.
export * from "./errors.js";
export {
  Client,
  type ClientOptions,
  type GetResult,
  type StoreOptions,
  type MetaReply,
} from "./client/index.js";
export { startServer, MemcachedServer, type ServerOptions } from "./server/index.js";
