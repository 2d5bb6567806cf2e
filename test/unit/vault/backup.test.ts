import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { callJson } from '../../../src/shared/http-client.ts';
import type { PointManifest, VaultHasResponse, VaultPoint, VerificationResult } from '../../../src/shared/contracts.ts';
import { chunkPath } from '../../../src/storage/vault/chunking.ts';
import { backupNow, openOrders, startTrio } from './helpers.ts';

const CHUNK = 64 * 1024;

test('a second restore point stores only the chunks that changed', async (t) => {
  const trio = await startTrio(t);
  const p1 = await backupNow(trio);
  assert.ok(p1.bytes > 1_000_000, `orders.db should be > 1 MB, point is ${p1.bytes} bytes`);
  assert.ok(p1.newBytes > 0 && p1.newBytes <= p1.bytes);

  const db = openOrders(trio.volA);
  db.prepare('UPDATE orders SET total = total + 1 WHERE id BETWEEN 1 AND 5').run(); // one leaf page
  db.close();
  const p2 = await backupNow(trio);
  assert.equal(p2.bytes, p1.bytes);
  // The changed leaf page's chunk, and page 1's (the header's change counter): at most a few.
  assert.ok(p2.newBytes > 0 && p2.newBytes <= 3 * CHUNK, `second point added ${p2.newBytes} bytes`);

  const points = await callJson<VaultPoint[]>(`${trio.urlVault}/v1/vault/shop/points`);
  assert.deepEqual(
    points.map((p) => p.id),
    [p2.id, p1.id],
    'newest first',
  );
  const m2 = await callJson<PointManifest>(`${trio.urlVault}/v1/vault/shop/points/${p2.id}`);
  assert.deepEqual(
    m2.files.map((f) => f.path),
    ['catalog.db', 'config/site.json', 'orders.db', 'public/index.html'],
  );
  const has = await callJson<VaultHasResponse>(`${trio.urlVault}/v1/vault/shop/has`, { body: { hashes: m2.files.flatMap((f) => f.chunks) } });
  assert.deepEqual(has.missing, []);
  const v = await callJson<VerificationResult>(`${trio.urlVault}/v1/vault/shop/points/${p2.id}/verify`, { method: 'POST' });
  assert.equal(v.ok, true, JSON.stringify(v.problems));
});

test('retention keeps the newest points and collects chunks no point refers to', async (t) => {
  const trio = await startTrio(t, 1500);
  const db = openOrders(trio.volA);
  const ids: string[] = [];
  let m1: PointManifest | undefined;
  for (let i = 0; i < 3; i++) {
    db.prepare('UPDATE orders SET payload = randomblob(400) WHERE id BETWEEN ? AND ?').run(i * 300 + 1, i * 300 + 200);
    ids.push((await backupNow(trio, 2)).id);
    if (i === 0) m1 = await callJson<PointManifest>(`${trio.urlVault}/v1/vault/shop/points/${ids[0]}`);
  }
  db.close();
  const points = await callJson<VaultPoint[]>(`${trio.urlVault}/v1/vault/shop/points`);
  assert.deepEqual(
    points.map((p) => p.id),
    [ids[2], ids[1]],
  );
  const kept = new Set<string>();
  for (const id of [ids[1]!, ids[2]!]) {
    for (const f of (await callJson<PointManifest>(`${trio.urlVault}/v1/vault/shop/points/${id}`)).files) for (const h of f.chunks) kept.add(h);
  }
  const onlyFirst = m1!.files.flatMap((f) => f.chunks).filter((h) => !kept.has(h));
  assert.ok(onlyFirst.length > 0, 'the first point had chunks of its own');
  for (const h of onlyFirst) assert.equal(fs.existsSync(chunkPath(trio.vaultPath, h)), false, `chunk ${h} should be collected`);
  for (const h of kept) assert.equal(fs.existsSync(chunkPath(trio.vaultPath, h)), true, `chunk ${h} is still referenced`);
  await assert.rejects(callJson(`${trio.urlVault}/v1/vault/shop/points/${ids[0]}`), { code: 'US_NOT_FOUND' });
});

test('point verification finds a corrupted and a missing chunk', async (t) => {
  const trio = await startTrio(t, 1500);
  const p = await backupNow(trio);
  const m = await callJson<PointManifest>(`${trio.urlVault}/v1/vault/shop/points/${p.id}`);
  const orders = m.files.find((f) => f.path === 'orders.db')!;
  const bad = orders.chunks[3]!;
  const file = chunkPath(trio.vaultPath, bad);
  const data = fs.readFileSync(file);
  data.fill(0x5a, 100, 200);
  fs.writeFileSync(file, data);
  const gone = m.files.find((f) => f.path === 'public/index.html')!.chunks[0]!;
  fs.rmSync(chunkPath(trio.vaultPath, gone));

  const v = await callJson<VerificationResult>(`${trio.urlVault}/v1/vault/shop/points/${p.id}/verify`, { method: 'POST' });
  assert.equal(v.ok, false);
  assert.ok(
    v.problems.some((x) => x.file === 'orders.db' && x.kind === 'chunk-corrupt' && x.detail.includes(bad)),
    JSON.stringify(v.problems),
  );
  assert.ok(
    v.problems.some((x) => x.file === 'public/index.html' && x.kind === 'chunk-missing'),
    JSON.stringify(v.problems),
  );
  // The vault refuses a chunk whose bytes do not match its name.
  await assert.rejects(
    fetch(`${trio.urlVault}/v1/vault/chunks/${bad}`, {
      method: 'PUT',
      body: new Uint8Array(data),
      headers: { 'content-type': 'application/octet-stream' },
    }).then(async (r) => {
      if (!r.ok) throw Object.assign(new Error(await r.text()), { status: r.status });
    }),
    { status: 400 },
  );
});
