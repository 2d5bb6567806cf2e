import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { BIN, ROOT, waitUntil } from '../support/cluster.ts';
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

    // The third controller follows: its view (read from etcd, kept by its watch) shows the same runbook, done.
    const third = c.controllers.find((n) => n !== first && n !== second)!;
    await waitUntil(
      `${third}'s view shows the failover done`,
      async () => {
        const r = await c.callTo(third, '/v1/runbooks?site=shop');
        return (r.body as { runbooks: Runbook[] }).runbooks.find((x) => x.id === rb.id)?.status === 'done';
      },
      5_000,
      100,
    );

    // A command with the dead leader's token (sent by the test, as a paused leader waking up would): refused.
    const stale = await rigCall(`http://${c.hostAddress('sb')}:7100/v1/volumes/shop/promote`, {
      body: { epoch: 3 },
      headers: { 'x-understudy-fencing-token': String(t1) },
    });
    assert.equal(stale.status, 409, JSON.stringify(stale.body));
    assert.equal((stale.body as { error: { code: string } }).error.code, 'US_STALE_LEADER');
    const after = await rigGet<{ epoch: number }>(`http://${c.hostAddress('sb')}:7100/v1/volumes/shop`);
    assert.equal(after.epoch, 2, 'the refused command changed nothing');
    await waitUntil(
      'the leader records the refusal as an event',
      async () =>
        ((await c.callTo(second, '/v1/events?limit=5000')).body as { events: EventView[] }).events.some(
          (e) => e.kind === 'stale-leader-refused' && e.data.part === 'storage array-b' && e.data.token === t1,
        ),
      10_000,
      100,
    );
    t.diagnostic(`leader ${first} killed after the fence; ${second} led and finished; tokens ${t1} → ${t2}`);

    // The CLI calls controller.listen (c1's address): with c1's machine dead it asks the other members;
    // a command that reaches a follower goes to the leader it names.
    if (first !== 'c1') c.rig.killAll(c.rig.ns('c1'));
    await waitUntil('a controller leads (c1 may have been the leader)', async () => (await c.leader()) !== null, 15_000, 100);
    const cli = (args: string[]) =>
      execFileSync(process.execPath, [BIN, ...args, '-c', c.configFile], {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, UNDERSTUDY_TOKEN: c.apiToken },
        timeout: 30_000,
      });
    const cliStatus = JSON.parse(cli(['status', '--json'])) as Status & { controller: { name: string; leader: string } };
    assert.notEqual(cliStatus.controller.name, 'c1', 'answered by a member that runs');
    assert.equal(cliStatus.sites[0]!.epoch, 2);
    assert.match(cli(['power', 'h2', 'on']), /h2/, 'a command reaches the leader whichever member the CLI tried');
  },
);

async function frontStatus(front: string): Promise<number> {
  const r = await request(`${front}/healthz`, { headersTimeout: 5000, bodyTimeout: 5000 });
  await r.body.text();
  return r.statusCode;
}

/** The failover runbook of `shop` in a controller's view, or undefined. */
async function failoverOf(c: Awaited<ReturnType<typeof startRigCluster>>, controller: string): Promise<Runbook | undefined> {
  const r = await c.callTo(controller, '/v1/runbooks?site=shop');
  return (r.body as { runbooks?: Runbook[] }).runbooks?.find((x) => x.kind === 'failover');
}

function cutPower(c: Awaited<ReturnType<typeof startRigCluster>>, host: string): void {
  execFileSync(
    'ipmitool',
    ['-I', 'lanplus', '-H', c.rig.bmcAddress(host), '-U', 'admin', '-f', path.join(c.dir, 'bmc-password'), '-C', '3', 'chassis', 'power', 'off'],
    {
      encoding: 'utf8',
    },
  );
  assert.deepEqual(c.rig.pids(c.rig.ns(host)), [], `the power cut was real: nothing runs on ${host}`);
}

/**
 * The leader is cut off from every etcd member (its packets to them dropped by the
 * router) in the middle of a failover. It stops acting by itself, before its lease can
 * run out: its runbook goes no further (no step after the fence begins from it), and
 * another controller finishes the failover, each step once. Healed, it follows.
 */
test(
  'three controllers: the leader cut off from etcd in the middle of a failover stops acting; the new leader finishes it; each step ran once',
  { timeout: 150_000 },
  async (t) => {
    const c = await startRigCluster({ replication: 'sync', controllers: ['c1', 'c2', 'c3'], env: { UNDERSTUDY_FAULT_PAUSE_AFTER_STEP: 'fence:6000' } });
    t.after(() => c.stop());
    await waitRigServing(c, 'h1');
    const first = (await c.leader())!;
    assert.ok(first);
    cutPower(c, 'h1');
    await waitUntil(
      'the fence journaled by the leader',
      async () => (await failoverOf(c, first))?.journal.some((j) => j.step === 'fence' && j.phase === 'end') ?? false,
      20_000,
      50,
    );
    for (const e of ['e1', 'e2', 'e3']) c.rig.drop(first, e);
    const cutAt = Date.now();
    await waitUntil(
      'the cut-off leader stops leading',
      async () => ((await c.callTo(first, '/v1/status')).body as { controller: { role: string } }).controller.role !== 'leader',
      5_000,
      50,
    );
    const stoppedMs = Date.now() - cutAt;
    await waitUntil(
      'another controller leads',
      async () => {
        const l = await c.leader();
        return l !== null && l !== first;
      },
      15_000,
      100,
    );
    const second = (await c.leader())!;
    await waitRigServing(c, 'h2');
    // The old leader's pause after the fence has ended by now: its runbook tried to go on.
    await waitUntil('the old leader has woken from its pause', async () => Date.now() > cutAt + 6_500, 10_000, 100);
    assert.match(c.log(`controller-${first}`), /no longer leads: it stopped acting/, 'the old leader says it stopped acting');

    const rb = (await failoverOf(c, second))!;
    assert.equal(rb.status, 'done');
    const begins = new Map<string, number>();
    for (const j of rb.journal) if (j.phase === 'begin') begins.set(j.step, (begins.get(j.step) ?? 0) + 1);
    for (const [step, n] of begins) assert.equal(n, 1, `step ${step} began once`);
    assert.ok(begins.has('promote') && begins.has('route'), 'the new leader ran the rest of the runbook');
    const vol = await rigGet<{ epoch: number; role: string }>(`http://${c.hostAddress('sb')}:7100/v1/volumes/shop`);
    assert.deepEqual([vol.role, vol.epoch], ['primary', 2], 'one promotion');

    // A command the old leader would send now, with its term's token (the test sends it): refused by its target.
    const { events } = (await c.callTo(second, '/v1/events?limit=5000')).body as { events: EventView[] };
    const oldToken = events.find((e) => e.kind === 'controller-leads' && e.data.controller === first)?.data.token;
    assert.ok(typeof oldToken === 'number');
    const stale = await rigCall(`http://${c.hostAddress('sb')}:7100/v1/volumes/shop/promote`, {
      body: { epoch: 3 },
      headers: { 'x-understudy-fencing-token': String(oldToken) },
    });
    assert.equal((stale.body as { error?: { code?: string } }).error?.code, 'US_STALE_LEADER', JSON.stringify(stale.body));

    c.rig.heal();
    await waitUntil(
      'the old leader follows the new one once healed',
      async () => {
        const b = (await c.callTo(first, '/v1/status')).body as { controller: { role: string; leader: string | null } };
        return b.controller.role === 'follower' && b.controller.leader === second;
      },
      15_000,
      100,
    );
    t.diagnostic(`leader ${first} cut off from etcd; it stopped leading after ${stoppedMs} ms; ${second} finished the failover`);
  },
);

/**
 * etcd loses members. One of three: nothing changes (the same leader, the same term).
 * Two: no controller leads, so nothing acts: the primary's power is cut and no failover
 * starts, while the status says since when etcd has not answered. The members back: a
 * controller leads, the pending failover runs, and an event records the gap.
 */
test(
  'three controllers: one etcd member lost changes nothing; two lost, no automatic action while the site stays as it is; restored, the pending failover runs',
  { timeout: 180_000 },
  async (t) => {
    const c = await startRigCluster({ replication: 'sync', controllers: ['c1', 'c2', 'c3'] });
    t.after(() => c.stop());
    await waitRigServing(c, 'h1');
    const first = (await c.leader())!;
    const tokenOf = async (n: string) => ((await c.callTo(n, '/v1/status')).body as { controller: { token: number } }).controller.token;
    const token = await tokenOf(first);
    const etcd = c.etcd!;

    await etcd.kill(0);
    await new Promise((r) => setTimeout(r, 4000)); // more than a ttl
    assert.equal(await c.leader(), first, 'one member lost: the same leader');
    assert.equal(await tokenOf(first), token, 'in the same term');
    assert.equal(await frontStatus(c.front), 200, 'the site serves');

    await etcd.kill(1);
    const lostAt = Date.now();
    await waitUntil('no controller leads', async () => (await c.leader()) === null, 6_000, 100);
    t.diagnostic(`quorum lost: no leader after ${Date.now() - lostAt} ms`);
    const st = (await c.callTo(first, '/v1/status')).body as { controller: { role: string; storeUnavailable: { since: number; error: string } | null } };
    assert.notEqual(st.controller.role, 'leader');
    assert.ok(st.controller.storeUnavailable && st.controller.storeUnavailable.since <= Date.now(), 'the status says since when etcd has not answered');
    assert.equal(await frontStatus(c.front), 200, 'without a quorum the site keeps serving');

    cutPower(c, 'h1');
    await new Promise((r) => setTimeout(r, 6000));
    const held = await rigGet<{ epoch: number; role: string }>(`http://${c.hostAddress('sb')}:7100/v1/volumes/shop`);
    assert.deepEqual([held.role, held.epoch], ['replica', 1], 'no quorum: no failover (the replica was not promoted)');
    assert.ok(c.rig.pids(c.rig.ns('h2')).length <= 1, 'nothing was started on h2 (its agent at most)');

    await etcd.restart(0);
    await etcd.restart(1);
    const backAt = Date.now();
    await waitUntil('a controller leads again', async () => (await c.leader()) !== null, 20_000, 100);
    await waitRigServing(c, 'h2');
    t.diagnostic(`quorum back: served from h2 ${Date.now() - backAt} ms later`);
    const leader = (await c.leader())!;
    const { events } = (await c.callTo(leader, '/v1/events?limit=5000')).body as { events: EventView[] };
    assert.ok(
      events.some((e) => e.kind === 'state-store-unavailable'),
      'an event records the time etcd did not answer',
    );
    assert.equal(events.filter((e) => e.kind === 'failover-complete').length, 1, 'the pending failover ran, once');
  },
);

/**
 * Ctrl-C on the leading controller (SIGINT, as a terminal sends it): it stops acting,
 * gives the leader key up and exits 0; another controller leads at its next step,
 * long before the lease could have run out. Twice in a row.
 */
test('three controllers: the leader stopped by SIGINT hands over at once (not after its lease), twice in a row', { timeout: 120_000 }, async (t) => {
  const c = await startRigCluster({ replication: 'async', controllers: ['c1', 'c2', 'c3'], lease: { ttl: '10s', loop: '300ms', retry: '3s' } });
  t.after(() => c.stop());
  await waitRigServing(c, 'h1');
  for (let round = 1; round <= 2; round++) {
    const leader = (await c.leader())!;
    assert.ok(leader);
    const at = Date.now();
    const code = await c.signalPart(`controller-${leader}`, 'SIGINT');
    assert.equal(code, 0, 'it exits 0');
    await waitUntil(
      'another controller leads',
      async () => {
        const l = await c.leader();
        return l !== null && l !== leader;
      },
      8_000,
      50,
    );
    const ms = Date.now() - at;
    t.diagnostic(`round ${round}: ${leader} stopped by SIGINT; another led ${ms} ms later (ttl 10 s)`);
    assert.ok(ms < 5000, `handed over well before the 10 s ttl (${ms} ms)`);
    assert.equal(await frontStatus(c.front), 200, 'the site serves throughout');
    c.startPart(`controller-${leader}`);
    await waitUntil(
      `${leader} follows again`,
      async () => {
        const r = await c.callTo(leader, '/v1/status', { timeoutMs: 1000 }).catch(() => null);
        return (r?.body as { controller?: { role?: string } } | undefined)?.controller?.role === 'follower';
      },
      20_000,
      100,
    );
  }
  const st = (await c.call('/v1/status')).body as Status;
  assert.equal(st.sites[0]!.epoch, 1, 'no failover came of it');
});
