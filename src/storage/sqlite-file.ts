import fs from 'node:fs';
import path from 'node:path';

/**
 * Facts about SQLite database files read straight from their 100-byte header, without
 * opening them through SQLite (opening can create -wal/-shm files or take locks).
 */
export const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/** Files that belong to a database and are shipped by WAL-frame replication, never as plain files. */
export function isDatabaseArtifact(rel: string): boolean {
  return /\.db$|-wal$|-shm$|-journal$/.test(rel);
}

export function isDatabaseFile(rel: string): boolean {
  return rel.endsWith('.db');
}

function readHead(file: string, n: number): Buffer | null {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch { return null; }
  try {
    const buf = Buffer.alloc(n);
    const got = fs.readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** True when the file starts with the SQLite header magic. */
export function hasSqliteMagic(file: string): boolean {
  const head = readHead(file, 16);
  return head !== null && head.length === 16 && head.equals(SQLITE_MAGIC);
}

/**
 * True when the database's header says WAL mode (file format read/write versions = 2).
 * An empty file (a database being created) is not (yet) a WAL database.
 */
export function isWalModeDatabase(file: string): boolean {
  const head = readHead(file, 100);
  if (head === null || head.length < 100 || !head.subarray(0, 16).equals(SQLITE_MAGIC)) return false;
  return head[18] === 2 && head[19] === 2;
}

/** Every `*.db` file under `dir` (relative paths, '/' separated), skipping temp files. */
export function listDatabases(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    let entries: fs.Dirent[];
    try { entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.name.startsWith('.understudy-tmp-')) continue;
      if (e.isDirectory()) walk(r);
      else if (e.isFile() && isDatabaseFile(e.name)) out.push(r);
    }
  };
  walk('');
  return out.sort();
}
