import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, http, ports, sleep, startCluster, waitStreaming } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import type { Status, Ev } from '../support/views.ts';

/**
 * A planned switchover onto a replica that fails its check before promotion
 * (verification before any promotion): the storage processor refuses the promotion, and
 * the switchover gives the site back to the old primary, one epoch above the refused
 * one, instead of leaving it down. The replica is damaged deterministically through
 * the storage processor's test hook (UNDERSTUDY_TEST_HOOKS=1), and no write happens
 * after the damage, so the replica still reports streaming and the switchover's own
 * checks let it through to the promotion.
 */
test('switchover onto a damaged replica: promotion refused, the old primary serves again, nothing lost', { timeout: 90_000 }, async (t) => {
  const cluster = await startCluster({ env: { UNDERSTUDY_TEST_HOOKS: '1' } });
  t.after(() => cluster.stop());
  await waitStreaming(cluster);
  const epoch0 = (await api<Status>(cluster, '/v1/status')).sites[0]!.epoch;

  const load = startLoad(cluster.front, { workers: 2, maxRequests: 400, maxMs: 20_000, tag: 'sr' });
  t.after(() => load.stop());
  await sleep(2000);
  await load.stop();
  // Let the replica take the last writes, then damage it (its WAL folded first, so nothing heals it).
  await waitStreaming(cluster);
  const hook = await http(`http://127.0.0.1:${ports(cluster.slot).storageB}/v1/test/volumes/shop/damage`, { method: 'POST', body: { db: 'orders.db' } });
  assert.equal(hook.status, 200, JSON.stringify(hook.body));

  const sw = await http(`${cluster.api}/v1/sites/shop/switchover`, { method: 'POST', body: { to: 'h2' }, timeoutMs: 60_000 });
  assert.equal((sw.body as { status?: string }).status, 'failed', `the switchover runbook must fail: ${sw.status} ${JSON.stringify(sw.body)}`);

  const events = (await api<{ events: Ev[] }>(cluster, '/v1/events?limit=5000')).events;
  const aborted = events.find((e) => e.kind === 'switchover-aborted');
  assert.ok(aborted, `switchover-aborted expected; events: ${events.map((e) => e.kind).join(', ')}`);
  t.diagnostic(aborted.message);
  assert.match(aborted.message, /failed verification before promotion/);
  assert.ok(!events.some((e) => e.kind === 'promoted'), 'the damaged replica was never promoted');
  assert.ok(!events.some((e) => e.kind === 'switchover-failed'), 'the site was not left down');

  const st = await api<Status>(cluster, '/v1/status');
  assert.equal(st.sites[0]!.state, 'serving');
  assert.equal(st.sites[0]!.primary.host, 'h1');
  assert.equal(st.sites[0]!.epoch, epoch0 + 2, 'the old primary took the site back one epoch above the refused promotion');
  assert.equal(st.hosts.find((h) => h.name === 'h1')!.power, 'on');

  const w = await http(`${cluster.front}/api/orders`, { method: 'POST', body: { customer: 'after-refusal', items: [{ productId: 1, qty: 1 }] } });
  assert.equal(w.status, 201, JSON.stringify(w.body));
  assert.ok(w.servedBy?.startsWith(`${cluster.hostAddress('h1')}:`), `served by h1 (${w.servedBy})`);
  assert.ok(load.result.acked.length > 0);
  assert.deepEqual(await missingOrders(cluster.front, load.result.acked), [], 'every acknowledged order is still there');
});
