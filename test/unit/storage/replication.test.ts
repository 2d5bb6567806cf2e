import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import { callJson } from '../../../src/shared/http-client.ts';
import { isUnderstudyError } from '../../../src/shared/errors.ts';
import type { PromoteResponse, StorageStatus, VolumeStatus } from '../../../src/shared/contracts.ts';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, frameSize, parseWalHeader, scanFrames } from '../../../src/storage/wal-format.ts';
import { walChecksum } from '../../../src/storage/wal-checksum.ts';
import { readWalIndexHeader } from '../../../src/storage/wal-index.ts';
import { startStoragePair, tempDir, testLogger, waitFor } from './helpers.ts';

/**
 * Two storage processors in this process on real sockets, an "app" writing to the
 * primary volume from a worker thread (real concurrency with SQLite locks).
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

const TUNING = { walPollMs: 5, checkpointFrames: 150, fileScanMs: 100 };

async function startPair(t: { after: (fn: () => Promise<void>) => void }): Promise<Pair> {
  const pair = await startStoragePair(t, 'us-storage-', TUNING);
  return { ...pair, volA: path.join(pair.root, 'a', 'volumes', 'shop'), volB: path.join(pair.root, 'b', 'replicas', 'shop') };
}

function makeSeed(root: string): string {
  const seed = path.join(root, 'seed');
  fs.mkdirSync(path.join(seed, 'public'), { recursive: true });
  fs.mkdirSync(path.join(seed, 'config'), { recursive: true });
  fs.writeFileSync(path.join(seed, 'public', 'index.html'), '<h1>shop</h1>');
  fs.writeFileSync(path.join(seed, 'public', 'old.txt'), 'to be deleted');
  fs.writeFileSync(path.join(seed, 'config', 'site.json'), JSON.stringify({ listen: { host: '127.0.0.1' }, workers: 1 }));
  const cat = new Database(path.join(seed, 'catalog.db'));
  cat.pragma('journal_mode = WAL');
  cat.exec("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO products (name) VALUES ('tea'), ('cup')");
  cat.close();
  return seed;
}

function createOrdersDb(vol: string): void {
  const db = new Database(path.join(vol, 'orders.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, payload BLOB NOT NULL)');
  db.close();
}

/** The app: inserts orders in small and large transactions; optionally TRUNCATE-checkpoints itself. */
const APP_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.betterSqlite);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 5000');
db.pragma('journal_mode = WAL');
const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(?))');
let rows = 0, txns = 0, truncates = 0, truncatesOk = 0;
const deadline = Date.now() + workerData.maxMs;
let seed = 7;
const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
while (rows < workerData.maxRows && Date.now() < deadline) {
  const k = txns % 25 === 0 ? 40 : 1 + rnd(4);
  db.transaction(() => { for (let i = 0; i < k; i++) ins.run('c' + rows++, 50 + rnd(3000)); })();
  txns++;
  if (workerData.truncateEvery && txns % workerData.truncateEvery === 0) {
    db.pragma('busy_timeout = 20');
    const r = db.pragma('wal_checkpoint(TRUNCATE)')[0];
    db.pragma('busy_timeout = 5000');
    truncates++;
    if (r.busy === 0) truncatesOk++;
  }
  if (txns % 10 === 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
}
db.close();
parentPort.postMessage({ rows, txns, truncates, truncatesOk });
`;

function runApp(
  file: string,
  opts: { maxRows: number; maxMs: number; truncateEvery?: number },
): { done: Promise<{ rows: number; txns: number; truncates: number; truncatesOk: number }>; worker: Worker } {
  const worker = new Worker(APP_WORKER, { eval: true, workerData: { file, betterSqlite: require_resolve('better-sqlite3'), ...opts } });
  const done = new Promise<{ rows: number; txns: number; truncates: number; truncatesOk: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`app worker exited with ${code}`));
    });
  });
  return { done, worker };
}

function require_resolve(name: string): string {
  return path.join(process.cwd(), 'node_modules', name);
}

/** Copies the replica's orders.db (+ -wal) while the processor is quiesced, opens the copy, checks it. */
async function checkReplicaCopy(p: Pair, scratch: string): Promise<{ ok: string; rows: number; digest: string }> {
  const dest = fs.mkdtempSync(path.join(scratch, 'copy-'));
  await p.b.withVolumeQuiesced('shop', async (dir) => {
    for (const f of ['orders.db', 'orders.db-wal']) if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(dest, f));
  });
  if (!fs.existsSync(path.join(dest, 'orders.db'))) return { ok: 'absent', rows: -1, digest: '' };
  const db = new Database(path.join(dest, 'orders.db'));
  try {
    const ok = (db.pragma('quick_check') as { quick_check: string }[])[0]!.quick_check;
    return { ok, rows: (db.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n, digest: digest(db) };
  } finally {
    db.close();
    fs.rmSync(dest, { recursive: true, force: true });
  }
}

function digest(db: Database.Database): string {
  const h = createHash('sha256');
  for (const r of db.prepare('SELECT id, customer, payload FROM orders ORDER BY id').iterate() as Iterable<{ id: number; customer: string; payload: Buffer }>) {
    h.update(`${r.id}:${r.customer}:`).update(r.payload);
  }
  return h.digest('hex');
}

function primaryDigest(vol: string): { rows: number; digest: string } {
  const db = new Database(path.join(vol, 'orders.db'), { readonly: true });
  try {
    return { rows: (db.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n, digest: digest(db) };
  } finally {
    db.close();
  }
}

async function setupReplication(p: Pair): Promise<void> {
  const seed = makeSeed(p.root);
  const st = await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop/init`, { body: { epoch: 1, seed } });
  assert.equal(st.role, 'primary');
  assert.equal(st.epoch, 1);
  // idempotent
  await callJson(`${p.urlA}/v1/volumes/shop/init`, { body: { epoch: 1, seed } });
  createOrdersDb(p.volA);
  await callJson(`${p.urlA}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: p.urlB } } });
  await callJson(`${p.urlA}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: p.urlB } } });
  await waitFor('replication streaming', async () => {
    const s = await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop`);
    return s.replication?.state === 'streaming' && s.replication.lagMs === 0 && fs.existsSync(path.join(p.volB, 'orders.db'));
  });
}

async function caughtUp(p: Pair): Promise<void> {
  const pos = await p.a.sourcePosition('shop');
  await p.a.waitConfirmed('shop', pos, 10_000);
  await waitFor('lag 0', async () => (await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop`)).replication?.lagMs === 0, 5000);
}

test('replicates a database under concurrent load and through WAL restarts; files; promote fences the old epoch', async (t) => {
  const p = await startPair(t);
  const scratch = tempDir('us-scratch-');
  t.after(() => fs.rmSync(scratch, { recursive: true, force: true }));
  await setupReplication(p);

  const walA = path.join(p.volA, 'orders.db-wal');
  const seq0 = parseWalHeader(fs.readFileSync(walA))?.checkpointSeq ?? 0;
  const app = runApp(path.join(p.volA, 'orders.db'), { maxRows: 12_000, maxMs: 5000, truncateEvery: 60 });
  t.after(() => app.worker.terminate());

  // (a) the replica opens as a valid database at several instants during the load,
  // and never goes back in time.
  let instants = 0;
  let lastRows = 0;
  let finished = false;
  void app.done.then(
    () => {
      finished = true;
    },
    () => {
      finished = true;
    },
  );
  while (!finished) {
    await new Promise((r) => setTimeout(r, 150));
    const c = await checkReplicaCopy(p, scratch);
    if (c.ok === 'absent') continue;
    assert.equal(c.ok, 'ok', `replica copy #${instants} passes quick_check`);
    assert.ok(c.rows >= lastRows, `replica never goes back (${c.rows} < ${lastRows})`);
    lastRows = c.rows;
    instants++;
  }
  const result = await app.done;
  assert.ok(instants >= 3, `checked the replica at ${instants} instants`);
  assert.ok(result.rows > 500, `the app wrote ${result.rows} rows`);

  // (b) after the load and lag back to 0, the replica holds exactly the primary's rows.
  await caughtUp(p);
  const prim = primaryDigest(p.volA);
  const rep = await checkReplicaCopy(p, scratch);
  assert.equal(rep.ok, 'ok');
  assert.equal(rep.rows, prim.rows);
  assert.equal(rep.digest, prim.digest);
  assert.equal(prim.rows, result.rows);

  // (c) the WAL was restarted under load (our checkpoints and the app's TRUNCATE; how often depends on the machine's load), and
  // the data above is still exact.
  const seq1 = parseWalHeader(fs.readFileSync(walA))?.checkpointSeq ?? seq0;
  assert.ok(seq1 - seq0 >= 1, `WAL restarted ${seq1 - seq0} times during the load`);
  t.diagnostic(`rows=${result.rows} txns=${result.txns} truncates=${result.truncatesOk}/${result.truncates} walRestarts=${seq1 - seq0} instants=${instants}`);

  // (d) plain files: change, add, delete.
  fs.writeFileSync(path.join(p.volA, 'config', 'site.json'), JSON.stringify({ listen: { host: '127.0.0.2' }, workers: 2 }));
  fs.mkdirSync(path.join(p.volA, 'public', 'img'));
  fs.writeFileSync(path.join(p.volA, 'public', 'img', 'logo.svg'), '<svg/>');
  fs.rmSync(path.join(p.volA, 'public', 'old.txt'));
  await waitFor(
    'files replicated',
    () =>
      fs.existsSync(path.join(p.volB, 'public', 'img', 'logo.svg')) &&
      !fs.existsSync(path.join(p.volB, 'public', 'old.txt')) &&
      fs.readFileSync(path.join(p.volB, 'config', 'site.json'), 'utf8').includes('127.0.0.2'),
    5000,
  );
  assert.equal(fs.readFileSync(path.join(p.volB, 'public', 'index.html'), 'utf8'), '<h1>shop</h1>');
  assert.ok(fs.existsSync(path.join(p.volB, 'catalog.db')), 'the seed database is replicated too');

  // (e) promote: B becomes a plain, writable primary; epoch 1 is refused afterwards.
  const statusB = await callJson<StorageStatus>(`${p.urlB}/v1/status`);
  assert.equal(statusB.volumes[0]?.role, 'replica');
  const pr = await callJson<PromoteResponse>(`${p.urlB}/v1/volumes/shop/promote`, { body: { epoch: 2 } });
  assert.deepEqual([pr.role, pr.epoch], ['primary', 2]);
  assert.equal(typeof pr.lastAppliedAt, 'number');
  const again = await callJson<PromoteResponse>(`${p.urlB}/v1/volumes/shop/promote`, { body: { epoch: 2 } });
  assert.equal(again.epoch, 2, 'promote is idempotent');
  // The promoted replica takes the primary's place in volumes/.
  const volBPrimary = path.join(p.root, 'b', 'volumes', 'shop');
  assert.ok(!fs.existsSync(p.volB), 'the replica directory moved into volumes/');
  assert.ok(!fs.existsSync(path.join(volBPrimary, 'orders.db-wal')), 'no -wal left after promotion');
  const appB = new Database(path.join(volBPrimary, 'orders.db'));
  appB.pragma('journal_mode = WAL');
  appB.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)').run('after-failover', Buffer.from('x'));
  assert.equal((appB.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n, prim.rows + 1);
  assert.equal((appB.pragma('quick_check') as { quick_check: string }[])[0]!.quick_check, 'ok');
  appB.close();

  await assert.rejects(
    callJson(`${p.urlB}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-a', url: p.urlA } } }),
    (e: unknown) => isUnderstudyError(e) && e.code === 'US_STALE_EPOCH',
  );
  // The old primary (still epoch 1) is refused too: its next write never lands on B.
  const old = new Database(path.join(p.volA, 'orders.db'));
  old.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)').run('stale', Buffer.from('y'));
  old.close();
  await waitFor('old primary fenced', async () => (await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop`)).replication?.state === 'error', 3000);
  const st = await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop`);
  assert.match(st.replication?.lastError ?? '', /epoch/);
  const b2 = new Database(path.join(volBPrimary, 'orders.db'), { readonly: true });
  assert.equal((b2.prepare("SELECT count(*) AS n FROM orders WHERE customer = 'stale'").get() as { n: number }).n, 0);
  b2.close();

  // Demote the old primary at the new epoch: it stops shipping.
  const dem = await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop/demote`, { body: { epoch: 2 } });
  assert.equal(dem.role, 'none');
  assert.equal(dem.replication, undefined);
});

test('init refuses a volume whose *.db is not SQLite, and stale epochs', async (t) => {
  const p = await startPair(t);
  fs.mkdirSync(p.volA, { recursive: true });
  fs.writeFileSync(path.join(p.volA, 'orders.db'), 'garbage');
  await assert.rejects(
    callJson(`${p.urlA}/v1/volumes/shop/init`, { body: { epoch: 1 } }),
    (e: unknown) =>
      isUnderstudyError(e) &&
      e.code === 'US_VOLUME_NOT_DATABASE' &&
      e.message === `${path.join(p.volA, 'orders.db')}: is not an SQLite database: restore it from a backup or remove it`,
  );
  fs.rmSync(path.join(p.volA, 'orders.db'));
  await callJson(`${p.urlA}/v1/volumes/shop/init`, { body: { epoch: 3 } });
  await assert.rejects(callJson(`${p.urlA}/v1/volumes/shop/init`, { body: { epoch: 2 } }), (e: unknown) => isUnderstudyError(e) && e.code === 'US_STALE_EPOCH');
  await assert.rejects(
    callJson(`${p.urlA}/v1/volumes/shop/init`, { body: { epoch: 'x' } }),
    (e: unknown) => isUnderstudyError(e) && e.code === 'US_BAD_REQUEST' && /epoch/.test(e.message),
  );
  await assert.rejects(callJson(`${p.urlA}/v1/volumes/nope`), (e: unknown) => isUnderstudyError(e) && e.code === 'US_NOT_FOUND');
});

test('a restarted primary processor resumes shipping (new generation)', async (t) => {
  const p = await startPair(t);
  await setupReplication(p);
  const db = new Database(path.join(p.volA, 'orders.db'));
  t.after(() => db.close());
  const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)');
  for (let i = 0; i < 50; i++) ins.run(`r${i}`, Buffer.alloc(100, i));
  await caughtUp(p);
  const gen1 = (await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop`)).replication!.generation;
  await p.a.stop();
  for (let i = 0; i < 50; i++) ins.run(`s${i}`, Buffer.alloc(100, i)); // written while the processor is down
  const config = p.a.config;
  const a2 = new StorageProcessor(config, 'array-a', testLogger(), { tuning: TUNING });
  t.after(() => a2.stop());
  await a2.start();
  const p2 = { ...p, a: a2 };
  await waitFor('resumed', async () => (await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop`)).replication?.state === 'streaming');
  await caughtUp(p2);
  const st = await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop`);
  assert.ok(st.replication!.generation > gen1);
  const scratch = tempDir('us-scratch-');
  t.after(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const rep = await checkReplicaCopy(p2, scratch);
  assert.equal(rep.rows, 100);
  assert.equal(rep.digest, primaryDigest(p.volA).digest);
});

test('an app that TRUNCATE-checkpoints the WAL itself: the replica stays exact', async (t) => {
  const p = await startPair(t);
  await setupReplication(p);
  const file = path.join(p.volA, 'orders.db');
  const db = new Database(file);
  t.after(() => db.close());
  db.pragma('busy_timeout = 20');
  const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)');
  for (let i = 0; i < 200; i++) ins.run(`a${i}`, Buffer.alloc(500, i)); // > checkpointFrames frames
  await caughtUp(p);
  // Once everything is shipped the shipper checkpoints and lets go of the old WAL:
  // from then on the app's own TRUNCATE checkpoint succeeds.
  let truncated = false;
  await waitFor(
    'app TRUNCATE succeeds',
    () => {
      const r = (db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[])[0]!;
      truncated = r.busy === 0 && fs.statSync(`${file}-wal`).size === 0;
      return truncated;
    },
    5000,
    30,
  );
  for (let i = 0; i < 100; i++) ins.run(`b${i}`, Buffer.alloc(500, i));
  await caughtUp(p);
  const scratch = tempDir('us-scratch-');
  t.after(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const rep = await checkReplicaCopy(p, scratch);
  assert.equal(rep.ok, 'ok');
  assert.equal(rep.rows, 300);
  assert.equal(rep.digest, primaryDigest(p.volA).digest);
  assert.ok(truncated);
});

test('frames a writer wrote but never published (killed before its index update) are not shipped; the next commit, which overwrites them, ships', async (t) => {
  const p = await startPair(t);
  await setupReplication(p);
  const file = path.join(p.volA, 'orders.db');
  const db = new Database(file);
  t.after(() => db.close());
  const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)');
  for (let i = 0; i < 20; i++) ins.run(`a${i}`, Buffer.alloc(300, i));
  await caughtUp(p);

  // What a writer killed between writing its commit frame and publishing it leaves: a frame
  // after the index's end that continues the chain and carries a commit mark.
  const wal = fs.readFileSync(`${file}-wal`);
  const hdr = parseWalHeader(wal)!;
  const idx = readWalIndexHeader(`${file}-shm`)!;
  const fsz = frameSize(hdr.pageSize);
  const last = wal.subarray(WAL_HEADER_SIZE + (idx.mxFrame - 1) * fsz, WAL_HEADER_SIZE + idx.mxFrame * fsz);
  const forged = Buffer.from(last);
  forged.writeUInt32BE(last.readUInt32BE(4), 4); // a commit frame (database size in pages)
  let ck = walChecksum(forged, hdr.bigEndian, [last.readUInt32BE(16), last.readUInt32BE(20)], 0, 8);
  ck = walChecksum(forged, hdr.bigEndian, ck, WAL_FRAME_HEADER_SIZE, fsz);
  forged.writeUInt32BE(ck[0], 16);
  forged.writeUInt32BE(ck[1], 20);
  const fd = fs.openSync(`${file}-wal`, 'r+');
  fs.writeSync(fd, forged, 0, fsz, WAL_HEADER_SIZE + idx.mxFrame * fsz);
  fs.closeSync(fd);
  // The fault is real: by the chain alone, frame mxFrame + 1 is a committed transaction.
  const scan = scanFrames(forged, hdr, idx.mxFrame + 1, [last.readUInt32BE(16), last.readUInt32BE(20)]);
  assert.equal(scan.lastCommitIndex, idx.mxFrame + 1);
  assert.equal(readWalIndexHeader(`${file}-shm`)!.mxFrame, idx.mxFrame, 'SQLite did not publish it');

  await new Promise((r) => setTimeout(r, 300)); // many polls (every 5 ms)
  const st = await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop`);
  assert.equal(st.replication?.lagMs, 0, 'the unpublished frame is not counted as a commit waiting to ship');

  // The app's next commits overwrite it from mxFrame + 1, as SQLite does.
  for (let i = 0; i < 20; i++) ins.run(`b${i}`, Buffer.alloc(300, i));
  await caughtUp(p);
  const scratch = tempDir('us-scratch-');
  t.after(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const rep = await checkReplicaCopy(p, scratch);
  assert.equal(rep.ok, 'ok');
  assert.equal(rep.rows, 40);
  assert.equal(rep.digest, primaryDigest(p.volA).digest);
  const after = await callJson<VolumeStatus>(`${p.urlA}/v1/volumes/shop`);
  assert.equal(after.replication?.generation, st.replication?.generation, 'no new generation was needed');
  assert.equal(after.replication?.state, 'streaming');
});

test('frames and image chunks travel as binary bodies; a peer that sends them as base64 JSON is refused, naming the version mismatch', async (t) => {
  const p = await startPair(t);
  await setupReplication(p); // frames and image chunks went through the binary routes
  const body = { epoch: 1, db: 'orders.db', generation: 1, firstIndex: 1, frames: Buffer.alloc(4120).toString('base64') };
  await assert.rejects(callJson(`${p.urlB}/v1/replica/shop/frames`, { body }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'US_PROTOCOL_MISMATCH');
    assert.match(e.message, /same version on every storage processor/);
    return true;
  });
  // A binary body whose header claims more than it holds is refused too.
  const meta = encodeURIComponent(JSON.stringify({ epoch: 1, db: 'orders.db', generation: 1, firstIndex: 1, newWalBytes: 64 }));
  await assert.rejects(callJson(`${p.urlB}/v1/replica/shop/frames`, { raw: Buffer.alloc(32), headers: { 'x-understudy-meta': meta } }), /newWalBytes 64/);
  // Replication still streams: the refusals changed nothing.
  const db = new Database(path.join(p.volA, 'orders.db'));
  t.after(() => db.close());
  db.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)').run('after', Buffer.alloc(10));
  await caughtUp(p);
});
