import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { VerificationProblem } from '../../shared/contracts.ts';
import { isTempName, writeFileDurable } from '../fs-durable.ts';
import { hasSqliteMagic, isDatabaseArtifact } from '../sqlite-file.ts';
import { sha256Hex } from './chunking.ts';

/**
 * Silent damage in a volume's plain files (public/, config/): every file is hashed
 * and compared with the previous verification's record. A file whose content changed
 * while its size and mtime did not was not rewritten by anyone (every write moves the
 * mtime): it rotted on disk, or was changed behind the file system. A file with a new
 * mtime is a legitimate change and becomes the new record; a damaged one keeps its
 * old record, so the problem is reported until the file is repaired.
 *
 * The record lives at `<storage.path>/verify/<site>.json` (not in meta/, which holds
 * only volume metas). Databases are checked with quick_check instead.
 */
interface Entry {
  size: number;
  mtimeMs: number;
  sha256: string;
}

export async function checkFilesAgainstBaseline(volumeDir: string, baselineFile: string): Promise<VerificationProblem[]> {
  let baseline: Record<string, Entry> = {};
  try {
    baseline = JSON.parse(await fsp.readFile(baselineFile, 'utf8')) as Record<string, Entry>;
  } catch {
    /* first check */
  }
  const next: Record<string, Entry> = {};
  const problems: VerificationProblem[] = [];
  const walk = async (rel: string): Promise<void> => {
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(path.join(volumeDir, rel), { withFileTypes: true });
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
      if (!e.isFile() || isDatabaseArtifact(r) || hasSqliteMagic(path.join(volumeDir, r))) continue;
      let st: fs.Stats;
      let data: Buffer;
      try {
        st = await fsp.stat(path.join(volumeDir, r));
        data = await fsp.readFile(path.join(volumeDir, r));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.push({ file: r, kind: 'unreadable', detail: (err as Error).message });
        continue;
      }
      const cur: Entry = { size: data.length, mtimeMs: st.mtimeMs, sha256: sha256Hex(data) };
      const prev = baseline[r];
      if (prev && prev.size === cur.size && prev.mtimeMs === cur.mtimeMs && prev.sha256 !== cur.sha256) {
        problems.push({
          file: r,
          kind: 'checksum',
          detail: `content changed without a write (size and mtime unchanged): sha256 ${cur.sha256}, recorded ${prev.sha256}`,
        });
        next[r] = prev;
      } else {
        next[r] = cur;
      }
    }
  };
  await walk('');
  await fsp.mkdir(path.dirname(baselineFile), { recursive: true });
  await writeFileDurable(baselineFile, JSON.stringify(next));
  return problems;
}
