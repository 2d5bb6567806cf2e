import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, sleep, startCluster, waitStreaming } from '../support/cluster.ts';
import { dutyCycle } from '../support/duty-cycle.ts';
import { startReadLoad } from '../support/read-load.ts';
import { type Status, events, waitEvent } from '../support/views.ts';

/**
 * every host of the site slowed at once (the primary and its powered
 * standby stopped and continued together: a shared cause) under load. Expected: a
 * `global-slowdown` event. Not expected: a failover, a fence, a scale-out (no host
 * powered on, no reader), a change of epoch.
 */

test('global slowdown: every host slow at once → no failover, no scale-out', { timeout: 120_000 }, async (t) => {
  const cluster = await startCluster({
    slot: 27,
    hosts: [
      { name: 'h1', storage: 'array-a', boot: true },
      { name: 'h2', storage: 'array-b', boot: true },
      { name: 'h3', storage: 'array-b', boot: false },
    ],
    readonly: ['catalog.db', 'public/'],
    health: { probe: { every: '100ms', timeout: '500ms', fall: 2, rise: 1 }, performance: { p95: '100ms', window: '2s' } },
    scale: { max: 3, cooldown: '3s', stabilization: '3s' },
  });
  t.after(() => cluster.stop());
  await waitStreaming<Status>(cluster);
  const st0 = await api<Status>(cluster, '/v1/status');
  const pids = ['h1', 'h2'].map((n) => st0.hosts.find((h) => h.name === n)!.pid!);

  const load = startReadLoad(cluster.front, { rate: 120, readsPerWrite: 4, maxMs: 60_000 });
  t.after(() => load.stop());
  await sleep(1500);
  const slow = dutyCycle(pids, { stopMs: 150, runMs: 150 });
  t.after(() => slow.stop());

  const global = await waitEvent(cluster, 'global-slowdown', (e) => e.kind === 'global-slowdown', 40_000, 250);
  t.diagnostic(global.message);
  const slowHosts = global.data.slowHosts as string[];
  assert.ok(slowHosts.includes('host:h2') && slowHosts.length === 2, `both hosts named: ${slowHosts.join(', ')}`);
  // It stays slow a while longer: still nothing may happen.
  await sleep(8000);
  await slow.stop();
  await load.stop();

  const evs = await events(cluster);
  const kinds = evs.map((e) => e.kind);
  for (const k of ['scale-out-started', 'scale-out-complete', 'failover-started', 'failure-detected', 'fence-forced', 'slowdown-detected']) {
    assert.ok(
      !kinds.includes(k),
      `no ${k}: ${evs
        .filter((e) => e.kind === k)
        .map((e) => e.message)
        .join('; ')}`,
    );
  }
  const st1 = await api<Status>(cluster, '/v1/status');
  assert.equal(st1.sites[0]!.primary.host, 'h1');
  assert.equal(st1.sites[0]!.epoch, st0.sites[0]!.epoch);
  assert.deepEqual(st1.sites[0]!.readers, []);
  assert.equal(st1.hosts.find((h) => h.name === 'h3')!.power, 'off', 'no host was powered on');
  assert.equal(st1.hosts.find((h) => h.name === 'h1')!.power, 'on');
  assert.equal(st1.hosts.find((h) => h.name === 'h2')!.power, 'on');
});
