import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { api, http, startCluster, waitUntil } from '../support/cluster.ts';

interface Ev { kind: string; site: string | null; message: string; data: Record<string, unknown> }

/** Overwrites the first bytes of every page but the first of a database file (a real corruption). */
function damage(file: string): void {
  const fd = fs.openSync(file, 'r+');
  const pages = Math.floor(fs.fstatSync(fd).size / 4096);
  assert.ok(pages >= 3, `${file} has pages to damage (${pages})`);
  for (let page = 1; page < pages; page++) fs.writeSync(fd, Buffer.alloc(16, 0xa5), 0, 16, page * 4096);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

test('primary and replica both corrupt: the newest good restore point is restored onto another host\'s storage and the site serves', { timeout: 180_000 }, async (t) => {
  const cluster = await startCluster({ slot: 13, backup: { every: '1s', keep: 5 } });
  t.after(() => cluster.stop());
  for (let i = 0; i < 200; i++) {
    const r = await http(`${cluster.front}/api/orders`, { method: 'POST', body: { customer: `restore-${i}`, items: [{ productId: 4, qty: 1 }] } });
    assert.equal(r.status, 201);
  }
  await waitUntil('restore points', async () => (await api<{ points: unknown[] }>(cluster, '/v1/sites/shop/backups')).points.length >= 2, 30_000, 200);
  const events = async () => (await api<{ events: Ev[] }>(cluster, '/v1/events')).events;

  // First the replica is damaged, and found so.
  damage(path.join(cluster.dir, 'array-b', 'replicas', 'shop', 'orders.db'));
  await waitUntil('the replica found corrupt', async () => (await events()).find((e) => e.kind === 'corruption-detected' && e.data.role === 'replica'), 40_000, 200);
  // Then the primary: no verified replica is left, so the controller restores from the vault.
  damage(path.join(cluster.dir, 'array-a', 'volumes', 'shop', 'orders.db'));
  const damagedAt = Date.now();
  const done = await waitUntil('restore-complete', async () => (await events()).find((e) => e.kind === 'restore-complete' || e.kind === 'restore-failed'), 60_000, 200);
  assert.equal(done.kind, 'restore-complete', done.message);
  t.diagnostic(`${done.message} (${Date.now() - damagedAt} ms after the primary was damaged)`);
  assert.ok(!(await events()).some((e) => e.kind === 'failover-complete'), 'no failover onto the corrupt replica');
  assert.equal(typeof done.data.point, 'string');
  assert.equal(typeof done.data.lostMs, 'number');
  assert.equal(done.data.to, 'h2');

  const h2 = cluster.hostAddress('h2');
  const r = await http(`${cluster.front}/api/orders?customer=restore-10`);
  assert.equal(r.status, 200);
  assert.ok(r.servedBy?.startsWith(`${h2}:`), `served by h2 on array-b (${r.servedBy})`);
  const list = Array.isArray(r.body) ? r.body : ((r.body as { orders?: unknown[] }).orders ?? []);
  assert.equal(list.length, 1, 'an order from before the restore point is there');
  const w = await http(`${cluster.front}/api/orders`, { method: 'POST', body: { customer: 'after-restore', items: [{ productId: 1, qty: 1 }] } });
  assert.equal(w.status, 201, 'the restored site takes orders');
});
