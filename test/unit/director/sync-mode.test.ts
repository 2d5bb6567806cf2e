import assert from 'node:assert/strict';
import { test } from 'node:test';
import { siteStats, startUpstream, startDirector, makeConfig, client, putRoute, waitFor as waitUntil, closedPort } from './helpers.ts';
import { placeOrder, startSyncStack } from './sync-fixture.ts';

/**
 * Sync mode end to end: director + two real storage processors + the real shop. Every
 * test is bounded (no request may hang) and stops what it started in t.after.
 */

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('sync: after every 201 the replica already holds the order (8 writers, frequent WAL restarts)', async (t) => {
  // checkpointFrames 20: the shipper checkpoints often, so the app restarts its WAL many times meanwhile.
  const s = await startSyncStack({ sync: 'default', tuning: { walPollMs: 10, checkpointFrames: 20, fileScanMs: 200 } });
  t.after(() => s.stop());
  const missing: number[] = [];
  let ok = 0;
  await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 15; i++) {
        const r = await placeOrder(s.front, `w${w}`);
        assert.equal(r.status, 201, `order ${w}/${i}: ${JSON.stringify(r)}`);
        ok++;
        const ids = await s.replicaOrderIds();
        if (!ids.has(r.id!)) missing.push(r.id!);
      }
    }),
  );
  assert.equal(ok, 120);
  assert.deepEqual(missing, [], 'orders acknowledged but not on the replica');
  const st = siteStats(s.director);
  assert.ok((st.sync?.waits ?? 0) >= 120, `sync waits counted: ${JSON.stringify(st.sync)}`);
  assert.equal(st.sync?.degraded, 0);
  assert.equal(st.sync?.timeouts, 0);
  assert.equal((await s.volumeStatus()).sync?.state, 'sync');
  const up = st.upstreams.find((u) => u.upstream === s.shopAddr)!;
  assert.equal(up.inflight, 0, 'nothing in flight once every answer is out');
  const metrics = await (await fetch(`${s.director.adminUrl}/metrics`)).text();
  assert.match(metrics, /understudy_director_sync_waits_total\{site="shop"\} \d+/);
  assert.match(metrics, /understudy_director_sync_wait_seconds_count\{site="shop",outcome="sync"\} \d+/);
});

test('degrade: replica lost → writes go on after ≤ timeout, volume degraded; back to sync once it returns', async (t) => {
  const s = await startSyncStack({ sync: null });
  t.after(() => s.stop());
  await s.setSync({ storageUrl: s.urlA, onReplicaLost: 'degrade', timeoutMs: 500 });
  const first = await placeOrder(s.front, 'before');
  assert.equal(first.status, 201);
  assert.ok((await s.replicaOrderIds()).has(first.id!));

  await s.stopReplica();
  const lost = await placeOrder(s.front, 'lost');
  assert.equal(lost.status, 201, 'released (degrade)');
  assert.ok(lost.ms >= 400 && lost.ms < 2500, `first write waited about the timeout: ${lost.ms} ms`);
  const st = await s.volumeStatus();
  assert.equal(st.sync?.state, 'degraded');
  assert.match(st.sync?.reason ?? '', /array-b did not confirm within 500 ms/);
  for (let i = 0; i < 5; i++) {
    const r = await placeOrder(s.front, 'degraded');
    assert.equal(r.status, 201);
    assert.ok(r.ms < 400, `degraded: released at once (${r.ms} ms)`);
  }
  assert.ok((siteStats(s.director).sync?.degraded ?? 0) >= 6);

  await s.startReplica();
  await waitFor('sync state restored', async () => (await s.volumeStatus()).sync?.state === 'sync', 15_000);
  const back = await placeOrder(s.front, 'back');
  assert.equal(back.status, 201);
  const ids = await s.replicaOrderIds();
  assert.ok(ids.has(back.id!) && ids.has(lost.id!), 'after recovery the replica has the degraded writes and the new one');
});

test('strict: replica lost → 503 US_SYNC_TIMEOUT with Retry-After within the bound, never a hang; storage unreachable: 503 US_OUTCOME_UNKNOWN in either mode', async (t) => {
  const s = await startSyncStack({ sync: null });
  t.after(() => s.stop());
  await s.setSync({ storageUrl: s.urlA, onReplicaLost: 'strict', timeoutMs: 400 });
  assert.equal((await placeOrder(s.front, 'ok')).status, 201);

  await s.stopReplica();
  const rs = await Promise.all(Array.from({ length: 4 }, () => placeOrder(s.front, 'strict')));
  for (const r of rs) {
    assert.equal(r.status, 503);
    assert.equal(r.code, 'US_SYNC_TIMEOUT');
    assert.equal(r.retryAfter, '1');
    assert.ok(r.ms >= 350 && r.ms < 2000, `bounded: ${r.ms} ms`);
  }
  assert.equal((await s.volumeStatus()).sync?.state, 'sync', 'strict never marks the volume degraded');
  assert.ok((siteStats(s.director).sync?.timeouts ?? 0) >= 4);
  // Reads are never held.
  const read = await fetch(`${s.front}/api/products`);
  assert.equal(read.status, 200);
  await read.arrayBuffer();

  // The storage processor itself cannot be asked: the outcome is unknown, in strict and in degrade mode
  // (degrade releases only what the storage processor released: its machine may be going down with the write).
  const nowhere = `http://${await closedPort()}`;
  await s.setSync({ storageUrl: nowhere, onReplicaLost: 'strict', timeoutMs: 400 });
  const u1 = await placeOrder(s.front, 'nowhere');
  assert.equal(u1.status, 503);
  assert.equal(u1.code, 'US_OUTCOME_UNKNOWN');
  await s.setSync({ storageUrl: nowhere, onReplicaLost: 'degrade', timeoutMs: 400 });
  const u2 = await placeOrder(s.front, 'nowhere');
  assert.equal(u2.status, 503);
  assert.equal(u2.code, 'US_OUTCOME_UNKNOWN');
  const sync = siteStats(s.director).sync!;
  assert.ok(sync.unreachable >= 2, JSON.stringify(sync));

  // The replica returns: strict writes are confirmed again.
  await s.startReplica();
  await s.setSync({ storageUrl: s.urlA, onReplicaLost: 'strict', timeoutMs: 2000 });
  await waitFor('a strict write confirmed again', async () => (await placeOrder(s.front, 'again')).status === 201, 15_000);
});

test('inflight counts requests sent and not answered yet, per upstream', async (t) => {
  const up = await startUpstream(t, 'u1');
  up.delayMs = 300;
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: up.addr, readers: [] });
  const pending = Promise.all([http(`${d.frontUrl('shop')}/a`, { method: 'POST', body: {} }), http(`${d.frontUrl('shop')}/b`)]);
  await waitUntil(() => siteStats(d).upstreams.find((u) => u.upstream === up.addr)?.inflight === 2, 2000, 'inflight 2');
  await pending;
  assert.equal(siteStats(d).upstreams.find((u) => u.upstream === up.addr)?.inflight, 0);
});

test('route table: sync is validated, kept, and optional', async (t) => {
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  const bad = await putRoute(http, d, {
    site: 'shop',
    epoch: 1,
    primary: '127.0.0.1:1',
    readers: [],
    sync: { storageUrl: 'nope', onReplicaLost: 'maybe', timeoutMs: -1 },
  } as never);
  assert.equal(bad.status, 400);
  const msg = (bad.json as { error: { message: string } }).error.message;
  for (const f of ['sync.storageUrl', 'sync.onReplicaLost', 'sync.timeoutMs']) assert.match(msg, new RegExp(f.replace('.', '\\.')));
  const good = await putRoute(http, d, {
    site: 'shop',
    epoch: 1,
    primary: '127.0.0.1:1',
    readers: [],
    sync: { storageUrl: 'http://127.0.0.1:7100/', onReplicaLost: 'strict', timeoutMs: 2000 },
  });
  assert.equal(good.status, 200);
  assert.deepEqual((good.json as { sync: unknown }).sync, { storageUrl: 'http://127.0.0.1:7100', onReplicaLost: 'strict', timeoutMs: 2000 });
  const none = await putRoute(http, d, { site: 'shop', epoch: 1, primary: '127.0.0.1:1', readers: [], sync: null });
  assert.equal((none.json as { sync?: unknown }).sync, undefined);
});
