// The fence of a sink's output folder: a small SQLite file (`<stream>.fence`) whose lock serialises the
// processes writing one stream's files and whose token says which of them may write.
//
// A drainer that becomes active takes a new token (the stored one plus one) and, under the same lock,
// recovers its cursor from the files. Every later change to the files (appends, roll-backs, the raw cursor
// file) happens under the lock after checking that the stored token is still its own. So a drainer that was
// paused past its lease and resumes finds a newer token and is refused (FencedError) before it touches a
// file, and a drainer always writes after having read everything written before it: nothing twice.
//
// The lock is SQLite's (POSIX advisory locks), taken as an EXCLUSIVE transaction (so its commit never waits
// on other processes): the folder must be on a local file system or one whose locks work across the machines
// that share it. The lock is held while bytes are appended or cut and while the raw format's cursor file is
// replaced, not during the fsync of appended bytes, so a paused holder seldom stalls a successor.
import Database from "better-sqlite3";
import { setTimeout as sleep } from "node:timers/promises";
import { FencedError, SinkError } from "../errors.js";

export const DEFAULT_LOCK_TIMEOUT = 5000; // ms to wait for another process's lock before failing
const LOCK_RETRY_EVERY = 2; // ms between attempts at a lock another process holds

export class FileFence {
  readonly path: string;
  readonly lockTimeout: number;
  readonly #db: Database.Database;
  /** Prepared once the table exists (it is created under the lock, so opening never waits for a holder). */
  #read: Database.Statement<[], { token: number }> | undefined;
  #bump: Database.Statement<[], { token: number }> | undefined;
  #token: number | undefined;
  #locked = false;

  /** Opens (creating) the fence file; takes no token yet. */
  constructor(path: string, options: { lockTimeout?: number } = {}) {
    this.path = path;
    this.lockTimeout = options.lockTimeout ?? DEFAULT_LOCK_TIMEOUT;
    try {
      // No busy timeout: waiting is done here, asynchronously (SQLite's own wait would block the event loop).
      // Set through the constructor, not a PRAGMA, which would read the schema and could find it locked.
      this.#db = new Database(path, { timeout: 0 });
    } catch (error) {
      throw new SinkError(
        `file sink: could not open the fence ${path} (${(error as Error).message}): check the output folder's ` +
          "permissions and that it is on a file system with working locks",
        { cause: error, file: path },
      );
    }
  }

  /** This holder's token; undefined before take(). */
  get token(): number | undefined {
    return this.#token;
  }

  /** Takes a new token (fencing out every earlier holder) and runs `work` under the lock. */
  async take<T>(work: () => Promise<T>): Promise<T> {
    let token = 0;
    const result = await this.#underLock(async () => {
      if (this.#bump === undefined) {
        this.#db.exec(
          "CREATE TABLE IF NOT EXISTS fence (id INTEGER PRIMARY KEY CHECK (id = 1), token INTEGER NOT NULL)",
        );
        this.#db.exec("INSERT OR IGNORE INTO fence (id, token) VALUES (1, 0)");
        this.#bump = this.#db.prepare<[], { token: number }>(
          "UPDATE fence SET token = token + 1 WHERE id = 1 RETURNING token",
        );
        this.#read = this.#db.prepare<[], { token: number }>("SELECT token FROM fence WHERE id = 1");
      }
      token = this.#storage("take a token in", () => this.#bump!.get()!.token);
      return work();
    }, true);
    // Only once committed: a failed take leaves the stored token as it was.
    this.#token = token;
    return result;
  }

  /** Runs `work` under the lock if this holder's token is still the stored one; else FencedError. */
  async guard<T>(work: () => Promise<T>): Promise<T> {
    return this.#underLock(async () => {
      const stored = this.#storage("read", () => this.#read?.get()?.token);
      if (this.#token === undefined || stored !== this.#token) {
        throw new FencedError(
          `file sink: another drainer took over ${this.path} (its token ${stored ?? "none"}, ours ` +
            `${this.#token ?? "none"}): this one lost its lease and must not write; it stands by`,
        );
      }
      return work();
    });
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  /**
   * Runs one of the fence's own statements; SQLite's errors become a SinkError saying what to do. A full disk
   * or a file size limit shows here as SQLite's "disk I/O error" (its journal cannot grow), not as an errno.
   */
  #storage<T>(what: string, statement: () => T): T {
    try {
      return statement();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const full = typeof code === "string" && (code.startsWith("SQLITE_IOERR") || code === "SQLITE_FULL");
      throw new SinkError(
        `file sink: could not ${what} the fence ${this.path} (${(error as Error).message}): ` +
          (full
            ? "the disk may be full or this process's file size limit (ulimit -f) reached: free space or raise " +
              "the limit"
            : "check the output folder") +
          "; the cursor did not move",
        { cause: error, file: this.path },
      );
    }
  }

  /** Runs `work` in an exclusive transaction; `wrote`: the transaction changed the fence (take). */
  async #underLock<T>(work: () => Promise<T>, wrote = false): Promise<T> {
    if (this.#locked)
      throw new SinkError(`file sink: the fence ${this.path} is already held by this process`);
    const deadline = Date.now() + this.lockTimeout;
    for (;;) {
      try {
        this.#db.exec("BEGIN EXCLUSIVE");
        break;
      } catch (error) {
        if ((error as { code?: unknown }).code !== "SQLITE_BUSY") {
          throw new SinkError(
            `file sink: could not lock the fence ${this.path}: ${(error as Error).message}`,
            {
              cause: error,
              file: this.path,
            },
          );
        }
        if (Date.now() >= deadline) {
          throw new SinkError(
            `file sink: the fence ${this.path} stayed locked by another process for ${this.lockTimeout} ms ` +
              "(a drainer paused in the middle of an append?): retrying",
            { file: this.path },
          );
        }
        await sleep(LOCK_RETRY_EVERY);
      }
    }
    this.#locked = true;
    let result: T;
    try {
      result = await work();
    } catch (error) {
      this.#locked = false;
      if (this.#db.inTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
    try {
      // Holding the exclusive lock, the commit waits on no one. Should it fail all the same, a guard's work
      // stands (its check held under the lock, and the files have changed), but a token taken is lost.
      this.#db.exec("COMMIT");
    } catch (error) {
      if (this.#db.inTransaction) this.#db.exec("ROLLBACK");
      if (!wrote) return result;
      throw new SinkError(`file sink: could not commit the fence ${this.path}: ${(error as Error).message}`, {
        cause: error,
        file: this.path,
      });
    } finally {
      this.#locked = false;
    }
    return result;
  }
}
