// The client's public surface.
export {
  Client,
  defaultClientOptions,
  parseServers,
  checkCredentials,
  type ClientOptions,
  type ServerAddress,
  type GetResult,
  type ValueRanges,
  type StoreOptions,
  type CasResult,
  type MetaReply,
  DEFAULT_TIMEOUT,
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_MAX_PENDING,
  DEFAULT_RETRY_DELAY,
  DEFAULT_MAX_RETRY_DELAY,
  DEFAULT_FAILURES_BEFORE_DEAD,
  DEFAULT_DEAD_TIME,
  DEFAULT_MAX_VALUE_SIZE,
} from "./client.js";
export type { ClientAuth, ClientTls } from "./connection.js";
