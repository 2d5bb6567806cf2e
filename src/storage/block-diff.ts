import fs from 'node:fs';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { blockDigests, fileBlockDigests } from './hash-thread.ts';

/**
 * Differential copies of a database image (failback): the replica hashes the
 * blocks (database pages) of an older copy it already holds (its base), the source
 * compares them with the blocks of its new image and sends only those that differ,
 * and the replica writes them over its base copy. Whatever the base was, the result is
 * then checked against the source's size and sha256 of the whole image (the caller's
 * job: ReplicaDbWriter.snapshotCommit), so a block hash only has to tell "probably
 * equal" from "differs": a truncated sha256 (BLOCK_HASH_BYTES) is plenty, and a false
 * "equal" can only cost a fallback to a full copy, never a wrong replica.
 *
 * Block i covers bytes [i*blockSize, (i+1)*blockSize) of the file; the last block of a
 * file whose size is not a multiple of blockSize is hashed as it is (shorter), so it
 * never matches a full block of the image.
 */
export const BLOCK_HASH_BYTES = 16;

/** Hashes of every block of `data`, concatenated (BLOCK_HASH_BYTES each); large data off the event loop. */
export async function blockHashes(data: Uint8Array, blockSize: number): Promise<Buffer> {
  checkBlockSize(blockSize);
  return blockDigests(data, blockSize, 'sha256', BLOCK_HASH_BYTES);
}

/** Hashes of every block of a file, read in bounded pieces on the hashing thread; also its size. */
export async function fileBlockHashes(file: string, blockSize: number): Promise<{ size: number; hashes: Buffer }> {
  checkBlockSize(blockSize);
  return fileBlockDigests(file, blockSize, 'sha256', BLOCK_HASH_BYTES);
}

/**
 * Indexes of the blocks of `image` that the base (its block hashes) does not hold
 * identically: blocks beyond the base's end, and blocks whose hash differs.
 */
export async function differingBlocks(image: Uint8Array, blockSize: number, baseHashes: Uint8Array): Promise<number[]> {
  const mine = await blockHashes(image, blockSize);
  const n = Math.ceil(image.length / blockSize);
  const baseBlocks = Math.floor(baseHashes.length / BLOCK_HASH_BYTES);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const at = i * BLOCK_HASH_BYTES;
    if (i >= baseBlocks || Buffer.compare(mine.subarray(at, at + BLOCK_HASH_BYTES), baseHashes.subarray(at, at + BLOCK_HASH_BYTES)) !== 0) out.push(i);
  }
  return out;
}

/** The bytes of the listed blocks of `image`, concatenated in that order (the last may be short). */
export function packBlocks(image: Uint8Array, blockSize: number, indexes: readonly number[]): Buffer {
  return Buffer.concat(indexes.map((i) => image.subarray(i * blockSize, (i + 1) * blockSize)));
}

/**
 * Writes packed blocks (`packBlocks`) into an open file at their places. Every block
 * but a final short one (the image's last block) must be exactly blockSize long.
 */
export function writeBlocks(fd: number, blockSize: number, indexes: readonly number[], data: Uint8Array): void {
  checkBlockSize(blockSize);
  const full = (indexes.length - 1) * blockSize;
  if (indexes.length === 0 ? data.length !== 0 : data.length <= full || data.length > full + blockSize) {
    throw new RangeError(`${indexes.length} blocks of ${blockSize} bytes cannot be ${data.length} bytes`);
  }
  indexes.forEach((idx, k) => {
    if (!Number.isInteger(idx) || idx < 0) throw new RangeError(`block index ${idx} is not a block`);
    const part = data.subarray(k * blockSize, Math.min(data.length, (k + 1) * blockSize));
    let done = 0;
    while (done < part.length) done += fs.writeSync(fd, part, done, part.length - done, idx * blockSize + done);
  });
}

/** The page size of an SQLite database image (header offset 16; 1 means 65536); null when not one. */
export function sqlitePageSize(image: Uint8Array): number | null {
  if (image.length < 100) return null;
  const v = (image[16]! << 8) | image[17]!;
  const size = v === 1 ? 65536 : v;
  return size >= 512 && size <= 65536 && (size & (size - 1)) === 0 ? size : null;
}

function checkBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < 512 || blockSize > 1 << 20)
    throw new RangeError(`block size ${blockSize} is not between 512 bytes and 1 MiB`);
}

/**
 * The WAL part of a differential generation, made small: every frame's page is XORed
 * with the same page of the image (the WAL's frames are mostly older versions of pages
 * whose final version is in the image, so what remains is mostly zeros), then the
 * whole is deflated. The replica undoes it with the image it has rebuilt and verified
 * (`decodeWalPart`), and then checks the WAL's frames and checksum chain as for a WAL
 * sent verbatim. Frame headers and pages beyond the image are kept as they are.
 */
export function encodeWalPart(wal: Buffer, image: Uint8Array, pageSize: number): Buffer {
  return deflateRawSync(xorPages(Buffer.from(wal), image, pageSize), { level: 1 });
}

/** Inverse of `encodeWalPart`; throws RangeError when the result is not `size` bytes. */
export function decodeWalPart(encoded: Buffer, image: Uint8Array, pageSize: number, size: number): Buffer {
  let raw: Buffer;
  try {
    raw = inflateRawSync(encoded, { maxOutputLength: Math.max(size, 1) });
  } catch (e) {
    throw new RangeError(`the encoded WAL part does not inflate to ${size} bytes: ${(e as Error).message}`, { cause: e });
  }
  if (raw.length !== size) throw new RangeError(`the encoded WAL part inflates to ${raw.length} bytes, expected ${size}`);
  return xorPages(raw, image, pageSize);
}

/** XORs, in place, each frame's page of a WAL (32-byte header, then frames) with the image's page of the same number. */
function xorPages(wal: Buffer, image: Uint8Array, pageSize: number): Buffer {
  const fsz = 24 + pageSize;
  for (let off = 32; off + fsz <= wal.length; off += fsz) {
    const pgno = wal.readUInt32BE(off);
    const at = (pgno - 1) * pageSize;
    if (pgno < 1 || at + pageSize > image.length) continue;
    const page = wal.subarray(off + 24, off + fsz);
    for (let i = 0; i < pageSize; i++) page[i]! ^= image[at + i]!;
  }
  return wal;
}
