// The dashboard's overview part (to be written).
import type { DashboardModuleFactory } from "./routes.js";

export const overviewModule: DashboardModuleFactory = () => ({ routes: [] });
