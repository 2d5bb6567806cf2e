import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { PointManifest, VerificationProblem } from '../../shared/contracts.ts';
import { fsyncDir } from '../fs-durable.ts';
import { sha256Hex } from './chunking.ts';
import { quickCheck } from './quick-check.ts';

/**
 * Rebuilds a restore point's files into `intoDir` (which must not exist yet) and
 * verifies them: every chunk's sha256 against its name, every file's sha256 against
 * the manifest, every database with quick_check. Used by the vault to verify a point
 * (chunks read from its disk) and by a target to restore one (chunks over HTTP).
 *
 * Returns the problems; empty means the rebuilt files are exactly the point and its
 * databases open. With `failFast` it stops at the first problem (a restore trying
 * point after point). Files are fsynced; the caller decides whether to keep the dir.
 */
export interface ChunkSource {
  /** The bytes stored under `hash`, unchecked, or null when absent. */
  get(hash: string): Promise<Buffer | null>;
}

export interface RebuildOptions {
  failFast?: boolean;
  /** Chunks fetched at once. @default 4 */
  parallel?: number;
  /** Called after every chunk written, with the bytes written so far. */
  onProgress?: (bytesDone: number) => void;
}

export async function rebuildPoint(m: PointManifest, source: ChunkSource, intoDir: string, opts: RebuildOptions = {}): Promise<VerificationProblem[]> {
  const problems: VerificationProblem[] = [];
  const parallel = Math.max(1, opts.parallel ?? 4);
  let done = 0;
  await fsp.mkdir(intoDir, { recursive: true });
  const dirs = new Set<string>([intoDir]);
  for (const f of m.files) {
    const abs = path.join(intoDir, f.path);
    await fsp.mkdir(path.dirname(abs), { recursive: true });
    dirs.add(path.dirname(abs));
    const h = await fsp.open(abs, 'w', f.mode);
    const whole = createHash('sha256');
    let fileOk = true;
    try {
      for (let i = 0; i < f.chunks.length; i += parallel) {
        const batch = f.chunks.slice(i, i + parallel);
        const datas = await Promise.all(batch.map((hash) => source.get(hash)));
        for (let j = 0; j < batch.length; j++) {
          const hash = batch[j]!;
          const data = datas[j];
          if (!data) {
            problems.push({ file: f.path, kind: 'chunk-missing', detail: `chunk ${i + j} (${hash}) is not in the vault` });
            fileOk = false;
          } else if (sha256Hex(data) !== hash) {
            problems.push({ file: f.path, kind: 'chunk-corrupt', detail: `chunk ${i + j} (${hash}) does not match its sha256` });
            fileOk = false;
          }
          if (!fileOk && opts.failFast) return problems;
          if (data) {
            whole.update(data);
            await h.write(data);
            done += data.length;
          }
        }
        opts.onProgress?.(done);
      }
      await h.sync();
    } finally {
      await h.close();
    }
    if (fileOk) {
      const actual = whole.digest('hex');
      if (actual !== f.sha256) {
        problems.push({ file: f.path, kind: 'file-hash', detail: `rebuilt file hashes to ${actual}, the manifest says ${f.sha256}` });
        if (opts.failFast) return problems;
        fileOk = false;
      }
    }
    await fsp.utimes(abs, new Date(), new Date(f.mtimeMs)).catch(() => undefined);
    if (fileOk && f.kind === 'db') {
      problems.push(...(await quickCheck(abs, f.path)));
      // quick_check's read-only connection may leave an empty -wal and an -shm beside the image.
      if ((await fsp.stat(`${abs}-wal`).catch(() => null))?.size === 0) await fsp.rm(`${abs}-wal`, { force: true });
      await fsp.rm(`${abs}-shm`, { force: true });
      if (problems.length > 0 && opts.failFast) return problems;
    }
  }
  for (const d of dirs) await fsyncDir(d).catch(() => undefined);
  return problems;
}
