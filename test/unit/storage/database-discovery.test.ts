import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DatabaseFinder, isDatabaseArtifact, listDatabases, readDatabaseHeader } from '../../../src/storage/sqlite-file.ts';
import { FileManifest } from '../../../src/storage/file-manifest.ts';
import { applyFiles } from '../../../src/storage/file-sync.ts';
import { sha256 } from '../../../src/storage/file-manifest.ts';
import { settleWalSwitch, switchDatabasesToWal, switchedToWalHere } from '../../../src/storage/wal-switch.ts';
import { isUnderstudyError } from '../../../src/shared/errors.ts';
import { tempDir } from './helpers.ts';

/** A database in the journal mode asked for, with one table and `rows` rows. */
function makeDb(file: string, mode: 'wal' | 'delete', rows = 3): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma(`journal_mode = ${mode}`);
  db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  for (let i = 0; i < rows; i++) ins.run(`row ${i}`);
  db.close();
}

test('databases are found by their header whatever their name; companions, temp files and plain files are not', (t) => {
  const dir = tempDir('us-discovery-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeDb(path.join(dir, 'orders.db'), 'wal');
  makeDb(path.join(dir, 'notes.sqlite'), 'delete');
  makeDb(path.join(dir, 'store'), 'delete'); // no extension
  makeDb(path.join(dir, 'data', 'cache.sqlite3'), 'delete');
  makeDb(path.join(dir, 'blobs.bin'), 'wal'); // a name that says nothing
  fs.writeFileSync(path.join(dir, 'new.db'), ''); // created by SQLite, never written
  fs.writeFileSync(path.join(dir, 'broken.sqlite'), 'not a database at all, longer than a header would be'.repeat(3));
  fs.writeFileSync(path.join(dir, 'readme.txt'), 'SQLite format 2 is not what this is'); // not the magic
  fs.writeFileSync(path.join(dir, 'store-journal'), 'x'.repeat(600)); // a companion (a journal mid-commit)
  fs.writeFileSync(path.join(dir, 'orders.db-wal'), 'x'.repeat(600));
  fs.copyFileSync(path.join(dir, 'store'), path.join(dir, '.understudy-tmp-store-1234')); // our temp file
  fs.writeFileSync(path.join(dir, 'tiny'), 'ok');

  assert.deepEqual(listDatabases(dir), ['blobs.bin', 'broken.sqlite', 'data/cache.sqlite3', 'new.db', 'notes.sqlite', 'orders.db', 'store']);
  const modes = Object.fromEntries(listDatabases(dir).map((rel) => [rel, readDatabaseHeader(path.join(dir, rel)).mode]));
  assert.deepEqual(modes, {
    'blobs.bin': 'wal',
    'broken.sqlite': 'not-sqlite',
    'data/cache.sqlite3': 'rollback',
    'new.db': 'empty',
    'notes.sqlite': 'rollback',
    'orders.db': 'wal',
    store: 'rollback',
  });
  assert.equal(readDatabaseHeader(path.join(dir, 'gone')).mode, 'missing');
  // The change counter moves at every commit in rollback-journal mode (what snapshot shipping watches).
  const c0 = readDatabaseHeader(path.join(dir, 'store')).changeCounter;
  makeDb(path.join(dir, 'store'), 'delete', 1);
  assert.equal(readDatabaseHeader(path.join(dir, 'store')).changeCounter, c0 + 1);

  // A plain file is never a database artifact; a database is, by name or by content.
  assert.equal(isDatabaseArtifact('readme.txt', fs.readFileSync(path.join(dir, 'readme.txt'))), false);
  assert.equal(isDatabaseArtifact('store', fs.readFileSync(path.join(dir, 'store'))), true);
  assert.equal(isDatabaseArtifact('store-journal'), true);
  assert.equal(isDatabaseArtifact('notes.sqlite'), true);
});

test('the quick look finds new databases and empty files SQLite writes later; a plain file rewritten as a database waits for the full look', (t) => {
  const dir = tempDir('us-discovery-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'settings.json'), '{"theme":"dark","lines":40}');
  const finder = new DatabaseFinder(dir);
  assert.deepEqual(finder.find(true), []);
  makeDb(path.join(dir, 'later'), 'delete');
  // SQLite creates the file empty at open and writes its header at the first commit.
  const lazy = new Database(path.join(dir, 'lazy'));
  t.after(() => lazy.close());
  assert.equal(fs.statSync(path.join(dir, 'lazy')).size, 0);
  assert.deepEqual(finder.find(false), ['later'], 'a new database is found by the quick look; an empty file is not one yet');
  lazy.exec('CREATE TABLE t (x)');
  assert.deepEqual(finder.find(false), ['later', 'lazy'], 'the empty file is looked at again and found once written');
  // An odd app that turns a known plain file into a database under the same name.
  fs.rmSync(path.join(dir, 'settings.json'));
  makeDb(path.join(dir, 'settings.json'), 'delete');
  assert.deepEqual(finder.find(false), ['later', 'lazy'], 'the quick look trusts what it knew');
  assert.deepEqual(finder.find(true), ['later', 'lazy', 'settings.json'], 'the full look reads every header');
});

test('the quick look lists a directory again unless its modification time has been stable long enough to trust', (t) => {
  const dir = tempDir('us-discovery-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeDb(path.join(dir, 'data', 'a.sqlite'), 'wal');
  const sub = path.join(dir, 'data');
  const stamp = Math.floor(Date.now() / 1000) - 60; // whole seconds: utimes keeps them exactly
  fs.utimesSync(sub, stamp, stamp);
  /** Creates a database in data/ and puts data/'s modification time back: a change a coarse clock would not show. */
  const sneakIn = (name: string): void => {
    makeDb(path.join(sub, name), 'delete');
    fs.utimesSync(sub, stamp, stamp);
    assert.equal(fs.statSync(sub).mtimeMs, stamp * 1000, 'the fault is real: the directory looks unchanged');
  };

  // Never trusted (the stable window is longer than the test): every quick look lists again.
  const careful = new DatabaseFinder(dir, 60_000);
  assert.deepEqual(careful.find(false), ['data/a.sqlite']);
  sneakIn('b.sqlite');
  assert.deepEqual(careful.find(false), ['data/a.sqlite', 'data/b.sqlite'], 'a change within the granularity of the last one is found');

  // Trusted at once (window 0): the second quick look takes the listing as complete.
  const trusting = new DatabaseFinder(dir, 0);
  assert.deepEqual(trusting.find(false), ['data/a.sqlite', 'data/b.sqlite']);
  sneakIn('c.sqlite');
  assert.deepEqual(trusting.find(false), ['data/a.sqlite', 'data/b.sqlite'], 'a trusted listing is not read again: the cache is used');
  assert.deepEqual(trusting.find(true), ['data/a.sqlite', 'data/b.sqlite', 'data/c.sqlite'], 'the full look always lists');
  // A real change moves the modification time: the quick look lists again.
  makeDb(path.join(sub, 'd.sqlite'), 'delete');
  fs.utimesSync(sub, new Date(), new Date(Date.now() + 5000));
  assert.deepEqual(trusting.find(false), ['data/a.sqlite', 'data/b.sqlite', 'data/c.sqlite', 'data/d.sqlite']);
  fs.rmSync(path.join(sub, 'a.sqlite'));
  fs.utimesSync(sub, new Date(), new Date(Date.now() + 10_000));
  assert.deepEqual(trusting.find(false), ['data/b.sqlite', 'data/c.sqlite', 'data/d.sqlite'], 'a removed database is gone from the quick look');
});

test('the file manifest leaves databases out by their header; the replica refuses one sent as a file and never deletes one', async (t) => {
  const dir = tempDir('us-discovery-');
  const replica = tempDir('us-discovery-replica-');
  t.after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(replica, { recursive: true, force: true });
  });
  makeDb(path.join(dir, 'store'), 'delete');
  makeDb(path.join(dir, 'app.sqlite'), 'delete');
  fs.mkdirSync(path.join(dir, 'public'));
  fs.writeFileSync(path.join(dir, 'public', 'index.html'), '<h1>notes</h1>');
  const m = new FileManifest(dir);
  assert.deepEqual([...(await m.scan()).keys()], ['public/index.html']);
  assert.deepEqual([...m.databases], ['store'], 'a database without a database name is recognised by its header');

  const data = fs.readFileSync(path.join(dir, 'store'));
  await assert.rejects(
    applyFiles(replica, { put: [{ path: 'store', data: data.toString('base64'), mtimeMs: Date.now(), mode: 0o644, sha256: sha256(data) }], delete: [] }),
    (e: unknown) => isUnderstudyError(e) && e.code === 'US_BAD_REQUEST' && /never as files/.test(e.message),
  );
  assert.equal(fs.existsSync(path.join(replica, 'store')), false, 'nothing was written');
  // A database installed on the replica by database replication is never deleted by the file protocol.
  fs.copyFileSync(path.join(dir, 'store'), path.join(replica, 'store'));
  fs.writeFileSync(path.join(replica, 'old.txt'), 'bye');
  await applyFiles(replica, { put: [], delete: ['store', 'old.txt'] });
  assert.equal(fs.existsSync(path.join(replica, 'store')), true, 'the database is kept');
  assert.equal(fs.existsSync(path.join(replica, 'old.txt')), false, 'the plain file is deleted');
});

test('rollback-journal databases are switched to WAL mode while nothing has them open; an app can put one back', (t) => {
  const dir = tempDir('us-walswitch-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  makeDb(path.join(dir, 'notes.sqlite'), 'delete');
  makeDb(path.join(dir, 'orders.db'), 'wal');
  makeDb(path.join(dir, 'store'), 'delete');
  fs.writeFileSync(path.join(dir, 'empty.db'), '');
  const walBefore = fs.readFileSync(path.join(dir, 'orders.db'));
  const r = switchDatabasesToWal(dir);
  assert.deepEqual(r, { switched: ['notes.sqlite', 'store'], failed: [] });
  assert.equal(readDatabaseHeader(path.join(dir, 'notes.sqlite')).mode, 'wal');
  assert.equal(readDatabaseHeader(path.join(dir, 'store')).mode, 'wal');
  assert.ok(walBefore.equals(fs.readFileSync(path.join(dir, 'orders.db'))), 'a WAL-mode database is not touched');
  assert.equal(fs.statSync(path.join(dir, 'empty.db')).size, 0, 'an empty database is not touched');
  for (const f of ['notes.sqlite-wal', 'notes.sqlite-shm', 'store-wal']) assert.equal(fs.existsSync(path.join(dir, f)), false, `${f} is not left behind`);
  assert.equal(switchedToWalHere(path.join(dir, 'notes.sqlite')), true);
  assert.equal(switchedToWalHere(path.join(dir, 'orders.db')), false);
  // The data is intact, and an app that insists on its rollback journal gets it.
  const app = new Database(path.join(dir, 'notes.sqlite'));
  assert.equal(app.pragma('journal_mode = DELETE', { simple: true }), 'delete');
  assert.equal((app.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 3);
  app.close();
  assert.equal(readDatabaseHeader(path.join(dir, 'notes.sqlite')).mode, 'rollback');
  settleWalSwitch(path.join(dir, 'notes.sqlite'));
  assert.equal(switchedToWalHere(path.join(dir, 'notes.sqlite')), false);

  // A database someone holds (an exclusive lock) is not switched, and says why.
  const holder = new Database(path.join(dir, 'notes.sqlite'));
  t.after(() => holder.close());
  holder.pragma('locking_mode = EXCLUSIVE');
  holder.exec("INSERT INTO t (v) VALUES ('held')");
  const r2 = switchDatabasesToWal(dir);
  assert.deepEqual(r2.switched, []);
  assert.equal(r2.failed.length, 1);
  assert.equal(r2.failed[0]!.db, 'notes.sqlite');
  assert.match(r2.failed[0]!.error, /locked/);
  assert.equal(readDatabaseHeader(path.join(dir, 'notes.sqlite')).mode, 'rollback');
});

test("reading a database's header or its WAL index never releases this process's SQLite locks", async (t) => {
  const dir = tempDir('us-locks-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'app.sqlite');
  makeDb(file, 'delete', 1);
  // Another process writes with a short busy timeout: it can only commit when nothing here holds a lock.
  const { execFile } = await import('node:child_process');
  const otherWrites = (sql: string): Promise<string> =>
    new Promise((resolve) => {
      const code = `const D = require(${JSON.stringify(path.join(process.cwd(), 'node_modules', 'better-sqlite3'))}); const d = new D(${JSON.stringify(file)}, { timeout: 50 }); try { const r = d.${sql}; console.log(JSON.stringify(r ?? 'ok')); } catch (e) { console.log(e.code); } d.close();`;
      execFile(process.execPath, ['-e', code], (_e, out) => resolve(out.trim()));
    });
  // Rollback-journal mode: a read transaction here holds SHARED; the other process cannot commit.
  const reader = new Database(file);
  reader.exec('BEGIN');
  reader.prepare('SELECT count(*) FROM t').get();
  assert.equal(await otherWrites('exec("INSERT INTO t (v) VALUES (\'x\')")'), 'SQLITE_BUSY');
  for (let i = 0; i < 3; i++) {
    readDatabaseHeader(file);
    listDatabases(dir);
    new DatabaseFinder(dir).find(true);
  }
  assert.equal(
    await otherWrites('exec("INSERT INTO t (v) VALUES (\'x\')")'),
    'SQLITE_BUSY',
    'still locked after the header was read (a plain open/close would have released it)',
  );
  reader.exec('COMMIT');
  reader.close();
  // WAL mode: a reader here pins the WAL; the other process's TRUNCATE checkpoint cannot pass it.
  const w = new Database(file);
  w.pragma('journal_mode = WAL');
  for (let i = 0; i < 20; i++) w.exec("INSERT INTO t (v) VALUES ('a')");
  const r2 = new Database(file);
  r2.exec('BEGIN');
  r2.prepare('SELECT count(*) FROM t').get();
  for (let i = 0; i < 20; i++) w.exec("INSERT INTO t (v) VALUES ('b')");
  const { readWalIndexHeader } = await import('../../../src/storage/wal-index.ts');
  for (let i = 0; i < 3; i++) {
    assert.ok(readWalIndexHeader(`${file}-shm`));
    readDatabaseHeader(file);
  }
  const ck = JSON.parse(await otherWrites("pragma('wal_checkpoint(TRUNCATE)')")) as { busy: number }[];
  assert.equal(ck[0]!.busy, 1, 'the checkpoint is still held back by the reader here');
  r2.exec('COMMIT');
  r2.close();
  w.close();
});
