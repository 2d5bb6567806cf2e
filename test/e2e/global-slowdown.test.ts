import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, sleep, startCluster, waitStreaming } from '../support/cluster.ts';
import { scalingOptions, slowedUnderReads } from '../support/scaling.ts';
import { type Status, assertNoEvents, events, waitEvent } from '../support/views.ts';

/**
 * every host of the site slowed at once (the primary and its powered
 * standby stopped and continued together: a shared cause) under load. Expected: a
 * `global-slowdown` event. Not expected: a failover, a fence, a scale-out (no host
 * powered on, no reader), a change of epoch.
 */

test('global slowdown: every host slow at once → no failover, no scale-out', { timeout: 120_000 }, async (t) => {
  const cluster = await startCluster(scalingOptions({ max: 3, stabilization: '3s' }));
  t.after(() => cluster.stop());
  await waitStreaming<Status>(cluster);
  const st0 = await api<Status>(cluster, '/v1/status');
  const pids = ['h1', 'h2'].map((n) => st0.hosts.find((h) => h.name === n)!.pid!);

  const { load, slow } = await slowedUnderReads(t, cluster.front, pids, { maxMs: 60_000 });

  const global = await waitEvent(cluster, 'global-slowdown', (e) => e.kind === 'global-slowdown', 40_000, 250);
  t.diagnostic(global.message);
  const slowHosts = global.data.slowHosts as string[];
  assert.ok(slowHosts.includes('host:h2') && slowHosts.length === 2, `both hosts named: ${slowHosts.join(', ')}`);
  // It stays slow a while longer: still nothing may happen.
  await sleep(8000);
  await slow.stop();
  await load.stop();

  const evs = await events(cluster);
  assertNoEvents(evs, ['scale-out-started', 'scale-out-complete', 'failover-started', 'failure-detected', 'fence-forced', 'slowdown-detected']);
  const st1 = await api<Status>(cluster, '/v1/status');
  assert.equal(st1.sites[0]!.primary.host, 'h1');
  assert.equal(st1.sites[0]!.epoch, st0.sites[0]!.epoch);
  assert.deepEqual(st1.sites[0]!.readers, []);
  assert.equal(st1.hosts.find((h) => h.name === 'h3')!.power, 'off', 'no host was powered on');
  assert.equal(st1.hosts.find((h) => h.name === 'h1')!.power, 'on');
  assert.equal(st1.hosts.find((h) => h.name === 'h2')!.power, 'on');
});
