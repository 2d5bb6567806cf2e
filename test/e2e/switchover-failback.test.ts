import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import type { GenerationSeed, VolumeStatus } from '../../src/shared/contracts.ts';
import { TWO_HOSTS, api, http, ports, sleep, startCluster, waitUntil } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { ordersDigest } from '../support/volume-digest.ts';
import { waitServing, type Status } from '../support/views.ts';

test(
  'planned switchovers under load fail no request and lose no order; after a crash the old host is brought up to date and the site switches back',
  { timeout: 240_000 },
  async (t) => {
    const cluster = await startCluster({
      hosts: TWO_HOSTS,
    });
    t.after(() => cluster.stop());
    const h1 = cluster.hostAddress('h1');
    const h2 = cluster.hostAddress('h2');
    await waitServing(cluster);

    // Two planned switchovers under load: h1 → h2 → h1.
    const load = startLoad(cluster.front, { workers: 4, maxMs: 120_000 });
    t.after(() => load.stop());
    await sleep(800);
    for (const [to, address] of [
      ['h2', h2],
      ['h1', h1],
    ] as const) {
      const r = await api<{ status: string }>(cluster, '/v1/sites/shop/switchover', { to });
      assert.equal(r.status, 'done');
      await waitUntil(`answers from ${to}`, async () =>
        load.result.answers.some((a) => a.ok && a.servedBy?.startsWith(`${address}:`) && a.at > Date.now() - 500),
      );
      await waitServing(cluster);
      await sleep(500);
    }
    const during = await load.stop();
    assert.deepEqual(during.postsFailed, [], 'no POST failed during the switchovers');
    assert.deepEqual(during.getsFailed, [], 'no GET failed during the switchovers');
    assert.deepEqual(await missingOrders(cluster.front, during.acked), [], 'no order lost');
    const epochAfterSwitchovers = (await api<Status>(cluster, '/v1/status')).sites[0]!.epoch;
    assert.equal(epochAfterSwitchovers, 3);

    // A database of a few hundred KiB, so that "only what differs" can be seen at failback:
    // 600 more orders with long customer names (8 at a time).
    const filler = 'x'.repeat(190);
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = w; i < 600; i += 8) {
          const r = await http(`${cluster.front}/api/orders`, { method: 'POST', body: { customer: `${filler}-${i}`, items: [{ productId: 1, qty: 1 }] } });
          assert.equal(r.status, 201);
        }
      }),
    );

    // Crash of h1: failover to h2.
    const st = await waitServing(cluster);
    process.kill(-st.hosts.find((h) => h.name === 'h1')!.pid!, 'SIGKILL');
    await waitServing(cluster, { host: 'h2', streaming: false }, 30_000);
    for (let i = 0; i < 20; i++) {
      const r = await http(`${cluster.front}/api/orders`, { method: 'POST', body: { customer: `after-crash-${i}`, items: [{ productId: 2, qty: 1 }] } });
      assert.equal(r.status, 201);
    }

    // The old host returns: it is not the primary, and its storage is brought up to date from h2.
    await api(cluster, '/v1/hosts/h1/power', { action: 'on' });
    await waitServing(cluster, { caughtUp: true }, 80_000);
    // Failback sent only what differs: array-a still held its (stale) copy of orders.db.
    const failback = await differentialSeed(t, ports(cluster.slot).storageB, 'array-a');
    const back = await api<{ status: string }>(cluster, '/v1/sites/shop/switchover', { to: 'h1' });
    assert.equal(back.status, 'done');
    const served = await http(`${cluster.front}/healthz`);
    assert.ok(served.servedBy?.startsWith(`${h1}:`), `served by h1 again (${served.servedBy})`);
    const orders = await http(`${cluster.front}/api/orders?customer=after-crash-19`);
    assert.equal(orders.status, 200);

    // Equal row counts and equal content on both storage systems once the replica has caught up.
    await waitServing(cluster, { caughtUp: true }, 80_000);
    await sleep(500);
    const a = ordersDigest(path.join(cluster.dir, 'array-a', 'volumes', 'shop'));
    const b = ordersDigest(path.join(cluster.dir, 'array-b', 'replicas', 'shop'));
    t.diagnostic(`orders.db array-a ${JSON.stringify(a)} array-b ${JSON.stringify(b)}`);
    assert.ok(a.orders >= during.acked.length + 20);
    assert.deepEqual(a, b);
    // Re-protection after the switchover back: array-b's just-demoted copy is the base.
    const again = await differentialSeed(t, ports(cluster.slot).storageA, 'array-b');
    assert.ok(again.generation > failback.generation);
  },
);

/**
 * The seed of orders.db's current replication generation on the storage processor at
 * `port` (shipping to `to`): it must be differential and have sent at most a quarter of
 * the pages and of the bytes of the database.
 */
async function differentialSeed(t: { diagnostic: (m: string) => void }, port: number, to: string): Promise<GenerationSeed> {
  const url = `http://127.0.0.1:${port}/v1/volumes/shop`;
  const vol = await waitUntil(
    `replication of shop to ${to} seeded`,
    async () => {
      const v = (await http(url)).body as VolumeStatus;
      return v.replication?.to === to && v.replication.state === 'streaming' && v.replication.seeds?.some((x) => x.db === 'orders.db') ? v : undefined;
    },
    20_000,
  );
  const seed = vol.replication!.seeds!.find((x) => x.db === 'orders.db')!;
  t.diagnostic(`generation to ${to}: ${JSON.stringify(seed)}; file bytes sent ${vol.replication!.fileBytesSent}`);
  assert.equal(seed.kind, 'differential', `the generation to ${to} was differential (${seed.fallback ?? 'no fallback'})`);
  // Pages that differ (the hot ones: last leaves, indexes, header) plus the WAL part
  // (frames committed since the last checkpoint, encoded against the image).
  assert.ok(seed.blocksSent * 4 <= seed.blocks, `sent ${seed.blocksSent} of ${seed.blocks} pages`);
  assert.ok(seed.bytesSent * 4 < seed.dbBytes, `sent ${seed.bytesSent} bytes for a ${seed.dbBytes}-byte orders.db`);
  return seed;
}
