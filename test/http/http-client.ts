// What the HTTP tests use to talk to the server the way a browser does, with Node's http module: plain
// requests, and event streams parsed into their events (and heartbeat comments) as they arrive.
import { Agent, request, type IncomingHttpHeaders, type IncomingMessage } from "node:http";

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request; resolves with the whole answer. */
export function fetchText(
  url: string,
  options: { method?: string; headers?: Record<string, string>; agent?: Agent } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: options.method ?? "GET",
      headers: options.headers,
      agent: options.agent,
    });
    req.once("error", reject);
    req.once("response", (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.once("error", reject);
      response.once("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
    });
    req.end();
  });
}

/** A request whose answer is JSON. */
export async function fetchJson<T = unknown>(
  url: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; json: T }> {
  const reply = await fetchText(url, options);
  return { status: reply.status, headers: reply.headers, json: JSON.parse(reply.body) as T };
}

export interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/** An open event stream: its events and comments so far, and a promise that settles when it ends. */
export class EventStream {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  retry: number | undefined;
  /** Resolves when the server ends the stream (or it breaks). */
  readonly ended: Promise<void>;
  #response: IncomingMessage;
  #buffer = "";
  #listeners = new Set<() => void>();
  #closed = false;

  constructor(response: IncomingMessage) {
    this.#response = response;
    this.status = response.statusCode ?? 0;
    this.headers = response.headers;
    response.setEncoding("utf8");
    response.on("data", (chunk: string) => this.#take(chunk));
    this.ended = new Promise((resolve) => {
      const done = (): void => {
        this.#closed = true;
        this.#notify();
        resolve();
      };
      response.once("end", done);
      response.once("close", done);
      response.once("error", done);
    });
  }

  get isEnded(): boolean {
    return this.#closed;
  }

  /** Parsed jobs of the `job` events so far. */
  jobs<T = Record<string, unknown>>(): T[] {
    return this.events.filter((e) => e.event === "job").map((e) => JSON.parse(e.data) as T);
  }

  /** Resolves once `condition` holds (checked at each event and at the end); rejects after timeoutMs. */
  waitFor(condition: (stream: EventStream) => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (condition(this)) {
          this.#listeners.delete(check);
          clearTimeout(timer);
          resolve();
        } else if (this.#closed) {
          this.#listeners.delete(check);
          clearTimeout(timer);
          reject(new Error(`the stream ended before ${what}; events: ${JSON.stringify(this.events)}`));
        }
      };
      const timer = setTimeout(() => {
        this.#listeners.delete(check);
        reject(new Error(`no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(this.events)}`));
      }, timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }

  close(): void {
    this.#response.destroy();
  }

  #take(chunk: string): void {
    this.#buffer += chunk.replace(/\r\n?/g, "\n");
    let cut: number;
    while ((cut = this.#buffer.indexOf("\n\n")) >= 0) {
      const block = this.#buffer.slice(0, cut);
      this.#buffer = this.#buffer.slice(cut + 2);
      const fields: Record<string, string> = {};
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) {
          this.comments.push(line.slice(1).trim());
          continue;
        }
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "data") data.push(value);
        else fields[name] = value;
      }
      if (fields.retry !== undefined) this.retry = Number(fields.retry);
      if (data.length > 0)
        this.events.push({ event: fields.event ?? "message", id: fields.id, data: data.join("\n") });
    }
    this.#notify();
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

/** Opens `GET url` as an event stream; resolves once the status line and headers are in. */
export function openEventStream(
  url: string,
  options: { headers?: Record<string, string>; agent?: Agent } = {},
): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      headers: { Accept: "text/event-stream", ...options.headers },
      agent: options.agent,
    });
    req.once("error", reject);
    req.once("response", (response) => resolve(new EventStream(response)));
    req.end();
  });
}
