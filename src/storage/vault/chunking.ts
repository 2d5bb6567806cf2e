import { createHash } from 'node:crypto';
import path from 'node:path';
import { blockDigests } from '../hash-thread.ts';

/**
 * How restore points cut files into content-addressed chunks.
 *
 * Fixed-size chunks, aligned to the start of the file: SQLite page sizes (512 … 65536)
 * all divide 64 KiB, so a page never straddles two chunks and a changed page changes
 * exactly one chunk. Content-defined chunking would find more overlap in files that
 * shift (inserted bytes), but database files never shift: pages change in place.
 */
export const DEFAULT_CHUNK_BYTES = 64 * 1024;
/** The largest chunk the vault accepts (a PUT body). */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;

const HASH_RE = /^[0-9a-f]{64}$/;

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function isChunkHash(s: string): boolean {
  return HASH_RE.test(s);
}

/** The chunks of `data` (views, not copies) with their sha256, in order; a large file hashed off the event loop. */
export async function splitChunks(data: Buffer, chunkBytes: number): Promise<{ hash: string; data: Buffer }[]> {
  const digests = await blockDigests(data, chunkBytes, 'sha256', 32);
  const out: { hash: string; data: Buffer }[] = [];
  for (let i = 0, at = 0; at < data.length; i++, at += chunkBytes) {
    out.push({ hash: digests.toString('hex', i * 32, (i + 1) * 32), data: data.subarray(at, Math.min(at + chunkBytes, data.length)) });
  }
  return out;
}

/** `<vault>/chunks/ab/abcd…`: 256 fan-out directories keep each one small. */
export function chunkPath(vaultPath: string, hash: string): string {
  return path.join(vaultPath, 'chunks', hash.slice(0, 2), hash);
}
