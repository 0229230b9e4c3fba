// One pipelined connection to one memcached server: requests are written back to back (one socket write per
// tick), replies are matched to them in order, and every failure becomes a typed error naming the server.
import net from "node:net";
import tls from "node:tls";
import {
  AuthenticationError,
  ConnectionClosedError,
  MemipcError,
  OverloadError,
  ProtocolError,
  ServerDeadError,
  TimeoutError,
  TlsError,
} from "../errors.js";
import { ReplyParser, replyError, type RawValueReceiver, type ReplyFrame } from "../protocol/reply-parser.js";
import type { Encoded } from "../protocol/request-encoder.js";

/** How the end of a request's reply is recognised. */
export const ReplyShape = {
  /** One frame: a status, a number, a meta reply. */
  single: 0,
  /** VALUE or STAT frames, then END. */
  untilEnd: 1,
  /** Any frames (quiet meta replies), then MN. */
  untilMn: 2,
} as const;
export type ReplyShape = (typeof ReplyShape)[keyof typeof ReplyShape];

export interface ConnectionOptions {
  host: string;
  port: number;
  /** ms a request may wait for its reply (counted from when it is queued). */
  timeout: number;
  /** ms a connection attempt may take. */
  connectTimeout: number;
  /** Requests queued or in flight on this connection before new ones are refused. */
  maxPending: number;
  /** Reconnect backoff: first delay and ceiling, in ms. */
  retryDelay: number;
  maxRetryDelay: number;
  /** Consecutive failures after which the server is marked dead for `deadTime` ms. */
  failuresBeforeDead: number;
  deadTime: number;
  /**
   * Credentials sent on every new connection before any other request, as memcached's `-Y` authentication
   * expects; unset: none are sent.
   */
  auth?: ClientAuth | undefined;
  /** Connect with TLS (memcached's -Z, the embedded server's --tls-cert); unset: plain TCP. */
  tls?: ClientTls | undefined;
}

/** A user of the server's auth file. Neither part may be empty or hold a space or control character. */
export interface ClientAuth {
  username: string;
  password: string;
}

/** TLS settings; an empty object connects with TLS and trusts the system's certificate authorities. */
export interface ClientTls {
  /** PEM certificate(s) of the authority that signed the server's certificate (a self-signed one: itself). */
  ca?: string | Buffer | undefined;
  /** PEM client certificate and key, for servers that require one (--tls-ca). */
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  /** The name the server's certificate must carry, when it is not the host connected to. */
  servername?: string | undefined;
  /** false accepts any certificate: encryption without knowing who is at the other end. Default true. */
  rejectUnauthorized?: boolean | undefined;
}

/**
 * The key of the authenticating `set`. A server with authentication ignores it; one without stores the
 * credentials under it already expired (exptime -1), so they cannot be read back.
 */
const AUTH_KEY = "memipc:auth";
const CRLF = Buffer.from("\r\n", "latin1");

interface Pending {
  shape: ReplyShape;
  /** Keys a VALUE frame may carry (get-like requests); any other key means the stream is out of step. */
  keys: ReadonlySet<string> | undefined;
  /** Takes the reply's VALUEs in place of frames (get-like requests; see ReplyParserOptions.rawValues). */
  raw: RawValueReceiver | undefined;
  /** Command name, for error messages. */
  command: string;
  frames: ReplyFrame[];
  deadline: number;
  resolve(frames: ReplyFrame[]): void;
  reject(error: Error): void;
}

/** `authenticating`: connected, credentials sent, other requests held back until they are accepted. */
const State = { idle: 0, connecting: 1, open: 2, backoff: 3, authenticating: 4 } as const;
type State = (typeof State)[keyof typeof State];

export class ServerConnection {
  readonly options: ConnectionOptions;
  readonly name: string;
  #socket: net.Socket | undefined;
  #state: State = State.idle;
  readonly #rawValues = (): RawValueReceiver | undefined => this.#inflight[this.#head]?.raw;
  #parser = new ReplyParser({ rawValues: this.#rawValues });
  /** Sent (or about to be sent) and waiting for replies, oldest first. */
  #inflight: Pending[] = [];
  #head = 0;
  /** Encoded requests waiting for this tick's write (or for the connection to open). */
  #outgoing: Buffer[] = [];
  #writeScheduled = false;
  #failures = 0;
  #retryDelay: number;
  #retryTimer: NodeJS.Timeout | undefined;
  #deadUntil = 0;
  #timeoutTimer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #onFrame = (frame: ReplyFrame): void => this.#frame(frame);

  constructor(options: ConnectionOptions) {
    this.options = options;
    this.name = `${options.host}:${options.port}`;
    this.#retryDelay = options.retryDelay;
  }

  /** True while the server is marked dead: requests fail at once instead of waiting. */
  get dead(): boolean {
    return this.#deadUntil > Date.now();
  }

  get pending(): number {
    return this.#inflight.length - this.#head;
  }

  /**
   * Queues one request; the promise settles with the frames of its reply. With `raw`, VALUE replies go to it
   * instead of becoming frames (it checks their keys).
   */
  request(
    bytes: Encoded,
    shape: ReplyShape,
    command: string,
    keys?: ReadonlySet<string>,
    raw?: RawValueReceiver,
  ): Promise<ReplyFrame[]> {
    if (this.#closed) {
      return Promise.reject(new ConnectionClosedError(`${command} to ${this.name}: the client was closed`));
    }
    if (this.dead) {
      return Promise.reject(
        new ServerDeadError(
          `${command} to ${this.name}: the server is marked dead after ${this.options.failuresBeforeDead} failures in a row; ` +
            `it is retried in ${Math.max(0, this.#deadUntil - Date.now())} ms (check that memcached runs there)`,
          { server: this.name },
        ),
      );
    }
    if (this.#state === State.backoff) {
      return Promise.reject(
        new ConnectionClosedError(
          `${command} to ${this.name}: not connected, reconnecting (${this.#lastError})`,
        ),
      );
    }
    if (this.pending >= this.options.maxPending) {
      return Promise.reject(
        new OverloadError(
          `${command} to ${this.name}: ${this.pending} requests already waiting (maxPending); ` +
            "the server is slow or stalled: wait for earlier requests before sending more, or raise maxPending",
        ),
      );
    }
    return new Promise<ReplyFrame[]>((resolve, reject) => {
      this.#inflight.push({
        shape,
        keys,
        raw,
        command,
        frames: [],
        deadline: Date.now() + this.options.timeout,
        resolve,
        reject,
      });
      if (Array.isArray(bytes)) this.#outgoing.push(...bytes);
      else this.#outgoing.push(bytes);
      if (this.#state === State.idle) this.#connect();
      else if (this.#state === State.open) this.#scheduleWrite();
      this.#armTimeout();
    });
  }

  /**
   * Sends a request that has no reply (noreply), ordered with the others; false when it cannot be sent
   * (closed, reconnecting, or the server is marked dead).
   */
  send(bytes: Encoded): boolean {
    if (this.#closed || this.dead || this.#state === State.backoff) return false;
    if (Array.isArray(bytes)) this.#outgoing.push(...bytes);
    else this.#outgoing.push(bytes);
    if (this.#state === State.idle) this.#connect();
    else if (this.#state === State.open) this.#scheduleWrite();
    return true;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#fail(new ConnectionClosedError(`${this.name}: the client was closed`), false);
  }

  #lastError = "";

  #connect(): void {
    this.#state = State.connecting;
    const secure = this.options.tls;
    const socket =
      secure === undefined
        ? net.connect({ host: this.options.host, port: this.options.port, noDelay: true })
        : tls.connect({
            host: this.options.host,
            port: this.options.port,
            ca: secure.ca,
            cert: secure.cert,
            key: secure.key,
            rejectUnauthorized: secure.rejectUnauthorized ?? true,
            ...(secure.servername === undefined ? {} : { servername: secure.servername }),
          });
    if (secure !== undefined) socket.setNoDelay(true);
    this.#socket = socket;
    this.#parser = new ReplyParser({ rawValues: this.#rawValues });
    socket.setTimeout(this.options.connectTimeout);
    socket.once(secure === undefined ? "connect" : "secureConnect", () => {
      socket.setTimeout(0);
      this.#retryDelay = this.options.retryDelay;
      if (this.options.auth !== undefined) {
        this.#authenticate(socket, this.options.auth);
        return;
      }
      this.#state = State.open;
      this.#scheduleWrite();
    });
    socket.once("timeout", () => {
      socket.destroy(
        new TimeoutError(`connecting to ${this.name} took over ${this.options.connectTimeout} ms`),
      );
    });
    socket.on("data", (chunk: Buffer) => {
      try {
        this.#parser.parse(chunk, this.#onFrame);
      } catch (error) {
        if (this.#socket !== socket) return; // failed already (credentials refused)
        const cause =
          error instanceof ProtocolError ? error : new ProtocolError(String(error), { cause: error });
        this.#fail(
          new ProtocolError(`${this.name} sent a reply that is not memcached's protocol: ${cause.message}`, {
            cause,
          }),
          true,
        );
      }
    });
    socket.on("drain", () => this.#scheduleWrite());
    socket.once("error", (error: Error) => {
      const wrapped =
        error instanceof MemipcError
          ? error
          : secure !== undefined && isTlsFailure(error)
            ? new TlsError(
                `${this.name}: TLS failed (${error.message}): check that the server speaks TLS, that the client ` +
                  "trusts its certificate (tls.ca, --memcached-tls-ca) and that the certificate names this host",
                { cause: error },
              )
            : new ConnectionClosedError(`${this.name}: ${error.message}`, { cause: error });
      this.#fail(wrapped, true);
    });
    socket.once("close", () => {
      if (this.#socket === socket) {
        this.#fail(new ConnectionClosedError(`${this.name} closed the connection`), true);
      }
    });
  }

  /**
   * Sends the credentials as memcached's convention has it (a `set` whose data is `user password`) ahead of
   * everything queued, which waits until the server answers STORED.
   */
  #authenticate(socket: net.Socket, auth: ClientAuth): void {
    this.#state = State.authenticating;
    const data = Buffer.from(`${auth.username} ${auth.password}`, "utf8");
    const refused = (reason: string) =>
      new AuthenticationError(
        `${this.name} refused the credentials of user ${JSON.stringify(auth.username)} (${reason}): ` +
          "check the user name and password against the server's auth file (memcached -Y, memipc --auth-file)",
      );
    this.#inflight.splice(this.#head, 0, {
      shape: ReplyShape.single,
      keys: undefined,
      raw: undefined,
      command: "authentication",
      frames: [],
      deadline: Date.now() + this.options.timeout,
      resolve: (frames) => {
        if (this.#socket !== socket) return;
        const frame = frames[0];
        if (frame?.kind !== "STORED") {
          this.#fail(refused(`it answered ${frame?.kind ?? "nothing"}`), true);
          return;
        }
        this.#state = State.open;
        this.#scheduleWrite();
      },
      reject: (error) => {
        // Errors from #fail itself (closed, timed out) need nothing more; a reply error is the refusal.
        if (
          this.#socket !== socket ||
          error instanceof ConnectionClosedError ||
          error instanceof TimeoutError
        )
          return;
        const reason = error.message.replace(/^authentication to \S+: memcached answered (.*?):.*$/s, "$1");
        this.#fail(refused(reason), true);
      },
    });
    socket.write(
      Buffer.concat([Buffer.from(`set ${AUTH_KEY} 0 -1 ${data.length}\r\n`, "latin1"), data, CRLF]),
    );
    this.#armTimeout();
  }

  #scheduleWrite(): void {
    if (this.#writeScheduled) return;
    this.#writeScheduled = true;
    queueMicrotask(() => this.#write());
  }

  #write(): void {
    this.#writeScheduled = false;
    const socket = this.#socket;
    if (this.#state !== State.open || socket === undefined || this.#outgoing.length === 0) return;
    const parts = this.#outgoing;
    this.#outgoing = [];
    if (parts.length === 1) {
      socket.write(parts[0]!);
    } else {
      socket.write(Buffer.concat(parts));
    }
  }

  #frame(frame: ReplyFrame): void {
    const pending = this.#inflight[this.#head];
    if (pending === undefined) {
      throw new ProtocolError(`an unexpected ${frame.kind} reply arrived with no request waiting for it`);
    }
    const kind = frame.kind;
    let done: boolean;
    if (
      kind === "CLIENT_ERROR" &&
      this.#state !== State.authenticating &&
      PREAUTH_ERRORS.has(frame.message)
    ) {
      // memcached answers a run of commands from an unauthenticated connection with one line, so the
      // rest would wait for replies that never come: every waiting request fails now.
      this.#fail(
        new AuthenticationError(
          `${this.name} requires authentication: give the client credentials ` +
            "(the auth option, MEMIPC_MEMCACHED_AUTH or --memcached-auth-file)",
        ),
        true,
      );
      return;
    }
    if (kind === "ERROR" || kind === "CLIENT_ERROR" || kind === "SERVER_ERROR") {
      // memcached answers a failed request with one error line, whatever its shape.
      done = pending.shape !== ReplyShape.untilMn;
      if (done) {
        this.#advance();
        pending.reject(this.#named(replyError(frame), pending));
        return;
      }
      pending.frames.push(frame);
      return;
    }
    switch (pending.shape) {
      case ReplyShape.single:
        done = true;
        pending.frames.push(frame);
        break;
      case ReplyShape.untilEnd:
        done = kind === "END";
        if (!done) {
          if (kind !== "VALUE" && kind !== "STAT") {
            throw new ProtocolError(`${pending.command} expected VALUE, STAT or END, got ${kind}`);
          }
          if (kind === "VALUE" && pending.keys !== undefined && !pending.keys.has(frame.key)) {
            throw new ProtocolError(
              `${pending.command} got a value for key ${JSON.stringify(frame.key)}, which it did not ask for`,
            );
          }
          pending.frames.push(frame);
        }
        break;
      default:
        done = kind === "MN";
        if (!done) pending.frames.push(frame);
    }
    if (done) {
      // A whole reply: the server works, whatever happened to earlier connections.
      this.#failures = 0;
      this.#advance();
      pending.resolve(pending.frames);
    }
  }

  #advance(): void {
    this.#inflight[this.#head] = undefined as unknown as Pending;
    this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#inflight.length) {
      this.#inflight = this.#inflight.slice(this.#head);
      this.#head = 0;
    }
  }

  #named(error: MemipcError, pending: Pending): MemipcError {
    error.message = `${pending.command} to ${this.name}: ${error.message}`;
    return error;
  }

  /** One timer per connection, armed for the oldest request: requests time out in order. */
  #armTimeout(): void {
    if (this.#timeoutTimer !== undefined) return;
    const oldest = this.#inflight[this.#head];
    if (oldest === undefined) return;
    this.#timeoutTimer = setTimeout(() => this.#checkTimeout(), Math.max(1, oldest.deadline - Date.now()));
    this.#timeoutTimer.unref();
  }

  #checkTimeout(): void {
    this.#timeoutTimer = undefined;
    const oldest = this.#inflight[this.#head];
    if (oldest === undefined) return;
    if (oldest.deadline <= Date.now()) {
      // A late reply would be matched to the wrong request: give up on the whole connection.
      this.#fail(
        new TimeoutError(
          `${oldest.command} to ${this.name}: no reply within ${this.options.timeout} ms; ` +
            "the server is overloaded or unreachable (the connection is reset and retried)",
        ),
        true,
      );
      return;
    }
    this.#armTimeout();
  }

  /** Fails every waiting request, drops the socket, and schedules a reconnect with backoff. */
  #fail(error: Error, retry: boolean): void {
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket) {
      socket.removeAllListeners("close");
      socket.destroy();
    }
    clearTimeout(this.#timeoutTimer);
    this.#timeoutTimer = undefined;
    const waiting = this.#inflight.slice(this.#head);
    this.#inflight = [];
    this.#head = 0;
    this.#outgoing = [];
    this.#lastError = error.message;
    for (const pending of waiting) pending.reject(forCommand(error, pending.command));
    if (this.#closed || !retry) {
      this.#state = State.idle;
      return;
    }
    this.#failures++;
    if (this.#failures >= this.options.failuresBeforeDead) {
      this.#deadUntil = Date.now() + this.options.deadTime;
    }
    this.#state = State.backoff;
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(this.options.maxRetryDelay, this.#retryDelay * 2);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#state = State.idle;
    }, delay);
    this.#retryTimer.unref();
  }
}

/**
 * What memcached answers an unauthenticated connection: the refusal, or (when a pipelined `set` was taken
 * for a login) the verdict on its data.
 */
const PREAUTH_ERRORS = new Set([
  "unauthenticated",
  "bad authentication token format",
  "authentication failure",
]);

/** TLS handshake and certificate failures, as Node reports them (OpenSSL reasons and X.509 checks). */
function isTlsFailure(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code ?? "";
  return (
    code === "EPROTO" ||
    code.startsWith("ERR_SSL_") ||
    code.startsWith("ERR_TLS_") ||
    /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(code)
  );
}

/** The same kind of error, its message prefixed with the command it failed (each waiter gets its own). */
function forCommand(error: Error, command: string): Error {
  if (!(error instanceof MemipcError)) return error;
  const Kind = error.constructor as new (message: string, options?: { cause?: unknown }) => MemipcError;
  return new Kind(`${command}: ${error.message}`, { cause: error });
}
