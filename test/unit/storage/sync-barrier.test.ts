import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import type { SyncBarrierResponse, VolumeStatus } from '../../../src/shared/contracts.ts';
import { callJson } from '../../../src/shared/http-client.ts';
import { parseWalHeader } from '../../../src/storage/wal-format.ts';
import { startStoragePair, waitFor } from './helpers.ts';

/**
 * The sync barrier at the storage processor (POST /v1/volumes/:site/sync-barrier):
 * every row committed before the barrier was asked is on the replica when it answers
 * `sync`, including when the WAL restarted between the commit and the barrier, or
 * several times in a row.
 */

async function startPair(t: { after: (fn: () => Promise<void>) => void }, tuning: { walPollMs: number; checkpointFrames: number; fileScanMs: number }) {
  const { a, b, urlA, urlB, root } = await startStoragePair(t, 'us-sync-barrier-', tuning);
  const seed = path.join(root, 'seed');
  fs.mkdirSync(seed);
  const db = new Database(path.join(seed, 'orders.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)');
  db.close();
  await callJson(`${urlA}/v1/volumes/shop/init`, { body: { epoch: 1, seed } });
  await callJson(`${urlA}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: urlB } } });
  const volA = path.join(root, 'a', 'volumes', 'shop');
  await waitFor('streaming', async () => (await callJson<VolumeStatus>(`${urlA}/v1/volumes/shop`)).replication?.state === 'streaming', 10_000);
  const replicaIds = async (): Promise<Set<number>> => {
    const copy = fs.mkdtempSync(path.join(root, 'copy-'));
    await b.withVolumeQuiesced('shop', async (dir) => {
      for (const f of ['orders.db', 'orders.db-wal']) if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(copy, f));
    });
    const c = new Database(path.join(copy, 'orders.db'));
    try {
      return new Set((c.prepare('SELECT id FROM orders').all() as { id: number }[]).map((r) => r.id));
    } finally {
      c.close();
      fs.rmSync(copy, { recursive: true, force: true });
    }
  };
  return { a, b, urlA, urlB, volA, replicaIds };
}

function walSalt(volA: string): string {
  try {
    const fd = fs.openSync(path.join(volA, 'orders.db-wal'), 'r');
    try {
      const buf = Buffer.alloc(32);
      fs.readSync(fd, buf, 0, 32, 0);
      const h = parseWalHeader(buf);
      return h ? `${h.salt1}:${h.salt2}` : 'none';
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return 'none';
  }
}

test('barrier under WAL restarts: a restart between the commit and the barrier never lets a row slip', async (t) => {
  // A slow idle poll (the barrier must kick the shipper) and a tiny checkpoint threshold
  // (the shipper checkpoints every few frames, so the app restarts its WAL all the time).
  const p = await startPair(t, { walPollMs: 250, checkpointFrames: 3, fileScanMs: 200 });
  const app = new Database(path.join(p.volA, 'orders.db'));
  t.after(() => {
    app.close();
  });
  app.pragma('busy_timeout = 5000');
  app.pragma('synchronous = FULL');
  const insert = app.prepare('INSERT INTO orders (payload) VALUES (randomblob(?))');
  const salts = new Set<string>();
  let restartsBetween = 0;
  for (let i = 0; i < 120; i++) {
    const before = walSalt(p.volA);
    const id = Number(insert.run(200 + (i % 7) * 900).lastInsertRowid);
    if (i % 4 === 3) {
      // The app checkpoints too (PASSIVE, as SQLite's autocheckpoint does) and writes
      // once more, which restarts the WAL if it was fully backfilled.
      app.pragma('wal_checkpoint(PASSIVE)');
      insert.run(10);
    }
    // Called in the same tick as the commit: the shipper has had no chance to look yet.
    const r = await p.a.syncBarrier('shop', 'strict', 5000);
    assert.equal(r.state, 'sync', JSON.stringify(r));
    const after = walSalt(p.volA);
    salts.add(after);
    if (after !== before) restartsBetween++;
    assert.ok((await p.replicaIds()).has(id), `row ${id} confirmed but not on the replica (WAL ${before} → ${after})`);
  }
  assert.ok(salts.size >= 5, `the WAL restarted during the test (${salts.size} generations seen)`);
  assert.ok(restartsBetween >= 3, `restarts between a commit and its barrier: ${restartsBetween}`);
});

test('concurrent barriers share a pass (group commit) and all see their rows', async (t) => {
  const p = await startPair(t, { walPollMs: 1000, checkpointFrames: 50, fileScanMs: 200 });
  const app = new Database(path.join(p.volA, 'orders.db'));
  t.after(() => {
    app.close();
  });
  const insert = app.prepare('INSERT INTO orders (payload) VALUES (randomblob(100))');
  const ids: number[] = [];
  const waits: Promise<SyncBarrierResponse>[] = [];
  for (let i = 0; i < 20; i++) {
    ids.push(Number(insert.run().lastInsertRowid));
    waits.push(callJson<SyncBarrierResponse>(`${p.urlA}/v1/volumes/shop/sync-barrier`, { body: { onReplicaLost: 'strict', timeoutMs: 5000 } }));
  }
  const t0 = Date.now();
  const rs = await Promise.all(waits);
  assert.ok(
    rs.every((r) => r.state === 'sync'),
    JSON.stringify(rs),
  );
  assert.ok(Date.now() - t0 < 900, 'kicked, not waiting for the 1 s idle poll');
  const have = await p.replicaIds();
  for (const id of ids) assert.ok(have.has(id), `row ${id}`);
});

test('a volume that is not a primary refuses the barrier; bad bodies name the field', async (t) => {
  const p = await startPair(t, { walPollMs: 10, checkpointFrames: 1000, fileScanMs: 200 });
  await assert.rejects(callJson(`${p.urlB}/v1/volumes/shop/sync-barrier`, { body: {} }), /is a replica/);
  await assert.rejects(callJson(`${p.urlA}/v1/volumes/shop/sync-barrier`, { body: { onReplicaLost: 'later' } }), /onReplicaLost/);
  await assert.rejects(callJson(`${p.urlA}/v1/volumes/nope/sync-barrier`, { body: {} }), /no volume for site nope/);
});
