// How the dashboard's parts plug in: each part (overview, log, stats, jobs) is a module with its routes and
// the browser files it serves under /assets/.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { DashboardSource } from "./source.js";

export interface RouteContext {
  source: DashboardSource;
  request: IncomingMessage;
  response: ServerResponse;
  url: URL;
  /** The capture groups of a RegExp path, decoded. */
  params: string[];
}

export interface DashboardRoute {
  /** An exact path ("/api/overview") or a pattern whose groups become `params`. */
  path: string | RegExp;
  /** Methods it answers; HEAD is answered wherever GET is. Others get 405. */
  methods: readonly ("GET" | "POST")[];
  handle(context: RouteContext): Promise<void>;
}

export interface Asset {
  type: string;
  body: string | Buffer;
}

export interface DashboardModule {
  routes: readonly DashboardRoute[];
  /** Files served at /assets/NAME, cached by browsers for a short while. */
  assets?: Readonly<Record<string, Asset>>;
  /** Ends what the module holds open (event streams, timers). */
  close?(): void;
}

export type DashboardModuleFactory = (source: DashboardSource) => DashboardModule;

export const JS = "text/javascript; charset=utf-8";
export const CSS = "text/css; charset=utf-8";
