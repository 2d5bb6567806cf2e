import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { callJson } from '../../../src/shared/http-client.ts';
import type { VolumeStatus } from '../../../src/shared/contracts.ts';
import { backupNow, openOrders, startTrio } from './helpers.ts';

/**
 * A restore point refused because the volume is damaged is also a failed verification of
 * the primary, recorded at once (found every `backup.every`, not every 10 s). And a database
 * whose WAL file was lost is refused: SQLite would read the db file alone, an older state
 * that passes quick_check, and that image must not become the newest "good" point.
 */
test("a database that lost its -wal is not captured (it would read as an older state); the refusal is the volume's failed verification", async (t) => {
  const trio = await startTrio(t, 500);
  const app = openOrders(trio.volA);
  t.after(() => app.close());
  app.pragma('wal_autocheckpoint = 0');
  for (let i = 0; i < 100; i++) app.prepare("INSERT INTO orders (customer, total, payload) VALUES ('in-wal', 1, randomblob(400))").run();
  await backupNow(trio);
  fs.rmSync(path.join(trio.volA, 'orders.db-wal'));
  await assert.rejects(backupNow(trio), /orders\.db-wal is missing while orders\.db-shm exists/);
  const st = await callJson<VolumeStatus>(`${trio.urlA}/v1/volumes/shop`);
  assert.equal(st.verification?.ok, false);
  assert.deepEqual(
    st.verification?.problems.map((p) => [p.file, p.kind]),
    [['orders.db', 'unreadable']],
  );
});

test('a volume whose directory is gone: no point, and a failed verification at once', async (t) => {
  const trio = await startTrio(t, 100);
  await backupNow(trio);
  fs.rmSync(trio.volA, { recursive: true, force: true });
  await assert.rejects(backupNow(trio), /the volume does not exist/);
  const st = await callJson<VolumeStatus>(`${trio.urlA}/v1/volumes/shop`);
  assert.equal(st.verification?.ok, false);
  assert.equal(st.verification?.problems[0]?.kind, 'unreadable');
});
