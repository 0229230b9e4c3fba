// A raw TCP session with a memcached-speaking server: send bytes (whole or in pieces), collect every
// reply byte, and know when a script is finished (a sentinel `mn`, the server closing, or silence).
import { createConnection, type Socket } from "node:net";

export const SENTINEL_REQUEST = Buffer.from("mn\r\n", "latin1");
const SENTINEL_REPLY = Buffer.from("MN\r\n", "latin1");
const SENTINEL_AFTER_LINE = Buffer.from("\r\nMN\r\n", "latin1");
export const DEFAULT_READ_TIMEOUT_MS = 5000; // a reply that has not ended by then is reported, not waited for
export const DEFAULT_PIECE_GAP_MS = 3; // pause between pieces so they reach the server as separate reads
export const DEFAULT_IDLE_MS = 250; // silence that ends a script leaving the server mid data block

/** How a script is known to be finished. */
export type ScriptEnd =
  /** Send `mn\r\n` after the script and read until the reply ends with `MN\r\n` (the default). */
  | "sentinel"
  /** The script makes the server close the connection (`quit`, a line too long): read until close. */
  | "close"
  /** The script leaves the server waiting (mid data block): read until nothing arrives for a while. */
  | "idle";

/** How a read ended: as planned, by the server closing, or by the bounded timeout. */
export type ReadOutcome = "done" | "closed" | "timeout";

export interface ReadResult {
  bytes: Buffer;
  outcome: ReadOutcome;
}

export class RawSession {
  readonly #socket: Socket;
  #chunks: Buffer[] = [];
  #size = 0;
  #closed = false;
  #wake: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#size += chunk.length;
      this.#wake?.();
    });
    // A reset (the server closed with our bytes unread) ends the session like a close does.
    socket.on("error", () => this.#markClosed());
    socket.on("close", () => this.#markClosed());
  }

  static open(host: string, port: number, timeoutMs = DEFAULT_READ_TIMEOUT_MS): Promise<RawSession> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host, port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`could not connect to ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(new RawSession(socket));
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Writes bytes; resolves once they are handed to the kernel. Writing to a closed session is a no-op. */
  async send(bytes: Buffer | string): Promise<void> {
    if (this.#closed) return;
    const buffer = typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes;
    if (buffer.length === 0) return;
    await new Promise<void>((resolve) => {
      this.#socket.write(buffer, () => resolve());
    });
  }

  /** Writes each piece separately, pausing between them so the server sees partial input. */
  async sendPieces(pieces: readonly (Buffer | string)[], gapMs = DEFAULT_PIECE_GAP_MS): Promise<void> {
    for (let i = 0; i < pieces.length; i++) {
      if (i > 0 && gapMs > 0) await sleep(gapMs);
      await this.send(pieces[i]!);
    }
  }

  /** Every reply byte collected since the last take, removed from the session. */
  take(): Buffer {
    const bytes = Buffer.concat(this.#chunks, this.#size);
    this.#chunks = [];
    this.#size = 0;
    return bytes;
  }

  /**
   * Sends the sentinel and reads until the collected reply ends with its answer. A script that sends
   * `mn` itself says how many: its own `MN` lines must not be taken for the sentinel's.
   */
  async readToSentinel(timeoutMs = DEFAULT_READ_TIMEOUT_MS, scriptMnCount = 0): Promise<ReadResult> {
    await this.send(SENTINEL_REQUEST);
    return this.#readUntil(() => {
      const bytes = this.#peek();
      return endsWithSentinel(bytes) && countMnLines(bytes) > scriptMnCount;
    }, timeoutMs);
  }

  /** Reads until `done` holds for everything received since the last take. */
  readUntil(done: (received: Buffer) => boolean, timeoutMs = DEFAULT_READ_TIMEOUT_MS): Promise<ReadResult> {
    return this.#readUntil(() => done(this.#peek()), timeoutMs);
  }

  /** Reads until the server closes the connection. */
  readToClose(timeoutMs = DEFAULT_READ_TIMEOUT_MS): Promise<ReadResult> {
    return this.#readUntil(() => false, timeoutMs);
  }

  /** Reads until no byte has arrived for idleMs (then the outcome is "done"). */
  async readToIdle(idleMs = DEFAULT_IDLE_MS, timeoutMs = DEFAULT_READ_TIMEOUT_MS): Promise<ReadResult> {
    const deadline = Date.now() + timeoutMs;
    let seen = -1;
    while (Date.now() < deadline) {
      if (this.#closed) return { bytes: this.take(), outcome: "closed" };
      if (this.#size === seen) return { bytes: this.take(), outcome: "done" };
      seen = this.#size;
      await sleep(idleMs);
    }
    return { bytes: this.take(), outcome: "timeout" };
  }

  /** Finishes a script the way `end` says (`scriptMnCount` as for readToSentinel). */
  finish(end: ScriptEnd, timeoutMs = DEFAULT_READ_TIMEOUT_MS, scriptMnCount = 0): Promise<ReadResult> {
    if (end === "close") return this.readToClose(timeoutMs);
    if (end === "idle") return this.readToIdle(DEFAULT_IDLE_MS, timeoutMs);
    return this.readToSentinel(timeoutMs, scriptMnCount);
  }

  close(): void {
    this.#socket.destroy();
    this.#markClosed();
  }

  #peek(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks, this.#size)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  #markClosed(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async #readUntil(done: () => boolean, timeoutMs: number): Promise<ReadResult> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (done()) return { bytes: this.take(), outcome: "done" };
      if (this.#closed) return { bytes: this.take(), outcome: "closed" };
      const left = deadline - Date.now();
      if (left <= 0) return { bytes: this.take(), outcome: "timeout" };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }
}

/**
 * True when the reply ends with the sentinel's `MN\r\n` as a line of its own. Values and keys in
 * scripts must not end in "\r\nMN" themselves, or a read boundary there would end the script early.
 */
export function endsWithSentinel(bytes: Buffer): boolean {
  if (bytes.equals(SENTINEL_REPLY)) return true;
  return (
    bytes.length >= SENTINEL_AFTER_LINE.length &&
    bytes.subarray(-SENTINEL_AFTER_LINE.length).equals(SENTINEL_AFTER_LINE)
  );
}

/** How many `MN` lines a reply holds. */
export function countMnLines(bytes: Buffer): number {
  const text = bytes.toString("latin1");
  let count = text.startsWith("MN\r\n") ? 1 : 0;
  for (let at = text.indexOf("\r\nMN\r\n"); at >= 0; at = text.indexOf("\r\nMN\r\n", at + 2)) count++;
  return count;
}

/** How many `mn` command lines a script sends (lines that are `mn`, maybe with arguments). */
export function countMnCommands(bytes: Buffer): number {
  return bytes
    .toString("latin1")
    .split("\n")
    .filter((lineText) => /^ *mn(?: |\r?$)/.test(lineText)).length;
}

/** One whole script on a fresh connection: the bytes in order, then finished as `end` says. */
export async function runRawScript(
  host: string,
  port: number,
  pieces: readonly (Buffer | string)[],
  end: ScriptEnd = "sentinel",
  timeoutMs = DEFAULT_READ_TIMEOUT_MS,
): Promise<ReadResult> {
  const session = await RawSession.open(host, port, timeoutMs);
  try {
    await session.sendPieces(pieces);
    const sent = Buffer.concat(pieces.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : p)));
    return await session.finish(end, timeoutMs, countMnCommands(sent));
  } finally {
    session.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
