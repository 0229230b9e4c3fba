// The dashboard's stats part (to be written).
import type { DashboardModuleFactory } from "./routes.js";

export const statsModule: DashboardModuleFactory = () => ({ routes: [] });
