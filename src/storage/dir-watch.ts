import fs from 'node:fs';
import path from 'node:path';
import { isTempName } from './fs-durable.ts';

/**
 * Change hints for every directory of a tree, from one plain (non-recursive) watcher
 * per directory. Node 20's `fs.watch(dir, { recursive: true })` on Linux re-reads and
 * stats the directory on every event; in a volume whose databases are written all the
 * time (-wal, -shm) that cost a storage processor about a sixth of its CPU under load.
 * A plain watcher per directory costs one inotify event each. Hints only: events can be
 * coalesced or lost, so callers keep their periodic scan as the truth; `refresh()`
 * (after each scan) watches directories created since and drops those gone.
 */
export class DirectoryWatch {
  private readonly watchers = new Map<string, fs.FSWatcher>();
  private closed = false;

  /** `onChange` gets the changed entry's path relative to `root` ('/' separated), when known. */
  constructor(
    private readonly root: string,
    private readonly onChange: (rel: string | null) => void,
  ) {}

  /** Watches every directory under the root (temp directories excepted). */
  refresh(): void {
    if (this.closed) return;
    const seen = new Set<string>();
    const walk = (rel: string): void => {
      seen.add(rel);
      if (!this.watchers.has(rel)) this.watch(rel);
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(path.join(this.root, rel), { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) if (e.isDirectory() && !isTempName(e.name)) walk(rel ? `${rel}/${e.name}` : e.name);
    };
    walk('');
    for (const [rel, w] of this.watchers) {
      if (seen.has(rel)) continue;
      w.close();
      this.watchers.delete(rel);
    }
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  private watch(rel: string): void {
    try {
      const w = fs.watch(path.join(this.root, rel), { persistent: false }, (_e, name) => {
        this.onChange(name ? (rel ? `${rel}/${String(name)}` : String(name)) : null);
      });
      w.on('error', () => {
        w.close();
        this.watchers.delete(rel);
      });
      this.watchers.set(rel, w);
    } catch {
      /* gone, or no watches left: the periodic scan still finds every change */
    }
  }
}
