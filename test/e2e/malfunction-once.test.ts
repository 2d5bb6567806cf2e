import assert from 'node:assert/strict';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { api, http, sleep, startCluster, waitStreaming, waitUntil } from '../support/cluster.ts';
import { immutableOrdersDb } from '../support/immutable-db.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { type Status, assertNoEvents, events } from '../support/views.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * A malfunction failover happens for errors that belong to the host, at most once
 * per incident:
 *
 * 1. The host's copy of orders.db is made immutable (`chattr +i`): every write there
 *    answers 500 while reads and the probe go on. The writes had been answered well on
 *    that host until then: the host's errors. One failover, the old primary fenced,
 *    writes work on the new one, nothing further.
 * 2. A bad migration: a trigger in orders.db aborts every new order. The writes had
 *    been answered well until then, so the first failover happens; but the trigger is
 *    in the replicated data, and the new primary fails the same writes: the errors
 *    follow the app, not the host. One `errors-follow-app` event, no second failover,
 *    no fence of the new primary.
 */

const SLOT = claimSlot();
const WINDOW_MS = 2000;
const NEVER = ['failover-deferred', 'failover-blocked', 'failover-failed', 'restore-started', 'switchover-started', 'errors-follow-request'];

/** A cluster that counts errors over WINDOW_MS, serving with replication streaming (`before`), under a load of orders for 1.5 s already. */
async function startUnderLoad(t: TestContext) {
  const cluster = await startCluster({ slot: SLOT, health: { malfunction: { errorRate: 0.2, window: `${WINDOW_MS}ms` } } });
  t.after(() => cluster.stop());
  const before = await waitStreaming<Status>(cluster);
  const load = startLoad(cluster.front, { workers: 4, maxMs: 60_000 });
  t.after(() => load.stop());
  await sleep(1500);
  return { cluster, before, load, h1: cluster.hostAddress('h1') };
}

const order = (customer: string) => ({ method: 'POST', body: { customer, items: [{ productId: 1, qty: 1 }] } });

test("a host-specific malfunction (its orders.db immutable): one failover, the host's errors named, nothing further", { timeout: 120_000 }, async (t) => {
  const { cluster, before, load, h1 } = await startUnderLoad(t);
  const ordersDb = immutableOrdersDb(t, cluster);

  ordersDb.apply();
  assert.equal((await http(`http://${h1}:3000/api/orders`, order('direct'))).status, 500, 'a write on h1 fails');
  assert.equal((await http(`http://${h1}:3000/api/products`)).status, 200, 'a read on h1 works');
  assert.equal((await http(`http://${h1}:3000/healthz`)).status, 200, 'h1 answers its probe');

  const done = await waitUntil('failover-complete', async () => (await events(cluster)).find((e) => e.kind === 'failover-complete'), 30_000, 50);
  ordersDb.release();
  let evs = await events(cluster);
  const detected = evs.filter((e) => e.kind === 'failure-detected');
  assert.equal(detected.length, 1);
  const d = detected[0]!;
  assert.equal(d.host, 'h1');
  assert.equal(d.data.kind, 'traffic');
  assert.match(d.message, /malfunction: error rate .*; the host's errors: POST \/api\/orders: h1 answered it well \d+ times before its errors began/);
  const a = d.data.attribution as { owner: string; rule: string; failing: { kind: string; verdict: string; okBefore: number }[]; clean: { kind: string }[] };
  assert.equal(a.owner, 'host');
  assert.equal(a.rule, 'kind');
  assert.deepEqual(
    a.failing.map((f) => [f.kind, f.verdict]),
    [['POST /api/orders', 'host']],
  );
  assert.ok(
    a.clean.some((c) => c.kind === 'GET /api/products'),
    'the reads were answered well meanwhile',
  );

  // Writes work on the new primary; two more windows of load, and nothing more happens.
  const st = await api<Status>(cluster, '/v1/status');
  const to = st.sites[0]!.primary.host;
  assert.notEqual(to, 'h1');
  assert.equal(done.data.to, to);
  assert.equal((await http(`${cluster.front}/api/orders`, order('after'))).status, 201);
  await sleep(2 * WINDOW_MS + 1000);
  const result = await load.stop();
  evs = await events(cluster);
  assert.equal(evs.filter((e) => e.kind === 'failover-started').length, 1, 'one failover');
  assert.equal(evs.filter((e) => e.kind === 'failure-detected').length, 1);
  assertNoEvents(evs, [...NEVER, 'errors-follow-app']);
  const after = await api<Status>(cluster, '/v1/status');
  assert.equal(after.hosts.find((h) => h.name === 'h1')!.power, 'off', 'the malfunctioning host is fenced');
  assert.equal(after.hosts.find((h) => h.name === to)!.power, 'on');
  assert.equal(after.sites[0]!.epoch, before.sites[0]!.epoch + 1);
  assert.deepEqual(result.getsFailed, [], 'no read failed');
  assert.deepEqual(await missingOrders(cluster.front, result.acked), [], 'every acknowledged order is there');
  t.diagnostic(`${d.message}; acked ${result.acked.length}, POSTs failed ${result.postsFailed.length}`);
});

test(
  'errors that follow the app (a trigger in the replicated data aborts every order): one failover, then "errors follow the app", no second',
  { timeout: 120_000 },
  async (t) => {
    const { cluster, before, load, h1 } = await startUnderLoad(t);

    // The bad migration, written into the live database the way a deploy would.
    const db = new Database(path.join(cluster.dir, 'array-a', 'volumes', 'shop', 'orders.db'));
    db.pragma('busy_timeout = 5000');
    db.exec("CREATE TRIGGER orders_closed BEFORE INSERT ON orders BEGIN SELECT RAISE(ABORT, 'orders are closed'); END;");
    db.close();
    assert.equal((await http(`http://${h1}:3000/api/orders`, order('direct'))).status, 500, 'a write on h1 fails');
    assert.equal((await http(`http://${h1}:3000/api/products`)).status, 200, 'a read on h1 works');

    // The first failover: the writes had worked on h1 until the errors began.
    await waitUntil('failover-complete', async () => (await events(cluster)).find((e) => e.kind === 'failover-complete'), 30_000, 50);
    const st = await api<Status>(cluster, '/v1/status');
    const to = st.sites[0]!.primary.host;
    assert.notEqual(to, 'h1');
    // The same fault on the new primary: it is in the data.
    assert.equal((await http(`http://${st.sites[0]!.primary.address}:3000/api/orders`, order('direct-2'))).status, 500, `a write on ${to} fails too`);

    const follows = await waitUntil('errors-follow-app', async () => (await events(cluster)).find((e) => e.kind === 'errors-follow-app'), 20_000, 100);
    assert.equal(follows.host, to);
    assert.match(
      follows.message,
      new RegExp(
        `^shop: errors follow the app, not the host: after the malfunction failover from h1, ${to} fails POST /api/orders as h1 did .*No further failover for this cause`,
      ),
    );
    await sleep(2 * WINDOW_MS + 1000);
    const result = await load.stop();

    // The actions not taken: no second failover (not even deferred), the new primary neither fenced nor failed.
    const evs = await events(cluster);
    assert.equal(evs.filter((e) => e.kind === 'failover-started').length, 1, 'one failover in the incident');
    assert.deepEqual(
      evs.filter((e) => e.kind === 'failure-detected').map((e) => e.host),
      ['h1'],
    );
    assert.equal(evs.filter((e) => e.kind === 'errors-follow-app').length, 1, 'told once');
    assertNoEvents(evs, NEVER);
    const after = await api<Status>(cluster, '/v1/status');
    assert.equal(after.sites[0]!.primary.host, to);
    assert.equal(after.sites[0]!.epoch, before.sites[0]!.epoch + 1);
    assert.equal(after.hosts.find((h) => h.name === to)!.power, 'on', 'the new primary is not fenced');
    assert.equal(after.hosts.find((h) => h.name === to)!.pid, st.hosts.find((h) => h.name === to)!.pid);
    assert.equal(after.hosts.find((h) => h.name === 'h3')!.power, to === 'h3' ? 'on' : 'off', 'no third host taken');
    assert.ok(result.postsFailed.filter((f) => f.at > follows.at).length > 10, 'the writes still failed after the event: the fault was real');
    assert.deepEqual(result.getsFailed, [], 'no read failed');
    t.diagnostic(follows.message);
  },
);
