import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, http, sleep, startCluster, waitUntil } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import type { Status, Ev } from '../support/views.ts';

const variants = [
  { name: 'controller in its own process', controllerOn: undefined },
  // The same behaviour with the controller on the storage processor.
  { name: 'controller inside storage processor array-b', controllerOn: 'array-b' },
];

for (const v of variants)
  test(
    `SIGKILL of the primary host under load (${v.name}): the shop serves again from another subnet, no acknowledged order is lost`,
    { timeout: 180_000 },
    async (t) => {
      const cluster = await startCluster({ controllerOn: v.controllerOn });
      t.after(() => cluster.stop());
      const h1 = cluster.hostAddress('h1');

      const before = await api<Status>(cluster, '/v1/status');
      const site = before.sites[0]!;
      assert.equal(site.state, 'serving');
      assert.equal(site.primary.host, 'h1');
      await waitUntil('replication streaming', async () => {
        const st = await api<Status>(cluster, '/v1/status');
        return st.sites[0]!.replication.state === 'streaming';
      });
      const first = await http(`${cluster.front}/api/products`);
      assert.equal(first.status, 200);
      assert.equal(first.servedBy?.split(':')[0], h1);

      const load = startLoad(cluster.front, { workers: 4, maxMs: 60_000 });
      t.after(() => load.stop());
      await sleep(1500);
      const pid = (await api<Status>(cluster, '/v1/status')).hosts.find((h) => h.name === 'h1')!.pid!;
      assert.ok(pid > 0, 'the primary host has a process group');
      const killAt = Date.now();
      process.kill(-pid, 'SIGKILL');

      const served = await waitUntil(
        'an answer from another host',
        async () => {
          const r = await http(`${cluster.front}/healthz`).catch(() => null);
          return r && r.status === 200 && r.servedBy && !r.servedBy.startsWith(`${h1}:`) ? r : null;
        },
        30_000,
        20,
      );
      await sleep(1000);
      const result = await load.stop();

      const newAddress = served.servedBy!.split(':')[0]!;
      assert.notEqual(newAddress.split('.').slice(0, 3).join('.'), h1.split('.').slice(0, 3).join('.'), 'the new primary is on another subnet');
      const after = await api<Status>(cluster, '/v1/status');
      assert.equal(after.sites[0]!.state, 'serving');
      assert.equal(after.sites[0]!.epoch, site.epoch + 1);
      assert.equal(after.hosts.find((h) => h.name === 'h1')!.power, 'off', 'the old host is fenced');
      const power = await api<{ power: string }>(cluster, '/v1/hosts/h1/power');
      assert.equal(power.power, 'off');

      const events = (await api<{ events: Ev[] }>(cluster, '/v1/events')).events;
      const done = events.find((e) => e.kind === 'failover-complete');
      assert.ok(done, `a failover-complete event: ${events.map((e) => e.kind).join(', ')}`);
      assert.equal(typeof done.data.detectionMs, 'number');
      assert.equal(typeof done.data.servingAgainMs, 'number');
      assert.ok('replicationLagMsAtFailure' in done.data);
      const lagAtKill = Number(done.data.replicationLagMsAtFailure ?? 0);

      // The host died, its storage processor did not: once the host is fenced it ships what the replica
      // lacked (the failover's drain step), so every acknowledged order is present, whatever the lag.
      const beforeKill = result.acked.filter((o) => o.ackAt < killAt);
      assert.ok(beforeKill.length > 20, `enough orders before the kill (${beforeKill.length})`);
      const missing = await missingOrders(cluster.front, result.acked);
      assert.deepEqual(missing, [], 'no acknowledged order is lost');
      const drain = events.find((e) => e.kind === 'drain-incomplete');
      assert.equal(done.data.tailShipped, true, `the old storage shipped the tail before the promotion${drain ? `: ${drain.message}` : ''}`);
      t.diagnostic(
        `orders acked: ${result.acked.length}, lag at kill ${lagAtKill} ms (shipped at the drain), lost ${missing.length}, detection ${String(done.data.detectionMs)} ms, serving again ${String(done.data.servingAgainMs)} ms after detection, GETs failed ${result.getsFailed.length}, POSTs failed ${result.postsFailed.length}`,
      );
      // Orders acknowledged after the failover were written to the new primary.
      assert.ok(
        result.acked.some((o) => o.servedBy?.startsWith(`${newAddress}:`)),
        'orders are taken by the new primary',
      );
    },
  );
