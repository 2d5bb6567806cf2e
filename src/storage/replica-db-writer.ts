import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { VerificationProblem } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { PageRecord, pageProblem, readPageSlice, type PageCursor } from './page-record.ts';
import { inspectWalChain, type ChainExpectation, type WalEnd } from './wal-chain-check.ts';
import { fsyncDir, removeDurable, TEMP_PREFIX } from './fs-durable.ts';
import { SQLITE_MAGIC } from './sqlite-file.ts';
import { decodeWalPart, fileBlockHashes, sqlitePageSize, writeBlocks } from './block-diff.ts';
import type { WalChecksum } from './wal-checksum.ts';
import { digestHex } from './hash-thread.ts';
import { WAL_HEADER_SIZE, frameOffset, frameSize, parseWalHeader, scanFrames, type WalHeader } from './wal-format.ts';

/**
 * The replica side of one database: installs snapshots and appends verbatim WAL
 * frames. Invariant: `<db>` + `<db>-wal` on disk are at every instant a snapshot
 * image plus a verbatim, checksum-verified prefix of the source's WAL, so the replica
 * opens as a consistent database at any moment (SQLite's recovery ignores a torn tail).
 * No connection is kept open: SQLite is only opened to fold the WAL into the db file
 * (checkpoint TRUNCATE) before a new WAL generation, and at promotion.
 */
export function needSnapshot(message: string): UnderstudyError {
  return new UnderstudyError('US_REPLICA_MISMATCH', message, { needSnapshot: true });
}

/**
 * A snapshot chunk is flushed to disk every this many bytes (snapshotChunk). Each flush
 * makes the shop's fsyncs on the same disk wait for at most this much of the image: on
 * ext4 (data=ordered) a journal commit, which every fsync needs, first writes out the
 * data of blocks allocated in it. Measured with bench/copy-under-load.ts (docs/operations.md).
 */
const FLUSH_BYTES = 1 << 20;

/**
 * Zero-filled room kept after the last frame of a replica's WAL file. Appending inside
 * allocated, initialized blocks changes neither the size nor the allocation, so
 * fdatasync flushes the data alone instead of committing the file system's journal.
 * SQLite reads such a file correctly: its WAL recovery stops at the first frame whose
 * salts or checksum do not continue the chain (an all-zero frame never does), exactly
 * as for the leftover tail of a WAL it restarted itself.
 */
export const WAL_PREALLOC_BYTES = 1 << 20;

interface Tail {
  generation: number;
  hdr: WalHeader | null;
  lastFrame: number;
  checksum: WalChecksum;
}

export interface ReplicaDbWriterOptions {
  /** The position this copy acknowledged in an earlier run (persisted by the live copy check), for a copy whose tail is unknown. */
  known?: () => WalEnd | null;
  /** Called when the copy is found damaged (it is then forgotten: the source re-seeds it). */
  onDamage?: (rel: string, problems: VerificationProblem[]) => void;
}

/** The copy failed its check (WAL chain, pages): `details.problems` says where. */
export function damagedCopy(message: string, problems: VerificationProblem[]): UnderstudyError {
  return new UnderstudyError('US_REPLICA_CORRUPT', message, { problems });
}

export class ReplicaDbWriter {
  private readonly dbPath: string;
  private readonly walPath: string;
  /** What the replica holds; unknown after a restart (the source then sends a snapshot). */
  private tail: Tail | null = null;
  /**
   * While frames are appended after it (`tail` is null until they are durable): the tail
   * before the append. Its frames are not touched by the append, so the live check goes
   * on judging them (an append that failed leaves `tail` null until the next snapshot).
   */
  private appendingAfter: Tail | null = null;
  /** The pages of the database at `tail` (page-record.ts); with `tail`, from what was received. */
  private record: PageRecord | null = null;
  /** Set when the copy failed its check: nothing is appended or folded until a new snapshot replaces it. */
  private damage: VerificationProblem[] | null = null;

  constructor(
    volumeDir: string,
    readonly rel: string,
    private readonly opts: ReplicaDbWriterOptions = {},
  ) {
    this.dbPath = path.join(volumeDir, rel);
    this.walPath = `${this.dbPath}-wal`;
  }

  /** The position held and acknowledged (null when unknown or damaged). */
  heldEnd(): WalEnd | null {
    const t = this.tail;
    if (!t || !t.hdr || this.damage) return null;
    return { salt1: t.hdr.salt1, salt2: t.hdr.salt2, frame: t.lastFrame, checksum: t.checksum };
  }

  /** The problems found, while the copy waits to be re-seeded. */
  get damaged(): VerificationProblem[] | null {
    return this.damage;
  }

  /**
   * The live copy check of this database (call it where nothing is appended: under the
   * volume lock). The WAL must hold frames 1..tail verbatim (the chain from its header)
   * — or, with the tail unknown after a restart, the position acknowledged in an earlier
   * run — and every page of the db file that no WAL frame supersedes must be the page
   * received. A copy that fails is forgotten (`forgetDamaged`): the source's next
   * request gets needSnapshot and ships a new generation over it.
   */
  check(cursor: PageCursor, pageBytes: number, walBudget?: ChainExpectation['budget']): VerificationProblem[] {
    if (this.damage) return this.damage;
    const { problems, shadowed } = this.inspectWal(walBudget);
    if (this.tail && this.record && shadowed) {
      const slice = readPageSlice(this.dbPath, this.record, cursor, pageBytes);
      const bad = slice ? this.record.differing(slice.buf, slice.from, shadowed) : [];
      if (bad.length > 0) problems.push(pageProblem(this.rel, bad, this.record.pageSize));
    }
    if (problems.length > 0) this.forgetDamaged(problems);
    return problems;
  }

  /** The WAL against the tail held (or the position acknowledged in an earlier run); the pages its frames hold. */
  private inspectWal(budget?: ChainExpectation['budget']): { problems: VerificationProblem[]; shadowed: ReadonlySet<number> | null } {
    const t = this.tail ?? this.appendingAfter;
    const known = t ? null : (this.opts.known?.() ?? null);
    const committed = t ? (t.hdr ? { salt1: t.hdr.salt1, salt2: t.hdr.salt2, frames: t.lastFrame } : { salt1: 0, salt2: 0, frames: 0 }) : null;
    const chain = inspectWalChain(this.dbPath, this.rel, { committed, known, ...(budget ? { budget } : {}) });
    if (!chain.conclusive) {
      // Under the volume lock nothing else writes this WAL: another header is not ours.
      return {
        shadowed: chain.shadowed,
        problems: [
          {
            file: `${this.rel}-wal`,
            kind: 'wal-frame',
            detail: `the WAL's header names another WAL than the one this replica holds (frames 1..${t?.lastFrame ?? 0}): it was replaced or damaged`,
          },
        ],
      };
    }
    return { problems: chain.problems, shadowed: chain.shadowed };
  }

  private forgetDamaged(problems: VerificationProblem[]): void {
    this.damage = problems;
    this.tail = null;
    this.appendingAfter = null;
    this.record = null;
    this.opts.onDamage?.(this.rel, problems);
  }

  /** The source's idle heartbeat: still holding `generation` up to `lastFrame`? needSnapshot if not. */
  held(generation: number, lastFrame: number): number {
    const t = this.tail;
    if (this.damage) throw needSnapshot(`${this.dbPath}: the copy is damaged (${this.damage[0]?.detail ?? '?'}); it must be re-seeded`);
    if (!t || t.generation !== generation || t.lastFrame !== lastFrame)
      throw needSnapshot(`${this.dbPath}: does not hold generation ${generation} up to frame ${lastFrame}`);
    return t.lastFrame;
  }

  private snapPath(generation: number, part: 'db' | 'wal'): string {
    return path.join(path.dirname(this.dbPath), `${TEMP_PREFIX}${path.basename(this.dbPath)}-snap-${generation}-${part}`);
  }

  /**
   * Writes one chunk of a snapshot part to its temp file (offset 0 starts it over),
   * flushing every FLUSH_BYTES of it, the last before answering. The flushes are for the
   * disk's other users, not for safety (the commit syncs the whole file again): a whole
   * image left dirty until the commit is written back in one burst, and every fsync on the
   * same disk meanwhile (the shop's own commits, on the primary's storage when both share
   * a disk) waits behind it. Flushed a MiB at a time, each wait is a MiB's.
   */
  async snapshotChunk(generation: number, part: 'db' | 'wal', offset: number, data: Buffer): Promise<void> {
    const p = this.snapPath(generation, part);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    if (offset !== 0) {
      let size: number;
      try {
        size = (await fsp.stat(p)).size;
      } catch {
        throw needSnapshot(`${p}: snapshot chunk at ${offset} without its beginning`);
      }
      if (size !== offset) throw needSnapshot(`${p}: snapshot chunk at ${offset} but ${size} bytes written`);
    }
    const h = await fsp.open(p, offset === 0 ? 'w' : 'r+');
    try {
      let done = 0;
      while (done < data.length) {
        const end = Math.min(data.length, done + FLUSH_BYTES);
        while (done < end) done += (await h.write(data, done, end - done, offset + done)).bytesWritten;
        await h.datasync();
      }
    } finally {
      await h.close();
    }
  }

  /**
   * Differential generation, step 1: copies `baseFile` (an older copy of this database:
   * see replica-base.ts) to the snapshot's image temp file and answers the hashes of
   * its blocks. The source then sends only the blocks that differ (`snapshotBlocks`),
   * written over this copy, and `snapshotCommit(…, diff)` cuts it to the image's size
   * and verifies it like a full image. The copy is aside (a temp name): the replica's
   * files are untouched until the commit has verified the whole image.
   */
  async prepareBase(generation: number, baseFile: string, blockSize: number): Promise<{ size: number; hashes: Buffer }> {
    const p = this.snapPath(generation, 'db');
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.copyFile(baseFile, p);
    return fileBlockHashes(p, blockSize);
  }

  /** Differential generation, step 2: writes blocks of the new image over the base copy. */
  async snapshotBlocks(generation: number, blockSize: number, indexes: readonly number[], data: Buffer): Promise<void> {
    const p = this.snapPath(generation, 'db');
    let fd: number;
    try {
      fd = fs.openSync(p, 'r+');
    } catch {
      throw needSnapshot(`${p}: blocks of a differential snapshot without its base copy`);
    }
    try {
      try {
        writeBlocks(fd, blockSize, indexes, data);
      } catch (e) {
        if (e instanceof RangeError) throw needSnapshot(`${p}: ${e.message}`);
        throw e;
      }
      // Flushed batch by batch, for the disk's other users (see snapshotChunk).
      await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Installs a snapshot: verifies both parts, removes the old -wal/-shm (the old db
   * file alone is still a consistent, older state), then renames the image over the
   * db and the WAL beside it. A crash between the renames leaves the image alone: a
   * consistent database.
   */
  async snapshotCommit(
    generation: number,
    dbSize: number,
    dbSha256: string,
    walSize: number,
    diff = false,
    walEncoding?: 'xor-image-deflate',
  ): Promise<number> {
    const dbTmp = this.snapPath(generation, 'db');
    const walTmp = this.snapPath(generation, 'wal');
    // A differential image is the base copy with the differing blocks written over it:
    // cut to the image's size (a larger base); a smaller one was extended by the blocks.
    if (diff) await fsp.truncate(dbTmp, dbSize).catch(() => undefined);
    const image = await fsp.readFile(dbTmp).catch(() => null);
    const what = diff ? 'differential snapshot image (base copy + differing blocks)' : 'snapshot image';
    if (!image || image.length !== dbSize) throw needSnapshot(`${dbTmp}: ${what} incomplete`);
    // The page record is computed beside the checks, and set with the tail below.
    const recordOf = PageRecord.ofImage(image);
    recordOf.catch(() => undefined); // awaited below; a failed check throws first
    if ((await digestHex(image, 'sha256')) !== dbSha256) throw needSnapshot(`${dbTmp}: ${what} checksum mismatch`);
    if (!image.subarray(0, 16).equals(SQLITE_MAGIC)) throw needSnapshot(`${dbTmp}: snapshot image is not an SQLite database`);
    let wal: Buffer | null = walSize > 0 ? await fsp.readFile(walTmp).catch(() => null) : Buffer.alloc(0);
    if (wal && walSize > 0 && walEncoding === 'xor-image-deflate') {
      // Encoded against the image just verified (block-diff.ts); checked below like a verbatim WAL.
      const pageSize = sqlitePageSize(image);
      try {
        if (pageSize === null) throw new RangeError('the image has no valid page size');
        wal = decodeWalPart(wal, image, pageSize, walSize);
      } catch (e) {
        if (e instanceof RangeError) throw needSnapshot(`${walTmp}: ${e.message}`);
        throw e;
      }
      await fsp.writeFile(walTmp, wal);
    }
    if (!wal || wal.length !== walSize) throw needSnapshot(`${walTmp}: snapshot WAL incomplete`);
    let tail: Tail = { generation, hdr: null, lastFrame: 0, checksum: [0, 0] };
    if (walSize > 0) {
      const hdr = parseWalHeader(wal);
      if (!hdr) throw needSnapshot(`${walTmp}: snapshot WAL header invalid`);
      const body = wal.subarray(WAL_HEADER_SIZE);
      const scan = scanFrames(body, hdr, 1, hdr.checksum);
      const n = body.length / frameSize(hdr.pageSize);
      if (!Number.isInteger(n) || scan.lastCommitIndex !== n) throw needSnapshot(`${walTmp}: snapshot WAL frames do not verify`);
      tail = { generation, hdr, lastFrame: n, checksum: n > 0 ? scan.lastCommitChecksum : hdr.checksum };
    }
    const record = await recordOf;
    await syncFile(dbTmp);
    if (walSize > 0) await syncFile(walTmp, WAL_PREALLOC_BYTES);
    this.tail = null;
    this.appendingAfter = null;
    await removeDurable(this.walPath);
    await removeDurable(`${this.dbPath}-shm`);
    await fsp.rename(dbTmp, this.dbPath);
    if (walSize > 0) await fsp.rename(walTmp, this.walPath);
    else await fsp.rm(walTmp, { force: true });
    await fsyncDir(path.dirname(this.dbPath));
    this.tail = tail;
    // The image is the database at the tail (the WAL part's frames are in it already).
    this.record = record;
    this.damage = null;
    return tail.lastFrame;
  }

  /**
   * Appends whole transactions. With `newWal`, the source's WAL restarted: the current
   * WAL is first folded into the db file, then the new header starts a new -wal.
   * Frames must start right after our last frame and continue the checksum chain.
   */
  async appendFrames(generation: number, newWal: Buffer | undefined, firstIndex: number, frames: Buffer): Promise<number> {
    const t = this.tail;
    if (!t || t.generation !== generation) throw needSnapshot(`${this.dbPath}: no replica state for generation ${generation}`);
    let hdr = t.hdr;
    let lastFrame = t.lastFrame;
    let checksum = t.checksum;
    if (newWal) {
      const h = parseWalHeader(newWal);
      if (!h) throw needSnapshot(`${this.dbPath}: new WAL header invalid`);
      if (firstIndex !== 1) throw needSnapshot(`${this.dbPath}: a new WAL must start at frame 1`);
      hdr = h;
      lastFrame = 0;
      checksum = h.checksum;
    }
    if (!hdr) throw needSnapshot(`${this.dbPath}: frames without a WAL header`);
    if (firstIndex !== lastFrame + 1) throw needSnapshot(`${this.dbPath}: frames start at ${firstIndex}, replica holds up to ${lastFrame}`);
    const fsz = frameSize(hdr.pageSize);
    const n = frames.length / fsz;
    const scan = scanFrames(frames, hdr, firstIndex, checksum);
    if (!Number.isInteger(n) || n < 1 || scan.lastCommitIndex !== firstIndex + n - 1) {
      throw needSnapshot(`${this.dbPath}: frames ${firstIndex}.. do not continue the WAL checksum chain or do not end with a commit`);
    }
    if (newWal) {
      try {
        this.fold(); // checked against the tail, which is still known here
      } catch (e) {
        // The WAL to fold is damaged: folding would make SQLite's recovery drop commits.
        if (e instanceof UnderstudyError && e.code === 'US_REPLICA_CORRUPT') throw needSnapshot(e.message);
        throw e;
      }
    }
    this.appendingAfter = newWal ? null : this.tail; // a new WAL replaces the file: nothing of the old one is left to judge
    this.tail = null; // unknown until the write is durable
    if (newWal) {
      const tmp = `${path.dirname(this.walPath)}/${TEMP_PREFIX}${path.basename(this.walPath)}-${generation}`;
      const h = await fsp.open(tmp, 'w');
      try {
        await h.writev([newWal, frames, Buffer.alloc(WAL_PREALLOC_BYTES)]);
        await h.sync();
      } finally {
        await h.close();
      }
      await fsp.rename(tmp, this.walPath);
      await fsyncDir(path.dirname(this.walPath));
    } else {
      // Steady state, on the sync-mode write path: a few KiB appended. The small
      // syscalls are made synchronously (page cache, microseconds; thread-pool round
      // trips cost more); the flush to disk, which waits for the disk, goes to the
      // thread pool. The file is kept zero-filled ahead of its last frame (see
      // WAL_PREALLOC_BYTES): a write inside it is flushed with fdatasync, which need
      // not commit the file system's journal (no size or allocation change) — on the
      // development machine 0.2 ms instead of 2 ms for an fsync of a growing file.
      const fd = fs.openSync(this.walPath, 'r+');
      try {
        const at = frameOffset(hdr.pageSize, firstIndex);
        const end = at + frames.length;
        const { size } = fs.fstatSync(fd);
        if (size < at) throw needSnapshot(`${this.walPath}: is ${size} bytes, expected at least ${at}`);
        // Bytes after `at` are zeros or a torn, unacknowledged tail: both are overwritten,
        // and SQLite's recovery stops at the first frame that does not continue the chain.
        if (frames.length <= 256 * 1024) {
          let done = 0;
          while (done < frames.length) done += fs.writeSync(fd, frames, done, frames.length - done, at + done);
        } else {
          await new Promise<void>((resolve, reject) =>
            fs.write(fd, frames, 0, frames.length, at, (err, n) =>
              err ? reject(err) : n === frames.length ? resolve() : reject(new Error(`${this.walPath}: short write`)),
            ),
          );
        }
        if (end <= size) {
          await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
        } else {
          // Grown past the zero-filled part: fill ahead again, and one full fsync (size changed).
          fs.writeSync(fd, Buffer.alloc(WAL_PREALLOC_BYTES), 0, WAL_PREALLOC_BYTES, end);
          await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
        }
      } finally {
        fs.closeSync(fd);
      }
    }
    this.tail = { generation, hdr, lastFrame: scan.lastCommitIndex, checksum: scan.lastCommitChecksum };
    this.appendingAfter = null;
    this.record?.applyFrames(frames);
    return scan.lastCommitIndex;
  }

  /**
   * Folds the -wal into the db file and removes -wal/-shm (checkpoint TRUNCATE, then close).
   * Opening the copy runs SQLite's WAL recovery, which would silently drop every commit
   * after a damaged frame and fold that shorter state in as the truth: so the WAL is
   * checked against what this copy acknowledged first, and a damaged copy is refused
   * (US_REPLICA_CORRUPT, `details.problems`) and forgotten; nothing is changed.
   */
  fold(): void {
    if (!fs.existsSync(this.dbPath)) return;
    const problems = this.damage ?? this.inspectWal().problems;
    if (problems.length > 0) {
      if (!this.damage) this.forgetDamaged(problems);
      throw damagedCopy(`${this.dbPath}: ${problems[0]!.file}: ${problems[0]!.detail}`, problems);
    }
    if (!fs.existsSync(this.walPath)) {
      fs.rmSync(`${this.dbPath}-shm`, { force: true });
      return;
    }
    const db = new Database(this.dbPath, { fileMustExist: true });
    try {
      const row = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
      if (row[0] && row[0].busy !== 0)
        throw new UnderstudyError(
          'US_REPLICATION',
          `${this.dbPath}: cannot fold the replica's WAL: the database is busy (is something else using the replica?)`,
        );
    } finally {
      db.close();
    }
  }

  /** Forgets the in-memory tail (promotion, demotion). */
  reset(): void {
    this.tail = null;
    this.appendingAfter = null;
    this.record = null;
  }
}

/** fsyncs a file, first zero-filling `zeros` bytes after its end (a WAL's room to grow). */
async function syncFile(p: string, zeros = 0): Promise<void> {
  const h = await fsp.open(p, 'r+');
  try {
    if (zeros > 0) await h.write(Buffer.alloc(zeros), 0, zeros, (await h.stat()).size);
    await h.sync();
  } finally {
    await h.close();
  }
}
