// The dashboard served by `memipc serve`: pages for the overview, the log, stats and jobs, their JSON and
// event-stream APIs, and the browser files they load (all from this server: it works offline, without CDNs).
import type { HttpRoutes } from "../server.js";
import { sendError } from "../responses.js";
import { DASHBOARD_JS } from "./common-js.js";
import { jobsModule } from "./jobs.js";
import { DASHBOARD_CSS, DASHBOARD_ICON } from "./layout.js";
import { logModule } from "./log.js";
import { overviewModule } from "./overview.js";
import { reportsModule } from "./reports.js";
import { CSS, JS, type Asset, type DashboardModule, type DashboardModuleFactory } from "./routes.js";
import type { DashboardSource } from "./source.js";
import { statsModule } from "./stats.js";

export type { DashboardSource } from "./source.js";

const ASSET_MAX_AGE = 300; // s browsers may cache /assets/ files

const MODULES: readonly DashboardModuleFactory[] = [
  overviewModule,
  logModule,
  statsModule,
  reportsModule,
  jobsModule,
];

/** The dashboard's routes, for startHttpServer's `routes` option. */
export function dashboardRoutes(source: DashboardSource): HttpRoutes {
  const modules: DashboardModule[] = MODULES.map((make) => make(source));
  const assets = new Map<string, Asset>([
    ["dashboard.js", { type: JS, body: DASHBOARD_JS }],
    ["dashboard.css", { type: CSS, body: DASHBOARD_CSS }],
    ["icon.svg", { type: "image/svg+xml", body: DASHBOARD_ICON }],
  ]);
  for (const module of modules) {
    for (const [name, asset] of Object.entries(module.assets ?? {})) assets.set(name, asset);
  }
  return {
    async handle(request, response, url) {
      const method = request.method ?? "GET";
      if (url.pathname.startsWith("/assets/")) {
        const asset = assets.get(url.pathname.slice("/assets/".length));
        if (asset === undefined) return false;
        if (method !== "GET" && method !== "HEAD") {
          sendError(response, 405, `${method} is not allowed on ${url.pathname}: use GET`, {
            Allow: "GET, HEAD",
          });
          return true;
        }
        response.writeHead(200, {
          "Content-Type": asset.type,
          "Content-Length": Buffer.byteLength(asset.body),
          "Cache-Control": `private, max-age=${ASSET_MAX_AGE}`,
          "X-Content-Type-Options": "nosniff",
        });
        response.end(method === "HEAD" ? undefined : asset.body);
        return true;
      }
      for (const module of modules) {
        for (const route of module.routes) {
          let params: string[];
          if (typeof route.path === "string") {
            if (route.path !== url.pathname) continue;
            params = [];
          } else {
            const match = route.path.exec(url.pathname);
            if (match === null) continue;
            params = match.slice(1).map(decodeSegment);
          }
          const allowed: string[] = route.methods.includes("GET")
            ? [...route.methods, "HEAD"]
            : [...route.methods];
          if (!allowed.includes(method)) {
            sendError(
              response,
              405,
              `${method} is not allowed on ${url.pathname}: use ${allowed.join(" or ")}`,
              {
                Allow: allowed.join(", "),
              },
            );
            return true;
          }
          await route.handle({ source, request, response, url, params });
          return true;
        }
      }
      return false;
    },
    close() {
      for (const module of modules) module.close?.();
    },
  };
}

function decodeSegment(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
