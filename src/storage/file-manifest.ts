import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { isTempName } from './fs-durable.ts';
import { isDatabaseArtifact } from './sqlite-file.ts';

/**
 * The checksummed manifest of a volume's plain files: everything except databases
 * and their -wal/-shm/-journal (shipped by WAL-frame replication) and our temp files.
 * Hashing is skipped for a file whose size and mtime did not change since the
 * previous scan of the same manifest.
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

  constructor(readonly root: string) {}

  async scan(): Promise<Map<string, ManifestEntry>> {
    const next = new Map<string, ManifestEntry>();
    const walk = async (rel: string): Promise<void> => {
      let entries: fs.Dirent[];
      try { entries = await fsp.readdir(path.join(this.root, rel), { withFileTypes: true }); } catch { return; }
      for (const e of entries) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (isTempName(e.name)) continue;
        if (e.isDirectory()) { await walk(r); continue; }
        if (!e.isFile() || isDatabaseArtifact(r)) continue;
        let st: fs.Stats;
        try { st = await fsp.stat(path.join(this.root, r)); } catch { continue; }
        const prev = this.cache.get(r);
        if (prev && prev.size === st.size && prev.mtimeMs === st.mtimeMs) { next.set(r, prev); continue; }
        let data: Buffer;
        try { data = await fsp.readFile(path.join(this.root, r)); } catch { continue; }
        next.set(r, { path: r, size: data.length, mtimeMs: st.mtimeMs, mode: st.mode & 0o777, sha256: sha256(data) });
      }
    };
    await walk('');
    this.cache = next;
    return next;
  }
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
