import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { callJson } from '../../../src/shared/http-client.ts';
import type { VaultPoint, VolumeStatus } from '../../../src/shared/contracts.ts';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import { inspectWalChain } from '../../../src/storage/wal-chain-check.ts';
import { frameOffset } from '../../../src/storage/wal-format.ts';
import { readWalIndexHeader } from '../../../src/storage/wal-index.ts';
import { testLogger, waitFor } from '../storage/helpers.ts';
import { backupNow, openOrders, startTrio, type Trio } from './helpers.ts';

/**
 * No restore point of a copy damaged at rest (volume-capture.ts, copyDamage): the image a
 * capture serializes is consistent and passes quick_check even when the WAL under it is
 * damaged, or was already recovered short by SQLite after a restart. The capture checks the
 * WAL chain, the position the replica confirmed, and the image's pages against what was
 * shipped; a refusal is the primary's failed verification at once.
 */
async function replicatingTrio(t: Parameters<typeof startTrio>[0]): Promise<{ trio: Trio; app: Database.Database }> {
  const trio = await startTrio(t, 300);
  await callJson(`${trio.urlA}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: trio.urlB } } });
  const app = openOrders(trio.volA);
  app.pragma('wal_autocheckpoint = 0');
  for (let i = 0; i < 120; i++) app.prepare("INSERT INTO orders (customer, total, payload) VALUES ('w', 1, randomblob(400))").run();
  await callJson(`${trio.urlA}/v1/volumes/shop/confirm`, { body: { timeoutMs: 10_000 }, timeoutMs: 15_000 });
  return { trio, app };
}

const points = (trio: Trio): Promise<VaultPoint[]> => callJson<VaultPoint[]>(`${trio.urlVault}/v1/vault/shop/points`);

function junk(file: string, offset: number, bytes: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(bytes, 0x6b), 0, bytes, offset);
  } finally {
    fs.closeSync(fd);
  }
}

test("a damaged WAL frame or a damaged db page: no restore point, and the primary's verification fails at once", async (t) => {
  const { trio, app } = await replicatingTrio(t);
  t.after(() => app.close());
  const good = await backupNow(trio);
  const db = path.join(trio.volA, 'orders.db');
  const idx = readWalIndexHeader(`${db}-shm`)!;
  junk(`${db}-wal`, frameOffset(4096, Math.floor(idx.mxFrame / 2)) + 300, 16 * 1024);
  assert.equal((app.pragma('quick_check') as { quick_check: string }[])[0]!.quick_check, 'ok', 'SQLite does not see it');
  await assert.rejects(backupNow(trio), /orders\.db-wal: frame \d+ \(page \d+\) does not verify.*no restore point is taken of it/);
  const st = await callJson<VolumeStatus>(`${trio.urlA}/v1/volumes/shop`);
  assert.equal(st.verification?.ok, false);
  assert.equal(st.verification?.problems[0]?.kind, 'wal-frame');
  assert.deepEqual(
    (await points(trio)).map((p) => p.id),
    [good.id],
    'the good point stays the newest',
  );
});

test('a damaged page of the db file that no WAL frame supersedes: no restore point', async (t) => {
  const { trio, app } = await replicatingTrio(t);
  t.after(() => app.close());
  const db = path.join(trio.volA, 'orders.db');
  const idx = readWalIndexHeader(`${db}-shm`)!;
  const shadowed = inspectWalChain(db, 'orders.db', { committed: { salt1: idx.salt1, salt2: idx.salt2, frames: idx.mxFrame } }).shadowed!;
  const pages = Math.floor(fs.statSync(db).size / 4096);
  let page = Math.floor(pages / 2);
  while (shadowed.has(page)) page++;
  // Inside the rows of a leaf page (past its header and cell pointers): quick_check cannot see it.
  junk(db, (page - 1) * 4096 + 2048, 64);
  await assert.rejects(backupNow(trio), new RegExp(`orders\\.db: page\\(s\\) ${page} .*differ from what was shipped`));
  const st = await callJson<VolumeStatus>(`${trio.urlA}/v1/volumes/shop`);
  assert.equal(st.verification?.problems.find((p) => p.kind === 'page')?.file, 'orders.db');
});

test('a copy SQLite recovered short after a power loss, written on since: quick_check passes its image, the confirmed position refuses it', async (t) => {
  const { trio, app } = await replicatingTrio(t);
  const at = Date.now();
  await waitFor(
    'the live check persisted the confirmed position',
    async () => ((await callJson<VolumeStatus>(`${trio.urlA}/v1/volumes/shop`)).verification?.checkedAt ?? 0) > at,
    5000,
  );
  const db = path.join(trio.volA, 'orders.db');
  const idx = readWalIndexHeader(`${db}-shm`)!;
  // The disk after a power loss: db and WAL as they are, no -shm; then damage in the WAL.
  const image = fs.mkdtempSync(path.join(trio.root, 'crash-'));
  for (const f of ['orders.db', 'orders.db-wal']) fs.copyFileSync(path.join(trio.volA, f), path.join(image, f));
  const config = trio.a.config;
  await trio.a.stop();
  app.close();
  for (const f of ['orders.db', 'orders.db-wal']) fs.copyFileSync(path.join(image, f), path.join(trio.volA, f));
  fs.rmSync(`${db}-shm`, { force: true });
  junk(`${db}-wal`, frameOffset(4096, Math.floor(idx.mxFrame / 2)) + 300, 16 * 1024);
  // The shop comes back first: recovery ends the WAL at the damage; it takes new orders.
  const shop = openOrders(trio.volA);
  t.after(() => shop.close());
  for (let i = 0; i < 5; i++) shop.prepare("INSERT INTO orders (customer, total, payload) VALUES ('late', 1, randomblob(400))").run();
  const rows = (shop.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n;
  assert.ok(rows < 300 + 120, `recovered short: ${rows} rows`);
  assert.equal((shop.pragma('integrity_check') as { integrity_check: string }[])[0]!.integrity_check, 'ok', 'a consistent, shorter database');

  const restarted = new StorageProcessor(config, 'array-a', testLogger(), { vault: { verifyEveryMs: 0, backupTickMs: 0, gcGraceMs: 0 } });
  trio.a = restarted;
  t.after(() => restarted.stop()); // the trio's own cleanup stops the processor it started, not this one
  await restarted.start();
  await assert.rejects(backupNow(trio), /shipped and confirmed.*no restore point is taken of it/);
  assert.deepEqual(await points(trio), [], 'no point of the truncated copy');
});
