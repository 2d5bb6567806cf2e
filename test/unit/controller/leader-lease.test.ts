import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LeaderLease, checkLeaseTimings } from '../../../src/controller/leader-lease.ts';
import { EtcdClient } from '../../../src/state/etcd-client.ts';

test("leader lease timings follow Patroni's rule: loop + 2 × retry ≤ ttl, ttl in whole seconds", () => {
  assert.equal(checkLeaseTimings({ ttlMs: 30_000, loopMs: 10_000, retryMs: 10_000 }), null, "Patroni's defaults");
  assert.equal(checkLeaseTimings({ ttlMs: 3000, loopMs: 300, retryMs: 1000 }), null);
  assert.match(
    checkLeaseTimings({ ttlMs: 3000, loopMs: 1500, retryMs: 1000 }) ?? '',
    /loop \(1500 ms\) \+ 2 × retry \(1000 ms\) must not exceed ttl \(3000 ms\)/,
  );
  assert.match(checkLeaseTimings({ ttlMs: 2500, loopMs: 100, retryMs: 100 }) ?? '', /whole seconds/);
  const client = new EtcdClient(['http://127.0.0.1:1'], 100);
  assert.throws(
    () => new LeaderLease({ client, key: '/l', name: 'a', ttlMs: 3000, loopMs: 2000, retryMs: 1000 }),
    (e: Error & { code?: string }) => e.code === 'US_CONFIG_INVALID' && /must not exceed ttl/.test(e.message),
  );
});

test('a lease that was never won is not held, and no answer from etcd makes it so', async () => {
  const client = new EtcdClient(['http://127.0.0.1:1'], 200); // nothing listens on port 1
  const lease = new LeaderLease({ client, key: '/l', name: 'a', ttlMs: 2000, loopMs: 200, retryMs: 400 });
  await lease.step();
  assert.equal(lease.holds(), false);
  assert.equal(lease.fencingToken(), null);
  const view = lease.status();
  assert.equal(view.role, 'unknown');
  if (view.role === 'unknown') assert.match(view.error, /no etcd member answered \/v3\/lease\/grant: http:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
  await client.close();
});
