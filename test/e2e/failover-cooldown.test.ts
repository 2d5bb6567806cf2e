import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TWO_HOSTS, api, http, startCluster, waitStreaming } from '../support/cluster.ts';
import { events, waitEvent, type Status } from '../support/views.ts';

const COOLDOWN_MS = 8000;

/**
 * No flapping: a failover that would go back between the hosts of the last one, within
 * the failover cooldown (`controller.failover.cooldown`), is deferred — one event that
 * names the rule and says when it runs — and then runs; a host that failed earns trust
 * back by good probes. Two hosts only: after h1 → h2, the replica is on h1's storage
 * and h1, once trusted again, is the only target when h2 crashes (h2 → h1: the same pair).
 */
test(
  'a flap within the failover cooldown (h1 → h2, then h2 → h1): failover-deferred names the rule and when, then the failover runs once',
  { timeout: 60_000 },
  async (t) => {
    const cluster = await startCluster({
      hosts: TWO_HOSTS,
      standby: ['h2'],
      failover: { cooldown: `${COOLDOWN_MS / 1000}s` },
    });
    t.after(() => cluster.stop());
    const st0 = await waitStreaming<Status>(cluster);

    // First crash: h1 → h2, at once.
    process.kill(-st0.hosts.find((h) => h.name === 'h1')!.pid!, 'SIGKILL');
    const first = await waitEvent(cluster, 'first failover', (e) => e.kind === 'failover-complete', 20_000, 50);
    assert.equal(first.data.to, 'h2');
    const h1Trust = (await api<Status>(cluster, '/v1/status')).hosts.find((h) => h.name === 'h1')!.trust;
    assert.notEqual(h1Trust?.state, 'trusted', 'a host that failed is not trusted (it is off: no good probe)');

    // h1 back on: trusted again after rise (1) good probe of its agent.
    await api(cluster, '/v1/hosts/h1/power', { action: 'on' });
    await waitEvent(cluster, 'h1 trusted again', (e) => e.kind === 'host-trusted' && e.host === 'h1', 20_000, 50);

    // Second crash, well within the cooldown (counted from the end of the first failover).
    const st1 = await waitStreaming<Status>(cluster);
    assert.equal(st1.sites[0]!.primary.host, 'h2');
    const killAt = Date.now();
    assert.ok(killAt - first.at < COOLDOWN_MS, `still within the cooldown (${killAt - first.at} ms after the first failover)`);
    process.kill(-st1.hosts.find((h) => h.name === 'h2')!.pid!, 'SIGKILL');

    const deferred = await waitEvent(cluster, 'failover-deferred', (e) => e.kind === 'failover-deferred', 10_000, 50);
    assert.equal(deferred.data.code, 'cooldown');
    assert.match(
      deferred.message,
      new RegExp(
        `shop: automatic failover from h2 deferred: the last failover of shop was \\d+ ms ago; the cooldown is ${COOLDOWN_MS} ms \\(\\d+ ms left\\); not an independent crash: its only trusted target is h1, where the last failover came from: shop would flap between h1 and h2; retrying at .* \\(in \\d+ ms\\)`,
      ),
    );
    const retryAt = Number(deferred.data.retryAt);
    assert.ok(retryAt > killAt && retryAt <= first.at + COOLDOWN_MS + 100, `retries when the cooldown ends (${retryAt - killAt} ms after the kill)`);
    // Nothing is fenced or started before the retry.
    const early = await events(cluster);
    assert.equal(early.filter((e) => e.kind === 'failover-started').length, 1, 'no second failover before the cooldown ends');

    const second = await waitEvent(cluster, 'second failover', (e) => e.kind === 'failover-complete' && e.id > first.id, 25_000, 50);
    const all = await events(cluster);
    const started = all.filter((e) => e.kind === 'failover-started');
    assert.equal(started.length, 2, 'exactly two failovers');
    assert.ok(started[1]!.at >= retryAt - 50, `the second started at the retry (${started[1]!.at - retryAt} ms after retryAt)`);
    assert.equal(all.filter((e) => e.kind === 'failover-deferred').length, 1, 'one deferral event');
    assert.equal(all.filter((e) => e.kind === 'failure-detected').length, 2, 'one failure-detected per crash, not one per re-detection');
    assert.equal(second.data.to, 'h1', 'the old primary, trusted again, took over (failback)');
    assert.ok(!all.some((e) => e.kind === 'cooldown-waived'), 'a flap is not waived');
    const end = await api<Status>(cluster, '/v1/status');
    assert.equal(end.sites[0]!.epoch, st0.sites[0]!.epoch + 2);
    const served = await http(`${cluster.front}/healthz`);
    assert.equal(served.status, 200);
  },
);
