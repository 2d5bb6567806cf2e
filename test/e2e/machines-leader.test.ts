import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { waitUntil } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { rigCall, rigGet, startRigCluster, waitRigServing } from '../support/rig-cluster.ts';
import type { Runbook, Status } from '../support/views.ts';

interface EventView {
  id: number;
  kind: string;
  site: string | null;
  message: string;
  data: Record<string, unknown>;
}

/**
 * Three controllers on their own machines share their state in a three-member etcd on
 * three more, and elect a leader. The primary's power is cut through its BMC; the
 * leading controller fences it and, at that moment, its whole machine dies (every
 * process SIGKILLed). Another controller takes the lead, reads the journal from etcd
 * and resumes the runbook at the step after the fence: exactly one promotion, the
 * site served from the standby, no acknowledged order lost. A command sent with the
 * dead leader's token afterwards is refused by the storage node.
 */
test(
  'three controllers: the leader dies in the middle of a failover, another resumes it at its journaled step; one promotion, no order lost, the old token refused',
  { timeout: 150_000 },
  async (t) => {
    const c = await startRigCluster({
      replication: 'sync',
      controllers: ['c1', 'c2', 'c3'],
      // The leader waits after journaling the fence's end, so that the test kills it there for real.
      env: { UNDERSTUDY_FAULT_PAUSE_AFTER_STEP: 'fence:6000' },
    });
    t.after(() => c.stop());
    await waitRigServing(c, 'h1');
    const first = await c.leader();
    assert.ok(first !== null, 'one controller leads');
    const others = c.controllers.filter((n) => n !== first);
    for (const n of others) {
      const st = await c.callTo(n, '/v1/status');
      assert.equal(st.status, 200, 'a follower serves reads');
      assert.equal((st.body as { controller: { role: string; leader: string } }).controller.role, 'follower');
      assert.equal((st.body as { controller: { leader: string } }).controller.leader, first, 'and names the leader');
      const refused = await c.callTo(n, '/v1/sites/shop/failover', { method: 'POST', body: {} });
      assert.equal(refused.status, 503, 'a follower refuses a command');
      assert.equal((refused.body as { error: { code: string } }).error.code, 'US_NOT_LEADER');
    }
    const load = startLoad(c.front, { workers: 4, maxMs: 90_000, maxRequests: 20_000 });
    t.after(() => load.stop());
    await waitUntil('orders acknowledged through the director', async () => load.result.acked.length >= 20, 20_000);

    const pw = path.join(c.dir, 'bmc-password');
    const cutAt = Date.now();
    execFileSync('ipmitool', ['-I', 'lanplus', '-H', c.rig.bmcAddress('h1'), '-U', 'admin', '-f', pw, '-C', '3', 'chassis', 'power', 'off'], {
      encoding: 'utf8',
    });
    assert.deepEqual(c.rig.pids(c.rig.ns('h1')), [], 'the power cut was real: nothing runs on h1');

    // The leader journals the fence's end (confirmed through the BMC), then dies there.
    await waitUntil(
      'the fence journaled by the leader',
      async () => {
        const r = await c.callTo(first, '/v1/runbooks?site=shop');
        const rb = (r.body as { runbooks: Runbook[] }).runbooks.find((x) => x.kind === 'failover');
        return rb?.journal.some((j) => j.step === 'fence' && j.phase === 'end') ?? false;
      },
      20_000,
      50,
    );
    c.rig.killAll(c.rig.ns(first));
    assert.deepEqual(c.rig.pids(c.rig.ns(first)), [], 'the leader is dead: nothing runs on its machine');
    const killedAt = Date.now();

    await waitUntil('another controller leads', async () => (await c.leader()) !== null, 15_000, 100);
    const second = (await c.leader())!;
    assert.notEqual(second, first);
    await waitUntil(
      'answers from h2',
      async () => load.result.answers.some((a) => a.ok && a.at > killedAt && a.servedBy?.startsWith(`${c.hostAddress('h2')}:`)),
      40_000,
    );
    await waitRigServing(c, 'h2');
    await waitUntil('orders acknowledged after the takeover', async () => load.result.acked.some((o) => o.ackAt > killedAt + 500), 20_000);

    const result = await load.stop();
    const missing = await missingOrders(c.front, result.acked);
    const by503 = result.postsFailed.filter((f) => f.status === 503).length;
    t.diagnostic(
      `orders acked ${result.acked.length}, lost ${missing.length}, POSTs answered 503 ${by503}, other POST failures ${result.postsFailed.length - by503}`,
    );
    assert.deepEqual(missing, [], 'every order that got 201 is present');
    assert.equal(result.postsFailed.length, by503, 'a POST that did not get 201 got 503');

    // Exactly one failover, resumed after the fence: one promotion, at epoch 2.
    const { runbooks } = (await c.callTo(second, '/v1/runbooks?site=shop')).body as { runbooks: Runbook[] };
    const failovers = runbooks.filter((r) => r.kind === 'failover');
    assert.equal(failovers.length, 1, 'one failover runbook');
    const rb = failovers[0]!;
    assert.equal(rb.status, 'done');
    const count = (step: string, phase: string) => rb.journal.filter((j) => j.step === step && j.phase === phase).length;
    assert.equal(count('fence', 'begin'), 1, 'the fence ran once (the new leader skipped it: its end was journaled)');
    assert.equal(count('promote', 'begin'), 1, 'one promotion');
    assert.equal(count('promote', 'end'), 1);
    const st = (await c.callTo(second, '/v1/status')).body as Status & { controller: { role: string; token: number } };
    assert.equal(st.sites[0]!.epoch, 2, 'epoch 2: promoted once');
    assert.equal(st.sites[0]!.primary.host, 'h2');
    assert.equal(st.controller.role, 'leader');
    const vol = await rigGet<{ epoch: number; role: string }>(`http://${c.hostAddress('sb')}:7100/v1/volumes/shop`);
    assert.deepEqual([vol.role, vol.epoch], ['primary', 2], "array-b's volume: primary at epoch 2");

    const { events } = (await c.callTo(second, '/v1/events?limit=5000')).body as { events: EventView[] };
    const leads = events.filter((e) => e.kind === 'controller-leads');
    assert.deepEqual(
      leads.map((e) => e.data.controller),
      [first, second],
      'two terms: the first leader, then the second',
    );
    const [t1, t2] = leads.map((e) => e.data.token as number);
    assert.ok(t2! > t1!, 'the second term has a higher token');
    assert.ok(
      events.some((e) => e.kind === 'runbook-resumed' && e.data.runbook === rb.id),
      'the second leader resumed the runbook',
    );
    assert.equal(events.filter((e) => e.kind === 'failover-complete').length, 1, 'one failover completed');

    // A command with the dead leader's token (sent by the test, as a paused leader waking up would): refused.
    const stale = await rigCall(`http://${c.hostAddress('sb')}:7100/v1/volumes/shop/promote`, {
      body: { epoch: 3 },
      headers: { 'x-understudy-fencing-token': String(t1) },
    });
    assert.equal(stale.status, 409, JSON.stringify(stale.body));
    assert.equal((stale.body as { error: { code: string } }).error.code, 'US_STALE_LEADER');
    const after = await rigGet<{ epoch: number }>(`http://${c.hostAddress('sb')}:7100/v1/volumes/shop`);
    assert.equal(after.epoch, 2, 'the refused command changed nothing');
    t.diagnostic(`leader ${first} killed after the fence; ${second} led and finished; tokens ${t1} → ${t2}`);
  },
);
