import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { callJson } from '../../../src/shared/http-client.ts';
import type { PointManifest, RestoreResponse, VolumeStatus } from '../../../src/shared/contracts.ts';
import { chunkPath } from '../../../src/storage/vault/chunking.ts';
import { backupNow, openOrders, startTrio } from './helpers.ts';

test('restore of latest-good onto another storage processor skips a damaged point; a stale epoch is refused', async (t) => {
  const trio = await startTrio(t, 2000);
  const app = openOrders(trio.volA);
  const good = await backupNow(trio);
  app.prepare("INSERT INTO orders (customer, total, payload) VALUES ('late', 1, randomblob(400))").run();
  app.close();
  const newest = await backupNow(trio);
  // Damage the newest point: a chunk of orders.db that only it holds.
  const m = await callJson<PointManifest>(`${trio.urlVault}/v1/vault/shop/points/${newest.id}`);
  const older = await callJson<PointManifest>(`${trio.urlVault}/v1/vault/shop/points/${good.id}`);
  const olderChunks = new Set(older.files.flatMap((f) => f.chunks));
  const own = m.files.find((f) => f.path === 'orders.db')!.chunks.find((h) => !olderChunks.has(h))!;
  fs.writeFileSync(chunkPath(trio.vaultPath, own), Buffer.alloc(10));

  const r = await callJson<RestoreResponse>(`${trio.urlB}/v1/volumes/shop/restore`, {
    body: { epoch: 2, point: 'latest-good', vaultUrl: trio.urlVault },
    timeoutMs: 30_000,
  });
  assert.equal(r.point, good.id);
  assert.equal(r.bytes, good.bytes);
  assert.deepEqual(
    r.skipped.map((s) => s.id),
    [newest.id],
  );
  assert.equal(r.skipped[0]!.problems[0]!.kind, 'chunk-corrupt');

  const st = await callJson<VolumeStatus>(`${trio.urlB}/v1/volumes/shop`);
  assert.equal(st.role, 'primary');
  assert.equal(st.epoch, 2);
  assert.equal(st.restore?.state, 'done');
  assert.equal(st.path, path.join(trio.root, 'b', 'volumes', 'shop'));
  const db = new Database(path.join(st.path, 'orders.db'), { readonly: true });
  try {
    assert.equal((db.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n, 2000);
    assert.deepEqual(db.pragma('quick_check'), [{ quick_check: 'ok' }]);
  } finally {
    db.close();
  }
  assert.equal(fs.readFileSync(path.join(st.path, 'public', 'index.html'), 'utf8'), '<h1>shop</h1>');

  await assert.rejects(callJson(`${trio.urlB}/v1/volumes/shop/restore`, { body: { epoch: 1, point: good.id, vaultUrl: trio.urlVault } }), {
    code: 'US_STALE_EPOCH',
  });
  await assert.rejects(callJson(`${trio.urlB}/v1/volumes/shop/restore`, { body: { epoch: 2, point: good.id, vaultUrl: trio.urlVault } }), {
    code: 'US_STALE_EPOCH',
  });
  // A point id asked for by name that does not verify is refused, and nothing changes.
  await assert.rejects(callJson(`${trio.urlB}/v1/volumes/shop/restore`, { body: { epoch: 3, point: newest.id, vaultUrl: trio.urlVault } }), {
    code: 'US_POINT_UNVERIFIED',
  });
  assert.equal((await callJson<VolumeStatus>(`${trio.urlB}/v1/volumes/shop`)).epoch, 2);
});
