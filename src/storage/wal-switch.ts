import path from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { listDatabases, readDatabaseHeader } from './sqlite-file.ts';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * Puts a volume's rollback-journal databases in WAL mode while no app has them open:
 * when the storage processor creates a volume from its seed, promotes a replica, or
 * installs a restored copy — always before the site's app starts on it. WAL mode is
 * recorded in the database's header (`PRAGMA journal_mode=WAL` is persistent), so the
 * app finds it in WAL mode when it opens it, and the database is shipped by WAL frames
 * (db-shipper.ts): continuous, small, and held per write in sync mode.
 *
 * Never while the app may have it open: switching under a connection in
 * rollback-journal mode would change the app's journal mode behind its back. A
 * database the app creates later in rollback mode keeps that mode and is shipped by
 * snapshots (snapshot-shipper.ts).
 *
 * An app may put it back (`PRAGMA journal_mode=DELETE` on open is common). It must be
 * able to: SQLite refuses to leave WAL mode (SQLITE_BUSY) while another connection has
 * the database open, and DbShipper keeps two open. So a database switched here is
 * shipped by snapshots, which hold no connection between images, until the app has
 * written to it in WAL mode (the app kept WAL mode: VolumeShipper then moves it to WAL
 * frames); one the app put back in rollback mode stays with snapshots.
 *
 * The record of what was switched lives in this process (absolute paths): after a
 * restart of the storage processor every WAL-mode database is shipped by WAL frames.
 */
const switchedHere = new Map<string, number>();

export interface WalSwitchResult {
  /** Databases switched from rollback-journal to WAL mode (relative paths). */
  switched: string[];
  /** Databases that could not be switched, and why (they are shipped by snapshots). */
  failed: { db: string; error: string }[];
}

export function switchDatabasesToWal(dir: string, log?: Logger): WalSwitchResult {
  const out: WalSwitchResult = { switched: [], failed: [] };
  for (const rel of listDatabases(dir)) {
    const abs = path.resolve(dir, rel);
    if (readDatabaseHeader(abs).mode !== 'rollback') continue;
    let db: Database.Database | null = null;
    try {
      db = new Database(abs, { fileMustExist: true });
      db.pragma('busy_timeout = 1000');
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new UnderstudyError('US_WAL_UNREADABLE', `SQLite kept journal mode ${String(mode)}`);
      out.switched.push(rel);
    } catch (e) {
      out.failed.push({ db: rel, error: (e as Error).message });
    } finally {
      db?.close(); // the last connection: SQLite removes the empty -wal and -shm
    }
    if (out.switched.at(-1) === rel) switchedHere.set(abs, Date.now());
  }
  if (log && (out.switched.length > 0 || out.failed.length > 0)) {
    log.info({ dir, switched: out.switched, failed: out.failed }, 'rollback-journal databases switched to WAL mode before the app opens them');
  }
  return out;
}

/** True when this process switched the database at `abs` to WAL mode and the app has not written to it since (see above). */
export function switchedToWalHere(abs: string): boolean {
  return switchedHere.has(path.resolve(abs));
}

/** The app wrote in WAL mode, or put the database back in rollback mode: the switch is settled. */
export function settleWalSwitch(abs: string): void {
  switchedHere.delete(path.resolve(abs));
}
