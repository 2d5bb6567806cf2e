import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { UnderstudyError } from '../../../src/shared/errors.ts';
import { cleanup } from '../config/helpers.ts';
import { failoverHarness } from '../controller/failover-fixture.ts';

after(cleanup);

/**
 * The decision a failover takes when the replica fails verification at its promotion
 * (the storage processor answers US_REPLICA_CORRUPT): a restore of the newest good
 * restore point onto the same target instead, or — without backups — a blocked runbook
 * with an alert (test/unit/controller/failover-fixture.ts).
 */
test("a replica refused at promotion is replaced by a restore of the newest good point onto the same target, at the failover's epoch; a resumed runbook does not promote again", async () => {
  const h = failoverHarness({ backup: true });
  try {
    const err = await h.run();
    assert.equal((err as UnderstudyError).code, 'US_UNREACHABLE', 'stopped where the stand-in agent refused');
    assert.deepEqual(h.calls, [
      'confirm array-a 1000',
      'demote array-a 2',
      'promote array-b 2',
      'demote array-a 2',
      'restore array-b 2 latest-good http://vault',
    ]);
    const refused = h.store.listEvents({ site: 'shop' }).find((e) => e.kind === 'promotion-refused');
    assert.ok(refused, 'the refusal is an event');
    assert.match(refused.message, /failed verification before promotion.*Restoring the newest good restore point from vault onto h2/s);
    assert.deepEqual(refused.data.problems, [{ file: 'orders.db', kind: 'quick-check', detail: 'page 3 is never used' }]);
    assert.ok(h.steps().includes('promote:error') && h.steps().includes('replica-refused:end') && h.steps().includes('restore:end'));
    const rec = h.store.getSite('shop')!;
    assert.deepEqual([rec.epoch, rec.primaryHost, rec.replicaStorage], [2, 'h2', null], 'the restored copy on h2 is the primary at the new epoch');

    // A controller restarted here resumes the same record: the journaled decision stands.
    h.calls.length = 0;
    await h.run();
    assert.deepEqual(h.calls, [], 'neither promoted nor restored again');
    assert.equal(h.kinds().filter((k) => k === 'promotion-refused').length, 1);
  } finally {
    h.close();
  }
});

test('died before the refusal was journaled: the promotion is refused again, the same way, and only then restored', async () => {
  const h = failoverHarness({ backup: true });
  try {
    h.store.journal(h.rb.id, 'drain', 'begin');
    h.store.journal(h.rb.id, 'drain', 'end');
    h.store.journal(h.rb.id, 'promote', 'begin'); // the controller died inside the promote step
    await h.run();
    assert.deepEqual(h.calls.slice(0, 2), ['demote array-a 2', 'promote array-b 2']);
    assert.equal(h.calls.filter((c) => c.startsWith('restore')).length, 1);
  } finally {
    h.close();
  }
});

test('without backups, a refused replica stops the failover blocked, with an alert that says an operator must act', async () => {
  const h = failoverHarness({ backup: false });
  try {
    const err = await h.run();
    assert.equal((err as UnderstudyError).code, 'US_REPLICA_CORRUPT');
    assert.ok(!h.calls.some((c) => c.startsWith('restore')), 'nothing to restore from');
    assert.equal(h.store.listRunbooks('shop').find((r) => r.id === h.rb.id)!.status, 'blocked');
    const alert = h.store.listEvents({ site: 'shop' }).find((e) => e.kind === 'failover-blocked');
    assert.ok(alert);
    assert.match(alert.message, /has no backups.*an operator must act/s);
    assert.equal(h.store.getSite('shop')!.state, 'down');
  } finally {
    h.close();
  }
});
