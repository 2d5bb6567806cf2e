import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Durable file operations. A file that must survive a crash is written to a temp file
 * in the same directory, fsynced, renamed over the target, and the directory is fsynced
 * so the rename itself is on disk. Readers therefore see the old or the new content,
 * never a torn mix.
 */
export const TEMP_PREFIX = '.understudy-tmp-';

export function isTempName(name: string): boolean {
  return path.basename(name).startsWith(TEMP_PREFIX);
}

export function tempPathFor(target: string): string {
  return path.join(path.dirname(target), `${TEMP_PREFIX}${path.basename(target)}-${randomBytes(4).toString('hex')}`);
}

export async function fsyncDir(dir: string): Promise<void> {
  const h = await fsp.open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `data` to a temp file beside `target` and fsyncs it; returns the temp path. */
export async function writeTemp(target: string, data: Uint8Array | string, mode?: number): Promise<string> {
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  const h = await fsp.open(tmp, 'w', mode);
  try {
    await h.writeFile(data);
    await h.sync();
  } finally {
    await h.close();
  }
  return tmp;
}

/** temp + fsync + rename + fsync(dir). */
export async function writeFileDurable(target: string, data: Uint8Array | string, opts: { mode?: number; mtimeMs?: number } = {}): Promise<void> {
  const tmp = await writeTemp(target, data, opts.mode);
  try {
    if (opts.mtimeMs !== undefined) await fsp.utimes(tmp, new Date(), new Date(opts.mtimeMs));
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(target));
}

/** Removes a file (if present) and fsyncs its directory. */
export async function removeDurable(target: string): Promise<void> {
  try {
    await fsp.rm(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  await fsyncDir(path.dirname(target));
}
