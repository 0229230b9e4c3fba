// The goal table of the log and stats scenarios, a goal per row judged through the embedded server and
// through real memcached, and its goal_<key>_met fields in the JSON.
import { pushTable } from "./common.js";

export interface GoalRow {
  /** JSON: goal_<key>_met (embedded) and goal_<key>_met_memcached. */
  key: string;
  label: string;
  /** The figure and whether it meets the goal ("…: met", "…: not met"), or "-" where the run was left out. */
  embedded: string;
  memcached: string;
}

/** Adds the goal table to `lines`, unless there are no goals. */
export function pushGoalTable(lines: string[], rows: GoalRow[]): void {
  pushTable(
    lines,
    ["goal", "embedded", "memcached"],
    rows.map((g) => [g.label, g.embedded, g.memcached]),
  );
}

/** Sets goal_<key>_met and goal_<key>_met_memcached for every row: true / false, or null where left out. */
export function addGoalJson(json: Record<string, unknown>, rows: GoalRow[]): void {
  const met = (cell: string) => (cell === "-" ? null : cell.endsWith(": met"));
  for (const row of rows) {
    json[`goal_${row.key}_met`] = met(row.embedded);
    json[`goal_${row.key}_met_memcached`] = met(row.memcached);
  }
}
