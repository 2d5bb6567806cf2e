import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { PageRecord, readPageSlice } from '../../../src/storage/page-record.ts';
import { checkLiveWal, inspectWalChain, ranges, type ChainCursor, type WalEnd } from '../../../src/storage/wal-chain-check.ts';
import { WAL_HEADER_SIZE, frameOffset, parseWalHeader, scanFrames } from '../../../src/storage/wal-format.ts';
import { readWalIndexHeader } from '../../../src/storage/wal-index.ts';
import { tempDir } from './helpers.ts';

/**
 * Damage at rest in a WAL (wal-chain-check.ts) and in a db file (page-record.ts), on real
 * SQLite files. Each test first shows that the fault is real where SQLite is blind to it:
 * the live connection and integrity_check say ok, and a fresh open of a copy loses commits.
 */

/** An "app" writing `rows` orders, one transaction each, with checkpoints off (the WAL keeps every frame). */
function appWith(dir: string, rows: number): { db: Database.Database; file: string } {
  const file = path.join(dir, 'orders.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, payload BLOB NOT NULL)');
  const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(300))');
  for (let i = 0; i < rows; i++) ins.run(`c${i}`);
  return { db, file };
}

/** The WAL's committed end and the chain's checksum there: what a shipper would have confirmed. */
function endOf(file: string): WalEnd {
  const wal = fs.readFileSync(`${file}-wal`);
  const hdr = parseWalHeader(wal)!;
  const idx = readWalIndexHeader(`${file}-shm`)!;
  const scan = scanFrames(wal.subarray(WAL_HEADER_SIZE), hdr, 1, hdr.checksum);
  assert.equal(scan.lastCommitIndex, idx.mxFrame);
  return { salt1: hdr.salt1, salt2: hdr.salt2, frame: idx.mxFrame, checksum: scan.lastCommitChecksum };
}

/** Overwrites 16 KiB with junk in the middle of the committed frames; returns the first frame hit. */
function junkMiddleOfWal(file: string, frames: number): number {
  const frame = Math.floor(frames / 2);
  const fd = fs.openSync(`${file}-wal`, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(16 * 1024, 0x5a), 0, 16 * 1024, frameOffset(4096, frame) + 100);
  } finally {
    fs.closeSync(fd);
  }
  return frame;
}

function freshCount(dir: string, file: string): { n: number; integrity: string } {
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(file, path.join(dir, 'orders.db'));
  fs.copyFileSync(`${file}-wal`, path.join(dir, 'orders.db-wal'));
  const db = new Database(path.join(dir, 'orders.db'));
  try {
    return {
      n: (db.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n,
      integrity: (db.pragma('integrity_check') as { integrity_check: string }[])[0]!.integrity_check,
    };
  } finally {
    db.close();
  }
}

test('a damaged frame below the committed end is reported with the file, the frame and its page; SQLite itself does not see it', (t) => {
  const root = tempDir('us-walcheck-');
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const { db, file } = appWith(root, 200);
  t.after(() => db.close());
  const end = endOf(file);
  assert.deepEqual(checkLiveWal(file, 'orders.db', end).problems, [], 'a whole WAL is ok');

  const hit = junkMiddleOfWal(file, end.frame);
  // The fault is real and invisible to SQLite: the live connection reads through its index.
  assert.equal((db.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n, 200);
  assert.equal((db.pragma('quick_check') as { quick_check: string }[])[0]!.quick_check, 'ok');
  const fresh = freshCount(path.join(root, 'copy'), file);
  assert.ok(fresh.n < 200, `a fresh open of the damaged file keeps ${fresh.n} of 200 orders`);
  assert.equal(fresh.integrity, 'ok', 'and integrity_check calls the shorter database ok');

  for (const known of [null, end]) {
    const r = checkLiveWal(file, 'orders.db', known);
    assert.equal(r.conclusive, true);
    assert.equal(r.problems.length, 1, JSON.stringify(r.problems));
    const p = r.problems[0]!;
    assert.equal(p.file, 'orders.db-wal');
    assert.equal(p.kind, 'wal-frame');
    assert.match(p.detail, new RegExp(`^frame ${hit} \\(page \\d+\\) does not verify; damaged frames ${hit}-${hit + 4} of the ${end.frame} committed`));
    assert.match(p.detail, /a fresh open keeps the commits up to frame \d+ and drops at least \d+ committed transaction/);
    const drops = Number(/drops at least (\d+)/.exec(p.detail)![1]);
    assert.ok(drops >= 200 - fresh.n - 5 && drops <= 200 - fresh.n, `the report's ${drops} dropped commits match the fresh open's loss of ${200 - fresh.n}`);
  }
});

test('a copy SQLite already recovered short is told from a good one only by the known end: index ended early, or frames rewritten after the damage', (t) => {
  const root = tempDir('us-walcheck-');
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const { db, file } = appWith(root, 120);
  t.after(() => db.close());
  const end = endOf(file);
  junkMiddleOfWal(file, end.frame);

  // A fresh open of the damaged copy (what a restart does): recovery ends the WAL at the damage.
  const dir = path.join(root, 'restarted');
  fs.mkdirSync(dir);
  fs.copyFileSync(file, path.join(dir, 'orders.db'));
  fs.copyFileSync(`${file}-wal`, path.join(dir, 'orders.db-wal'));
  const copy = path.join(dir, 'orders.db');
  const app = new Database(copy);
  t.after(() => app.close());
  app.pragma('wal_autocheckpoint = 0');
  const n = (app.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n;
  assert.ok(n < 120, `recovered short: ${n} of 120`);

  // Without the known end the recovered copy looks whole: its index ends before the damage.
  assert.deepEqual(checkLiveWal(copy, 'orders.db', null).problems, []);
  const short = checkLiveWal(copy, 'orders.db', end);
  assert.equal(short.problems.length, 1, JSON.stringify(short.problems));
  assert.match(short.problems[0]!.detail, /does not verify|the WAL index ends at frame \d+, but frames up to \d+ were shipped and confirmed/);

  // New commits are written over the damaged frames: the chain verifies again, but not to the shipped checksum.
  const ins = app.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(300))');
  for (let i = 0; i < 200; i++) ins.run(`new${i}`);
  assert.deepEqual(checkLiveWal(copy, 'orders.db', null).problems, [], 'the rewritten WAL verifies by itself');
  const rewritten = checkLiveWal(copy, 'orders.db', end);
  assert.equal(rewritten.problems.length, 1, JSON.stringify(rewritten.problems));
  assert.match(rewritten.problems[0]!.detail, /are not the frames that were shipped and confirmed/);
});

test('a damaged WAL header, a missing WAL with committed frames, and frames beyond the committed end', (t) => {
  const root = tempDir('us-walcheck-');
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const { db, file } = appWith(root, 30);
  t.after(() => db.close());
  const end = endOf(file);
  const committed = { salt1: end.salt1, salt2: end.salt2, frames: end.frame };
  // Junk after the committed end (a transaction being written, an older WAL's leftovers) is not judged.
  const fd = fs.openSync(`${file}-wal`, 'r+');
  fs.writeSync(fd, Buffer.alloc(8192, 0x77), 0, 8192, frameOffset(4096, end.frame + 1));
  assert.deepEqual(inspectWalChain(file, 'orders.db', { committed }).problems, []);
  fs.writeSync(fd, Buffer.alloc(8, 0x11), 0, 8, 16); // the header's salts
  fs.closeSync(fd);
  const hdr = inspectWalChain(file, 'orders.db', { committed });
  assert.match(
    hdr.problems[0]?.detail ?? '',
    /the WAL header does not verify \(damaged\): a fresh open ignores the whole WAL, and with it \d+ committed frame/,
  );
  const missing = inspectWalChain(path.join(root, 'nothing.db'), 'nothing.db', { committed });
  assert.match(missing.problems[0]?.detail ?? '', /the WAL is missing, but \d+ committed frame/);
  assert.deepEqual(inspectWalChain(path.join(root, 'nothing.db'), 'nothing.db', {}).problems, [], 'no WAL and nothing committed to one: ok');
  assert.equal(ranges([3, 4, 5, 9, 11, 12]), '3-5, 9, 11-12');
});

test('page record: a page of the db file that no WAL frame supersedes must be the page shipped; pages in the WAL are not judged', async (t) => {
  const root = tempDir('us-walcheck-');
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const { db, file } = appWith(root, 400);
  t.after(() => db.close());
  db.pragma('wal_checkpoint(TRUNCATE)'); // everything in the db file; the WAL restarts empty
  const record = (await PageRecord.ofImage(db.serialize()))!;
  assert.ok(record.pages > 20, `${record.pages} pages recorded`);
  // New commits: their frames go to the WAL and into the record, as a shipper would apply them.
  const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(300))');
  for (let i = 0; i < 5; i++) ins.run(`late${i}`);
  const wal = fs.readFileSync(`${file}-wal`);
  const hdr = parseWalHeader(wal)!;
  const scan = scanFrames(wal.subarray(WAL_HEADER_SIZE), hdr, 1, hdr.checksum);
  record.applyFrames(scan.frames);

  const check = (): number[] => {
    const chain = checkLiveWal(file, 'orders.db', null);
    const slice = readPageSlice(file, record, { next: 1 }, 1 << 30)!;
    return record.differing(slice.buf, slice.from, chain.shadowed!);
  };
  assert.deepEqual(check(), [], 'the db file is what was shipped');
  // Damage pages in the middle of the file, which the WAL does not hold (full leaves of old orders).
  const shadowed = checkLiveWal(file, 'orders.db', null).shadowed!;
  let page = Math.floor(record.pages / 2);
  while (shadowed.has(page) || shadowed.has(page + 1)) page++;
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(4096 * 2, 0x3c), 0, 4096 * 2, (page - 1) * 4096);
  // A page the WAL supersedes may hold anything: a checkpoint overwrites it.
  const inWal = [...shadowed].find((p) => p > 1 && p <= record.pages)!;
  fs.writeSync(fd, Buffer.alloc(4096, 0x3d), 0, 4096, (inWal - 1) * 4096);
  fs.closeSync(fd);
  assert.deepEqual(check(), [page, page + 1]);
  // The damage is real: another connection (the app's has the pages in its cache) reads junk.
  const other = new Database(file, { readonly: true });
  t.after(() => other.close());
  let verdict: string;
  try {
    verdict = (other.pragma('quick_check') as { quick_check: string }[])[0]!.quick_check;
  } catch (e) {
    verdict = (e as Error).message;
  }
  assert.notEqual(verdict, 'ok', 'the damage is real');
});

test('a writer stopped between writing its frames and publishing them: shipped frames beyond the WAL index, whole, are no damage', (t) => {
  const root = tempDir('us-walcheck-');
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const { db, file } = appWith(root, 60);
  t.after(() => db.close());
  // The WAL index as it was before the last 40 commits were published.
  const staleIndex = fs.readFileSync(`${file}-shm`);
  const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(300))');
  for (let i = 0; i < 40; i++) ins.run(`late${i}`);
  const shipped = endOf(file);

  const dir = path.join(root, 'stopped-writer');
  fs.mkdirSync(dir);
  const copy = path.join(dir, 'orders.db');
  fs.copyFileSync(file, copy);
  fs.copyFileSync(`${file}-wal`, `${copy}-wal`);
  fs.writeFileSync(`${copy}-shm`, staleIndex);
  const idx = readWalIndexHeader(`${copy}-shm`)!;
  assert.ok(idx.mxFrame < shipped.frame, `the index ends before the shipped end: ${idx.mxFrame} < ${shipped.frame}`);
  assert.equal(idx.salt1, shipped.salt1, 'the same WAL generation');

  const report = checkLiveWal(copy, 'orders.db', shipped);
  assert.equal(report.conclusive, true);
  assert.deepEqual(report.problems, [], 'frames beyond the index that are the shipped ones are no damage');
  // Bounded, a slice at a time: the same verdict.
  const cursor = { salt1: 0, salt2: 0, next: 1 };
  for (let round = 0; round < 40; round++) {
    assert.deepEqual(checkLiveWal(copy, 'orders.db', shipped, undefined, { maxBytes: 64 * 1024, cursor }).problems, [], `round ${round}`);
  }

  // The fault is real when the frames behind the index are damaged: then it is reported.
  fs.writeFileSync(`${copy}-shm`, staleIndex);
  const fd = fs.openSync(`${copy}-wal`, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(512, 0x5a), 0, 512, frameOffset(4096, shipped.frame - 2) + 200);
  } finally {
    fs.closeSync(fd);
  }
  const damaged = checkLiveWal(copy, 'orders.db', shipped);
  assert.equal(damaged.problems.length, 1, JSON.stringify(damaged.problems));
  assert.match(damaged.problems[0]!.detail, /does not verify/);
});

test('a long damaged WAL is read whole once per 30 s, not at every round: the rounds between report the same damage', (t) => {
  const root = tempDir('us-walcheck-');
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const { db, file } = appWith(root, 400);
  t.after(() => db.close());
  const shipped = endOf(file);
  junkMiddleOfWal(file, shipped.frame);
  const budget: { maxBytes: number; cursor: ChainCursor } = { maxBytes: 64 * 1024, cursor: { salt1: 0, salt2: 0, next: 1 } };
  const readSync = fs.readSync;
  let bytes = 0;
  t.after(() => {
    fs.readSync = readSync;
  });
  fs.readSync = ((...args: Parameters<typeof readSync>) => {
    const n = (readSync as (...a: unknown[]) => number)(...args);
    bytes += n;
    return n;
  }) as typeof readSync;
  const walBytes = fs.statSync(`${file}-wal`).size;
  assert.ok(walBytes > 10 * budget.maxBytes, `a long WAL: ${walBytes} bytes`);

  // Slice by slice until one holds the damage; that round reads the WAL whole.
  let first = checkLiveWal(file, 'orders.db', shipped, undefined, budget);
  for (let round = 0; first.problems.length === 0 && round < 100; round++) {
    bytes = 0;
    first = checkLiveWal(file, 'orders.db', shipped, undefined, budget);
  }
  assert.equal(first.problems.length, 1, 'the damage is found (the fault is real)');
  assert.ok(bytes > walBytes / 2, `the round that found it read it whole: ${bytes} bytes`);
  for (let round = 0; round < 5; round++) {
    bytes = 0;
    const again = checkLiveWal(file, 'orders.db', shipped, undefined, budget);
    assert.deepEqual(again.problems, first.problems, `round ${round}: the same damage`);
    assert.ok(bytes <= 2 * budget.maxBytes, `round ${round}: a slice only, ${bytes} bytes`);
  }
  // Once the findings are 30 s old, the next failing slice reads it whole again.
  budget.cursor.judged!.at -= 30_001;
  bytes = 0;
  assert.equal(checkLiveWal(file, 'orders.db', shipped, undefined, budget).problems.length, 1);
  assert.ok(bytes > walBytes / 2, `read whole again: ${bytes} bytes`);
});
