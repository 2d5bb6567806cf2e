import { walChecksum, sameChecksum, type WalChecksum } from './wal-checksum.ts';

/**
 * The SQLite WAL file format (https://www.sqlite.org/fileformat2.html#walformat):
 * a 32-byte header, then frames of a 24-byte header + one page.
 *
 * Header (big-endian u32s): magic, version (3007000), page size, checkpoint sequence,
 * salt-1, salt-2, checksum-1, checksum-2 (over the first 24 bytes).
 * Frame header: page number, commit size (the db size in pages after a commit; 0 on
 * other frames), salt-1, salt-2, checksum-1, checksum-2.
 *
 * A frame is valid when its salts equal the header's and its checksum continues the
 * chain from the previous valid frame; the log ends at the first invalid frame, and
 * only frames up to the last valid commit frame are part of the database.
 */
export const WAL_HEADER_SIZE = 32;
export const WAL_FRAME_HEADER_SIZE = 24;
export const WAL_MAGIC_LE = 0x377f0682;
export const WAL_MAGIC_BE = 0x377f0683;
export const WAL_VERSION = 3007000;

export interface WalHeader {
  bigEndian: boolean;
  pageSize: number;
  checkpointSeq: number;
  salt1: number;
  salt2: number;
  /** The header's checksum: the start of the frames' checksum chain. */
  checksum: WalChecksum;
  /** The verbatim 32 bytes. */
  raw: Buffer;
}

/** Parses and verifies a WAL header; null when the bytes are not a valid one. */
export function parseWalHeader(buf: Buffer): WalHeader | null {
  if (buf.length < WAL_HEADER_SIZE) return null;
  const magic = buf.readUInt32BE(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) return null;
  if (buf.readUInt32BE(4) !== WAL_VERSION) return null;
  const pageSize = buf.readUInt32BE(8);
  // Page size is a power of two between 512 and 65536 (stored as-is in the WAL).
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
  const bigEndian = magic === WAL_MAGIC_BE;
  const checksum = walChecksum(buf, bigEndian, [0, 0], 0, 24);
  if (!sameChecksum(checksum, [buf.readUInt32BE(24), buf.readUInt32BE(28)])) return null;
  return {
    bigEndian,
    pageSize,
    checkpointSeq: buf.readUInt32BE(12),
    salt1: buf.readUInt32BE(16),
    salt2: buf.readUInt32BE(20),
    checksum,
    raw: Buffer.from(buf.subarray(0, WAL_HEADER_SIZE)),
  };
}

export function sameWalGeneration(a: WalHeader, b: WalHeader): boolean {
  return a.salt1 === b.salt1 && a.salt2 === b.salt2 && a.pageSize === b.pageSize;
}

export function frameSize(pageSize: number): number {
  return WAL_FRAME_HEADER_SIZE + pageSize;
}

/** Byte offset of frame `index` (1-based) in the WAL file. */
export function frameOffset(pageSize: number, index: number): number {
  return WAL_HEADER_SIZE + (index - 1) * frameSize(pageSize);
}

export interface FrameInfo {
  /** 1-based index in the WAL. */
  index: number;
  pgno: number;
  /** Db size in pages after this commit; 0 when not a commit frame. */
  commitSize: number;
  salt1: number;
  salt2: number;
  checksum: WalChecksum;
}

export function readFrameHeader(frame: Buffer, index: number): FrameInfo {
  return {
    index,
    pgno: frame.readUInt32BE(0),
    commitSize: frame.readUInt32BE(4),
    salt1: frame.readUInt32BE(8),
    salt2: frame.readUInt32BE(12),
    checksum: [frame.readUInt32BE(16), frame.readUInt32BE(20)],
  };
}

/**
 * Result of scanning consecutive frames: how far the valid chain goes and where its
 * last commit is. `committed*` describe the prefix that may be shipped.
 */
export interface FrameScan {
  /** Frames (verbatim, 24 + pageSize bytes each) from `firstIndex` to `lastCommitIndex`. */
  frames: Buffer;
  firstIndex: number;
  /** Index of the last valid commit frame (firstIndex - 1 when none). */
  lastCommitIndex: number;
  /** Checksum after the last commit frame (the `prev` given when none). */
  lastCommitChecksum: WalChecksum;
  /** Number of commit frames in `frames`. */
  commits: number;
  /** Frames that verified, committed or not. */
  validFrames: number;
  /** Why the scan stopped: end of data, a frame with other salts, or a broken checksum. */
  stop: 'end' | 'salt' | 'checksum';
  /** Salts of the frame the scan stopped on (when stop === 'salt'). */
  stopSalts?: [number, number];
}

/**
 * Verifies frames in `data` (which holds whole frames starting at frame `firstIndex`)
 * against the header's salts and the checksum chain continuing from `prev`.
 */
export function scanFrames(data: Buffer, hdr: Pick<WalHeader, 'bigEndian' | 'pageSize' | 'salt1' | 'salt2'>, firstIndex: number, prev: WalChecksum): FrameScan {
  const fsz = frameSize(hdr.pageSize);
  let ck = prev;
  let lastCommitIndex = firstIndex - 1;
  let lastCommitChecksum = prev;
  let lastCommitEnd = 0;
  let commits = 0;
  let validFrames = 0;
  let stop: FrameScan['stop'] = 'end';
  let stopSalts: [number, number] | undefined;
  for (let off = 0, index = firstIndex; off + fsz <= data.length; off += fsz, index++) {
    const salt1 = data.readUInt32BE(off + 8);
    const salt2 = data.readUInt32BE(off + 12);
    if (salt1 !== hdr.salt1 || salt2 !== hdr.salt2) {
      stop = 'salt';
      stopSalts = [salt1, salt2];
      break;
    }
    ck = walChecksum(data, hdr.bigEndian, ck, off, off + 8);
    ck = walChecksum(data, hdr.bigEndian, ck, off + WAL_FRAME_HEADER_SIZE, off + fsz);
    if (!sameChecksum(ck, [data.readUInt32BE(off + 16), data.readUInt32BE(off + 20)])) {
      stop = 'checksum';
      break;
    }
    validFrames++;
    if (data.readUInt32BE(off + 4) !== 0) {
      lastCommitIndex = index;
      lastCommitChecksum = ck;
      lastCommitEnd = off + fsz;
      commits++;
    }
  }
  return {
    frames: data.subarray(0, lastCommitEnd),
    firstIndex,
    lastCommitIndex,
    lastCommitChecksum,
    commits,
    validFrames,
    stop,
    ...(stopSalts ? { stopSalts } : {}),
  };
}

/** Number of commit frames in a buffer of whole frames (already verified). */
export function countCommits(frames: Buffer, pageSize: number): number {
  const fsz = frameSize(pageSize);
  let n = 0;
  for (let off = 0; off + fsz <= frames.length; off += fsz) if (frames.readUInt32BE(off + 4) !== 0) n++;
  return n;
}
