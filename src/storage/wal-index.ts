import os from 'node:os';
import { walChecksum } from './wal-checksum.ts';
import { readLockedFile } from './stable-read.ts';

/**
 * Reads the WAL-index header from a database's `-shm` file. It tells what the WAL
 * file cannot: how many frames are live (`mxFrame`) and which salts the live WAL
 * has, even right after a restart when the file still holds the old header.
 *
 * Under the database's write lock (BEGIN IMMEDIATE on a connection) it is the live
 * state: no writer or restarting checkpointer can change it. Without the lock (the
 * sync barrier's registration, `DbShipper.catchUp`) it is a header SQLite published
 * at some instant between the open and the read, or null: SQLite writes copy 2, then
 * copy 1 (walIndexWriteHdr); a read that overlaps a write sees the copies differ or
 * the header checksum fail, as SQLite's own readers do (walIndexTryHdr).
 * Layout (sqlite/src/wal.c, WalIndexHdr, native byte order, stored twice):
 *   0 iVersion u32, 8 iChange u32, 12 isInit u8, 13 bigEndCksum u8, 14 szPage u16,
 *   16 mxFrame u32, 20 nPage u32, 24 aFrameCksum[2], 32 aSalt[2] (file byte order), 40 aCksum[2].
 * aCksum is the WAL checksum of bytes 0..39 read as native-order words.
 */
export interface WalIndexHeader {
  mxFrame: number;
  salt1: number;
  salt2: number;
}

const WALINDEX_VERSION = 3007000;

export function readWalIndexHeader(shmPath: string): WalIndexHeader | null {
  // Through a descriptor kept open: closing one of the -shm would release this process's
  // SQLite locks on it — the shipper's read mark, its write lock (stable-read.ts).
  const buf = readLockedFile(shmPath, 96);
  if (buf === null || buf.length < 96) return null;
  // Both copies agree when no one is writing the header (true under the write lock).
  if (!buf.subarray(0, 48).equals(buf.subarray(48, 96))) return null;
  const le = os.endianness() === 'LE';
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  if (u32(0) !== WALINDEX_VERSION || buf[12] !== 1) return null;
  const [c0, c1] = walChecksum(buf, !le, [0, 0], 0, 40);
  if (c0 !== u32(40) || c1 !== u32(44)) return null;
  return { mxFrame: u32(16), salt1: buf.readUInt32BE(32), salt2: buf.readUInt32BE(36) };
}
