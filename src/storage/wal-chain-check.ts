import fs from 'node:fs';
import type { VerificationProblem } from '../shared/contracts.ts';
import { sameChecksum, walChecksum, type WalChecksum } from './wal-checksum.ts';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, frameSize, parseWalHeader, type WalHeader } from './wal-format.ts';
import { readWalIndexHeader } from './wal-index.ts';

/**
 * Damage at rest in a WAL, which neither SQLite nor quick_check reports.
 *
 * A connection that finds the WAL index valid in `-shm` (the app, our shipper) reads
 * every committed frame through it and never re-verifies a frame's checksum: a frame
 * overwritten on disk is read as it is now, and quick_check says ok when the damaged
 * frames are older versions of their pages. A FRESH open (a restart with no other
 * connection, a promotion's fold, a restore point's capture of a copy) rebuilds the
 * index by SQLite's WAL recovery instead, which stops at the first frame whose salts or
 * checksum do not continue the chain and drops every later commit, silently: the
 * result is a consistent, older database that integrity_check calls ok.
 *
 * So a frame is checked against what is KNOWN to be committed, never against where the
 * chain happens to end:
 *  - `committed`: frames 1..N of the WAL with these salts are committed — SQLite's WAL
 *    index on a live primary (it publishes mxFrame only after writing the frames whole),
 *    the tail a replica acknowledged;
 *  - `known`: a commit position that was shipped and confirmed, with the checksum the
 *    chain had there. It catches what the first cannot: a copy that was already opened
 *    fresh (its index now ends before the damage, which is still there to see, or the
 *    frames after the damage were rewritten by new commits, so the chain verifies but
 *    reaches another checksum). An index that merely ends before the position, with the
 *    shipped frames whole behind it, is a writer that has not published them yet.
 * Every frame from 1 to the larger of the two ends must continue the chain from the
 * header. A frame that does not is corruption, reported with the file, the frame, its
 * page and how many committed transactions a fresh open would drop. Frames beyond those
 * ends (a transaction being written, leftovers of an older, longer WAL) are not judged.
 */

/** A commit position in one WAL generation (salts), and the chain's checksum after its frame. */
export interface WalEnd {
  salt1: number;
  salt2: number;
  frame: number;
  checksum: WalChecksum;
}

export interface ChainExpectation {
  /** Frames 1..frames of the WAL with these salts are committed (a WAL index; a replica's acknowledged tail). */
  committed?: { salt1: number; salt2: number; frames: number } | null;
  /** A position shipped and confirmed: it must still be there, unchanged. */
  known?: WalEnd | null;
  /**
   * At most this many bytes of frames are read (the periodic check; see `ChainCursor`).
   * A WAL within it is judged whole; a longer one a slice at a time. @default unbounded
   */
  budget?: { maxBytes: number; cursor: ChainCursor };
}

/**
 * Where a bounded check of a long WAL goes on next time. Frame i is valid when its salts
 * are the header's and its checksum continues from frame i-1's STORED checksum (the
 * header's for frame 1): checking every frame that way is exactly SQLite's chain rule,
 * so a WAL can be judged a slice per round (a damaged stored checksum fails its own frame
 * and the next). The known end's check reads one frame header. A WAL normally holds a few
 * MB (it restarts after each checkpoint); one that grew long (a shipper behind, a long
 * reader) must not make every check read all of it: that would slow the shipper further.
 */
export interface ChainCursor {
  salt1: number;
  salt2: number;
  next: number;
  /**
   * The last whole read's findings on this WAL (a slice failed): damage does not heal while
   * the WAL keeps its salts, so for `JUDGED_FOR_MS` a failing slice reports these again
   * instead of reading a long WAL whole at every round (hundreds of MB, synchronously).
   */
  judged?: { salt1: number; salt2: number; at: number; problems: VerificationProblem[] };
}

/** How long a whole read's findings on a long, damaged WAL stand in for another whole read. */
const JUDGED_FOR_MS = 30_000;

export interface ChainReport {
  /** Empty when the WAL holds everything known to be committed, verbatim. */
  problems: VerificationProblem[];
  /** False when the file's header and the committed end name different WALs (a restart under way): look again. */
  conclusive: boolean;
  /** Salts of the WAL in the file (null: no WAL, or its header does not verify). */
  salts: readonly [number, number] | null;
  /** The committed end: frames 1..end were (or, with a budget, are being) judged. */
  end: number;
  /**
   * Pages of frames 1..end: their newest versions are in the WAL, so the db file's copies
   * are not current. null when not every frame was read this time (a slice of a long WAL).
   */
  shadowed: Set<number> | null;
}

const EMPTY: Omit<ChainReport, 'problems'> = { conclusive: true, salts: null, end: 0, shadowed: new Set() };

function readAt(fd: number, buf: Buffer, position: number): number {
  let n = 0;
  while (n < buf.length) {
    const r = fs.readSync(fd, buf, n, buf.length - n, position + n);
    if (r === 0) break;
    n += r;
  }
  return n;
}

/**
 * Judges the WAL of database `dbPath` (`rel` names it in problems) against `expect`.
 * Reads the file synchronously (frames 1..end: a few MB at most, since the WAL restarts
 * after each checkpoint): callers that need a consistent moment call it under the lock
 * that provides one, or check the WAL index around it (`checkLiveWal`).
 */
export function inspectWalChain(dbPath: string, rel: string, expect: ChainExpectation): ChainReport {
  const walPath = `${dbPath}-wal`;
  const walRel = `${rel}-wal`;
  const committed = expect.committed ?? null;
  const known = expect.known ?? null;
  let fd: number;
  try {
    fd = fs.openSync(walPath, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return { ...EMPTY, problems: [{ file: walRel, kind: 'unreadable', detail: (e as Error).message }] };
    // No WAL: every commit is in the db file (a clean close or a TRUNCATE checkpoint folds it in).
    if (committed && committed.frames > 0) {
      return {
        ...EMPTY,
        problems: [
          { file: walRel, kind: 'wal-frame', detail: `the WAL is missing, but ${committed.frames} committed frame(s) should be in it: their commits are lost` },
        ],
      };
    }
    return { ...EMPTY, problems: [] };
  }
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(WAL_HEADER_SIZE);
    const got = size > 0 ? fs.readSync(fd, head, 0, WAL_HEADER_SIZE, 0) : 0;
    const hdr = got === WAL_HEADER_SIZE ? parseWalHeader(head) : null;
    if (!hdr) {
      const claimed = Math.max(committed?.frames ?? 0, known?.frame ?? 0);
      // An empty file is a WAL truncated by a checkpoint (its frames are in the db file).
      if (size === 0 || claimed === 0) return { ...EMPTY, problems: [] };
      return {
        ...EMPTY,
        problems: [
          {
            file: walRel,
            kind: 'wal-frame',
            detail: `the WAL header does not verify (damaged): a fresh open ignores the whole WAL, and with it ${claimed} committed frame(s)`,
          },
        ],
      };
    }
    const salts = [hdr.salt1, hdr.salt2] as const;
    const sameSalts = (x: { salt1: number; salt2: number }): boolean => x.salt1 === hdr.salt1 && x.salt2 === hdr.salt2;
    if (committed && !sameSalts(committed) && committed.frames > 0) {
      return { ...EMPTY, salts, conclusive: false, problems: [] };
    }
    const committedEnd = committed && sameSalts(committed) ? committed.frames : null;
    const knownHere = known && sameSalts(known) && known.frame > 0 ? known : null;
    const end = Math.max(committedEnd ?? 0, knownHere?.frame ?? 0);
    if (end === 0) return { ...EMPTY, salts, problems: [] };

    const fsz = frameSize(hdr.pageSize);
    const budget = expect.budget;
    if (budget && end * fsz > budget.maxBytes && size >= WAL_HEADER_SIZE + end * fsz) {
      // A long WAL: a slice this time. Anything that fails is looked at whole below, once.
      const c = budget.cursor;
      if (c.salt1 !== hdr.salt1 || c.salt2 !== hdr.salt2 || c.next < 1 || c.next > end) Object.assign(c, { salt1: hdr.salt1, salt2: hdr.salt2, next: 1 });
      const a = c.next;
      const b = Math.min(end, a + Math.max(1, Math.floor(budget.maxBytes / fsz)) - 1);
      const okSlice = sliceVerifies(fd, hdr, a, b) && (!knownHere || knownEndHolds(fd, hdr, knownHere));
      if (okSlice) {
        c.next = b >= end ? 1 : b + 1;
        return { problems: [], conclusive: true, salts, end, shadowed: null };
      }
      const j = c.judged;
      if (j && j.salt1 === hdr.salt1 && j.salt2 === hdr.salt2 && Date.now() - j.at < JUDGED_FOR_MS) {
        return { problems: j.problems, conclusive: true, salts, end, shadowed: null };
      }
    }
    const data = Buffer.allocUnsafe(end * fsz);
    const n = readAt(fd, data, WAL_HEADER_SIZE);
    const whole = Math.floor(n / fsz);
    const shadowed = new Set<number>();
    let ck: WalChecksum = hdr.checksum;
    let brokeAt = 0;
    let lastGoodCommit = 0;
    let commitsAfter = 0;
    let checksumAtKnown: WalChecksum | null = null;
    const damaged: number[] = [];
    for (let i = 1; i <= whole; i++) {
      const off = (i - 1) * fsz;
      const pgno = data.readUInt32BE(off);
      const isCommit = data.readUInt32BE(off + 4) !== 0;
      const saltsOk = data.readUInt32BE(off + 8) === hdr.salt1 && data.readUInt32BE(off + 12) === hdr.salt2;
      const stored: WalChecksum = [data.readUInt32BE(off + 16), data.readUInt32BE(off + 20)];
      shadowed.add(pgno);
      // Before the break: the chain from the header. After it: each frame against its
      // predecessor's stored checksum, which tells how far the damage reaches.
      const from: WalChecksum = brokeAt === 0 ? ck : [data.readUInt32BE(off - fsz + 16), data.readUInt32BE(off - fsz + 20)];
      let c = walChecksum(data, hdr.bigEndian, from, off, off + 8);
      c = walChecksum(data, hdr.bigEndian, c, off + WAL_FRAME_HEADER_SIZE, off + fsz);
      const ok = saltsOk && sameChecksum(c, stored);
      if (brokeAt === 0) {
        if (ok) {
          ck = c;
          if (isCommit) lastGoodCommit = i;
          if (knownHere && i === knownHere.frame) checksumAtKnown = c;
          continue;
        }
        brokeAt = i;
      }
      if (!ok) damaged.push(i);
      else if (isCommit) commitsAfter++;
    }
    const problems: VerificationProblem[] = [];
    const why = knownHere && knownHere.frame > (committedEnd ?? 0) ? 'shipped and confirmed' : 'committed';
    if (brokeAt > 0) {
      const pgno = data.readUInt32BE((brokeAt - 1) * fsz);
      problems.push({
        file: walRel,
        kind: 'wal-frame',
        detail: `frame ${brokeAt} (page ${pgno}) does not verify; damaged frames ${ranges(damaged)} of the ${end} ${why}: a fresh open keeps the commits up to frame ${lastGoodCommit} and drops at least ${Math.max(1, commitsAfter)} committed transaction(s) after it`,
      });
    }
    if (whole < end) {
      problems.push({
        file: walRel,
        kind: 'wal-frame',
        detail: `the WAL ends at frame ${whole} (${size} bytes), but frames up to ${end} are ${why}: their commits are lost`,
      });
    }
    // The chain verifies through the known end: the frames there are the ones shipped
    // exactly when the chain's checksum at that frame is the one shipped. A WAL index that
    // ends before the known end is no loss by itself: a writer publishes mxFrame only after
    // writing its frames, so a writer stopped between the two (SIGSTOP, a stall) leaves
    // committed-and-shipped frames beyond the index, whole; a fresh open keeps them. A copy
    // recovered short shows as frames that do not verify (the damage that cut recovery
    // short) or, once new commits overwrote them, as frames that are not the shipped ones.
    if (brokeAt === 0 && whole >= end && knownHere && checksumAtKnown && !sameChecksum(checksumAtKnown, knownHere.checksum)) {
      problems.push({
        file: walRel,
        kind: 'wal-frame',
        detail: `frames 1..${knownHere.frame} verify but are not the frames that were shipped and confirmed (chain checksum ${hex(checksumAtKnown)}, shipped ${hex(knownHere.checksum)}): the WAL was recovered short and written again, so commits are missing`,
      });
    }
    if (budget && problems.length > 0) budget.cursor.judged = { salt1: hdr.salt1, salt2: hdr.salt2, at: Date.now(), problems };
    return { problems, conclusive: true, salts, end, shadowed };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A live primary's WAL, checked without any lock while the app writes: the committed
 * end is the WAL index's mxFrame, read before and after the file (a restart in between,
 * which changes the index's salts, makes the look inconclusive: the next one decides).
 * `between` runs after the first index read and before the WAL is read (the page check
 * reads the db file there, so that every frame a checkpoint could have copied into it
 * meanwhile is among the frames read, hence `shadowed`).
 */
export function checkLiveWal(
  dbPath: string,
  rel: string,
  known: WalEnd | null,
  between?: () => void,
  budget?: ChainExpectation['budget'],
): ChainReport & { indexEnd: number | null } {
  const shm = `${dbPath}-shm`;
  const before = readWalIndexHeader(shm);
  between?.();
  const idx = readWalIndexHeader(shm);
  const report = inspectWalChain(dbPath, rel, {
    committed: idx ? { salt1: idx.salt1, salt2: idx.salt2, frames: idx.mxFrame } : null,
    known,
    ...(budget ? { budget } : {}),
  });
  const after = readWalIndexHeader(shm);
  const moved = (a: typeof idx, b: typeof idx): boolean => !a || !b || a.salt1 !== b.salt1 || a.salt2 !== b.salt2 || b.mxFrame < a.mxFrame;
  // No valid index at all (no -shm: nobody has the database open in WAL mode): the file
  // is judged against the known end alone. A crashed writer's -shm is still valid, and
  // its mxFrame names frames SQLite had committed.
  if (!before && !idx && !after) return { ...report, indexEnd: null };
  if (moved(before, idx) || moved(idx, after)) return { ...report, conclusive: false, problems: [], indexEnd: idx?.mxFrame ?? null };
  return { ...report, indexEnd: idx!.mxFrame };
}

/** Frames a..b each verify against their predecessor's stored checksum (the header's for frame 1). */
function sliceVerifies(fd: number, hdr: WalHeader, a: number, b: number): boolean {
  const fsz = frameSize(hdr.pageSize);
  const first = Math.max(1, a - 1); // the predecessor's header gives the checksum to continue from
  const data = Buffer.allocUnsafe((b - first + 1) * fsz);
  if (readAt(fd, data, WAL_HEADER_SIZE + (first - 1) * fsz) < data.length) return false;
  for (let i = a; i <= b; i++) {
    const off = (i - first) * fsz;
    const from: WalChecksum = i === 1 ? hdr.checksum : [data.readUInt32BE(off - fsz + 16), data.readUInt32BE(off - fsz + 20)];
    if (data.readUInt32BE(off + 8) !== hdr.salt1 || data.readUInt32BE(off + 12) !== hdr.salt2) return false;
    let c = walChecksum(data, hdr.bigEndian, from, off, off + 8);
    c = walChecksum(data, hdr.bigEndian, c, off + WAL_FRAME_HEADER_SIZE, off + fsz);
    if (!sameChecksum(c, [data.readUInt32BE(off + 16), data.readUInt32BE(off + 20)])) return false;
  }
  return true;
}

/** The known end's frame stores the checksum that was shipped (the slices verify the chain up to it). */
function knownEndHolds(fd: number, hdr: WalHeader, known: WalEnd): boolean {
  const h = Buffer.alloc(WAL_FRAME_HEADER_SIZE);
  if (readAt(fd, h, WAL_HEADER_SIZE + (known.frame - 1) * frameSize(hdr.pageSize)) < h.length) return false;
  return sameChecksum([h.readUInt32BE(16), h.readUInt32BE(20)], known.checksum);
}

/** "3", "3-7", "3-7, 12": the frame numbers, as ranges. */
export function ranges(ns: readonly number[]): string {
  if (ns.length === 0) return 'none';
  const out: string[] = [];
  let a = ns[0]!;
  let b = a;
  for (const n of ns.slice(1)) {
    if (n === b + 1) {
      b = n;
      continue;
    }
    out.push(a === b ? `${a}` : `${a}-${b}`);
    a = b = n;
  }
  out.push(a === b ? `${a}` : `${a}-${b}`);
  if (out.length > 8) return `${out.slice(0, 8).join(', ')} and ${out.length - 8} more range(s)`;
  return out.join(', ');
}

function hex(c: WalChecksum): string {
  return `${c[0].toString(16).padStart(8, '0')}${c[1].toString(16).padStart(8, '0')}`;
}
