// The dashboard's log part (to be written).
import type { DashboardModuleFactory } from "./routes.js";

export const logModule: DashboardModuleFactory = () => ({ routes: [] });
