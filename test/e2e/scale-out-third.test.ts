import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { api, http, sleep, startCluster, waitStreaming, waitUntil } from '../support/cluster.ts';
import { scalingOptions, slowedUnderReads } from '../support/scaling.ts';
import { type Status, type Ev, assertNoEvents, events } from '../support/views.ts';

/**
 * slower still — the primary stays slow after the first reader (it still
 * takes every write and stalls 150 ms of every 210 ms), so after the scale cooldown a second
 * reader is added: three hosts answer GETs, the primary every POST, and no more than
 * `scale.max` (3). Also: a read a reader cannot serve (an order: the reader copy holds
 * only the read-only portion) is answered by the primary, and a write's answer
 * carries the read-your-writes cookie. Not expected: a failover, a fence, a 4th host.
 */

test('scale-out, slower still: a third host is added, up to scale.max', { timeout: 150_000 }, async (t) => {
  const cluster = await startCluster(scalingOptions({ max: 3, stabilization: '30s' }, { spares: ['h3', 'h4'] }));
  t.after(() => cluster.stop());
  await waitStreaming<Status>(cluster);
  const addr = (h: string): string => cluster.hostAddress(h);
  const st0 = await api<Status>(cluster, '/v1/status');
  const pid = st0.hosts.find((h) => h.name === 'h1')!.pid!;

  const { load, slow } = await slowedUnderReads(t, cluster.front, [pid], { maxMs: 80_000, runMs: 60 });

  let evs: Ev[] = [];
  await waitUntil(
    'two readers serving',
    async () => {
      evs = await events(cluster);
      return evs.filter((e) => e.kind === 'scale-out-complete').length >= 2 || null;
    },
    70_000,
    250,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\nevents:\n${evs.map((x) => `${x.kind}: ${x.message}`).join('\n')}`);
  });
  const outs = evs.filter((e) => e.kind === 'scale-out-complete');
  assert.deepEqual(outs.map((e) => e.host).sort(), ['h3', 'h4']);
  assert.ok(outs[1]!.at - outs[0]!.at >= 3000, 'the second one came after the scale cooldown');
  const st1 = await api<Status>(cluster, '/v1/status');
  assert.deepEqual(st1.sites[0]!.readers.map((r) => r.host).sort(), ['h3', 'h4']);

  const from = Date.now() + 500;
  await sleep(4000);
  const window = load.samples.filter((s) => s.at >= from);
  const gets = window.filter((s) => s.method === 'GET');
  const posts = window.filter((s) => s.method === 'POST');
  const getHosts = new Set(gets.map((s) => s.servedBy?.split(':')[0]));
  assert.ok(getHosts.has(addr('h1')) && getHosts.has(addr('h3')) && getHosts.has(addr('h4')), `GETs answered by ${[...getHosts].join(', ')}`);
  assert.ok(posts.length > 5 && posts.every((s) => s.status === 201 && s.servedBy?.split(':')[0] === addr('h1')), 'every POST answered 201 by the primary');

  // A read only the primary can serve (orders are not in the read-only portion): the reader's 421 sends it there.
  const posted = await request(`${cluster.front}/api/orders`, {
    method: 'POST',
    body: JSON.stringify({ customer: 'ryw', items: [{ productId: 2, qty: 1 }] }),
    headers: { 'content-type': 'application/json' },
  });
  const order = (await posted.body.json()) as { id: number };
  const cookie = String(posted.headers['set-cookie'] ?? '');
  assert.match(cookie, /us_ryw_shop=[0-9a-f]+\.\d+/, 'a write is answered with the read-your-writes cookie');
  for (let i = 0; i < 12; i++) {
    const r = await http(`${cluster.front}/api/orders/${order.id}`);
    assert.equal(r.status, 200);
    assert.equal(r.servedBy?.split(':')[0], addr('h1'));
  }
  const own = await request(`${cluster.front}/api/products/2`, { headers: { cookie: cookie.split(';')[0]! } });
  assert.equal(own.statusCode, 200);
  await own.body.text();

  // No more than scale.max: a deferral says why.
  await waitUntil(
    'the at-max deferral',
    async () => (await events(cluster)).find((e) => e.kind === 'scale-out-deferred' && e.data.code === 'at-max'),
    20_000,
    250,
  );
  await slow.stop();
  await load.stop();

  evs = await events(cluster);
  const kinds = evs.map((e) => e.kind);
  assertNoEvents(evs, ['failover-started', 'failure-detected', 'fence-forced', 'global-slowdown']);
  assert.equal(kinds.filter((k) => k === 'scale-out-started').length, 2, 'two scale-outs, no third');
  const st2 = await api<Status>(cluster, '/v1/status');
  assert.equal(st2.sites[0]!.primary.host, 'h1');
  assert.equal(st2.sites[0]!.epoch, st0.sites[0]!.epoch);
  assert.equal(st2.hosts.find((h) => h.name === 'h1')!.power, 'on');
  assert.equal(st2.hosts.find((h) => h.name === 'h2')!.power, 'on', 'the failover standby stayed a standby');
  assert.ok(!st2.sites[0]!.readers.some((r) => r.host === 'h2'));
});
