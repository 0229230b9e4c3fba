// Every error memipc raises: a base class with a stable `code`, and one subclass per kind of failure.
// Reply errors map one to one onto memcached's error lines; transport errors onto socket failures.

export const ErrorCode = {
  protocol: "EPROTOCOL",
  command: "ECOMMAND",
  client: "ECLIENT",
  server: "ESERVER",
  connectionClosed: "ECONNCLOSED",
  timeout: "ETIMEOUT",
  config: "ECONFIG",
  overload: "EOVERLOAD",
  log: "ELOG",
  sink: "ESINK",
  leaseLost: "ELEASELOST",
  fenced: "EFENCED",
  serverDead: "ESERVERDEAD",
  input: "EINPUT",
  auth: "EAUTH",
  tls: "ETLS",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class MemipcError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bytes that do not follow the memcached protocol (a malformed reply, a corrupt stream). */
export class ProtocolError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.protocol, message, options);
  }
}

/** The server answered `ERROR`: it did not know the command. */
export class CommandError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.command, message, options);
  }
}

/** The server answered `CLIENT_ERROR …`: the request was malformed or not allowed. */
export class ClientError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.client, message, options);
  }
}

/** The server answered `SERVER_ERROR …`: it could not do what was asked (out of memory, too large). */
export class ServerError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.server, message, options);
  }
}

export class ConnectionClosedError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.connectionClosed, message, options);
  }
}

/**
 * The server a key maps to is marked dead (it failed several times in a row) and the client fails fast
 * instead of waiting: nothing was sent. A ConnectionClosedError too, so code that retries on a closed
 * connection retries on this as well. With the pool's failover on, keys move to the next server instead.
 */
export class ServerDeadError extends ConnectionClosedError {
  override readonly code: ErrorCode = ErrorCode.serverDead;
  /** The server, as host:port. */
  readonly server: string;
  constructor(message: string, options: { cause?: unknown; server: string }) {
    super(message, options);
    this.server = options.server;
  }
}

export class TimeoutError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.timeout, message, options);
  }
}

/** Bad options or contradictory settings, found at start-up. */
export class ConfigError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.config, message, options);
  }
}

/** Too many requests are waiting on a connection: the server is slow or stalled. */
export class OverloadError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.overload, message, options);
  }
}

/**
 * This process no longer holds a lease it held: a renew found the key gone or owned by someone else, or
 * renewing has not succeeded for long enough that another process may take over. Work guarded by the
 * lease must stop at once.
 */
export class LeaseLostError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.leaseLost, message, options);
  }
}

/**
 * A newer holder of the same lease has taken over the output (a sink's files, the stats database): the
 * output refuses this process's writes, so a process that was paused past its lease cannot write after its
 * successor. Stop work; the process may stand by again.
 */
export class FencedError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.fenced, message, options);
  }
}

/**
 * A sink could not write or recover its output: the disk refused (`errno` says how: ENOSPC, EACCES, EROFS…),
 * a file is corrupt, or a batch broke the order rule. `file` names the file involved. A refused write
 * leaves the sink's cursor where it was; fix the cause and retry the same batch.
 */
export class SinkError extends MemipcError {
  readonly file: string | undefined;
  readonly errno: string | undefined;
  constructor(message: string, options?: { cause?: unknown; file?: string; errno?: string }) {
    super(ErrorCode.sink, message, options);
    this.file = options?.file;
    this.errno = options?.errno;
  }
}

/** A log stream could not take an entry (numbers could not be reserved, or one was handed out twice). */
export class LogError extends MemipcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.log, message, options);
  }
}

/** A failure to reach a server (closed, marked dead, too slow, overloaded), not a wrong request or reply. */
export function isUnreachable(error: unknown): error is ConnectionClosedError | TimeoutError | OverloadError {
  return (
    error instanceof ConnectionClosedError || error instanceof TimeoutError || error instanceof OverloadError
  );
}

/**
 * A value handed to a producer cannot be stored as it is: a log entry too large for memcached's item limit or
 * not UTF-8 text, a stat name or job label that breaks the key and value formats. Raised before anything is
 * written and before a sequence number is taken, except when only the server could tell (its item size limit
 * is below the client's): the message then says what was recorded in the entry's place. A ConfigError too,
 * so code that catches bad settings catches bad input as well.
 */
export class InputError extends ConfigError {
  override readonly code: ErrorCode = ErrorCode.input;
}

/**
 * Another process holds the stats database's write lock for longer than the busy timeout (an sqlite3 shell
 * inside a transaction, a backup, a second collector's long write): nothing of the refused write was
 * stored. Retry later; the collector keeps what it read from memcached until the write goes through.
 */
export class DatabaseBusyError extends SinkError {
  constructor(message: string, options: { cause?: unknown; file: string; errno: string }) {
    super(message, options);
  }
}

/**
 * The server refused the client's credentials (memcached's `-Y` authentication, or the embedded server's
 * `--auth-file`), or wants credentials the client was not given. Nothing else was sent on that connection;
 * the message names the user, never the password. A ConnectionClosedError too: the connection is dropped
 * and retried with backoff, so a corrected auth file on the server is picked up without a restart.
 */
export class AuthenticationError extends ConnectionClosedError {
  override readonly code: ErrorCode = ErrorCode.auth;
}

/**
 * A TLS connection could not be set up: the server's certificate is not trusted (or names another host),
 * the server wants a client certificate, or the server does not speak TLS. A ConnectionClosedError too.
 */
export class TlsError extends ConnectionClosedError {
  override readonly code: ErrorCode = ErrorCode.tls;
}
