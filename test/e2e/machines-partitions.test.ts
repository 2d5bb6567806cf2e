import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { sleep, waitUntil } from '../support/cluster.ts';
import { startLoad } from '../support/load.ts';
import { rigApi, rigCall, rigGet, startRigCluster, waitRigServing } from '../support/rig-cluster.ts';
import type { Status, Runbook } from '../support/views.ts';

const apiGet = rigApi;

const get = rigGet;

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 1000 });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

/**
 * Partitions between machines (nftables DROP in the router, both directions):
 * 1. the director is cut off from the controller: it keeps routing the site at its
 *    epoch, the controller starts no failover (the primary is healthy), and after
 *    the heal the director refuses a route of an older epoch than the one it holds;
 * 2. the primary is cut off from the director and the controller while still
 *    powered (its shop still runs): the controller fences it through its BMC (the
 *    management network is intact), then fails over to h2; once the link heals, h1
 *    is off and nothing is ever served by it again; the director then refuses the
 *    failed-over-from epoch. Then the same again from h2 back to h1.
 */
test(
  'across machines: director cut from the controller keeps routing; primary cut off while powered is fenced through its BMC, then failed over',
  { timeout: 120_000 },
  async (t) => {
    const c = await startRigCluster({ replication: 'async' });
    t.after(() => c.stop());
    await waitRigServing(c, 'h1');
    const h1 = c.hostAddress('h1');
    const directorAdmin = `http://${c.rig.address('dir')}:7071`;
    const load = startLoad(c.front, { workers: 2, maxMs: 90_000, maxRequests: 20_000 });
    t.after(() => load.stop());
    await waitUntil('orders acknowledged', async () => load.result.acked.length >= 10, 20_000);

    // 1. The director loses the controller.
    c.rig.drop('dir', 'ctl');
    c.rig.drop('ctl', 'dir');
    const cutAt = Date.now();
    const reached = await rigCall(`${directorAdmin}/healthz`, { timeoutMs: 500 }).then(
      () => true,
      () => false,
    );
    assert.ok(reached, 'the test still reaches the director (only director ↔ controller is cut)');
    await sleep(3000);
    const during = load.result.answers.filter((a) => a.at > cutAt);
    assert.ok(during.filter((a) => a.ok).length >= 10, `the director kept serving while cut off (${during.length} answers)`);
    assert.ok(
      during.every((a) => !a.ok || a.servedBy?.startsWith(`${h1}:`)),
      'every answer came from h1, the primary of its epoch',
    );
    const route = await get<{ epoch: number; primary: string }>(`${directorAdmin}/v1/routes/shop`);
    assert.equal(route.epoch, 1);
    const { runbooks: rb1 } = await apiGet<{ runbooks: Runbook[] }>(c, `/v1/runbooks?site=shop`);
    assert.equal(rb1.filter((r) => r.kind === 'failover').length, 0, 'no failover: the primary is healthy');
    c.rig.heal();
    await sleep(500);

    // 2. The primary loses the director and the controller, still powered.
    const shopPids = c.rig.pids(c.rig.ns('h1'));
    assert.ok(shopPids.length >= 2, 'h1 runs its agent and the shop');
    for (const other of ['dir', 'ctl']) {
      c.rig.drop('h1', other);
      c.rig.drop(other, 'h1');
    }
    const partitionAt = Date.now();
    await sleep(100);
    assert.ok(
      shopPids.every((p) => c.rig.pids(c.rig.ns('h1')).includes(p)),
      'cut off, h1 still runs: only its BMC can stop it',
    );
    const h2 = c.hostAddress('h2');
    await waitUntil('answers from h2', async () => load.result.answers.some((a) => a.ok && a.at > partitionAt && a.servedBy?.startsWith(`${h2}:`)), 30_000);
    assert.equal(await c.bmcPower('h1'), 'off', 'h1 was powered off through its BMC');
    assert.deepEqual(c.rig.pids(c.rig.ns('h1')), [], 'no process is left on h1');
    const { runbooks } = await apiGet<{ runbooks: Runbook[] }>(c, `/v1/runbooks?site=shop`);
    const failovers = runbooks.filter((r) => r.kind === 'failover');
    assert.equal(failovers.length, 1);
    const fo = failovers[0]!;
    const fenceEnd = fo.journal.find((j) => j.step === 'fence' && j.phase === 'end');
    const promoteBegin = fo.journal.find((j) => j.step === 'promote' && j.phase === 'begin');
    assert.ok(fenceEnd && promoteBegin && fenceEnd.at <= promoteBegin.at, 'fenced before anything was promoted');

    // The link heals: h1 stays off and never serves again.
    c.rig.heal();
    const healAt = Date.now();
    await sleep(3000);
    assert.equal(await connects(h1, 3000), false, 'nothing listens on h1 after the heal');
    assert.equal(await c.bmcPower('h1'), 'off');
    assert.ok(
      load.result.answers.some((a) => a.ok && a.at > healAt),
      'the site serves after the heal',
    );
    assert.ok(
      load.result.answers.filter((a) => a.at > partitionAt + 100).every((a) => !a.servedBy?.startsWith(`${h1}:`)),
      'no answer from h1 after it was cut off',
    );
    const st = await apiGet<Status>(c, `/v1/status`);
    assert.equal(st.sites[0]!.epoch, 2, 'one failover, no more');
    assert.equal(st.sites[0]!.primary.host, 'h2');

    // The director holds epoch 2 and refuses the older epoch of the host it failed over from.
    const stale = await rigCall(`${directorAdmin}/v1/routes/shop`, { method: 'PUT', body: { epoch: 1, primary: `${h1}:3000` } });
    assert.equal(stale.status, 409, JSON.stringify(stale.body));
    assert.equal((stale.body as { error: { code: string } }).error.code, 'US_STALE_EPOCH');
    assert.equal((await get<{ epoch: number }>(`${directorAdmin}/v1/routes/shop`)).epoch, 2);

    // Again, the other way: h1 is powered on through its BMC, becomes h2's replica, and then h2 is cut off.
    const on = await c.call('/v1/hosts/h1/power', { method: 'POST', body: { action: 'on' } });
    assert.equal(on.status, 200, JSON.stringify(on.body));
    await waitRigServing(c, 'h2');
    const h2Pids = c.rig.pids(c.rig.ns('h2'));
    for (const other of ['dir', 'ctl']) {
      c.rig.drop('h2', other);
      c.rig.drop(other, 'h2');
    }
    const secondAt = Date.now();
    await waitUntil('answers from h1 again', async () => load.result.answers.some((a) => a.ok && a.at > secondAt && a.servedBy?.startsWith(`${h1}:`)), 30_000);
    assert.equal(await c.bmcPower('h2'), 'off', 'h2 was powered off through its BMC');
    assert.ok(h2Pids.length >= 2 && c.rig.pids(c.rig.ns('h2')).length === 0, 'h2 ran until its BMC cut it');
    c.rig.heal();
    await sleep(2000);
    assert.equal(await connects(h2, 3000), false, 'nothing listens on h2 after the heal');
    const result = await load.stop();
    assert.ok(
      result.answers.filter((a) => a.at > secondAt + 100).every((a) => !a.servedBy?.startsWith(`${h2}:`)),
      'no answer from h2 after it was cut off',
    );
    const end = await apiGet<Status>(c, `/v1/status`);
    assert.equal(end.sites[0]!.epoch, 3, 'two failovers, no more');
    const stale2 = await rigCall(`${directorAdmin}/v1/routes/shop`, { method: 'PUT', body: { epoch: 2, primary: `${h2}:3000` } });
    assert.equal(stale2.status, 409, JSON.stringify(stale2.body));
    assert.equal((await get<{ epoch: number; primary: string }>(`${directorAdmin}/v1/routes/shop`)).primary, `${h1}:3000`);
  },
);
