import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import { cleanup } from '../config/helpers.ts';
import { failoverHarness } from './failover-fixture.ts';

after(cleanup);

/**
 * The failover's drain step: once the old host is fenced, its storage processor ships
 * what the replica lacks before the promotion; when it cannot, the failover goes on and
 * says so. The end-to-end proof is test/e2e/tail-drain.test.ts.
 */

test('the old storage confirms: the tail is shipped before the demote and the promotion, and nothing is recorded as missing', async () => {
  const h = failoverHarness({ promote: 'ok' });
  try {
    await h.run();
    assert.deepEqual(h.calls.slice(0, 3), ['confirm array-a 1000', 'demote array-a 2', 'promote array-b 2']);
    assert.ok(!h.kinds().includes('drain-incomplete'));
    const data = h.store.listRunbooks('shop').find((r) => r.id === h.rb.id)!.data as { drain?: { shipped: boolean } };
    assert.equal(data.drain?.shipped, true);
  } finally {
    h.close();
  }
});

test('the old storage went down with the host: drain-incomplete names it and the lag, and the promotion still happens', async () => {
  const h = failoverHarness({ promote: 'ok', confirm: () => Promise.reject(new UnderstudyError('US_UNREACHABLE', 'array-a: connection refused')) });
  try {
    await h.run();
    assert.deepEqual(h.calls.slice(0, 3), ['confirm array-a 1000', 'demote array-a 2', 'promote array-b 2']);
    const ev = h.store.listEvents({ site: 'shop' }).find((e) => e.kind === 'drain-incomplete');
    assert.ok(ev, 'drain-incomplete recorded');
    assert.match(ev.message, /array-a did not ship shop's last writes.*connection refused.*promoted with what it holds/);
    assert.equal(ev.data.storage, 'array-a');
  } finally {
    h.close();
  }
});

test('drainTimeout 0s: no confirm is asked, the replica is promoted at once', async () => {
  const h = failoverHarness({ promote: 'ok', failover: '{ drainTimeout: 0s }' });
  try {
    await h.run();
    assert.deepEqual(h.calls.slice(0, 2), ['demote array-a 2', 'promote array-b 2']);
    assert.ok(!h.kinds().includes('drain-incomplete'));
  } finally {
    h.close();
  }
});

test('a resumed runbook whose drain was journaled does not drain again', async () => {
  const h = failoverHarness({ promote: 'ok' });
  try {
    h.store.journal(h.rb.id, 'drain', 'begin');
    h.store.journal(h.rb.id, 'drain', 'end');
    await h.run();
    assert.ok(!h.calls.some((c) => c.startsWith('confirm')), h.calls.join(', '));
  } finally {
    h.close();
  }
});

test('a failover away from a copy that failed verification does not ship its tail to the good replica', async () => {
  const h = failoverHarness({ promote: 'ok', evidence: { corruption: 'array-a' } });
  try {
    await h.run();
    assert.ok(!h.calls.some((c) => c.startsWith('confirm')), h.calls.join(', '));
    assert.ok(!h.kinds().includes('drain-incomplete'));
  } finally {
    h.close();
  }
});

test('replication between two of its runs is asked again within the bound; a refusal that stays is recorded once, with its attempts', async () => {
  let n = 0;
  const h = failoverHarness({
    promote: 'ok',
    confirm: () => (++n < 3 ? Promise.reject(new UnderstudyError('US_REPLICATION_STOPPED', 'replication of shop stopped')) : Promise.resolve({ position: {} })),
  });
  try {
    await h.run();
    assert.equal(h.calls.filter((c) => c.startsWith('confirm array-a')).length, 3, h.calls.join(', '));
    assert.ok(!h.kinds().includes('drain-incomplete'));
    const data = h.store.listRunbooks('shop').find((r) => r.id === h.rb.id)!.data as { drain?: { shipped: boolean; attempts?: number } };
    assert.deepEqual([data.drain?.shipped, data.drain?.attempts], [true, 3]);
  } finally {
    h.close();
  }
  const stays = failoverHarness({
    promote: 'ok',
    failover: '{ drainTimeout: 300ms }',
    confirm: () => Promise.reject(new UnderstudyError('US_NOT_REPLICATING', 'volume shop on array-a is not replicating')),
  });
  try {
    const t0 = Date.now();
    await stays.run();
    assert.ok(Date.now() - t0 < 2000, 'bounded by drainTimeout');
    const evs = stays.store.listEvents({ site: 'shop' }).filter((e) => e.kind === 'drain-incomplete');
    assert.equal(evs.length, 1);
    assert.ok(Number(evs[0]!.data.attempts) > 1, `asked more than once (${String(evs[0]!.data.attempts)})`);
    assert.ok(stays.calls.includes('promote array-b 2'), 'promoted all the same');
  } finally {
    stays.close();
  }
});

test('a target that is off is powered on before the drain and the promotion, once', async () => {
  const h = failoverHarness({ promote: 'ok', targetOff: true });
  try {
    await h.run();
    assert.deepEqual(h.calls.slice(0, 4), ['on h2', 'confirm array-a 1000', 'demote array-a 2', 'promote array-b 2']);
    assert.equal(h.calls.filter((c) => c === 'on h2').length, 1, 'the start step finds it on');
  } finally {
    h.close();
  }
});
