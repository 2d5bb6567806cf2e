import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { callJson } from '../../../src/shared/http-client.ts';
import type { PointManifest, RestoreResponse, VaultPoint, VerificationResult } from '../../../src/shared/contracts.ts';
import { chunkPath } from '../../../src/storage/vault/chunking.ts';
import { retentionDrops } from '../../../src/storage/vault/vault-store.ts';
import { backupNow, openOrders, startTrio } from './helpers.ts';

test('retentionDrops: bad points do not count toward keep; bad points newer than the oldest kept stay (at most keep)', () => {
  const ids = ['p6', 'p5', 'p4', 'p3', 'p2', 'p1']; // newest first
  assert.deepEqual(retentionDrops(ids, new Set(), 2), ['p4', 'p3', 'p2', 'p1']);
  assert.deepEqual(retentionDrops(ids, new Set(['p6', 'p5']), 2), ['p2', 'p1'], 'the two newest good ones (p4, p3) stay, with the bad ones before them');
  assert.deepEqual(
    retentionDrops(ids, new Set(['p6', 'p5', 'p4', 'p3', 'p2']), 2),
    ['p4', 'p3', 'p2'],
    'the only good point stays whatever came after it; at most keep bad ones are kept',
  );
  assert.deepEqual(retentionDrops(ids, new Set(['p3']), 2), ['p4', 'p3', 'p2', 'p1'], 'a bad point older than the kept ones goes');
});

/**
 * Overwrites a chunk of the point's orders.db that no older point has, in the vault: the
 * point then fails verification. (Every change rewrites the same rows with new random
 * bytes, so no later point shares that chunk either.)
 */
async function damageOwnChunk(trio: Awaited<ReturnType<typeof startTrio>>, id: string, older: string[]): Promise<void> {
  const manifest = async (x: string) => callJson<PointManifest>(`${trio.urlVault}/v1/vault/shop/points/${x}`);
  const shared = new Set<string>();
  for (const o of older) for (const f of (await manifest(o)).files) for (const h of f.chunks) shared.add(h);
  const own = (await manifest(id)).files.find((f) => f.path === 'orders.db')!.chunks.find((h) => !shared.has(h))!;
  const file = chunkPath(trio.vaultPath, own);
  const data = fs.readFileSync(file);
  data.fill(0x5a, 0, 64);
  fs.writeFileSync(file, data);
}

test('newer points that fail verification never push the newest good point out; backups lists them as failed; latest-good restores the good one', async (t) => {
  const trio = await startTrio(t, 1500);
  const db = openOrders(trio.volA);
  t.after(() => db.close());
  const change = (_i: number) => db.prepare('UPDATE orders SET payload = randomblob(400) WHERE id BETWEEN 1 AND 200').run();
  const good = (await backupNow(trio, 2)).id;
  change(1);
  const bad1 = (await backupNow(trio, 2)).id;
  await damageOwnChunk(trio, bad1, [good]);
  const v1 = await callJson<VerificationResult>(`${trio.urlVault}/v1/vault/shop/points/${bad1}/verify`, { method: 'POST' });
  assert.equal(v1.ok, false);
  change(2);
  const bad2 = (await backupNow(trio, 2)).id; // keep 2: with the old rule this pushed `good` out
  await damageOwnChunk(trio, bad2, [good, bad1]);
  await callJson(`${trio.urlVault}/v1/vault/shop/points/${bad2}/verify`, { method: 'POST' });
  change(3);
  const unverified = (await backupNow(trio, 2)).id;

  const points = await callJson<VaultPoint[]>(`${trio.urlVault}/v1/vault/shop/points`);
  assert.deepEqual(
    points.map((p) => p.id),
    [unverified, bad2, bad1, good],
    'nothing pushed out: one unverified and one good point count toward keep 2',
  );
  assert.deepEqual(
    points.map((p) => p.verification?.ok),
    [undefined, false, false, undefined],
  );
  assert.match(points[1]!.verification!.problem!, /orders\.db: chunk-corrupt/);

  // A restore of latest-good passes over the points known bad (the unverified newest is fine).
  const r = await callJson<RestoreResponse>(`${trio.urlB}/v1/volumes/shop/restore`, {
    body: { epoch: 2, point: 'latest-good', vaultUrl: trio.urlVault },
    timeoutMs: 30_000,
  });
  assert.equal(r.point, unverified);
  await damageOwnChunk(trio, unverified, [good, bad1, bad2]);
  await callJson(`${trio.urlVault}/v1/vault/shop/points/${unverified}/verify`, { method: 'POST' });
  const r2 = await callJson<RestoreResponse>(`${trio.urlB}/v1/volumes/shop/restore`, {
    body: { epoch: 3, point: 'latest-good', vaultUrl: trio.urlVault },
    timeoutMs: 30_000,
  });
  assert.equal(r2.point, good, 'the newest good point, after three bad ones');
  assert.deepEqual(
    r2.skipped.map((s) => s.id),
    [unverified, bad2, bad1],
  );

  change(4);
  const next = (await backupNow(trio, 2)).id;
  const after = (await callJson<VaultPoint[]>(`${trio.urlVault}/v1/vault/shop/points`)).map((p) => p.id);
  assert.deepEqual(after, [next, unverified, bad2, good], 'bad ones beyond keep go, and the good one stays until keep good ones are newer');
});
