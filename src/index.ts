// memipc's public API.
export * from "./errors.js";
export {
  Client,
  type ClientOptions,
  type GetResult,
  type StoreOptions,
  type MetaReply,
  type ClientAuth,
  type ClientTls,
} from "./client/index.js";
export { startServer, MemcachedServer, type ServerOptions } from "./server/index.js";
export { Lease, type LeaseOptions, type LeaseStatus } from "./lease/index.js";
export {
  openFileSink,
  FileSink,
  GapReason,
  SinkFormat,
  type FileSinkOptions,
  type FileSinkMetrics,
  type FsyncPolicy,
  type Commit,
  type Cursor,
  type SinkRecord,
  type EntryRecord,
  type GapRecord,
  buildDayReport,
  formatReport,
  formatHtml,
  writeReportFiles,
  ReportFormat,
  type DayReport,
} from "./sinks/index.js";
export {
  LogProducer,
  PartitionBy,
  partitionOf,
  type ProducerOptions,
  type Appended,
  type AppendOptions,
} from "./log/producer.js";
export {
  Drainer,
  publishedMetrics,
  type DrainerOptions,
  type DrainerMetrics,
  type LogDrainer,
  type LogSink,
} from "./log/drainer.js";
export {
  PartitionedDrainer,
  createDrainer,
  type PartitionedDrainerOptions,
  type PartitionMetrics,
  type AnyDrainerOptions,
} from "./log/partitioned-drainer.js";
export { DEFAULT_REORDER_WINDOW, type PartitionedSink } from "./log/merge.js";
export { Layout, type StreamAddress, type SeedNames } from "./log/layout.js";
export {
  StatsWriter,
  Collector,
  percentile,
  type StatsWriterOptions,
  type CollectorOptions,
  type CollectResult,
} from "./stats/index.js";
export { StatsDb, DEFAULT_DB_FILE, type Fence, type StatsDbOptions } from "./sinks/stats-db.js";
export {
  Progress,
  Job,
  JobState,
  type ProgressOptions,
  type JobView,
  type JobRecord,
  type StartOptions,
  type JobUpdate,
} from "./progress/index.js";
export { startHttpServer, type HttpServer, type HttpServerOptions } from "./http/index.js";
export {
  RequestLog,
  withRequestLog,
  expressRequestLog,
  fastifyRequestLog,
  type RequestLogOptions,
  type RequestEntry,
  type AppendedPosition,
  type CountOptions,
  type FinishedRequest,
  type RequestHandler,
  type LoggedHandler,
  type ExpressRequestLog,
  type FastifyRequestLogOptions,
  type FastifyInstanceLike,
  type FastifyRequestLike,
  type FastifyReplyLike,
} from "./middleware/index.js";
