import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, sleep, startCluster, waitStreaming, waitUntil } from '../support/cluster.ts';
import { dutyCycle } from '../support/duty-cycle.ts';
import { startReadLoad } from '../support/read-load.ts';
import { type Status, type Ev, events } from '../support/views.ts';

/**
 * a failover of a site that has a reader drops the reader (it never follows
 * the new primary): the new route names no reader, the reader's copy stops being fed
 * by the deposed primary's storage, and the scale controller takes it down (scale-in,
 * cause stale-epoch) and powers it off. No read is answered by it once the new
 * primary is routed; the failover target is the standby, never the reader.
 */

test('failover of a site with a reader: the reader is dropped, not moved', { timeout: 150_000 }, async (t) => {
  const cluster = await startCluster({
    slot: 28,
    hosts: [
      { name: 'h1', storage: 'array-a', boot: true },
      { name: 'h2', storage: 'array-b', boot: true },
      { name: 'h3', storage: 'array-b', boot: false },
    ],
    readonly: ['catalog.db', 'public/'],
    health: { probe: { every: '100ms', timeout: '500ms', fall: 2, rise: 1 }, performance: { p95: '100ms', window: '2s' } },
    scale: { max: 2, cooldown: '3s', stabilization: '30s' },
  });
  t.after(() => cluster.stop());
  await waitStreaming<Status>(cluster);
  const h2 = cluster.hostAddress('h2');
  const h3 = cluster.hostAddress('h3');
  const st0 = await api<Status>(cluster, '/v1/status');
  const pid = st0.hosts.find((h) => h.name === 'h1')!.pid!;

  const load = startReadLoad(cluster.front, { rate: 120, readsPerWrite: 4, maxMs: 90_000 });
  t.after(() => load.stop());
  await sleep(1500);
  const slow = dutyCycle([pid], { stopMs: 150, runMs: 150 });
  t.after(() => slow.stop());
  let evs: Ev[] = [];
  await waitUntil(
    'a reader serving',
    async () => {
      evs = await events(cluster);
      return evs.find((e) => e.kind === 'scale-out-complete') ?? null;
    },
    50_000,
    200,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${evs.map((x) => `${x.kind}: ${x.message}`).join('\n')}`);
  });
  await sleep(1500);
  assert.ok(
    load.samples.some((s) => s.servedBy?.startsWith(`${h3}:`)),
    'the reader served reads',
  );
  await slow.stop();

  // The primary crashes for real.
  process.kill(-pid, 'SIGKILL');
  const done = await waitUntil(
    'failover-complete',
    async () => {
      evs = await events(cluster);
      return evs.find((e) => e.kind === 'failover-complete') ?? null;
    },
    30_000,
    100,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${evs.map((x) => `${x.kind}: ${x.message}`).join('\n')}`);
  });
  assert.equal(done.data.to, 'h2', 'the failover target is the standby, not the reader');
  const routedAt = done.data.servingAgainAt as number;

  const dropped = await waitUntil(
    'the reader dropped',
    async () => {
      evs = await events(cluster);
      return evs.find((e) => e.kind === 'scale-in-complete') ?? null;
    },
    30_000,
    200,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${evs.map((x) => `${x.kind}: ${x.message}`).join('\n')}`);
  });
  assert.equal(dropped.data.cause, 'stale-epoch');
  await sleep(1000);
  await load.stop();

  const st1 = await api<Status>(cluster, '/v1/status');
  assert.equal(st1.sites[0]!.primary.host, 'h2');
  assert.equal(st1.sites[0]!.epoch, st0.sites[0]!.epoch + 1);
  assert.deepEqual(st1.sites[0]!.readers, []);
  assert.equal(st1.hosts.find((h) => h.name === 'h3')!.power, 'off', 'the dropped reader is powered off');
  // Nothing read from the reader once the new primary was routed; writes went to the new primary.
  const late = load.samples.filter((s) => s.startedAt > routedAt + 20);
  assert.ok(late.length > 50, `traffic after the failover: ${late.length}`);
  assert.ok(!late.some((s) => s.servedBy?.startsWith(`${h3}:`)), 'no answer from the old reader after the new route');
  assert.ok(
    late.filter((s) => s.method === 'POST').every((s) => s.status === 201 && s.servedBy?.startsWith(`${h2}:`)),
    'writes on the new primary',
  );
  const kinds = evs.map((e) => e.kind);
  assert.equal(kinds.filter((k) => k === 'failover-started').length, 1, 'one failover');
  assert.equal(kinds.filter((k) => k === 'scale-out-started').length, 1, 'no scale-out after the failover (the slowdown ended)');
});
