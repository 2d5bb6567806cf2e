import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { isTempName } from './fs-durable.ts';
import { hasSqliteMagic, isDatabaseArtifact } from './sqlite-file.ts';

/**
 * The checksummed manifest of a volume's plain files: everything except databases
 * (found by name or by their SQLite header: sqlite-file.ts), their -wal/-shm/-journal
 * (databases are shipped as consistent images and WAL frames) and our temp files.
 * Hashing is skipped for a file whose size and mtime did not change since the
 * previous scan of the same manifest. `databases` holds the paths the last scan left
 * out because their header says SQLite.
 */
export interface ManifestEntry {
  path: string;
  size: number;
  mtimeMs: number;
  mode: number;
  sha256: string;
}

export class FileManifest {
  private cache = new Map<string, ManifestEntry>();
  /** Files of the last scan that are databases by their header (whatever their name). */
  databases = new Set<string>();

  constructor(readonly root: string) {}

  async scan(): Promise<Map<string, ManifestEntry>> {
    const next = new Map<string, ManifestEntry>();
    const databases = new Set<string>();
    const walk = async (rel: string): Promise<void> => {
      let entries: fs.Dirent[];
      try {
        entries = await fsp.readdir(path.join(this.root, rel), { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (isTempName(e.name)) continue;
        if (e.isDirectory()) {
          await walk(r);
          continue;
        }
        if (!e.isFile() || isDatabaseArtifact(r)) continue;
        let st: fs.Stats;
        try {
          st = await fsp.stat(path.join(this.root, r));
        } catch {
          continue;
        }
        const prev = this.cache.get(r);
        if (prev && prev.size === st.size && prev.mtimeMs === st.mtimeMs) {
          next.set(r, prev);
          continue;
        }
        // A database is never read whole here: its header is enough to leave it out.
        if (hasSqliteMagic(path.join(this.root, r))) {
          databases.add(r);
          continue;
        }
        let data: Buffer;
        try {
          data = await fsp.readFile(path.join(this.root, r));
        } catch {
          continue;
        }
        if (isDatabaseArtifact(r, data)) {
          databases.add(r);
          continue;
        } // became one meanwhile
        next.set(r, { path: r, size: data.length, mtimeMs: st.mtimeMs, mode: st.mode & 0o777, sha256: sha256(data) });
      }
    };
    await walk('');
    this.cache = next;
    this.databases = databases;
    return next;
  }
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
