import fs from 'node:fs';

/**
 * Reads files that SQLite connections of this process may hold locked: a database file
 * (its SHARED/RESERVED/EXCLUSIVE locks) and its `-shm` (WAL read marks, the write lock).
 *
 * POSIX record locks belong to the process and the file, not to a descriptor: closing
 * ANY descriptor of the file releases every lock this process holds on it — SQLite's
 * included. SQLite protects its own connections from this (it defers such closes);
 * `fs.openSync` + `fs.closeSync` cannot. Measured: after a plain open/close of the
 * database file, another process committed while this process's read transaction was
 * open (a snapshot read then could be torn); after one of the `-shm`, another process's
 * TRUNCATE checkpoint went past this process's reader.
 *
 * So these files are read through one descriptor per file (per inode), opened on first
 * use and never closed while the file exists: nothing releases a lock. A descriptor is
 * closed only once its file has no name left (deleted or replaced: the locks on an inode
 * nobody can open again protect nothing), looked at on each read of the same path and by
 * a sweep at most once a second.
 */
interface Held {
  fd: number;
  key: string;
}

const byInode = new Map<string, Held>();
let lastSweep = 0;

function inodeKey(st: fs.Stats): string {
  return `${st.dev}:${st.ino}`;
}

/** Closes the descriptors of files that no longer have a name. */
function sweep(now: number): void {
  if (now - lastSweep < 1000) return;
  lastSweep = now;
  for (const [key, h] of byInode) {
    let gone: boolean;
    try {
      gone = fs.fstatSync(h.fd).nlink === 0;
    } catch {
      gone = true;
    }
    if (!gone) continue;
    byInode.delete(key);
    try {
      fs.closeSync(h.fd);
    } catch {
      /* already closed */
    }
  }
}

/**
 * Reads up to `length` bytes at `position` of `file` into a new buffer (shorter at the end
 * of the file); null when the file does not exist (or cannot be read).
 */
export function readLockedFile(file: string, length: number, position = 0): Buffer | null {
  sweep(Date.now());
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return null;
  }
  if (!st.isFile()) return null;
  const key = inodeKey(st);
  let h = byInode.get(key);
  if (!h) {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      return null;
    }
    // Opened by name: make sure it is the inode stat saw (a rename in between).
    const now = fs.fstatSync(fd);
    const real = inodeKey(now);
    const known = byInode.get(real);
    if (known) {
      // Another name of an inode already held: keep that descriptor; this one is new and holds no lock,
      // but closing it would release the process's locks on the inode — keep it too.
      byInode.set(`${real}#${fd}`, { fd, key: `${real}#${fd}` });
      h = known;
    } else {
      h = { fd, key: real };
      byInode.set(real, h);
    }
  }
  const buf = Buffer.alloc(length);
  try {
    const got = fs.readSync(h.fd, buf, 0, length, position);
    return buf.subarray(0, got);
  } catch {
    return null;
  }
}

/**
 * The first `length` bytes of any file of a volume (which may or may not be a database).
 * A file that turns out to be a database, or is empty (a database SQLite is creating), is
 * kept open as `readLockedFile` does; another file is closed again: SQLite never locks a
 * file that is neither a database nor an `-shm`.
 */
export function peekFileHead(file: string, length: number, isDatabase: (head: Buffer) => boolean): Buffer | null {
  const held = (() => {
    try {
      return byInode.get(inodeKey(fs.statSync(file)));
    } catch {
      return undefined;
    }
  })();
  if (held) return readLockedFile(file, length);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return null;
  }
  let keep = false;
  try {
    const buf = Buffer.alloc(length);
    const head = buf.subarray(0, fs.readSync(fd, buf, 0, length, 0));
    keep = head.length === 0 || isDatabase(head);
    if (keep) {
      const key = inodeKey(fs.fstatSync(fd));
      if (byInode.has(key)) byInode.set(`${key}#${fd}`, { fd, key: `${key}#${fd}` });
      else byInode.set(key, { fd, key });
    }
    return head;
  } catch {
    return null;
  } finally {
    if (!keep) fs.closeSync(fd);
  }
}

/** How many descriptors are held (tests). */
export function heldDescriptors(): number {
  return byInode.size;
}
