import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { orderTakenBy } from '../support/cluster.ts';
import { events, waitEvent } from '../support/views.ts';
import { damageReplica, ordersBeforePoint, startWithRestorePoints, waitOrdersInPoint, waitRestoredOnto } from '../support/restore-points.ts';

/**
 * the primary storage system's directory is removed (rm -rf of
 * array-a's whole path while everything runs, orders coming in). The test forces the vault
 * path: the replica on array-b is made unusable first through the storage processor's test
 * hook (UNDERSTUDY_TEST_HOOKS=1: WAL folded, page headers overwritten, copy frozen), so no
 * verified replica exists and the site must come back from its restore points.
 *
 * Detection: the storage processor of array-a finds its volume gone at its next restore
 * point (every 1 s here) or its next verification (every 10 s), whichever comes first; the
 * controller polls every 250 ms. Budget asserted: 12 s (the verification period, plus slack).
 */
const DETECTION_BUDGET_MS = 12_000;

test(
  "primary storage directory removed: detected, restored from the vault onto h2's storage, serving again, no order acknowledged before the restored point lost",
  { timeout: 90_000 },
  async (t) => {
    const { cluster, load } = await startWithRestorePoints(t, 'sr', { env: { UNDERSTUDY_TEST_HOOKS: '1' } });
    await waitOrdersInPoint(cluster, load.result.acked, 150, 20_000);

    const hook = await damageReplica(cluster);
    const arrayA = path.join(cluster.dir, 'array-a');
    fs.rmSync(arrayA, { recursive: true, force: true });
    const removedAt = Date.now();
    assert.equal(fs.existsSync(arrayA), false);
    t.diagnostic(`replica on array-b damaged and frozen (${JSON.stringify(hook)}); ${arrayA} removed`);

    const detected = await waitEvent(
      cluster,
      'the primary copy found missing',
      (e) => e.kind === 'corruption-detected' && e.data.role === 'primary',
      DETECTION_BUDGET_MS + 2000,
    );
    const detectedAfterMs = Date.now() - removedAt;
    t.diagnostic(`detected ≤ ${detectedAfterMs} ms after the removal: ${detected.message.slice(0, 200)}`);
    assert.ok(detectedAfterMs <= DETECTION_BUDGET_MS, `detected within the budget (${detectedAfterMs} ms)`);
    assert.equal(detected.data.storage, 'array-a');

    const { done, result: r, takenAt } = await waitRestoredOnto(cluster, load, 'h2', 40_000);
    const all = await events(cluster);
    const refused = all.find((e) => e.kind === 'promotion-refused');
    t.diagnostic(
      `path: ${refused ? 'failover → replica refused at promotion → restore from the vault' : 'no replica verified good (its verification failed, or none ran yet) → restore from the vault'}`,
    );
    t.diagnostic(done.message);
    assert.ok(takenAt <= removedAt, 'the restored point was taken before the removal');

    // Serving again, and taking orders.
    await orderTakenBy(cluster, 'h2', 'after-restore');

    const { before, missing } = await ordersBeforePoint(cluster.front, r.acked, takenAt);
    t.diagnostic(
      `${r.acked.length} orders acknowledged, ${before.length} before the restored point (${new Date(takenAt).toISOString()}); ${missing.length} of those missing; ${r.acked.length - before.length} after it (lost by design: the old primary wrote them into removed files)`,
    );
    assert.ok(before.length >= 150, 'the restored point holds the orders of the load');
    assert.deepEqual(missing, [], 'every order acknowledged before the restored point is there');
  },
);
