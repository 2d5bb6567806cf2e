import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, sleep, startCluster, waitStreaming } from '../support/cluster.ts';
import { scalingOptions, slowedUnderReads } from '../support/scaling.ts';
import { type Status, events, waitEvent } from '../support/views.ts';

/**
 * a failover of a site that has a reader drops the reader (it never follows
 * the new primary): the new route names no reader, the reader's copy stops being fed
 * by the deposed primary's storage, and the scale controller takes it down (scale-in,
 * cause stale-epoch) and powers it off. No read is answered by it once the new
 * primary is routed; the failover target is the standby, never the reader.
 */

test('failover of a site with a reader: the reader is dropped, not moved', { timeout: 150_000 }, async (t) => {
  const cluster = await startCluster(scalingOptions({ max: 2, stabilization: '30s' }));
  t.after(() => cluster.stop());
  await waitStreaming<Status>(cluster);
  const h2 = cluster.hostAddress('h2');
  const h3 = cluster.hostAddress('h3');
  const st0 = await api<Status>(cluster, '/v1/status');
  const pid = st0.hosts.find((h) => h.name === 'h1')!.pid!;

  const { load, slow } = await slowedUnderReads(t, cluster.front, [pid], { maxMs: 90_000 });
  await waitEvent(cluster, 'a reader serving', (e) => e.kind === 'scale-out-complete', 50_000, 200);
  await sleep(1500);
  assert.ok(
    load.samples.some((s) => s.servedBy?.startsWith(`${h3}:`)),
    'the reader served reads',
  );
  await slow.stop();

  // The primary crashes for real.
  process.kill(-pid, 'SIGKILL');
  const done = await waitEvent(cluster, 'failover-complete', (e) => e.kind === 'failover-complete', 30_000);
  assert.equal(done.data.to, 'h2', 'the failover target is the standby, not the reader');
  const routedAt = done.data.servingAgainAt as number;

  const dropped = await waitEvent(cluster, 'the reader dropped', (e) => e.kind === 'scale-in-complete', 30_000, 200);
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
  const kinds = (await events(cluster)).map((e) => e.kind);
  assert.equal(kinds.filter((k) => k === 'failover-started').length, 1, 'one failover');
  assert.equal(kinds.filter((k) => k === 'scale-out-started').length, 1, 'no scale-out after the failover (the slowdown ended)');
});
