import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { QuickChecker, WORKER, quickCheck } from '../../../src/storage/vault/quick-check.ts';

/**
 * quick_check runs on a worker thread: the caller's event loop keeps turning while a
 * database is read whole, and the verdicts are SQLite's own.
 */
test('quick_check runs off the event loop, finds damage, and answers checks made at once in order', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-quick-check-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const good = path.join(dir, 'good.db');
  const db = new Database(good);
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX tv ON t (v)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (randomblob(200))');
  db.transaction(() => {
    for (let i = 0; i < 40_000; i++) ins.run();
  })();
  db.close();
  // A copy whose index pages are overwritten: quick_check reports it.
  const bad = path.join(dir, 'bad.db');
  fs.copyFileSync(good, bad);
  const size = fs.statSync(bad).size;
  const fd = fs.openSync(bad, 'r+');
  fs.writeSync(fd, Buffer.alloc(8192, 0x33), 0, 8192, Math.floor(size / 4096 / 2) * 4096);
  fs.closeSync(fd);

  let turns = 0;
  const ticker = setInterval(() => turns++, 1);
  t.after(() => clearInterval(ticker));
  const [a, b, missing] = await Promise.all([quickCheck(good, 'good.db'), quickCheck(bad, 'bad.db'), quickCheck(path.join(dir, 'none.db'), 'none.db')]);
  clearInterval(ticker);
  assert.deepEqual(a, []);
  assert.ok(b.length > 0 && b.every((p) => p.file === 'bad.db' && p.kind === 'quick-check'), JSON.stringify(b));
  assert.equal(missing.length, 1);
  assert.match(missing[0]!.detail, /cannot check/);
  // Three checks of an 11 MB database and a damaged copy: the event loop turned meanwhile
  // (run synchronously, not one timer would have fired before they all resolved).
  assert.ok(turns >= 3, `the event loop turned ${turns} times during the checks`);
});

/**
 * A checking thread that dies (here: it exits on its first message, a real thread exit)
 * says nothing about the database: the check goes to a new thread; a thread that dies on
 * it twice rejects with US_CHECK_UNAVAILABLE, never a problem of the data (which would be
 * read as corruption).
 */
test('a checking thread that dies: the check is retried on a new thread; dying twice is US_CHECK_UNAVAILABLE, not a problem of the data', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-quick-check-crash-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const good = path.join(dir, 'good.db');
  const db = new Database(good);
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY)');
  db.close();
  // Dies on the first check of this process's life of the marker: the retry on a new thread succeeds.
  const marker = path.join(dir, 'died-once');
  const onceSource = `if (!require('node:fs').existsSync(${JSON.stringify(marker)})) { require('node:fs').writeFileSync(${JSON.stringify(marker)}, ''); process.exit(7); }\n${WORKER}`;
  assert.deepEqual(await new QuickChecker(onceSource).run(good, 'good.db', 10), [], 'retried on a new thread: the database is fine');
  assert.ok(fs.existsSync(marker), 'the first thread did die');

  const always = `require('node:worker_threads').parentPort.on('message', () => process.exit(9));`;
  await assert.rejects(new QuickChecker(always).run(good, 'good.db', 10), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'US_CHECK_UNAVAILABLE');
    assert.match(e.message, /failed twice .*exited \(9\).*nothing is concluded/);
    return true;
  });
});
