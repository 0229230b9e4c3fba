// One browser's Server-Sent Events stream of one job: the job at connect (unless the browser already has that
// version), then each change, heartbeat comments while nothing changes, and the end after a final state.
import type { IncomingMessage, ServerResponse } from "node:http";
import { FINAL_STATES, JobState, type JobView } from "../progress/index.js";
import type { JobFeeds } from "./job-feeds.js";
import { sendError } from "./responses.js";

export const MAX_BUFFERED = 1024 * 1024; // bytes queued for a slow reader before its stream is dropped

export interface EventStreamOptions {
  /** ms between comment lines that keep proxies from closing an idle stream. */
  heartbeat: number;
  /** ms the browser waits before reconnecting (the `retry:` field). */
  retry: number;
  /** Headers every response carries (CORS). */
  headers: Record<string, string>;
}

/**
 * Writes to an event stream. A reader that does not keep up is cut off (`end` is called): its EventSource
 * reconnects and resumes from its last event id. Nothing is written once `ended()` is true.
 */
export function eventWriter(
  response: ServerResponse,
  ended: () => boolean,
  end: () => void,
): (text: string) => void {
  return (text) => {
    if (ended()) return;
    // A response closed before its stream was set up never emits the close that would have ended it: end
    // here, or its heartbeat would run (and keep the process alive) forever.
    if (response.destroyed) return end();
    response.write(text);
    if (response.writableLength > MAX_BUFFERED) {
      response.destroy();
      end();
    }
  };
}

/** Sends the event stream's headers and its `retry:` field through `write`. */
export function openEvents(
  response: ServerResponse,
  write: (text: string) => void,
  retry: number,
  headers: Record<string, string> = {},
): void {
  response.writeHead(200, {
    ...headers,
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    Connection: "keep-alive",
    "X-Accel-Buffering": "no", // nginx: pass events on at once
    "X-Content-Type-Options": "nosniff",
  });
  write(`retry: ${retry}\n\n`);
}

/** The SSE text of one job event: `event: job`, the version as its id, the job as JSON on one line. */
export function jobEvent(view: JobView): string {
  return `event: job\nid: ${view.version}\ndata: ${JSON.stringify(view)}\n\n`;
}

/**
 * Serves `GET /api/jobs/:id/events` from the shared feed of job `id`. Answers 404 when there is no such job,
 * 204 (which tells EventSource to stop reconnecting) when the browser already has the job's final version,
 * and 503 when memcached cannot be read. Resolves when the stream has ended.
 */
export function serveEventStream(
  request: IncomingMessage,
  response: ServerResponse,
  id: string,
  feeds: JobFeeds,
  options: EventStreamOptions,
): Promise<void> {
  const lastEventId = header(request, "last-event-id");
  return new Promise((resolve) => {
    let started = false;
    let ended = false;
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    const end = (): void => {
      if (ended) return;
      ended = true;
      unwatch();
      clearInterval(heartbeat);
      if (!response.writableEnded && !response.destroyed) response.end();
      resolve();
    };
    const write = eventWriter(response, () => ended, end);
    const start = (view: JobView): void => {
      started = true;
      openEvents(response, write, options.retry, options.headers);
      // Resumed at the version the browser has: nothing to send until it changes. A stalled job is sent
      // anyway: stalling changes no version, so the browser cannot tell it has seen it.
      if (lastEventId !== String(view.version) || view.state === JobState.stalled) write(jobEvent(view));
      if (FINAL_STATES.has(view.state)) return end();
      heartbeat = setInterval(() => write(": heartbeat\n\n"), options.heartbeat);
    };
    const unwatch = feeds.watch(id, {
      job(view) {
        if (ended) return;
        if (!started) {
          if (view === undefined) {
            sendError(
              response,
              404,
              `there is no job ${id} (it never started, or it expired)`,
              options.headers,
            );
            return end();
          }
          if (FINAL_STATES.has(view.state) && lastEventId === String(view.version)) {
            response.writeHead(204, { ...options.headers, "Cache-Control": "no-store" });
            return end();
          }
          return start(view);
        }
        if (view === undefined) {
          write(
            `event: gone\ndata: ${JSON.stringify({ id, error: `job ${id} expired or was deleted` })}\n\n`,
          );
          return end();
        }
        write(jobEvent(view));
        if (FINAL_STATES.has(view.state)) end();
      },
      error(error) {
        if (ended) return;
        if (!started) {
          sendError(response, 503, `memcached could not be read: ${error.message}`, options.headers);
          return end();
        }
        // The stream stays open: the next read may work.
        write(`: memcached could not be read: ${error.message.replace(/[\r\n]+/g, " ")}\n\n`);
      },
    });
    // The response's close, not the request's: a request closes once its (empty) body has been read.
    response.once("close", end);
    if (response.destroyed) end();
  });
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
