import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { sleep, waitUntil } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { rigApi, startRigCluster, waitRigServing } from '../support/rig-cluster.ts';
import type { Status, Runbook } from '../support/views.ts';

const get = rigApi;

/**
 * Every part on its own machine (network namespaces behind a router), each host's
 * power behind an ipmi_sim BMC on the management network. Two crash failovers under
 * a sync-mode load: first the primary's power is cut through its BMC by the test (the
 * host's every process dies), then, after the old host is powered on again through
 * the API and has become the replica, the new primary's machine crashes (every
 * process in its namespace SIGKILLed). Each time the controller confirms the cut
 * through the BMC before it promotes, and no acknowledged order is lost. Then the
 * storage nodes lose each other: the volume degrades (sync.onReplicaLost: degrade),
 * orders are still acknowledged, and it is in sync again after the heal.
 */
test(
  'across machines: crash failovers under sync load, fenced through IPMI, lose no acknowledged order; storage nodes cut apart degrade sync, then recover',
  { timeout: 120_000 },
  async (t) => {
    const c = await startRigCluster({ replication: 'sync' });
    t.after(() => c.stop());
    await waitRigServing(c, 'h1');
    assert.equal(await c.bmcPower('h1'), 'on');
    assert.equal(await c.bmcPower('h2'), 'on');
    // The site's processes run on the host machines, not on the controller's.
    assert.ok(c.rig.pids(c.rig.ns('h1')).length >= 2, 'h1 runs its agent and the shop');
    assert.equal(c.rig.pids(c.rig.ns('ctl')).length, 1, 'the controller machine runs the controller only');
    for (const pid of c.rig.pids(c.rig.ns('h1'))) {
      assert.ok(!fs.readFileSync(`/proc/${pid}/environ`, 'utf8').includes('UNDERSTUDY_TOKEN='), `no process on h1 holds the controller's token (pid ${pid})`);
    }
    assert.equal((await c.call('/v1/status', { token: null })).status, 401, 'the controller, listening beyond loopback, refuses a call without its token');

    const load = startLoad(c.front, { workers: 4, maxMs: 80_000, maxRequests: 20_000 });
    t.after(() => load.stop());
    await waitUntil('orders acknowledged through the director', async () => load.result.acked.length >= 20, 20_000);

    // Round 1: the test cuts h1's power through its BMC, from the management network.
    const pw = path.join(c.dir, 'bmc-password');
    const cutAt = Date.now();
    execFileSync('ipmitool', ['-I', 'lanplus', '-H', c.rig.bmcAddress('h1'), '-U', 'admin', '-f', pw, '-C', '3', 'chassis', 'power', 'off'], {
      encoding: 'utf8',
    });
    assert.deepEqual(c.rig.pids(c.rig.ns('h1')), [], 'the power cut was real: nothing runs on h1');
    await waitUntil(
      'answers from h2',
      async () => load.result.answers.some((a) => a.ok && a.at > cutAt && a.servedBy?.startsWith(`${c.hostAddress('h2')}:`)),
      30_000,
    );
    const ackedBeforeRound2 = load.result.acked.length;

    // h1 comes back through its BMC (the API's power on) and becomes the replica of h2.
    const on = await c.call('/v1/hosts/h1/power', { method: 'POST', body: { action: 'on' } });
    assert.equal(on.status, 200, JSON.stringify(on.body));
    await waitUntil('h1 powered again', async () => (await c.bmcPower('h1')) === 'on' && c.rig.pids(c.rig.ns('h1')).length > 0, 10_000);
    await waitRigServing(c, 'h2');
    await waitUntil('more orders acknowledged on h2', async () => load.result.acked.length > ackedBeforeRound2 + 20, 20_000);

    // Round 2: h2's machine crashes (every process in it killed).
    const crashAt = Date.now();
    c.rig.killAll(c.rig.ns('h2'));
    assert.deepEqual(c.rig.pids(c.rig.ns('h2')), [], 'the crash was real: nothing runs on h2');
    await waitUntil(
      'answers from h1 again',
      async () => load.result.answers.some((a) => a.ok && a.at > crashAt && a.servedBy?.startsWith(`${c.hostAddress('h1')}:`)),
      30_000,
    );
    await waitUntil('orders acknowledged after the second failover', async () => load.result.acked.some((o) => o.ackAt > crashAt + 500), 20_000);

    // The storage nodes lose each other: sync mode follows its setting (degrade after sync.timeout), then recovers.
    await waitRigServing(c, 'h1');
    c.rig.drop('sa', 'sb');
    c.rig.drop('sb', 'sa');
    const splitAt = Date.now();
    await waitUntil('sync degraded', async () => (await get<Status>(c, '/v1/status')).sites[0]!.replication.sync === 'degraded', 20_000, 100);
    await waitUntil('orders acknowledged while degraded', async () => load.result.acked.filter((o) => o.ackAt > splitAt + 2500).length >= 5, 20_000);
    c.rig.heal();
    await waitUntil('sync again after the heal', async () => (await get<Status>(c, '/v1/status')).sites[0]!.replication.sync === 'sync', 30_000, 100);

    const result = await load.stop();
    const missing = await missingOrders(c.front, result.acked);
    const by503 = result.postsFailed.filter((f) => f.status === 503).length;
    t.diagnostic(
      `orders acked ${result.acked.length}, lost ${missing.length}, POSTs answered 503 ${by503}, other POST failures ${result.postsFailed.length - by503}, GETs ok ${result.getsOk}, failed ${result.getsFailed.length}`,
    );
    assert.deepEqual(missing, [], 'every order that got 201 is present');
    assert.equal(result.postsFailed.length, by503, 'a POST that did not get 201 got 503 (never a silent drop or another error)');

    const st = await get<Status>(c, '/v1/status');
    assert.equal(st.sites[0]!.epoch, 3, 'two failovers, no more');
    assert.equal(st.sites[0]!.primary.host, 'h1');
    assert.ok(
      st.hosts.every((h) => h.pid === null),
      'no pid is known for a host on another machine',
    );
    assert.equal(await c.bmcPower('h2'), 'off', 'h2 stays off: it is fenced');
    assert.equal(st.sites[0]!.replication.sync, 'sync');

    // Each failover confirmed the cut through the BMC before it promoted anything.
    const { runbooks } = await get<{ runbooks: Runbook[] }>(c, '/v1/runbooks?site=shop');
    const failovers = runbooks.filter((r) => r.kind === 'failover');
    assert.deepEqual(
      failovers.map((r) => [r.data.oldPrimary, r.data.target, r.status]),
      [
        ['h1', 'h2', 'done'],
        ['h2', 'h1', 'done'],
      ],
    );
    for (const rb of failovers) {
      const fenceEnd = rb.journal.find((j) => j.step === 'fence' && j.phase === 'end');
      const promoteBegin = rb.journal.find((j) => j.step === 'promote' && j.phase === 'begin');
      assert.ok(fenceEnd && promoteBegin && fenceEnd.at <= promoteBegin.at, `fence confirmed before promote (runbook ${rb.id})`);
      t.diagnostic(`failover ${rb.data.oldPrimary} → ${rb.data.target}: fence through the BMC ${fenceEnd.data.ms} ms`);
    }
    await sleep(0);
  },
);
