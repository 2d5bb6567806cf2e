import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import { callJson } from '../../../src/shared/http-client.ts';
import type { UnderstudyError } from '../../../src/shared/errors.ts';
import type { VerificationProblem, VolumeStatus } from '../../../src/shared/contracts.ts';
import { inspectWalChain } from '../../../src/storage/wal-chain-check.ts';
import { frameOffset, parseWalHeader } from '../../../src/storage/wal-format.ts';
import { readWalIndexHeader } from '../../../src/storage/wal-index.ts';
import { freePort, makeConfig, tempDir, testLogger, waitFor } from './helpers.ts';

/**
 * The live copy check (live-copy-check.ts) on two real storage processors in this
 * process: array-a ships `shop` to array-b while an "app" writes orders.db. Damage is
 * written into the files with plain fs writes, as a disk fault would; the checks run
 * every 50 ms here.
 */
const TUNING = { walPollMs: 5, checkpointFrames: 150, fileScanMs: 100 };
const LIVE = { everyMs: 50 };

interface Pair {
  a: StorageProcessor;
  b: StorageProcessor;
  urlA: string;
  urlB: string;
  root: string;
  volA: string;
  volB: string;
  restartA: () => Promise<void>;
}

async function startPair(t: { after: (fn: () => Promise<void> | void) => void }): Promise<Pair> {
  const root = tempDir('us-live-');
  const [pa, pb] = [await freePort(), await freePort()];
  const config = makeConfig([
    { name: 'array-a', path: path.join(root, 'a'), port: pa },
    { name: 'array-b', path: path.join(root, 'b'), port: pb },
  ]);
  const opts = { tuning: TUNING, liveCheck: LIVE, vault: { verifyEveryMs: 0, backupTickMs: 0 } };
  const p: Pair = {
    a: new StorageProcessor(config, 'array-a', testLogger(), opts),
    b: new StorageProcessor(config, 'array-b', testLogger(), opts),
    urlA: `http://127.0.0.1:${pa}`,
    urlB: `http://127.0.0.1:${pb}`,
    root,
    volA: path.join(root, 'a', 'volumes', 'shop'),
    volB: path.join(root, 'b', 'replicas', 'shop'),
    restartA: async () => {
      await p.a.stop();
      p.a = new StorageProcessor(config, 'array-a', testLogger(), opts);
      await p.a.start();
    },
  };
  t.after(async () => {
    await p.a.stop().catch(() => undefined);
    await p.b.stop().catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  });
  await p.a.start();
  await p.b.start();
  const seed = path.join(root, 'seed');
  fs.mkdirSync(path.join(seed, 'config'), { recursive: true });
  fs.writeFileSync(path.join(seed, 'config', 'site.json'), '{}');
  const db = new Database(path.join(seed, 'orders.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, payload BLOB NOT NULL)');
  const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(300))');
  db.transaction(() => {
    for (let i = 0; i < 400; i++) ins.run(`seed${i}`);
  })(); // a db file of ~40 pages
  db.close();
  await callJson(`${p.urlA}/v1/volumes/shop/init`, { body: { epoch: 1, seed } });
  await callJson(`${p.urlA}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: p.urlB } } });
  return p;
}

function openApp(vol: string): Database.Database {
  const db = new Database(path.join(vol, 'orders.db'));
  db.pragma('busy_timeout = 5000');
  return db;
}

function insert(db: Database.Database, n: number, tag: string): void {
  const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(300))');
  for (let i = 0; i < n; i++) ins.run(`${tag}${i}`);
}

const status = (url: string): Promise<VolumeStatus> => callJson<VolumeStatus>(`${url}/v1/volumes/shop`);

async function caughtUp(p: Pair): Promise<void> {
  await callJson(`${p.urlA}/v1/volumes/shop/confirm`, { body: { timeoutMs: 10_000 }, timeoutMs: 15_000 });
}

/** Waits for a failed verification of `url`'s copy with a problem of `kind`; returns it. */
async function problemAt(url: string, kind: VerificationProblem['kind'], timeoutMs = 5000): Promise<VerificationProblem> {
  let found: VerificationProblem | undefined;
  await waitFor(
    `a ${kind} problem at ${url}`,
    async () => {
      found = (await status(url)).verification?.problems.find((q) => q.kind === kind);
      return !!found;
    },
    timeoutMs,
  );
  return found!;
}

/** Junk over 16 KiB in the middle of the committed frames of `file`'s WAL; returns the first frame hit. */
function junkWal(file: string, committedFrames: number): number {
  const frame = Math.max(1, Math.floor(committedFrames / 2));
  const fd = fs.openSync(`${file}-wal`, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(16 * 1024, 0xa7), 0, 16 * 1024, frameOffset(4096, frame) + 512);
  } finally {
    fs.closeSync(fd);
  }
  return frame;
}

/** Junk over two pages in the middle of `file` that no frame of its live WAL holds; returns the first page. */
function junkPages(file: string, walFrames: number): number {
  const shadowed = walFrames > 0 ? inspectWalChain(file, 'x', { committed: { ...saltsOf(file), frames: walFrames } }).shadowed! : new Set<number>();
  const pages = Math.floor(fs.statSync(file).size / 4096);
  let page = Math.floor(pages / 2);
  while (shadowed.has(page) || shadowed.has(page + 1)) page++;
  assert.ok(page + 1 <= pages, 'unshadowed pages to damage');
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(8192, 0x3c), 0, 8192, (page - 1) * 4096);
  } finally {
    fs.closeSync(fd);
  }
  return page;
}

function saltsOf(file: string): { salt1: number; salt2: number } {
  const h = parseWalHeader(fs.readFileSync(`${file}-wal`).subarray(0, 32));
  return h ? { salt1: h.salt1, salt2: h.salt2 } : { salt1: 0, salt2: 0 };
}

/** A fresh open of a copy of the replica's orders.db (+ -wal), taken while its processor is quiesced. */
async function replicaRows(p: Pair): Promise<number> {
  const dest = fs.mkdtempSync(path.join(p.root, 'copy-'));
  try {
    await p.b.withVolumeQuiesced('shop', async (dir) => {
      for (const f of ['orders.db', 'orders.db-wal']) if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(dest, f));
    });
    const db = new Database(path.join(dest, 'orders.db'));
    try {
      return (db.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } finally {
    fs.rmSync(dest, { recursive: true, force: true });
  }
}

const APP_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.betterSqlite);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 5000');
const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(?))');
let rows = 0, txns = 0, seed = 11;
const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
const deadline = Date.now() + workerData.maxMs;
while (Date.now() < deadline) {
  const k = txns % 25 === 0 ? 40 : 1 + rnd(4);
  db.transaction(() => { for (let i = 0; i < k; i++) ins.run('w' + rows++, 50 + rnd(3000)); })();
  txns++;
  if (txns % 40 === 0) { db.pragma('busy_timeout = 20'); db.pragma('wal_checkpoint(TRUNCATE)'); db.pragma('busy_timeout = 5000'); }
  if (txns % 10 === 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
}
db.close();
parentPort.postMessage({ rows, txns });
`;

test(
  "under load, with checkpoints, WAL restarts and the app's own TRUNCATE checkpoints, the live check never reports a healthy copy",
  { timeout: 60_000 },
  async (t) => {
    const p = await startPair(t);
    await caughtUp(p);
    const worker = new Worker(APP_WORKER, {
      eval: true,
      workerData: { file: path.join(p.volA, 'orders.db'), betterSqlite: path.join(process.cwd(), 'node_modules', 'better-sqlite3'), maxMs: 5000 },
    });
    t.after(() => worker.terminate());
    const done = new Promise<{ rows: number; txns: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    let looks = 0;
    let stop = false;
    const watched = (async () => {
      while (!stop) {
        for (const url of [p.urlA, p.urlB]) {
          const v = (await status(url)).verification;
          if (v) {
            looks++;
            assert.equal(v.ok, true, `${url}: ${JSON.stringify(v.problems)}`);
          }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const app = await done;
    await caughtUp(p);
    // A few rounds after the load, on the settled copies (the page record covers the whole db file).
    const at = Date.now();
    await waitFor(
      'rounds after the load',
      async () => ((await status(p.urlA)).verification?.checkedAt ?? 0) > at + 150 && ((await status(p.urlB)).verification?.checkedAt ?? 0) > at + 150,
    );
    stop = true;
    await watched;
    const seeds = (await status(p.urlA)).replication?.seeds ?? [];
    t.diagnostic(`${app.txns} transactions, ${app.rows} rows; ${looks} looks at a verification; generations ${seeds.map((s) => s.generation).join(',')}`);
    assert.ok(looks > 20, `the checks ran throughout (${looks} looks)`);
    for (const url of [p.urlA, p.urlB]) assert.equal((await status(url)).verification?.ok, true);
    assert.equal(await replicaRows(p), 400 + app.rows);
  },
);

test(
  "damage in the primary's WAL: reported with the frame at once; never checkpointed nor shipped as a new generation; the replica keeps every commit",
  { timeout: 60_000 },
  async (t) => {
    const p = await startPair(t);
    const app = openApp(p.volA);
    t.after(() => app.close());
    insert(app, 120, 'o'); // below checkpointFrames: every frame still in the WAL
    await caughtUp(p);
    const mx = readWalIndexHeader(path.join(p.volA, 'orders.db-shm'))!.mxFrame;
    const hit = junkWal(path.join(p.volA, 'orders.db'), mx);
    const t0 = Date.now();
    const problem = await problemAt(p.urlA, 'wal-frame');
    t.diagnostic(`found in ${Date.now() - t0} ms: ${problem.detail}`);
    assert.equal(problem.file, 'orders.db-wal');
    assert.match(problem.detail, new RegExp(`^frame ${hit} \\(page \\d+\\) does not verify`));
    assert.equal((await status(p.urlB)).verification?.ok, true, 'the replica is not blamed');

    // New commits still ship (they verify); past checkpointFrames the shipper does not checkpoint the damaged WAL.
    insert(app, 100, 'after');
    await caughtUp(p);
    const wal = readWalIndexHeader(path.join(p.volA, 'orders.db-shm'))!;
    assert.ok(wal.mxFrame > mx + 100, `no checkpoint restarted the WAL (mxFrame ${wal.mxFrame})`);
    assert.equal(await replicaRows(p), 400 + 220, 'the replica holds every commit, before and after the damage');

    // A restart of the processor (its shipper starts with a new generation): refused, the replica untouched.
    await p.restartA();
    await waitFor(
      'the new generation refused',
      async () => /no new generation is shipped from a damaged copy/.test((await status(p.urlA)).replication?.lastError ?? ''),
      10_000,
    );
    assert.match((await problemAt(p.urlA, 'wal-frame')).detail, new RegExp(`^frame ${hit} `));
    assert.equal(await replicaRows(p), 400 + 220, 'the replica was not replaced by the damaged copy');
  },
);

test(
  'after a power loss the app recovers the damaged WAL short and writes on: the persisted position tells; no generation, the replica untouched',
  { timeout: 60_000 },
  async (t) => {
    const p = await startPair(t);
    let app = openApp(p.volA);
    insert(app, 120, 'o');
    await caughtUp(p);
    const at = Date.now();
    await waitFor('a round persisted the confirmed position', async () => ((await status(p.urlA)).verification?.checkedAt ?? 0) > at + 60);
    // The disk as a power loss leaves it: db and WAL as they are now, no -shm in memory any more.
    const image = path.join(p.root, 'crash');
    fs.mkdirSync(image);
    for (const f of ['orders.db', 'orders.db-wal']) fs.copyFileSync(path.join(p.volA, f), path.join(image, f));
    const mx = readWalIndexHeader(path.join(p.volA, 'orders.db-shm'))!.mxFrame;
    await p.a.stop();
    app.close();
    for (const f of ['orders.db', 'orders.db-wal']) fs.copyFileSync(path.join(image, f), path.join(p.volA, f));
    fs.rmSync(path.join(p.volA, 'orders.db-shm'), { force: true });
    junkWal(path.join(p.volA, 'orders.db'), mx);
    // The app comes back first: SQLite's recovery ends the WAL at the damage, and it writes on.
    app = openApp(p.volA);
    t.after(() => app.close());
    const n = (app.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n;
    assert.ok(n < 520, `the app reads ${n} of 520 orders: the fault is real`);
    insert(app, 5, 'late');
    assert.deepEqual(
      inspectWalChain(path.join(p.volA, 'orders.db'), 'orders.db', {
        committed: { ...saltsOf(path.join(p.volA, 'orders.db')), frames: readWalIndexHeader(path.join(p.volA, 'orders.db-shm'))!.mxFrame },
      }).problems,
      [],
      'by itself the recovered WAL verifies',
    );

    await p.restartA();
    const problem = await problemAt(p.urlA, 'wal-frame');
    t.diagnostic(problem.detail);
    assert.match(problem.detail, /shipped and confirmed/);
    await waitFor(
      'the new generation refused',
      async () => /no new generation is shipped from a damaged copy/.test((await status(p.urlA)).replication?.lastError ?? ''),
      10_000,
    );
    assert.equal(await replicaRows(p), 520, 'the replica keeps every confirmed commit');
  },
);

test(
  "damage in the replica's WAL, the primary idle: reported, the replica forgotten and re-seeded by the heartbeat; nothing lost, the primary not blamed",
  { timeout: 60_000 },
  async (t) => {
    const p = await startPair(t);
    const app = openApp(p.volA);
    t.after(() => app.close());
    insert(app, 120, 'o');
    await caughtUp(p);
    const gen0 = (await status(p.urlA)).replication!.generation;
    // The replica's committed frames are the primary's (the same WAL, the same frame numbers).
    const mx = readWalIndexHeader(path.join(p.volA, 'orders.db-shm'))!.mxFrame;
    const hit = junkWal(path.join(p.volB, 'orders.db'), mx);
    const problem = await problemAt(p.urlB, 'wal-frame');
    assert.match(problem.detail, new RegExp(`^frame ${hit} \\(page \\d+\\) does not verify`));
    await waitFor(
      'a new generation re-seeds the replica',
      async () => (await status(p.urlA)).replication!.generation > gen0 && (await status(p.urlB)).verification?.ok === true,
      10_000,
    );
    assert.equal(await replicaRows(p), 520, 'the re-seeded replica holds every commit');
    assert.equal((await status(p.urlA)).verification?.ok, true, 'the primary was never blamed');
  },
);

test('damaged pages of the db file, on the replica (re-seeded) and on the primary (reported as pages)', { timeout: 60_000 }, async (t) => {
  const p = await startPair(t);
  const app = openApp(p.volA);
  t.after(() => app.close());
  insert(app, 30, 'o');
  await caughtUp(p);
  const gen0 = (await status(p.urlA)).replication!.generation;
  const mx = readWalIndexHeader(path.join(p.volA, 'orders.db-shm'))!.mxFrame;
  const pageB = junkPages(path.join(p.volB, 'orders.db'), mx);
  const onB = await problemAt(p.urlB, 'page');
  assert.equal(onB.file, 'orders.db');
  assert.match(onB.detail, new RegExp(`^page\\(s\\) ${pageB}-${pageB + 1} `));
  await waitFor(
    'the replica re-seeded',
    async () => (await status(p.urlA)).replication!.generation > gen0 && (await status(p.urlB)).verification?.ok === true,
    10_000,
  );

  const pageA = junkPages(path.join(p.volA, 'orders.db'), readWalIndexHeader(path.join(p.volA, 'orders.db-shm'))!.mxFrame);
  const onA = await problemAt(p.urlA, 'page');
  assert.match(onA.detail, new RegExp(`^page\\(s\\) ${pageA}-${pageA + 1} `));
  assert.equal(await replicaRows(p), 430);
});

test('a replica whose WAL is damaged is not promoted: the fold would drop commits (US_REPLICA_CORRUPT, wal-frame)', { timeout: 60_000 }, async (t) => {
  const p = await startPair(t);
  const app = openApp(p.volA);
  insert(app, 120, 'o');
  await caughtUp(p);
  const mx = readWalIndexHeader(path.join(p.volA, 'orders.db-shm'))!.mxFrame;
  app.close();
  await p.a.stop(); // the primary is gone (a failover's fence), so nothing re-seeds the replica
  junkWal(path.join(p.volB, 'orders.db'), mx);
  let err: UnderstudyError | undefined;
  try {
    await callJson(`${p.urlB}/v1/volumes/shop/promote`, { body: { epoch: 2 } });
  } catch (e) {
    err = e as UnderstudyError;
  }
  assert.equal(err?.code, 'US_REPLICA_CORRUPT', err?.message);
  assert.match(err!.message, /orders\.db-wal: wal-frame \(frame \d+ \(page \d+\) does not verify/);
  const st = await status(p.urlB);
  assert.deepEqual([st.role, st.epoch], ['replica', 1], 'not promoted, not fenced');
  assert.ok(fs.existsSync(path.join(p.volB, 'orders.db-wal')), 'the WAL was not folded');
});
