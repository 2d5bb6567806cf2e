import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { isTempName } from './fs-durable.ts';
import { peekFileHead } from './stable-read.ts';

/**
 * Facts about SQLite database files read straight from their 100-byte header, without
 * opening them through SQLite (opening can create -wal/-shm files or take locks).
 *
 * A database is found by its header ("SQLite format 3\0"), whatever its name: apps keep
 * them as `*.db`, `*.sqlite`, `*.sqlite3` or with no extension at all. A file *named*
 * like a database (`.db`, `.sqlite`, `.sqlite3`, `.db3`) counts as one too even without
 * the header: empty, it is a database SQLite created and has not written yet; otherwise
 * it is a damaged one (checkVolumeDatabases says so). Neither a database nor its
 * `-wal`/`-shm`/`-journal` companions is ever copied as a plain file: a copy of a file
 * that SQLite is writing can be torn. Databases reach a replica as consistent images
 * (snapshots) and verbatim WAL frames only (volume-shipper.ts).
 */
export const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

const DATABASE_NAME = /\.(db|sqlite|sqlite3|db3)$/i;
const COMPANION_NAME = /-(wal|shm|journal)$/;

/** True for a name that says "database" (`.db`, `.sqlite`, `.sqlite3`, `.db3`), whatever the content. */
export function isDatabaseName(rel: string): boolean {
  return DATABASE_NAME.test(rel);
}

/** True for a `-wal`, `-shm` or `-journal` file (a database's companion). */
export function isCompanionName(rel: string): boolean {
  return COMPANION_NAME.test(rel);
}

/**
 * Files that belong to a database and never travel as plain files: by name (a database
 * name or a companion), or, when `head` (the first bytes of the file) is given, by the
 * SQLite header. Callers that have not read the file use `hasSqliteMagic` as well.
 */
export function isDatabaseArtifact(rel: string, head?: Uint8Array): boolean {
  return isDatabaseName(rel) || isCompanionName(rel) || (head !== undefined && startsWithMagic(head));
}

/** True when `data` starts with the SQLite header magic. */
export function startsWithMagic(data: Uint8Array): boolean {
  return data.length >= SQLITE_MAGIC.length && SQLITE_MAGIC.equals(data.subarray(0, SQLITE_MAGIC.length));
}

/** Kept for callers that only knew `.db` files; a database is any file `listDatabases` finds. */
export function isDatabaseFile(rel: string): boolean {
  return isDatabaseName(rel);
}

/**
 * The first `n` bytes of a file. Never through a descriptor that is closed afterwards if
 * the file is a database: closing any descriptor of a file releases the locks this
 * process's SQLite connections hold on it (stable-read.ts).
 */
function readHead(file: string, n: number): Buffer | null {
  return peekFileHead(file, n, startsWithMagic);
}

/** True when the file starts with the SQLite header magic. */
export function hasSqliteMagic(file: string): boolean {
  const head = readHead(file, 16);
  return head !== null && startsWithMagic(head);
}

/**
 * The journal mode a database's header records (file format read/write versions at
 * bytes 18/19: 2 = WAL, 1 = rollback journal). `empty`: a file SQLite created and has
 * not written yet (no header); `not-sqlite`: something else (damaged, or not a database
 * at all); `missing`: no such file.
 */
export type DatabaseMode = 'wal' | 'rollback' | 'empty' | 'not-sqlite' | 'missing';

export interface DatabaseHeader {
  mode: DatabaseMode;
  /** File change counter (bytes 24..27): SQLite raises it at every commit in rollback-journal mode. */
  changeCounter: number;
  /** Database size in pages (bytes 28..31). */
  pages: number;
}

export function readDatabaseHeader(file: string): DatabaseHeader {
  const head = readHead(file, 100);
  if (head === null) return { mode: 'missing', changeCounter: 0, pages: 0 };
  if (head.length === 0) return { mode: 'empty', changeCounter: 0, pages: 0 };
  if (head.length < 100 || !startsWithMagic(head)) return { mode: 'not-sqlite', changeCounter: 0, pages: 0 };
  const mode: DatabaseMode = head[18] === 2 && head[19] === 2 ? 'wal' : head[18] === 1 && head[19] === 1 ? 'rollback' : 'not-sqlite';
  return { mode, changeCounter: head.readUInt32BE(24), pages: head.readUInt32BE(28) };
}

/**
 * True when the database's header says WAL mode (file format read/write versions = 2).
 * An empty file (a database being created) is not (yet) a WAL database.
 */
export function isWalModeDatabase(file: string): boolean {
  return readDatabaseHeader(file).mode === 'wal';
}

/**
 * Every database under `dir` (relative paths, '/' separated, sorted): each regular
 * file that starts with the SQLite header, and each file named like a database (which
 * may be empty or damaged). Companions (`-wal`, `-shm`, `-journal`) and our temp files
 * are never listed.
 */
export function listDatabases(dir: string): string[] {
  return new DatabaseFinder(dir).find(true);
}

/**
 * Finds a volume's databases by walking it. `find(true)` reads the header of every file
 * (the periodic scan); `find(false)` — the sync barrier's quick look, which runs on the
 * write path — reads only files it has not classified before and files that were empty
 * or too short to tell (a database SQLite has created but not written yet). A plain file
 * that is rewritten in place as a database under the same name is found by the next
 * full look (an app creates a database as a new file; SQLite writes its header at the
 * first commit, and empty files are looked at again every time).
 *
 * The quick look also skips listing a directory whose entries cannot have changed: one
 * whose modification time (which every create, remove and rename in it sets) is the same
 * as when it was listed, provided that listing began at least `STABLE_MS` after this
 * process first saw that modification time. A file system keeps times at a granularity
 * (a few ms on ext4, a second on ext3 and some network file systems, two on FAT), so a
 * change made soon after another can leave the time as it was: such a change was made
 * within the granularity of the first, and a listing begun `STABLE_MS` later holds both.
 * Only local monotonic time is compared, so a file server's clock does not matter. A
 * directory written to all the time is simply listed every time, as before.
 */
export class DatabaseFinder {
  /** rel → what its last look found: a database, or a plain file. Empty/short files are not kept. */
  private known = new Map<string, 'db' | 'plain'>();
  /** Directory rel → its last listing (the quick look's cache; see the class comment). */
  private listings = new Map<string, Listing>();

  /** `stableMs`: see STABLE_MS (tests use other values). */
  constructor(
    readonly root: string,
    private readonly stableMs = STABLE_MS,
  ) {}

  find(full: boolean): string[] {
    const out: string[] = [];
    const seen = new Map<string, 'db' | 'plain'>();
    const dirs = new Map<string, Listing>();
    const walk = (rel: string): void => {
      const listing = this.list(rel, full);
      if (listing === null) return;
      dirs.set(rel, listing);
      for (const e of listing.entries) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.dir) {
          walk(r);
          continue;
        }
        let kind: 'db' | 'plain' | undefined = isDatabaseName(r) ? 'db' : full ? undefined : this.known.get(r);
        if (kind === undefined) {
          const head = readHead(path.join(this.root, r), 16);
          if (head === null) continue; // gone meanwhile
          if (startsWithMagic(head)) kind = 'db';
          else if (head.length < 16)
            continue; // empty or being written: look again next time
          else kind = 'plain';
        }
        seen.set(r, kind);
        if (kind === 'db') out.push(r);
      }
    };
    walk('');
    this.known = seen;
    this.listings = dirs;
    return out.sort();
  }

  /** The entries of directory `rel` that can hold databases (see the class comment), or null if it is gone. */
  private list(rel: string, full: boolean): Listing | null {
    const abs = path.join(this.root, rel);
    const now = performance.now();
    const st = fs.statSync(abs, { throwIfNoEntry: false });
    if (st === undefined || !st.isDirectory()) return null;
    const prev = this.listings.get(rel);
    const same = prev !== undefined && prev.ino === st.ino && prev.dev === st.dev && prev.mtimeMs === st.mtimeMs;
    if (same && prev.complete && !full) return prev;
    const firstSeen = same ? prev.firstSeen : now;
    let dirents: fs.Dirent[];
    try {
      dirents = fs.readdirSync(abs, { withFileTypes: true });
    } catch {
      return null;
    }
    const entries: ListingEntry[] = [];
    for (const e of dirents) {
      if (isTempName(e.name)) continue;
      if (e.isDirectory()) entries.push({ name: e.name, dir: true });
      else if (e.isFile() && !isCompanionName(e.name)) entries.push({ name: e.name, dir: false });
    }
    return { ino: st.ino, dev: st.dev, mtimeMs: st.mtimeMs, firstSeen, complete: now - firstSeen >= this.stableMs, entries };
  }
}

/**
 * How long after first seeing a directory's modification time a listing of it is taken
 * as complete (DatabaseFinder): above the coarsest time granularity of the file systems
 * a volume may be on (FAT's 2 s).
 */
const STABLE_MS = 3000;

interface ListingEntry {
  name: string;
  dir: boolean;
}

interface Listing {
  ino: number;
  dev: number;
  mtimeMs: number;
  /** performance.now() when this directory was first seen with this modification time. */
  firstSeen: number;
  /** Taken at least STABLE_MS after firstSeen: it holds every change made at that modification time. */
  complete: boolean;
  entries: ListingEntry[];
}
