import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { callJson } from '../../../src/shared/http-client.ts';
import type { VerificationResult, VolumeStatus } from '../../../src/shared/contracts.ts';
import { waitFor } from '../storage/helpers.ts';
import { openOrders, startTrio } from './helpers.ts';

test('verify finds damaged pages of a primary orders.db and silently changed plain files', async (t) => {
  const trio = await startTrio(t);
  const db = openOrders(trio.volA);
  db.prepare('UPDATE orders SET total = 0 WHERE id < 10').run();
  db.pragma('wal_checkpoint(TRUNCATE)'); // the pages are in the db file, not only in the WAL
  db.close();
  const good = await callJson<VerificationResult>(`${trio.urlA}/v1/volumes/shop/verify`, { method: 'POST' });
  assert.equal(good.ok, true, JSON.stringify(good.problems));

  // Overwrite the start (b-tree header, cell pointers) of page 4, at offset 12288.
  const fd = fs.openSync(path.join(trio.volA, 'orders.db'), 'r+');
  fs.writeSync(fd, Buffer.alloc(64, 0xff), 0, 64, 3 * 4096);
  fs.closeSync(fd);
  // Same size, mtime put back: nobody "wrote" this file.
  const html = path.join(trio.volA, 'public', 'index.html');
  const st = fs.statSync(html);
  fs.writeFileSync(html, '<h1>shoq</h1>');
  fs.utimesSync(html, st.atime, st.mtime);

  const bad = await callJson<VerificationResult>(`${trio.urlA}/v1/volumes/shop/verify`, { method: 'POST' });
  assert.equal(bad.ok, false);
  assert.ok(
    bad.problems.some((p) => p.file === 'orders.db' && p.kind === 'quick-check'),
    JSON.stringify(bad.problems),
  );
  assert.ok(
    bad.problems.some((p) => p.file === 'public/index.html' && p.kind === 'checksum'),
    JSON.stringify(bad.problems),
  );
  assert.ok(!bad.problems.some((p) => p.file === 'catalog.db'));
  const status = await callJson<VolumeStatus>(`${trio.urlA}/v1/volumes/shop`);
  assert.equal(status.verification?.ok, false);
  assert.equal(status.verification?.checkedAt, bad.checkedAt);
});

test('a replica is verified on a copy taken while replication is held', async (t) => {
  const trio = await startTrio(t, 1500);
  await callJson(`${trio.urlA}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: trio.urlB } } });
  const app = openOrders(trio.volA);
  app.prepare("INSERT INTO orders (customer, total, payload) VALUES ('r', 1, randomblob(400))").run();
  await waitFor(
    'the replica to catch up',
    async () =>
      (await callJson<VolumeStatus>(`${trio.urlA}/v1/volumes/shop`)).replication?.lagMs === 0 &&
      fs.existsSync(path.join(trio.root, 'b', 'replicas', 'shop', 'orders.db')),
  );
  // Writes go on while the replica is verified.
  const writing = setInterval(() => app.prepare("INSERT INTO orders (customer, total, payload) VALUES ('w', 1, randomblob(400))").run(), 5);
  try {
    const v = await callJson<VerificationResult>(`${trio.urlB}/v1/volumes/shop/verify`, { method: 'POST' });
    assert.equal(v.ok, true, JSON.stringify(v.problems));
    const st = await callJson<VolumeStatus>(`${trio.urlB}/v1/volumes/shop`);
    assert.equal(st.role, 'replica');
    assert.equal(st.verification?.ok, true);
  } finally {
    clearInterval(writing);
    app.close();
  }
  const leftovers = fs.readdirSync(path.join(trio.root, 'b', 'replicas')).filter((n) => n !== 'shop');
  assert.deepEqual(leftovers, [], 'the verification copy is removed');
});
