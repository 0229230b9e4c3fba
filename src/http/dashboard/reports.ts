// The dashboard's reports part (to be written).
import type { DashboardModuleFactory } from "./routes.js";

export const reportsModule: DashboardModuleFactory = () => ({ routes: [] });
