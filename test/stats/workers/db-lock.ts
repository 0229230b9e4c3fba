// Another process holding the stats database's write lock, as an sqlite3 shell left inside a transaction
// would: opens the file given as argument, takes the write lock (BEGIN IMMEDIATE), prints "locked", and
// commits once a line arrives on stdin (or after the hold limit given as second argument, in ms), printing
// "released" before it exits. Without a file (as when the test runner loads every file) it does nothing.
import { createInterface } from "node:readline";
import Database from "better-sqlite3";

const [file, holdLimit] = process.argv.slice(2);
if (file !== undefined) hold(file, Number(holdLimit ?? 60_000));

function hold(file: string, holdLimit: number): void {
  const db = new Database(file);
  db.exec("BEGIN IMMEDIATE");
  process.stdout.write("locked\n");
  let done = false;
  const release = (): void => {
    if (done) return;
    done = true;
    db.exec("COMMIT");
    db.close();
    process.stdout.write("released\n");
    process.exit(0);
  };
  const limit = setTimeout(release, holdLimit);
  createInterface({ input: process.stdin }).once("line", () => {
    clearTimeout(limit);
    release();
  });
}
