import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import { callJson } from '../../../src/shared/http-client.ts';
import type { DatabaseStatus, PromoteResponse, VolumeStatus } from '../../../src/shared/contracts.ts';
import { readDatabaseHeader } from '../../../src/storage/sqlite-file.ts';
import { DatabaseWatch } from '../../../src/controller/database-watch.ts';
import { unprotectedDatabases } from '../../../src/controller/status-view.ts';
import { startStoragePair, tempDir, waitFor } from './helpers.ts';

/**
 * Databases outside WAL mode, named anything: two storage processors in this process
 * on real sockets, and an "app" in a worker thread that keeps its databases in
 * rollback-journal mode (it sets journal_mode=DELETE on open, as many apps do).
 */
interface Pair {
  a: StorageProcessor;
  b: StorageProcessor;
  urlA: string;
  urlB: string;
  root: string;
  volA: string;
  volB: string;
}

const TUNING = { walPollMs: 5, checkpointFrames: 150, fileScanMs: 100, snapshotLockWaitMs: 300 };

async function startPair(t: { after: (fn: () => Promise<void>) => void }): Promise<Pair> {
  const pair = await startStoragePair(t, 'us-snap-', TUNING);
  return { ...pair, volA: path.join(pair.root, 'a', 'volumes', 'notes'), volB: path.join(pair.root, 'b', 'replicas', 'notes') };
}

/** A seed with notes.sqlite in rollback-journal mode (as the app left it) and a plain file. */
function makeSeed(root: string): string {
  const seed = path.join(root, 'seed');
  fs.mkdirSync(path.join(seed, 'public'), { recursive: true });
  fs.writeFileSync(path.join(seed, 'public', 'index.html'), '<h1>notes</h1>');
  const db = new Database(path.join(seed, 'notes.sqlite'));
  db.pragma('journal_mode = DELETE');
  db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL); INSERT INTO notes (body) VALUES ('welcome')");
  db.close();
  return seed;
}

async function start(p: Pair): Promise<void> {
  await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/notes/init`, { body: { epoch: 1, seed: makeSeed(p.root) } });
  await callJson(`${p.urlA}/v1/volumes/notes/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: p.urlB } } });
}

async function volume(p: Pair): Promise<VolumeStatus> {
  return callJson<VolumeStatus>(`${p.urlA}/v1/volumes/notes`);
}

function dbStatus(v: VolumeStatus, rel: string): DatabaseStatus | undefined {
  return v.replication?.databases?.find((d) => d.path === rel);
}

/** The app: opens its databases in rollback-journal mode and inserts notes in small transactions. */
const APP_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.betterSqlite);
const open = (file) => {
  const db = new Database(file);
  db.pragma('busy_timeout = 5000');
  const mode = db.pragma('journal_mode = ' + workerData.journalMode, { simple: true });
  db.exec('CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
  return { db, mode, ins: db.prepare('INSERT INTO notes (body) VALUES (?)') };
};
const dbs = workerData.files.map(open);
parentPort.postMessage({ modes: dbs.map((d) => d.mode) });
let rows = 0;
const deadline = Date.now() + workerData.maxMs;
while (rows < workerData.maxRows && Date.now() < deadline) {
  const d = dbs[rows % dbs.length];
  d.db.transaction(() => { for (let i = 0; i < 3; i++) d.ins.run('note ' + rows + '/' + i + ' ' + 'x'.repeat(200)); })();
  rows++;
  if (rows % 5 === 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
}
for (const d of dbs) d.db.close();
parentPort.postMessage({ rows });
`;

function runApp(
  files: string[],
  opts: { maxRows: number; maxMs: number; journalMode?: string },
): { modes: Promise<string[]>; done: Promise<{ rows: number }>; worker: Worker } {
  const worker = new Worker(APP_WORKER, {
    eval: true,
    workerData: { files, journalMode: opts.journalMode ?? 'DELETE', betterSqlite: path.join(process.cwd(), 'node_modules', 'better-sqlite3'), ...opts },
  });
  let first = true;
  let modesResolve!: (m: string[]) => void;
  const modes = new Promise<string[]>((r) => {
    modesResolve = r;
  });
  const done = new Promise<{ rows: number }>((resolve, reject) => {
    worker.on('message', (m: { modes?: string[]; rows?: number }) => {
      if (first && m.modes) {
        first = false;
        modesResolve(m.modes);
      } else resolve(m as { rows: number });
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`app worker exited with ${code}`));
    });
  });
  return { modes, done, worker };
}

/** Copies a replica database while the processor is quiesced, opens the copy, checks it and counts its notes. */
async function replicaCopy(p: Pair, rel: string): Promise<{ ok: string; rows: number; mode: string } | null> {
  const dest = tempDir('us-snap-copy-');
  try {
    let there = false;
    await p.b.withVolumeQuiesced('notes', async (dir) => {
      if (!fs.existsSync(path.join(dir, rel))) return;
      there = true;
      for (const f of [rel, `${rel}-wal`]) if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(dest, f.replace(rel, 'copy')));
    });
    if (!there) return null;
    const mode = readDatabaseHeader(path.join(dest, 'copy')).mode;
    const db = new Database(path.join(dest, 'copy'));
    try {
      const ok = (db.pragma('quick_check') as { quick_check: string }[])[0]!.quick_check;
      const hasTable = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'notes'").get() as { n: number };
      return { ok, rows: hasTable.n ? (db.prepare('SELECT count(*) AS n FROM notes').get() as { n: number }).n : 0, mode };
    } finally {
      db.close();
    }
  } finally {
    fs.rmSync(dest, { recursive: true, force: true });
  }
}

function primaryRows(file: string): number {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM notes').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

test('rollback-journal databases, named *.sqlite or nothing at all, are replicated by consistent snapshots under load; status lists them', async (t) => {
  const p = await startPair(t);
  await start(p);
  // The seed's rollback-journal database was switched to WAL mode before any app opened it.
  assert.equal(readDatabaseHeader(path.join(p.volA, 'notes.sqlite')).mode, 'wal');
  await waitFor('notes.sqlite on the replica', () => fs.existsSync(path.join(p.volB, 'notes.sqlite')), 5000);
  const before = dbStatus(await volume(p), 'notes.sqlite')!;
  assert.deepEqual(
    [before.mode, before.method, before.switchedToWal],
    ['wal', 'snapshots', true],
    'switched, and held by snapshots until the app shows what it wants',
  );

  // The app puts it back in rollback mode (nothing of ours holds it open), and creates a second database, `attachments` (no extension).
  const app = runApp([path.join(p.volA, 'notes.sqlite'), path.join(p.volA, 'attachments')], { maxRows: 3000, maxMs: 4000 });
  t.after(() => app.worker.terminate());
  assert.deepEqual(await app.modes, ['delete', 'delete'], 'the app got the journal mode it asked for');

  // The replica opens as a consistent database at several instants and never goes back in time.
  let finished = false;
  void app.done.then(
    () => {
      finished = true;
    },
    () => {
      finished = true;
    },
  );
  let instants = 0;
  let last = 0;
  let peak = 0;
  while (!finished) {
    await new Promise((r) => setTimeout(r, 100));
    const rep = (await volume(p)).replication!;
    assert.ok((rep.lagPeakMs ?? -1) >= rep.lagMs, 'the peak lag is at least the lag now');
    peak = Math.max(peak, rep.lagPeakMs ?? 0);
    const c = await replicaCopy(p, 'attachments');
    if (c === null) continue;
    assert.equal(c.ok, 'ok', `replica copy #${instants} passes quick_check`);
    assert.ok(c.rows >= last, `the replica never goes back (${c.rows} < ${last})`);
    last = c.rows;
    instants++;
  }
  const { rows } = await app.done;
  assert.ok(instants >= 3, `looked at the replica at ${instants} instants during the load`);
  assert.ok(rows > 100, `the app wrote ${rows} transactions`);
  assert.ok(peak > 0, 'under load, the snapshots lag (lagPeakMs)');
  t.diagnostic(`snapshot shipping under load: worst lag of 2 s seen ${peak} ms, ${instants} replica checks, ${rows} transactions`);

  // Caught up: the replica holds exactly the primary's notes; both are in rollback mode there too.
  await p.a.catchUp('notes', 10_000);
  await waitFor('lag 0', async () => (await volume(p)).replication?.lagMs === 0, 5000);
  for (const rel of ['notes.sqlite', 'attachments']) {
    const c = await replicaCopy(p, rel);
    assert.deepEqual(c, { ok: 'ok', rows: primaryRows(path.join(p.volA, rel)), mode: 'rollback' }, `${rel} on the replica`);
  }
  const v = await volume(p);
  const dbs = v.replication!.databases!;
  assert.deepEqual(
    dbs.map((d) => [d.path, d.mode, d.method, d.state, d.protected]),
    [
      ['attachments', 'rollback', 'snapshots', 'streaming', true],
      ['notes.sqlite', 'rollback', 'snapshots', 'streaming', true],
    ],
  );
  assert.match(dbStatus(v, 'notes.sqlite')!.reason!, /app put it back/);
  assert.ok(
    dbs.every((d) => (d.snapshots ?? 0) >= 2),
    'several snapshots were shipped',
  );
  assert.equal(v.replication!.state, 'streaming');
  assert.equal(v.replication!.lastError, undefined, 'nothing is reported as not replicated');
  // The databases never travelled as plain files: only public/index.html did.
  assert.equal(v.replication!.fileBytesSent, '<h1>notes</h1>'.length);
  assert.deepEqual(
    fs.readdirSync(p.volB).filter((f) => /-(journal|wal|shm)$/.test(f)),
    [],
    'no -journal, -wal or -shm on the replica',
  );

  // Idle: no change, no snapshot.
  const counts = dbs.map((d) => d.snapshots);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(
    (await volume(p)).replication!.databases!.map((d) => d.snapshots),
    counts,
    'an idle database costs no snapshot',
  );

  // Promotion switches the replica's rollback-journal databases to WAL mode before an app opens them.
  const pr = await callJson<PromoteResponse>(`${p.urlB}/v1/volumes/notes/promote`, { body: { epoch: 2 } });
  assert.equal(pr.epoch, 2);
  const promoted = path.join(p.root, 'b', 'volumes', 'notes');
  assert.equal(readDatabaseHeader(path.join(promoted, 'notes.sqlite')).mode, 'wal');
  assert.equal(readDatabaseHeader(path.join(promoted, 'attachments')).mode, 'wal');
  assert.equal(primaryRows(path.join(promoted, 'attachments')), primaryRows(path.join(p.volA, 'attachments')));
});

test("sync barrier: every write it releases is on the replica's disk, by a snapshot taken after the write", async (t) => {
  const p = await startPair(t);
  await start(p);
  const app = new Database(path.join(p.volA, 'notes.sqlite'));
  t.after(() => app.close());
  app.pragma('busy_timeout = 5000');
  assert.equal(app.pragma('journal_mode = DELETE', { simple: true }), 'delete');
  const ins = app.prepare('INSERT INTO notes (body) VALUES (?)');
  await waitFor('streaming', async () => (await volume(p)).replication?.state === 'streaming', 5000);
  for (let i = 0; i < 25; i++) {
    const id = Number(ins.run(`sync ${i}`).lastInsertRowid);
    const r = await p.a.syncBarrier('notes', 'strict', 2000);
    assert.equal(r.state, 'sync', `barrier ${i}: ${r.reason ?? ''}`);
    // Straight after the barrier, the replica's file holds the row.
    let found = 0;
    await p.b.withVolumeQuiesced('notes', async (dir) => {
      const db = new Database(path.join(dir, 'notes.sqlite'), { readonly: true });
      try {
        found = (db.prepare('SELECT count(*) AS n FROM notes WHERE id = ?').get(id) as { n: number }).n;
      } finally {
        db.close();
      }
    });
    assert.equal(found, 1, `row ${id} is on the replica when the barrier released it`);
  }
  // A barrier with nothing new written answers without a new snapshot.
  const n0 = dbStatus(await volume(p), 'notes.sqlite')!.snapshots;
  for (let i = 0; i < 5; i++) assert.equal((await p.a.syncBarrier('notes', 'strict', 2000)).state, 'sync');
  assert.equal(dbStatus(await volume(p), 'notes.sqlite')!.snapshots, n0, 'no snapshot without a change');
});

test('a database the app keeps locked is unprotected: status names it, an event names the file, and it recovers', async (t) => {
  const p = await startPair(t);
  await start(p);
  await waitFor('streaming', async () => (await volume(p)).replication?.state === 'streaming', 5000);
  const events: { kind: string; message: string }[] = [];
  const watch = new DatabaseWatch((e) => events.push({ kind: e.kind, message: e.message }));
  watch.notice('array-a', await volume(p), true);
  assert.deepEqual(
    events.map((e) => e.kind),
    ['database-snapshots'],
    'held by snapshots: said once',
  );
  watch.notice('array-a', await volume(p), true);
  assert.equal(events.length, 1, 'said once only');

  const holder = new Database(path.join(p.volA, 'notes.sqlite'));
  holder.pragma('journal_mode = DELETE');
  holder.pragma('locking_mode = EXCLUSIVE');
  holder.exec("INSERT INTO notes (body) VALUES ('locked in')"); // holds the lock from now on
  await waitFor('unprotected', async () => dbStatus(await volume(p), 'notes.sqlite')?.protected === false, 5000);
  const v = await volume(p);
  const d = dbStatus(v, 'notes.sqlite')!;
  assert.equal(d.state, 'error');
  assert.match(d.lastError!, /notes\.sqlite: cannot take a consistent snapshot/);
  assert.deepEqual(
    unprotectedDatabases(v).map((x) => x.path),
    ['notes.sqlite'],
  );
  assert.ok(d.lagMs > 0, 'its lag grows');
  watch.notice('array-a', v, true);
  assert.equal(events.at(-1)!.kind, 'database-unprotected');
  assert.match(events.at(-1)!.message, /database notes\.sqlite on array-a is not being replicated: .*notes\.sqlite: cannot take a consistent snapshot/);

  holder.close(); // lets go
  await waitFor(
    'protected again',
    async () => dbStatus(await volume(p), 'notes.sqlite')?.protected === true && dbStatus(await volume(p), 'notes.sqlite')?.lagMs === 0,
    5000,
  );
  watch.notice('array-a', await volume(p), true);
  assert.equal(events.at(-1)!.kind, 'database-protected');
  const c = await replicaCopy(p, 'notes.sqlite');
  assert.equal(c?.rows, 2, 'the note written under the lock reached the replica');
  assert.equal(events.filter((e) => e.kind === 'database-unprotected').length, 1);
  // A copy that is not the site's current primary (a deposed primary whose shipping is refused) raises nothing.
  const deposed = await volume(p);
  deposed.replication!.databases = deposed.replication!.databases!.map((x) => ({ ...x, state: 'error', protected: false }));
  const n = events.length;
  watch.notice('array-a', deposed, false);
  assert.equal(events.length, n);
});

test('an app that keeps the switched database in WAL mode and writes gets WAL-frame shipping', async (t) => {
  const p = await startPair(t);
  await start(p);
  await waitFor('streaming', async () => (await volume(p)).replication?.state === 'streaming', 5000);
  assert.equal(dbStatus(await volume(p), 'notes.sqlite')!.method, 'snapshots');
  const app = new Database(path.join(p.volA, 'notes.sqlite')); // no journal_mode pragma: it keeps what it finds
  t.after(() => app.close());
  const ins = app.prepare('INSERT INTO notes (body) VALUES (?)');
  for (let i = 0; i < 20; i++) ins.run(`wal ${i}`);
  await waitFor('WAL frames', async () => dbStatus(await volume(p), 'notes.sqlite')?.method === 'wal-frames', 5000);
  for (let i = 0; i < 20; i++) ins.run(`wal more ${i}`);
  await p.a.catchUp('notes', 5000);
  const v = await volume(p);
  assert.deepEqual([dbStatus(v, 'notes.sqlite')!.mode, dbStatus(v, 'notes.sqlite')!.reason], ['wal', undefined]);
  await p.b.withVolumeQuiesced('notes', async (dir) => {
    const db = new Database(path.join(dir, 'notes.sqlite'), { readonly: true });
    try {
      assert.equal((db.prepare('SELECT count(*) AS n FROM notes').get() as { n: number }).n, 41);
    } finally {
      db.close();
    }
  });
});

test('an empty file that SQLite later writes is shipped as a database, and the replica keeps it', async (t) => {
  const p = await startPair(t);
  await start(p);
  await waitFor('streaming', async () => (await volume(p)).replication?.state === 'streaming', 5000);
  // The app opens a new database (SQLite creates it empty) and writes it a moment later.
  const lazy = new Database(path.join(p.volA, 'lazy'));
  t.after(() => lazy.close());
  await waitFor('the empty file reached the replica as a plain file', () => fs.existsSync(path.join(p.volB, 'lazy')), 5000);
  lazy.pragma('journal_mode = DELETE');
  lazy.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL); INSERT INTO notes (body) VALUES ('late')");
  await waitFor('shipped as a database', async () => dbStatus(await volume(p), 'lazy')?.method === 'snapshots', 5000);
  await p.a.catchUp('notes', 5000);
  await new Promise((r) => setTimeout(r, 400)); // several file scans (100 ms): none deletes it
  const c = await replicaCopy(p, 'lazy');
  assert.deepEqual(c, { ok: 'ok', rows: 1, mode: 'rollback' });
});
