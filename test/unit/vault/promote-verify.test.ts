import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { callJson } from '../../../src/shared/http-client.ts';
import type { VolumeStatus } from '../../../src/shared/contracts.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import { waitFor } from '../storage/helpers.ts';
import { openOrders, startTrio } from './helpers.ts';

/**
 * Verification before any promotion: the storage processor folds the replica,
 * checks it (quick_check in place, plain files against the record) and refuses to make
 * a damaged copy primary, changing nothing — the same promotion is refused the same way
 * again. The damage goes through the test hook (UNDERSTUDY_TEST_HOOKS=1), which folds the
 * WAL first and freezes the copy, so nothing shadows or heals it.
 */
async function replicating(t: Parameters<typeof startTrio>[0]) {
  const trio = await startTrio(t, 1500);
  await callJson(`${trio.urlA}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: trio.urlB } } });
  const app = openOrders(trio.volA);
  for (let i = 0; i < 50; i++) app.prepare("INSERT INTO orders (customer, total, payload) VALUES ('p', 1, randomblob(400))").run();
  await waitFor(
    'the replica to catch up',
    async () =>
      (await callJson<VolumeStatus>(`${trio.urlA}/v1/volumes/shop`)).replication?.lagMs === 0 &&
      fs.existsSync(path.join(trio.root, 'b', 'replicas', 'shop', 'orders.db')),
  );
  return { trio, app };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as UnderstudyError).code;
  }
}

test('a damaged replica is not promoted; the refusal changes nothing and repeats; an intact replica is promoted', async (t) => {
  process.env.UNDERSTUDY_TEST_HOOKS = '1';
  t.after(() => {
    delete process.env.UNDERSTUDY_TEST_HOOKS;
  });
  const { trio, app } = await replicating(t);
  t.after(() => app.close());

  const damaged = await callJson<{ pagesDamaged: number }>(`${trio.urlB}/v1/test/volumes/shop/damage`, { body: { db: 'orders.db' } });
  assert.ok(damaged.pagesDamaged > 10, `${damaged.pagesDamaged} pages damaged`);
  // Frozen: a replication write is refused (nothing can heal the copy).
  app.prepare("INSERT INTO orders (customer, total, payload) VALUES ('after', 1, randomblob(400))").run();

  let err: UnderstudyError | undefined;
  try {
    await callJson(`${trio.urlB}/v1/volumes/shop/promote`, { body: { epoch: 2 } });
  } catch (e) {
    err = e as UnderstudyError;
  }
  assert.equal(err?.code, 'US_REPLICA_CORRUPT');
  assert.match(err!.message, /failed verification before promotion \(orders\.db: quick-check/);
  assert.match(err!.message, /understudy restore shop/);
  const st = await callJson<VolumeStatus>(`${trio.urlB}/v1/volumes/shop`);
  assert.equal(st.role, 'replica', 'not promoted');
  assert.equal(st.epoch, 1, 'not fenced either: the refusal changes nothing');
  assert.equal(st.verification?.ok, false, "the failed check is the volume's latest verification");
  assert.ok(!fs.existsSync(path.join(trio.root, 'b', 'volumes', 'shop')), 'not moved into place');
  assert.equal(
    await codeOf(callJson(`${trio.urlB}/v1/volumes/shop/promote`, { body: { epoch: 2 } })),
    'US_REPLICA_CORRUPT',
    'the same promotion is refused the same way again',
  );
});

test('an intact replica is verified and promoted; the test hook does not exist without UNDERSTUDY_TEST_HOOKS', async (t) => {
  const { trio, app } = await replicating(t);
  t.after(() => app.close());
  assert.equal(await codeOf(callJson(`${trio.urlB}/v1/test/volumes/shop/damage`, { body: {} })), 'US_NOT_FOUND');
  app.close();
  const res = await callJson<{ role: string; epoch: number }>(`${trio.urlB}/v1/volumes/shop/promote`, { body: { epoch: 2 } });
  assert.deepEqual([res.role, res.epoch], ['primary', 2]);
  const st = await callJson<VolumeStatus>(`${trio.urlB}/v1/volumes/shop`);
  assert.equal(st.verification?.ok, true, 'checked before the promotion');
});
