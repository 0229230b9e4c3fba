// The request log as a Fastify plugin: `await app.register(fastifyRequestLog, { servers: "127.0.0.1:11211" })`.
// It hooks onRequest and onResponse on the whole app (not only inside the plugin's own context) and waits for
// the appends in flight when the app closes. Typed structurally, so memipc does not depend on Fastify.
import type { IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { RequestLog, type RequestLogOptions } from "./request-log.js";

/** What the plugin reads from a Fastify request. */
export interface FastifyRequestLike {
  readonly raw: IncomingMessage;
  readonly method: string;
  readonly url: string;
  readonly ip: string;
}

/** What the plugin reads from a Fastify reply. */
export interface FastifyReplyLike {
  readonly raw: ServerResponse;
  readonly statusCode: number;
}

/** The part of a Fastify instance the plugin uses. */
export interface FastifyInstanceLike {
  addHook(
    name: "onRequest",
    hook: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<void>,
  ): unknown;
  addHook(
    name: "onResponse",
    hook: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<void>,
  ): unknown;
  addHook(name: "onClose", hook: () => Promise<void>): unknown;
}

/**
 * The plugin's options: a request log's options, or a RequestLog to share. `userId` and `clientAddress` get
 * Fastify's request: declare them with Fastify's own type, e.g. `(request: FastifyRequest) => request.user?.id`.
 */
export type FastifyRequestLogOptions = FastifyOwnOptions | { requestLog: RequestLog<FastifyRequestLike> };

/** Method syntax, so a function written for Fastify's (richer) request type is accepted. */
interface FastifyOwnOptions extends Partial<
  Omit<RequestLogOptions<FastifyRequestLike>, "userId" | "clientAddress">
> {
  userId?(request: FastifyRequestLike): string | number | null | undefined;
  clientAddress?(request: FastifyRequestLike): string | undefined;
}

async function plugin(instance: FastifyInstanceLike, options: FastifyRequestLogOptions): Promise<void> {
  const shared = "requestLog" in options && options.requestLog instanceof RequestLog;
  const log = shared
    ? (options as { requestLog: RequestLog<FastifyRequestLike> }).requestLog
    : new RequestLog<FastifyRequestLike>(withoutFastifyKeys(options as FastifyOwnOptions));
  const started = new WeakMap<FastifyRequestLike, number>();
  instance.addHook("onRequest", async (request) => {
    started.set(request, performance.now());
  });
  instance.addHook("onResponse", async (request, reply) => {
    const start = started.get(request) ?? performance.now();
    started.delete(request);
    log.finish(request, {
      method: request.method,
      url: request.url,
      status: reply.statusCode,
      start,
      aborted: !reply.raw.writableFinished, // onResponse also runs when the response failed
      socketAddress: request.raw.socket?.remoteAddress,
    });
  });
  // A shared request log is closed by its owner; one made here closes with the app.
  if (!shared) instance.addHook("onClose", () => log.close());
}

/** Fastify passes its own keys (prefix, logLevel…) along with the plugin's options: they are not ours. */
function withoutFastifyKeys<T extends object>(options: T): T {
  const {
    prefix: _prefix,
    logLevel: _logLevel,
    logSerializers: _logSerializers,
    ...rest
  } = options as T & {
    prefix?: unknown;
    logLevel?: unknown;
    logSerializers?: unknown;
  };
  return rest as T;
}

/**
 * The plugin. Marked as Fastify's `fastify-plugin` helper would mark it (`skip-override`), so its hooks see
 * every route of the app it is registered on.
 */
export const fastifyRequestLog: typeof plugin = Object.assign(plugin, {
  [Symbol.for("skip-override")]: true,
  [Symbol.for("fastify.display-name")]: "memipc-request-log",
});
