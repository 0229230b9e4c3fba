// Typed frames for what a client sends: one per command line (with its data block, when it has one).
import type { MetaFlags } from "./meta.js";

export type RetrievalCommand = "get" | "gets" | "gat" | "gats" | "bget";
export type StorageCommand = "set" | "add" | "replace" | "append" | "prepend" | "cas";

export interface GetRequest {
  kind: "get";
  command: RetrievalCommand;
  keys: string[];
  /** gat/gats: the TTL as sent. */
  ttl: number;
  /** A key over 250 bytes stopped the command after `keys`; memcached then answers only with an error. */
  keyTooLong: boolean;
}

export interface StoreRequest {
  kind: "store";
  command: StorageCommand;
  key: string;
  flags: number;
  ttl: number;
  /** cas: the unique to compare; 0 otherwise. */
  cas: bigint;
  noreply: boolean;
  /** The data block, or undefined when the item was too large and its bytes were discarded. */
  data: Buffer | undefined;
}

export interface DeleteRequest {
  kind: "delete";
  key: string;
  noreply: boolean;
}

export interface ArithmeticRequest {
  kind: "arithmetic";
  incr: boolean;
  key: string;
  delta: bigint;
  noreply: boolean;
}

export interface TouchRequest {
  kind: "touch";
  key: string;
  ttl: number;
  noreply: boolean;
}

export interface FlushRequest {
  kind: "flush_all";
  /** Seconds (or a unix time) until the flush takes effect; 0 is now. */
  delay: number;
  noreply: boolean;
}

export interface VerbosityRequest {
  kind: "verbosity";
  noreply: boolean;
}

export interface StatsRequest {
  kind: "stats";
  /** Arguments after `stats` (memcached reads at most the first few). */
  args: string[];
}

export interface SimpleRequest {
  kind: "version" | "quit" | "mn";
}

/** An administrative command memipc answers like memcached without modelling (slabs, lru, watch…). */
export interface AdminRequest {
  kind: "admin";
  tokens: string[];
  noreply: boolean;
}

export interface MetaRequest {
  kind: "mg" | "md" | "ma";
  /** The key as bytes in a latin1 string, base64-decoded when the b flag was given. */
  key: string;
  /** Flag tokens in the order sent; replies echo some of them in that order. */
  tokens: string[];
  flags: MetaFlags;
}

export interface MetaSetRequest {
  kind: "ms";
  key: string;
  tokens: string[];
  flags: MetaFlags;
  /** The data block, or undefined when the item was too large and its bytes were discarded. */
  data: Buffer | undefined;
}

export interface MetaDebugRequest {
  kind: "me";
  key: string;
  base64Key: boolean;
}

/** The command was rejected while parsing; `line` is memcached's answer for it. */
export interface RejectedRequest {
  kind: "rejected";
  line: string;
  /** The client asked for no reply, so memcached stays silent about this error. */
  noreply: boolean;
}

/** memcached closes the connection here (an over-long line, for example). */
export interface CloseRequest {
  kind: "close";
  reason: string;
}

export type Request =
  | GetRequest
  | StoreRequest
  | DeleteRequest
  | ArithmeticRequest
  | TouchRequest
  | FlushRequest
  | VerbosityRequest
  | StatsRequest
  | SimpleRequest
  | AdminRequest
  | MetaRequest
  | MetaSetRequest
  | MetaDebugRequest
  | RejectedRequest
  | CloseRequest;
