// The codec's public surface: client side (reply parser, request encoders, key checks) and server side
// (request parser), all pure, plus the one error type a broken stream raises.
export { ProtocolError } from "../errors.js";

// Client side: parse what a server answers, encode what a client asks.
export {
  ReplyParser,
  replyError,
  findMetaFlag,
  DEFAULT_MAX_REPLY_LINE_LENGTH,
  DEFAULT_MAX_REPLY_VALUE_SIZE,
} from "./reply-parser.js";
export type {
  ReplyFrame,
  ReplyCallback,
  ReplyParserOptions,
  RawValueReceiver,
  ValueFrame,
  MetaValueFrame,
  MetaStatusFrame,
  MetaDebugFrame,
  StatFrame,
  VersionFrame,
  NumberFrame,
  StatusFrame,
  ErrorFrame,
  MetaFlag,
  MetaDebugField,
} from "./reply-parser.js";
export {
  encodeGet,
  encodeGets,
  encodeGat,
  encodeGats,
  encodeStore,
  encodeCas,
  encodeDelete,
  encodeIncr,
  encodeDecr,
  encodeTouch,
  encodeFlushAll,
  encodeVersion,
  encodeVerbosity,
  encodeStats,
  encodeQuit,
  encodeMg,
  encodeMs,
  encodeMd,
  encodeMa,
  encodeMn,
  encodeMe,
  INLINE_VALUE_LIMIT,
} from "./request-encoder.js";
export type {
  Value,
  Encoded,
  StoreCommand,
  StoreOptions,
  NoreplyOptions,
  FlushAllOptions,
} from "./request-encoder.js";
export { validateKey, toBase64Key, KeyError, KeyProblem, MAX_KEY_LENGTH } from "./keys.js";
export type { KeyOptions } from "./keys.js";

// Server side: parse what clients send.
export { RequestParser, itemFits, type RequestParserOptions, type RequestHandler } from "./request-parser.js";
export type * from "./requests.js";
export { preparseMetaFlags, decodeBase64Key, type MetaFlags } from "./meta.js";
export { parseI32, parseU32, parseU64 } from "./numbers.js";
