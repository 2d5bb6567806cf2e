import assert from 'node:assert/strict';
import { test } from 'node:test';
import { http, sleep, waitUntil } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { rigApi, rigGet, startRigCluster, waitRigServing, type RigCluster } from '../support/rig-cluster.ts';
import type { Status, Runbook } from '../support/views.ts';

interface Volume {
  epoch: number;
  role?: string;
  replication?: { state: string; lagMs: number; generation: number; seeds?: { db: string; generation: number; kind: string; at: number }[] };
}
interface Event {
  kind: string;
  host: string | null;
  message: string;
}

const apiGet = rigApi;

const get = rigGet;

const status = (c: RigCluster) => apiGet<Status>(c, `/v1/status`);

/**
 * 1. The primary's storage node is cut off from the replica's node (async mode):
 *    the site keeps serving, the replication lag grows and the controller reports it;
 *    after the heal replication resumes, catches up, and the replica keeps its
 *    generation (no full copy is sent again).
 * 2. The controller cannot reach h1's BMC when h1's machine crashes: the fence cannot
 *    be confirmed, so nothing is promoted (h2 never starts the site, the replica's
 *    epoch stays), and the controller raises an alert that says what to do. Once the
 *    network heals, `failover --force` goes on, with the fence confirmed by the BMC.
 */
test(
  'across machines: storage nodes cut apart lag and resume without a full copy; an unreachable BMC stops the failover with an alert',
  { timeout: 120_000 },
  async (t) => {
    const c = await startRigCluster({ replication: 'async' });
    t.after(() => c.stop());
    const sa = `http://${c.rig.address('sa')}:7100`;
    const sb = `http://${c.rig.address('sb')}:7100`;
    await waitRigServing(c);
    const load = startLoad(c.front, { workers: 2, maxMs: 90_000, maxRequests: 20_000 });
    t.after(() => load.stop());
    await waitUntil('orders acknowledged', async () => load.result.acked.length >= 10, 20_000);
    const before = await get<Volume>(`${sa}/v1/volumes/shop`);
    const fullSeedsBefore = (before.replication?.seeds ?? []).filter((s) => s.kind === 'full').length;

    // 1. array-a (sa) and array-b (sb) lose each other.
    c.rig.drop('sa', 'sb');
    c.rig.drop('sb', 'sa');
    const cutAt = Date.now();
    const lagging = await waitUntil(
      'the lag reported above 1.5 s',
      async () => {
        const s = (await status(c)).sites[0]!;
        return (s.replication.lagMs ?? 0) > 1500 ? s : null;
      },
      20_000,
      200,
    );
    assert.equal(lagging.primary.host, 'h1', 'no failover for a replication partition');
    assert.ok(
      load.result.acked.some((o) => o.ackAt > cutAt + 1000),
      'orders are still acknowledged while the replica is cut off',
    );
    const lagCut = (await get<Volume>(`${sa}/v1/volumes/shop`)).replication!;
    assert.ok(lagCut.lagMs > 1500, `the storage node itself reports the lag (${lagCut.lagMs} ms)`);

    c.rig.heal();
    const healAt = Date.now();
    await waitUntil(
      'replication caught up after the heal',
      async () => {
        const v = await get<Volume>(`${sa}/v1/volumes/shop`);
        return v.replication?.state === 'streaming' && v.replication.lagMs < 500 ? v : null;
      },
      30_000,
      200,
    );
    const after = await get<Volume>(`${sa}/v1/volumes/shop`);
    const fullSeedsAfter = (after.replication?.seeds ?? []).filter((s) => s.kind === 'full');
    t.diagnostic(
      `lag at the cut ${lagCut.lagMs} ms; generation ${before.replication?.generation} → ${after.replication?.generation}; caught up ${Date.now() - healAt} ms after the heal`,
    );
    assert.equal(fullSeedsAfter.filter((s) => s.at > cutAt).length, 0, 'no full copy sent after the partition');
    assert.equal(fullSeedsAfter.length, fullSeedsBefore);

    // Every order acknowledged so far is on the replica: stop the load and let it catch up.
    const result = await load.stop();
    await waitUntil('replica caught up', async () => (await get<Volume>(`${sa}/v1/volumes/shop`)).replication!.lagMs === 0, 10_000, 100);
    assert.deepEqual(await missingOrders(c.front, result.acked), []);

    // 2. The controller loses the management network; then h1's machine crashes.
    c.rig.drop('ctl', 'mgmt');
    const replicaBefore = await get<Volume>(`${sb}/v1/volumes/shop`);
    const crashAt = Date.now();
    c.rig.killAll(c.rig.ns('h1'));
    const blocked = await waitUntil(
      'failover-blocked',
      async () => {
        const { events } = await apiGet<{ events: Event[] }>(c, `/v1/events?site=shop`);
        return events.find((e) => e.kind === 'failover-blocked');
      },
      30_000,
      200,
    );
    t.diagnostic(`alert ${Date.now() - crashAt} ms after the crash: ${blocked.message}`);
    assert.match(blocked.message, /power off not confirmed by its BMC/);
    assert.match(blocked.message, /management network/);
    assert.match(blocked.message, /failover --force/);
    await sleep(2000);
    const { runbooks } = await apiGet<{ runbooks: Runbook[] }>(c, `/v1/runbooks?site=shop`);
    const fo = runbooks.filter((r) => r.kind === 'failover');
    assert.equal(fo.length, 1);
    assert.equal(fo[0]!.status, 'blocked');
    assert.ok(!fo[0]!.journal.some((j) => j.step === 'promote'), 'nothing was promoted');
    const st = (await status(c)).sites[0]!;
    assert.equal(st.epoch, 1, 'the epoch did not move');
    assert.notEqual(st.state, 'serving');
    const replicaAfter = await get<Volume>(`${sb}/v1/volumes/shop`);
    assert.equal(replicaAfter.epoch, replicaBefore.epoch, 'the replica on array-b was not promoted');
    const h2Agent = await get<{ sites: { site: string; state: string }[] }>(`http://${c.hostAddress('h2')}:7001/v1/status`);
    assert.ok(!h2Agent.sites.some((s) => s.site === 'shop' && s.state === 'running'), 'h2 did not start the site');

    // The way out: the management network heals, and an operator forces the failover; the
    // fence is tried again, and this time the BMC confirms that h1 is off.
    c.rig.heal();
    const forced = await c.call('/v1/sites/shop/failover', { method: 'POST', body: { force: true }, timeoutMs: 60_000 });
    assert.equal(forced.status, 200, JSON.stringify(forced.body));
    const after2 = await apiGet<{ runbooks: Runbook[] }>(c, `/v1/runbooks?site=shop`);
    const last = after2.runbooks.filter((r) => r.kind === 'failover').at(-1)!;
    assert.equal(last.status, 'done');
    const { events } = await apiGet<{ events: Event[] }>(c, `/v1/events?site=shop`);
    assert.ok(!events.some((e) => e.kind === 'fence-forced'), 'the fence was confirmed this time, not forced');
    const end = (await status(c)).sites[0]!;
    assert.equal(end.primary.host, 'h2');
    assert.equal(end.epoch, 2);
    assert.equal(await c.bmcPower('h1'), 'off');
    assert.equal((await http(`${c.front}/api/products`)).servedBy, `${c.hostAddress('h2')}:3000`);
  },
);
