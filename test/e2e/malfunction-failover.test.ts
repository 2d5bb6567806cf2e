import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, http, sleep, startCluster, waitStreaming } from '../support/cluster.ts';
import { immutableOrdersDb } from '../support/immutable-db.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { type Status, assertNoEvents, events, waitEvent } from '../support/views.ts';

const WINDOW_MS = 2000;

/**
 * The fault: the primary's order database can no longer be written (immutableOrdersDb:
 * every write of the running shop fails, reads go on).
 */

test(
  'the primary answers 500 to every write (orders.db immutable): malfunction failover after the window, fenced, GETs kept working',
  { timeout: 60_000 },
  async (t) => {
    const cluster = await startCluster({ replication: 'sync', health: { malfunction: { errorRate: 0.2, window: `${WINDOW_MS}ms` } } });
    const ordersDb = immutableOrdersDb(t, cluster);
    t.after(() => cluster.stop());
    const before = await waitStreaming<Status>(cluster);
    assert.equal(before.sites[0]!.primary.host, 'h1');
    const h1 = cluster.hostAddress('h1');

    const load = startLoad(cluster.front, { workers: 4, maxMs: 40_000 });
    t.after(() => load.stop());
    await sleep(1500);
    assert.ok(load.result.acked.length > 0, 'orders were accepted before the fault');

    const faultAt = Date.now();
    ordersDb.apply();
    // The fault is what the test says: a write now fails with 500, a read still works (direct to the app).
    const w = await http(`http://${h1}:3000/api/orders`, { method: 'POST', body: { customer: 'probe-write', items: [{ productId: 1, qty: 1 }] } });
    assert.equal(w.status, 500, 'a write to the primary fails');
    const r = await http(`http://${h1}:3000/api/products`);
    assert.equal(r.status, 200, 'a read from the primary works');

    const done = await waitEvent(cluster, 'failover-complete', (e) => e.kind === 'failover-complete', 25_000, 50);
    // The old volume is fenced now (h1 is off); let the storage processor write it again (re-protect).
    ordersDb.release();
    const evs = await events(cluster);

    // The action taken: a malfunction failover, its event naming the error rate and the window.
    const detected = evs.filter((e) => e.kind === 'failure-detected');
    assert.equal(detected.length, 1, `one failure-detected: ${detected.map((e) => e.message).join(' | ')}`);
    const d = detected[0]!;
    assert.equal(d.host, 'h1');
    assert.equal(d.data.failure, 'malfunction', d.message);
    assert.equal(d.data.kind, 'traffic');
    assert.match(d.message, /malfunction: error rate \d+(\.\d+)? %: \d+ of \d+ requests failed .* over a 2000 ms window/);
    const ev = d.data.evidence as {
      windowMs: number;
      requests: number;
      errors: number;
      errors5xx: number;
      rate: number;
      errorRate: number;
      minRequests: number;
    };
    assert.equal(ev.windowMs, WINDOW_MS);
    assert.equal(ev.errorRate, 0.2);
    assert.ok(ev.rate >= 0.2, `rate ${ev.rate} ≥ 0.2`);
    assert.ok(ev.requests >= ev.minRequests, `${ev.requests} requests ≥ the minimum ${ev.minRequests}`);
    assert.ok(ev.errors5xx > 0 && ev.errors <= ev.requests);
    const detectionMs = Number(d.data.detectedAt) - faultAt;
    assert.ok(detectionMs >= WINDOW_MS * 0.6, `not before (most of) the window: ${detectionMs} ms`);
    assert.ok(detectionMs <= WINDOW_MS + 1500, `within the window + 1.5 s: ${detectionMs} ms`);
    const started = evs.filter((e) => e.kind === 'failover-started');
    assert.equal(started.length, 1);
    assert.match(started[0]!.message, /malfunction/);

    // Fenced, and the site moved.
    const after = await api<Status>(cluster, '/v1/status');
    assert.equal(after.hosts.find((h) => h.name === 'h1')!.power, 'off', 'the malfunctioning primary is fenced');
    assert.equal(after.sites[0]!.epoch, before.sites[0]!.epoch + 1);
    assert.notEqual(after.sites[0]!.primary.host, 'h1');
    assert.equal(done.data.to, after.sites[0]!.primary.host);

    // Writes work again, on the new primary.
    const ok = await http(`${cluster.front}/api/orders`, { method: 'POST', body: { customer: 'after-failover', items: [{ productId: 2, qty: 1 }] } });
    assert.equal(ok.status, 201);
    assert.ok(!ok.servedBy?.startsWith(`${h1}:`));
    await sleep(500);
    const result = await load.stop();

    // GETs kept working, before the failover too; POSTs failed only with 500 (the fault) or 503 (outcome unknown at the fence).
    assert.deepEqual(result.getsFailed, [], 'no GET failed');
    const failedBefore = result.postsFailed.filter((f) => f.at < Number(d.data.detectedAt));
    assert.ok(failedBefore.length > 0 && failedBefore.every((f) => f.status === 500), 'the writes failed with 500 during the fault');
    assert.ok(
      result.postsFailed.every((f) => f.status === 500 || f.status === 503),
      `POST failures: ${[...new Set(result.postsFailed.map((f) => f.status))].join(', ')}`,
    );
    const missing = await missingOrders(cluster.front, result.acked);
    assert.deepEqual(missing, [], 'every order that got 201 is present');

    // The actions not taken: nothing else started, deferred or blocked; one change of primary.
    const final = await events(cluster);
    const kinds = final.map((e) => e.kind);
    assert.equal(kinds.filter((k) => k === 'failover-started').length, 1);
    assert.equal(kinds.filter((k) => k === 'failure-detected').length, 1);
    assertNoEvents(final, ['failover-deferred', 'failover-blocked', 'failover-failed', 'restore-started', 'switchover-started']);
    assert.equal((await api<Status>(cluster, '/v1/status')).sites[0]!.epoch, before.sites[0]!.epoch + 1);
    t.diagnostic(
      `malfunction detected ${detectionMs} ms after the fault (window ${WINDOW_MS} ms): ${d.message}; serving again ${String(done.data.servingAgainMs)} ms after detection; acked ${result.acked.length}, POSTs failed ${result.postsFailed.length}, GETs ok ${result.getsOk}`,
    );
  },
);
