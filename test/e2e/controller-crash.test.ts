import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, http, startCluster, waitUntil } from '../support/cluster.ts';
import type { Ev, Runbook } from '../support/views.ts';

test(
  'a controller killed between the fence and the route is restarted and completes the failover with exactly one promotion',
  { timeout: 180_000 },
  async (t) => {
    // The controller waits 4 s after journaling the fence, so the kill lands after the fence and before the route.
    const cluster = await startCluster({ env: { UNDERSTUDY_FAULT_PAUSE_AFTER_STEP: 'fence:4000' } });
    t.after(() => cluster.stop());
    const h1 = cluster.hostAddress('h1');
    const status = await api<{ hosts: { name: string; pid: number }[]; sites: { epoch: number }[] }>(cluster, '/v1/status');
    const epoch = status.sites[0]!.epoch;
    process.kill(-status.hosts.find((h) => h.name === 'h1')!.pid, 'SIGKILL');

    await waitUntil(
      'the fence to be journaled',
      async () => {
        const { runbooks } = await api<{ runbooks: Runbook[] }>(cluster, '/v1/runbooks');
        return runbooks.some((r) => r.journal.some((j) => j.step === 'fence' && j.phase === 'end'));
      },
      20_000,
      20,
    );
    const { pid: controllerPid } = await api<{ pid: number }>(cluster, '/healthz');
    const { runbooks: mid } = await api<{ runbooks: Runbook[] }>(cluster, '/v1/runbooks');
    assert.ok(!mid[0]!.journal.some((j) => j.step === 'route'), 'killed before the route step');
    process.kill(controllerPid, 'SIGKILL');

    const served = await waitUntil(
      'the site to serve from another host',
      async () => {
        const r = await http(`${cluster.front}/healthz`).catch(() => null);
        return r && r.status === 200 && r.servedBy && !r.servedBy.startsWith(`${h1}:`) ? r : null;
      },
      60_000,
      50,
    );
    const after0 = await api<{ sites: { primary: { host: string; address: string } }[]; hosts: { name: string; power: string }[] }>(cluster, '/v1/status');
    assert.ok(
      served.servedBy!.startsWith(`${after0.sites[0]!.primary.address}:`),
      `served by the new primary ${after0.sites[0]!.primary.host} (${served.servedBy})`,
    );
    assert.equal(after0.hosts.find((h) => h.name === 'h1')!.power, 'off', 'the failed host stays fenced');
    const { pid: newPid } = await api<{ pid: number }>(cluster, '/healthz');
    assert.notEqual(newPid, controllerPid, 'a new controller process');

    const { runbooks } = await api<{ runbooks: Runbook[] }>(cluster, '/v1/runbooks');
    const failovers = runbooks.filter((r) => r.kind === 'failover');
    assert.equal(failovers.length, 1, 'one failover runbook, resumed rather than started again');
    await waitUntil('the runbook to finish', async () => {
      const { runbooks: rb } = await api<{ runbooks: Runbook[] }>(cluster, '/v1/runbooks');
      return rb[0]!.status === 'done';
    });
    const { runbooks: final } = await api<{ runbooks: Runbook[] }>(cluster, '/v1/runbooks');
    const promotes = final[0]!.journal.filter((j) => j.step === 'promote' && j.phase === 'begin');
    assert.equal(promotes.length, 1, 'exactly one promotion');
    const events = (await api<{ events: Ev[] }>(cluster, '/v1/events')).events;
    assert.equal(events.filter((e) => e.kind === 'promoted').length, 1);
    assert.ok(events.some((e) => e.kind === 'runbook-resumed'));
    const after = await api<{ sites: { epoch: number; state: string }[] }>(cluster, '/v1/status');
    assert.equal(after.sites[0]!.epoch, epoch + 1, 'the epoch rose once');
    assert.equal(after.sites[0]!.state, 'serving');
  },
);
