// The dashboard's jobs part (to be written).
import type { DashboardModuleFactory } from "./routes.js";

export const jobsModule: DashboardModuleFactory = () => ({ routes: [] });
