import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { quickCheck } from '../../../src/storage/vault/quick-check.ts';

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
