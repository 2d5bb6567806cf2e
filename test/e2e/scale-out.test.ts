import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, http, sleep, startCluster, waitStreaming, waitUntil } from '../support/cluster.ts';
import { p95 } from '../support/read-load.ts';
import { scalingOptions, slowedUnderReads } from '../support/scaling.ts';
import { type Status, assertNoEvents, events, waitEvent } from '../support/views.ts';

/**
 * the primary slowed for real (a SIGSTOP/SIGCONT duty cycle on its whole
 * process group) under a bounded read-heavy load. Expected: a reader host is added
 * (scale-out), GETs are then answered by both hosts while every POST stays on the
 * primary, the p95 of reads comes back under the threshold; once the load ends and
 * the stabilization window passed, the reader is drained and powered off. Not
 * expected: a failover, a fence of the primary, a change of epoch, a third host.
 */

const THRESHOLD_MS = 100;

test(
  'scale-out: a slowed primary gets a reader; GETs on both, POSTs on the primary; the reader is given back after the load',
  { timeout: 150_000 },
  async (t) => {
    const cluster = await startCluster(scalingOptions({ max: 2, stabilization: '3s' }, { p95Ms: THRESHOLD_MS }));
    t.after(() => cluster.stop());
    await waitStreaming<Status>(cluster);
    const h1 = cluster.hostAddress('h1');
    const h3 = cluster.hostAddress('h3');
    const st0 = await api<Status>(cluster, '/v1/status');
    assert.deepEqual(st0.sites[0]!.readers, []);
    assert.equal(st0.hosts.find((h) => h.name === 'h3')!.power, 'off');
    const pid = st0.hosts.find((h) => h.name === 'h1')!.pid!;
    assert.ok(pid > 0);

    const { load, slow, slowFrom } = await slowedUnderReads(t, cluster.front, [pid], { maxMs: 70_000 });

    const added = await waitEvent(cluster, 'a reader serving (scale-out-complete)', (e) => e.kind === 'scale-out-complete', 50_000, 200).catch((e: Error) => {
      throw new Error(`${e.message}\n${cluster.output().slice(-3000)}`, { cause: e });
    });
    let evs = await events(cluster);
    const detected = evs.find((e) => e.kind === 'slowdown-detected')!;
    assert.ok(detected, 'slowdown-detected was raised');
    assert.ok(
      detected.data.detectedAt && detected.data.p95s && detected.data.thresholdP95Ms === THRESHOLD_MS && detected.data.windowMs === 2000,
      JSON.stringify(detected.data),
    );
    assert.equal(added.host, 'h3');
    const st1 = await waitUntil(
      'the reader healthy in status',
      async () => {
        const st = await api<Status>(cluster, '/v1/status');
        return st.sites[0]!.readers[0]?.healthy ? st : null;
      },
      5000,
      100,
    );
    assert.deepEqual(
      st1.sites[0]!.readers.map((r) => ({ host: r.host, address: r.address, healthy: r.healthy, state: r.state })),
      [{ host: 'h3', address: h3, healthy: true, state: 'serving' }],
    );
    assert.equal(st1.hosts.find((h) => h.name === 'h3')!.power, 'on');

    // Reads with the reader in the route: both hosts answer GETs, the primary every POST.
    const windowFrom = Date.now() + 1000;
    await sleep(5000);
    const windowTo = Date.now();
    const after = load.samples.filter((s) => s.at >= windowFrom && s.at <= windowTo);
    const gets = after.filter((s) => s.method === 'GET');
    const posts = after.filter((s) => s.method === 'POST');
    assert.ok(gets.length > 40 && posts.length > 5, `enough traffic: ${gets.length} GETs, ${posts.length} POSTs`);
    const getHosts = new Set(gets.map((s) => s.servedBy?.split(':')[0]));
    assert.ok(getHosts.has(h1) && getHosts.has(h3), `GETs answered by ${[...getHosts].join(', ')}`);
    assert.ok(
      posts.every((s) => s.servedBy?.split(':')[0] === h1 && s.status === 201),
      'every POST answered 201 by the primary',
    );
    assert.ok(
      after.every((s) => s.status === 200 || s.status === 201),
      `no failed request: ${JSON.stringify(after.filter((s) => s.status !== 200 && s.status !== 201).slice(0, 3))}`,
    );
    // GETs answered while slowed and before the reader (the slowdown is held window + 1 s
    // before it is acted on: from 0.5 s after it began to the detection).
    const before = load.samples.filter((s) => s.method === 'GET' && s.at >= slowFrom + 500 && s.at <= (detected.at as number));
    assert.ok(before.length >= 20, `enough GETs while slowed to judge their p95 (${before.length})`);
    const p95Before = p95(before.map((s) => s.ms));
    const p95After = p95(gets.map((s) => s.ms));
    t.diagnostic(
      `GET p95 while slowed without reader ${p95Before.toFixed(1)} ms (n=${before.length}); with the reader ${p95After.toFixed(1)} ms (n=${gets.length}); reader share ${((gets.filter((s) => s.servedBy?.startsWith(`${h3}:`)).length / gets.length) * 100).toFixed(0)}%`,
    );
    assert.ok(p95Before > THRESHOLD_MS, `reads were slow before: p95 ${p95Before}`);
    assert.ok(p95After < THRESHOLD_MS, `reads are under the threshold again: p95 ${p95After}`);
    // A reader serves what it holds: GET / and /public/* and the catalog, from its own copy.
    const products = await http(`${cluster.front}/api/products`);
    assert.equal(products.status, 200);
    assert.equal((products.body as unknown[]).length, 20);

    await slow.stop();
    await load.stop();
    const loadEnd = Date.now();

    // The load is gone: after the stabilization window, the reader is drained and powered off.
    const removed = await waitEvent(cluster, 'the reader given back (scale-in-complete)', (e) => e.kind === 'scale-in-complete', 45_000, 250);
    t.diagnostic(`scale-in ${removed.at - loadEnd} ms after the load ended: ${removed.message}`);
    assert.equal(removed.host, 'h3');
    assert.equal(removed.data.cause, 'low-load');
    const st2 = await api<Status>(cluster, '/v1/status');
    assert.deepEqual(st2.sites[0]!.readers, []);
    assert.equal(st2.hosts.find((h) => h.name === 'h3')!.power, 'off', 'the reader is powered off');
    const r = await http(`${cluster.front}/api/products`);
    assert.equal(r.status, 200);
    assert.equal(r.servedBy?.split(':')[0], h1);

    // Actions not taken: no failover, no fence, the primary and its epoch unchanged, no third host.
    evs = await events(cluster);
    const kinds = evs.map((e) => e.kind);
    assertNoEvents(evs, ['failover-started', 'failover-complete', 'fence-forced', 'failure-detected', 'global-slowdown']);
    assert.equal(kinds.filter((k) => k === 'scale-out-started').length, 1, 'exactly one scale-out (scale.max 2)');
    assert.ok(!evs.some((e) => e.kind.startsWith('power-off') && e.host === 'h1'), 'the primary was never powered off');
    assert.equal(st2.sites[0]!.primary.host, 'h1');
    assert.equal(st2.sites[0]!.epoch, st0.sites[0]!.epoch);
    assert.equal(st2.hosts.find((h) => h.name === 'h1')!.power, 'on');
  },
);
