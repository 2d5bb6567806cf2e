import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { VerificationProblem } from '../../shared/contracts.ts';
import { UnderstudyError } from '../../shared/errors.ts';
import { sharedView } from '../shared-bytes.ts';
import { JobThread } from '../job-thread.ts';

/**
 * SQLite's `PRAGMA quick_check` on one database file: b-tree structure, page types,
 * cell pointers, free lists, record formats (everything `integrity_check` does except
 * matching indexes to their tables: O(N) rather than O(N log N)). It does NOT see
 * damage inside a row's payload bytes — nothing in SQLite's format can; restore points
 * carry sha256 checksums for that.
 *
 * Opens a read-only connection (never checkpoints, never writes). Safe on a live WAL
 * database the app writes to; NOT on a replica being appended to (copy it first).
 * Resolves one problem per message (at most `maxErrors`), empty when the database is ok.
 *
 * It runs on a worker thread: a quick_check reads the whole database (a few hundred ms
 * for a shop's tens of MB), and on the storage processor's event loop it would hold up
 * shipping and the sync barriers for that long. One worker per process, started on first
 * use, checks one database at a time; it does not keep the process alive.
 */
export function quickCheck(file: string, rel: string, maxErrors = 10): Promise<VerificationProblem[]> {
  return checker.run(file, rel, maxErrors);
}

/** `quickCheck` of a database image in memory (its header may say WAL mode), on the same thread. */
export function quickCheckImage(image: Uint8Array, rel: string, maxErrors = 10): Promise<VerificationProblem[]> {
  return checker.runImage(image, rel, maxErrors);
}

export const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.betterSqlite);
parentPort.on('message', ({ id, file, image, rel, maxErrors }) => {
  let db = null;
  let problems;
  try {
    if (image) {
      // An image of a WAL-mode database cannot be opened in memory as such: a copy (the
      // shared bytes are not ours to change) is marked rollback-journal (header bytes 18
      // and 19), which changes nothing quick_check looks at.
      const copy = Buffer.from(image);
      if (copy.length >= 20) { copy[18] = 1; copy[19] = 1; }
      db = new Database(copy);
    } else {
      db = new Database(file, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 5000');
    }
    const rows = db.pragma('quick_check(' + maxErrors + ')');
    problems = rows.map((r) => r.quick_check).filter((m) => m !== 'ok').map((detail) => ({ file: rel, kind: 'quick-check', detail }));
  } catch (e) {
    problems = [{ file: rel, kind: 'quick-check', detail: 'cannot check: ' + e.message }];
  } finally {
    try { if (db) db.close(); } catch { /* already broken */ }
  }
  parentPort.postMessage({ id, problems });
});
`;

interface Pending {
  id: number;
  resolve: (p: VerificationProblem[]) => void;
  reject: (e: Error) => void;
  job: { id: number; file?: string; image?: Uint8Array; rel: string; maxErrors: number };
  /** Threads that failed while this check was on them. */
  failures: number;
}

/**
 * The checking thread, started on first use and again after it failed. A check the thread
 * failed on (it crashed, ran out of memory, exited) is sent once more to a new thread;
 * failing twice, it rejects with US_CHECK_UNAVAILABLE: a thread's failure says nothing
 * about the database, so it is never reported as a problem of the data (that would be
 * read as corruption and acted on).
 */
export class QuickChecker extends JobThread<Pending, { id: number; problems: VerificationProblem[] }> {
  /** @param source the thread's code (tests give one that fails). */
  constructor(private readonly source = WORKER) {
    super('the checking thread');
  }

  run(file: string, rel: string, maxErrors: number): Promise<VerificationProblem[]> {
    return this.enqueue({ file, rel, maxErrors });
  }

  /** quick_check of a database image held in memory (a restore point's capture), on the thread. */
  runImage(image: Uint8Array, rel: string, maxErrors: number): Promise<VerificationProblem[]> {
    return this.enqueue({ image: sharedView(image), rel, maxErrors });
  }

  private enqueue(what: { file?: string; image?: Uint8Array; rel: string; maxErrors: number }): Promise<VerificationProblem[]> {
    const id = this.nextId();
    return new Promise((resolve, reject) => {
      const p: Pending = { id, resolve, reject, job: { id, ...what, maxErrors: Math.max(1, Math.floor(what.maxErrors)) }, failures: 0 };
      this.post(p, p.job);
    });
  }

  protected start(): Worker {
    return new Worker(this.source, { eval: true, workerData: { betterSqlite: createRequire(import.meta.url).resolve('better-sqlite3') } });
  }

  protected answered(p: Pending, m: { problems: VerificationProblem[] }): void {
    p.resolve(m.problems);
  }

  protected gone(left: Pending[], why: string): void {
    for (const p of left) {
      p.failures++;
      if (p.failures < 2) {
        try {
          this.post(p, p.job);
          continue;
        } catch (e) {
          why = `${why}; no new thread: ${(e as Error).message}`;
        }
      }
      p.reject(
        new UnderstudyError(
          'US_CHECK_UNAVAILABLE',
          `quick_check of ${p.job.rel} could not run: the checking thread failed twice (${why}); nothing is concluded about the data, the next verification tries again`,
        ),
      );
    }
  }
}

const checker = new QuickChecker();
