import Database from 'better-sqlite3';
import type { VerificationProblem } from '../../shared/contracts.ts';

/**
 * SQLite's `PRAGMA quick_check` on one database file: b-tree structure, page types,
 * cell pointers, free lists, record formats (everything `integrity_check` does except
 * matching indexes to their tables: O(N) rather than O(N log N)). It does NOT see
 * damage inside a row's payload bytes — nothing in SQLite's format can; restore points
 * carry sha256 checksums for that.
 *
 * Opens a read-only connection (never checkpoints, never writes). Safe on a live WAL
 * database the app writes to; NOT on a replica being appended to (copy it first).
 * Returns one problem per message (at most `maxErrors`), empty when the database is ok.
 */
export function quickCheck(file: string, rel: string, maxErrors = 10): VerificationProblem[] {
  let db: Database.Database | null = null;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    const rows = db.pragma(`quick_check(${maxErrors})`) as { quick_check: string }[];
    const msgs = rows.map((r) => r.quick_check).filter((m) => m !== 'ok');
    return msgs.map((detail) => ({ file: rel, kind: 'quick-check' as const, detail }));
  } catch (e) {
    return [{ file: rel, kind: 'quick-check', detail: `cannot check: ${(e as Error).message}` }];
  } finally {
    try {
      db?.close();
    } catch {
      /* already broken */
    }
  }
}
