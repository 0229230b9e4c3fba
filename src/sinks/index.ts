// Sinks: where a drained log stream ends up.
export {
  openFileSink,
  FileSink,
  formatJsonLine,
  formatRawLine,
  defaultOptions,
  DEFAULT_STREAM,
  DEFAULT_MAX_BYTES,
  DEFAULT_FSYNC,
  listSinkFiles,
  bySinkFileAge,
  GapReason,
  SinkFormat,
  type FileSinkOptions,
  type FileSinkMetrics,
  type RecentRecords,
  type FsyncPolicy,
  type Commit,
  type Cursor,
  type SinkRecord,
  type EntryRecord,
  type GapRecord,
  type SinkFileName,
} from "./file-sink.js";

// Reports: a day's summary of the stats history, in files or any format.
export {
  buildDayReport,
  dayRange,
  hourSlots,
  localDay,
  localTimeZone,
  type DayReport,
  type DayReportOptions,
  type CounterReport,
  type TimerReport,
  type GaugeReport,
  type HourSlot,
  type Change,
} from "./report.js";
export {
  formatReport,
  ReportFormat,
  REPORT_EXTENSIONS,
  CSV_COLUMNS,
  type TextReportFormat,
} from "./report-format.js";
export { formatHtml } from "./report-html.js";
export {
  writeReportFiles,
  renderReport,
  previousDay,
  nextReportTime,
  DEFAULT_REPORT_FORMATS,
  DEFAULT_REPORT_TIME,
  type ReportFilesOptions,
} from "./report-files.js";
