import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { walChecksum } from '../../../src/storage/wal-checksum.ts';
import { WAL_HEADER_SIZE, frameSize, parseWalHeader, readFrameHeader, scanFrames } from '../../../src/storage/wal-format.ts';
import { readWalIndexHeader } from '../../../src/storage/wal-index.ts';
import { checkVolumeDatabases } from '../../../src/storage/volume-check.ts';
import { tempDir } from './helpers.ts';

/** An independent, naive transcription of SQLite's algorithm (test/wal_common.tcl). */
function naiveChecksum(buf: Buffer, big: boolean, c1 = 0, c2 = 0): [number, number] {
  for (let i = 0; i < buf.length; i += 8) {
    const v1 = big ? buf.readUInt32BE(i) : buf.readUInt32LE(i);
    const v2 = big ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4);
    c1 = Number((BigInt(c1) + BigInt(v1) + BigInt(c2)) & 0xffffffffn);
    c2 = Number((BigInt(c2) + BigInt(v2) + BigInt(c1)) & 0xffffffffn);
  }
  return [c1, c2];
}

function makeWalDb(t: { after: (fn: () => void) => void }): { db: Database.Database; file: string } {
  const dir = tempDir();
  const file = path.join(dir, 'x.db');
  const db = new Database(file);
  t.after(() => {
    try {
      db.close();
    } catch {
      /* closed */
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  for (let i = 0; i < 20; i++)
    db.transaction(() => {
      for (let j = 0; j < 3; j++) ins.run(randomBytes(700));
    })();
  return { db, file };
}

test('walChecksum matches a naive transcription in both byte orders, and chains', () => {
  for (let n = 0; n < 20; n++) {
    const buf = randomBytes(8 * (1 + ((n * 37) % 200)));
    for (const big of [true, false]) {
      assert.deepEqual([...walChecksum(buf, big)], naiveChecksum(buf, big));
      const half = ((buf.length / 16) | 0) * 8;
      const first = walChecksum(buf, big, [0, 0], 0, half);
      assert.deepEqual([...walChecksum(buf, big, first, half)], naiveChecksum(buf, big), 'chaining over two ranges equals one pass');
    }
  }
  assert.throws(() => walChecksum(Buffer.alloc(12), true), RangeError);
});

test('parses a real SQLite WAL: header checksum, frames, commits; a flipped byte ends the chain', (t) => {
  const { file } = makeWalDb(t);
  const wal = fs.readFileSync(`${file}-wal`);
  const hdr = parseWalHeader(wal);
  assert.ok(hdr, 'header parses and its checksum verifies');
  assert.equal(hdr.pageSize, 4096);
  const nFrames = (wal.length - WAL_HEADER_SIZE) / frameSize(hdr.pageSize);
  assert.ok(Number.isInteger(nFrames) && nFrames > 20);
  const scan = scanFrames(wal.subarray(WAL_HEADER_SIZE), hdr, 1, hdr.checksum);
  assert.equal(scan.stop, 'end');
  assert.equal(scan.validFrames, nFrames);
  assert.equal(scan.lastCommitIndex, nFrames, 'the last frame is a commit');
  assert.equal(scan.commits, 21, 'one commit per transaction (CREATE TABLE + 20)');
  const last = readFrameHeader(wal.subarray(WAL_HEADER_SIZE + (nFrames - 1) * frameSize(hdr.pageSize)), nFrames);
  assert.ok(last.commitSize > 0);
  assert.deepEqual([...scan.lastCommitChecksum], [...last.checksum]);
  // The native order on this machine: check the magic agrees with what we computed.
  assert.equal(hdr.bigEndian, wal.readUInt32BE(0) === 0x377f0683);
  // Independent check of the first frame's checksum.
  const f1 = wal.subarray(WAL_HEADER_SIZE, WAL_HEADER_SIZE + frameSize(hdr.pageSize));
  const naive = naiveChecksum(Buffer.concat([f1.subarray(0, 8), f1.subarray(24)]), hdr.bigEndian, hdr.checksum[0], hdr.checksum[1]);
  assert.deepEqual(naive, [f1.readUInt32BE(16), f1.readUInt32BE(20)]);

  // Flip one byte in the page of frame 10: the chain ends at frame 9's last commit.
  const bad = Buffer.from(wal);
  bad[WAL_HEADER_SIZE + 9 * frameSize(hdr.pageSize) + 100]! ^= 0xff;
  const s2 = scanFrames(bad.subarray(WAL_HEADER_SIZE), hdr, 1, hdr.checksum);
  assert.equal(s2.stop, 'checksum');
  assert.equal(s2.validFrames, 9);
  assert.ok(s2.lastCommitIndex <= 9);
  // A corrupted header is refused.
  const badHdr = Buffer.from(wal.subarray(0, 32));
  badHdr[17]! ^= 1;
  assert.equal(parseWalHeader(badHdr), null);
});

test('WAL index header gives the live frame count and salts', (t) => {
  const { db, file } = makeWalDb(t);
  const wal = fs.readFileSync(`${file}-wal`);
  const hdr = parseWalHeader(wal)!;
  const idx = readWalIndexHeader(`${file}-shm`);
  assert.ok(idx);
  assert.equal(idx.mxFrame, (wal.length - 32) / frameSize(hdr.pageSize));
  assert.equal(idx.salt1, hdr.salt1);
  assert.equal(idx.salt2, hdr.salt2);
  db.pragma('wal_checkpoint(TRUNCATE)');
  const after = readWalIndexHeader(`${file}-shm`)!;
  // TRUNCATE restarts the index (next salts, no live frames) and empties the file;
  // the next write writes a header with exactly the index's salts.
  assert.equal(after.mxFrame, 0);
  assert.notEqual(after.salt1, hdr.salt1);
  assert.equal(fs.statSync(`${file}-wal`).size, 0);
  db.exec('INSERT INTO t (v) VALUES (1)');
  const next = parseWalHeader(fs.readFileSync(`${file}-wal`))!;
  assert.deepEqual([next.salt1, next.salt2], [after.salt1, after.salt2]);
  assert.equal(next.checkpointSeq, hdr.checkpointSeq + 1);
});

test('checkVolumeDatabases names every *.db that is not SQLite', (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'sub'));
  new Database(path.join(dir, 'good.db')).exec('CREATE TABLE a(x)');
  fs.writeFileSync(path.join(dir, 'sub', 'bad.db'), 'hello, not a database');
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'x');
  assert.deepEqual(checkVolumeDatabases(dir), [`${path.join(dir, 'sub', 'bad.db')}: is not an SQLite database: restore it from a backup or remove it`]);
});
