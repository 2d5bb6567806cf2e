import fs from 'node:fs';
import { createHash } from 'node:crypto';
import type { VerificationProblem } from '../shared/contracts.ts';
import { WAL_FRAME_HEADER_SIZE, frameSize } from './wal-format.ts';
import { ranges } from './wal-chain-check.ts';
import { blockDigests } from './hash-thread.ts';

/**
 * What every page of a shipped database should hold: the sha1 of each page of the
 * database's state at the position shipped (the shipper) or held (a replica), kept from
 * the data that crossed the wire — the generation's image, then every committed frame
 * shipped — never read back from the files it is meant to check.
 *
 * Why the db file can be checked against it while the app writes: in WAL mode SQLite
 * writes the db file only by checkpoints, which copy the newest committed version of
 * pages that are in the WAL. So a page of the db file that has NO frame in the live WAL
 * (frames 1..end of the WAL generation the record is at) was last written before that
 * WAL began, and is exactly the record's page; pages with frames are skipped (the WAL
 * shadows them, and a checkpoint may be writing them). quick_check cannot see damage
 * inside a row's bytes nor in a page the WAL shadows only in part; this sees any byte.
 */
const DIGEST_BYTES = 20;

export class PageRecord {
  /** sha1 of page p (1-based) at (p - 1) * 20; all zero: not recorded. */
  private digests: Buffer;
  /** Pages with a digest (the highest page number recorded). */
  private recorded = 0;
  /** The database's size in pages at the recorded state (the last commit's). */
  nPage: number;

  constructor(
    readonly pageSize: number,
    nPage = 0,
  ) {
    this.nPage = nPage;
    this.digests = Buffer.alloc(Math.max(64, nPage) * DIGEST_BYTES);
  }

  /**
   * The record of a database image (a whole database file's bytes); null when it is not
   * one. A large image is hashed off the event loop (hash-thread.ts).
   */
  static async ofImage(image: Buffer): Promise<PageRecord | null> {
    const pageSize = imagePageSize(image);
    if (pageSize === null || image.length % pageSize !== 0) return null;
    const nPage = image.length / pageSize;
    const r = new PageRecord(pageSize, nPage);
    (await blockDigests(image, pageSize, 'sha1', DIGEST_BYTES)).copy(r.digests);
    r.recorded = nPage;
    return r;
  }

  /** Applies whole, verified frames (24-byte header + page each), in order; commit frames set the size. */
  applyFrames(frames: Buffer): void {
    const fsz = frameSize(this.pageSize);
    for (let off = 0; off + fsz <= frames.length; off += fsz) {
      this.set(frames.readUInt32BE(off), frames.subarray(off + WAL_FRAME_HEADER_SIZE, off + fsz));
      const commit = frames.readUInt32BE(off + 4);
      if (commit !== 0) this.nPage = commit;
    }
  }

  private set(pgno: number, page: Buffer): void {
    if (pgno < 1) return;
    if (pgno * DIGEST_BYTES > this.digests.length) {
      const grown = Buffer.alloc(Math.max(pgno, Math.ceil(this.digests.length / DIGEST_BYTES) * 2) * DIGEST_BYTES);
      this.digests.copy(grown);
      this.digests = grown;
    }
    createHash('sha1')
      .update(page)
      .digest()
      .copy(this.digests, (pgno - 1) * DIGEST_BYTES);
    if (pgno > this.recorded) this.recorded = pgno;
  }

  /** Pages 1..n that can be checked: recorded and inside the database. */
  get pages(): number {
    return Math.min(this.recorded, this.nPage);
  }

  /**
   * Compares pages [from, from + count) of the bytes in `buf` (page `from` at offset 0)
   * with the record, skipping `shadowed` pages; returns the page numbers that differ.
   */
  differing(buf: Buffer, from: number, shadowed: ReadonlySet<number>): number[] {
    return this.compare(buf, from, shadowed, (i) =>
      createHash('sha1')
        .update(buf.subarray(i * this.pageSize, (i + 1) * this.pageSize))
        .digest(),
    );
  }

  /** A copy that later frames (the shipper applies them as it ships) do not change. */
  clone(): PageRecord {
    const c = new PageRecord(this.pageSize, this.nPage);
    c.digests = Buffer.from(this.digests);
    c.recorded = this.recorded;
    return c;
  }

  /**
   * `differing`, with the pages hashed off the event loop when `buf` is large (a whole
   * image). The record may change while the hashing runs: call it on a `clone()` taken
   * together with whatever `shadowed` was computed from.
   */
  async differingOffLoop(buf: Buffer, from: number, shadowed: ReadonlySet<number>): Promise<number[]> {
    const whole = Math.floor(buf.length / this.pageSize) * this.pageSize;
    const digests = await blockDigests(buf.subarray(0, whole), this.pageSize, 'sha1', DIGEST_BYTES);
    return this.compare(buf, from, shadowed, (i) => digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES));
  }

  private compare(buf: Buffer, from: number, shadowed: ReadonlySet<number>, digestOf: (i: number) => Buffer): number[] {
    const out: number[] = [];
    const zero = Buffer.alloc(DIGEST_BYTES);
    for (let i = 0; (i + 1) * this.pageSize <= buf.length; i++) {
      const p = from + i;
      if (p > this.pages || shadowed.has(p)) continue;
      const want = this.digests.subarray((p - 1) * DIGEST_BYTES, p * DIGEST_BYTES);
      if (want.equals(zero)) continue;
      if (!digestOf(i).equals(want)) out.push(p);
    }
    return out;
  }
}

/** The page size in an SQLite header (bytes 16-17; 1 means 65536), or null. */
export function imagePageSize(image: Buffer): number | null {
  if (image.length < 100) return null;
  const v = image.readUInt16BE(16);
  const size = v === 1 ? 65536 : v;
  return size >= 512 && (size & (size - 1)) === 0 ? size : null;
}

/** Where a round of page checks is in a database file (the next page to read). */
export interface PageCursor {
  next: number;
}

/**
 * Reads up to `maxBytes` of the db file from page `cursor.next` on (wrapping to page 1
 * after the record's last page), for `PageRecord.differing`. A round of checks reads a
 * slice, so a large database is covered over several rounds.
 */
export function readPageSlice(dbPath: string, record: PageRecord, cursor: PageCursor, maxBytes: number): { buf: Buffer; from: number } | null {
  const total = record.pages;
  if (total === 0) return null;
  if (cursor.next < 1 || cursor.next > total) cursor.next = 1;
  const from = cursor.next;
  const count = Math.max(1, Math.min(total - from + 1, Math.floor(maxBytes / record.pageSize)));
  let fd: number;
  try {
    fd = fs.openSync(dbPath, 'r');
  } catch {
    return null;
  }
  try {
    const buf = Buffer.allocUnsafe(count * record.pageSize);
    let n = 0;
    while (n < buf.length) {
      const r = fs.readSync(fd, buf, n, buf.length - n, (from - 1) * record.pageSize + n);
      if (r === 0) break;
      n += r;
    }
    cursor.next = from + count > total ? 1 : from + count;
    // Pages beyond the end of the file are in the WAL (not checkpointed yet): not judged here.
    return { buf: buf.subarray(0, Math.floor(n / record.pageSize) * record.pageSize), from };
  } finally {
    fs.closeSync(fd);
  }
}

/** The problem for pages of `rel` that differ from the record. */
export function pageProblem(rel: string, pages: readonly number[], pageSize: number): VerificationProblem {
  return {
    file: rel,
    kind: 'page',
    detail: `page(s) ${ranges(pages)} (${pageSize}-byte pages, from byte ${(pages[0]! - 1) * pageSize}) differ from what was shipped, and no WAL frame supersedes them: the database file was damaged`,
  };
}
