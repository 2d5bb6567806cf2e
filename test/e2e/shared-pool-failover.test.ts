import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missingOrders, startLoad, type AckedOrder } from '../support/load.ts';
import {
  assertOneFailover,
  assertOrdersTakenBy,
  assertOthersOn,
  events,
  frontOf,
  killHost,
  lastEventId,
  powerOnAndTrust,
  siteOf,
  startLayout,
  status,
  storageOf,
  waitProtected,
  waitServedBy,
  type Layout,
} from '../support/one-disk-per-host.ts';
import { assertNoEvents } from '../support/views.ts';

/**
 * Two sites share a pool of two spares, one disk per host: shop (sync) on a1, outlet
 * (async) on b1, spares s1 and s2. Their replicas are spread over the spares (shop on
 * s1's disk, outlet on s2's). Four failures in a row, under load on both sites, each
 * killed host powered on again and trusted before the next kill:
 *
 * 1. a1 dies: shop takes s1; its replica goes to s2's disk (a1 is not trusted yet).
 * 2. b1 dies: outlet takes s2. shop's replica is moved off s2's disk (`replica-moved`)
 *    to a1's, trusted again; outlet's goes to b1's disk and protects it once b1 is back.
 * 3. s1 dies: shop fails back to a1.
 * 4. s2 dies: outlet fails back to b1.
 *
 * Each site is served every time by the host `status` named next; shop loses no
 * acknowledged order, outlet nothing acknowledged before the replication lag of a
 * kill. The cooldown is off here (going back to a1 and b1 is a return to the pair of
 * the previous failover, which the cooldown holds back: failover-cooldown.test.ts).
 */

const layout: Layout = {
  hosts: ['a1', 'b1', 's1', 's2'],
  pools: { spares: ['s1', 's2'] },
  sites: [
    { name: 'shop', primary: 'a1', standby: 'spares', replication: 'sync' },
    { name: 'outlet', primary: 'b1', standby: 'spares', replication: 'async' },
  ],
  failover: { cooldown: '0s' },
};

test(
  'two sites sharing a pool, one disk per host: four failures in a row under load — each served by the host named next, replicas placed and moved, no acknowledged order lost',
  { timeout: 150_000 },
  async (t) => {
    const { cluster, addr } = await startLayout(t, layout);
    const front = { shop: cluster.front, outlet: frontOf(cluster, 1) };

    await waitProtected(cluster, 'shop', 'a1', 's1');
    await waitProtected(cluster, 'outlet', 'b1', 's2');
    const loads = {
      shop: startLoad(front.shop, { workers: 2, maxMs: 130_000, tag: 'pool-shop' }),
      outlet: startLoad(front.outlet, { workers: 2, maxMs: 130_000, tag: 'pool-outlet' }),
    };
    t.after(async () => {
      await loads.shop.stop();
      await loads.outlet.stop();
    });

    const rounds = [
      { site: 'shop', kill: 'a1', to: 's1', next: 's2', other: { site: 'outlet', primary: 'b1', next: 's2' }, moved: null, powerOn: true },
      {
        site: 'outlet',
        kill: 'b1',
        to: 's2',
        next: 'b1',
        other: { site: 'shop', primary: 's1', next: 'a1' },
        moved: { site: 'shop', from: 's2', to: 'a1' },
        powerOn: true,
      },
      { site: 'shop', kill: 's1', to: 'a1', next: 's1', other: { site: 'outlet', primary: 's2', next: 'b1' }, moved: null, powerOn: true },
      { site: 'outlet', kill: 's2', to: 'b1', next: 's1', other: { site: 'shop', primary: 'a1', next: 's1' }, moved: null, powerOn: false },
    ] as const;
    const kills: { site: string; at: number; lagMs: number }[] = [];
    const figures: string[] = [];
    for (const [i, r] of rounds.entries()) {
      const before = await lastEventId(cluster);
      const lagMs = siteOf(await status(cluster), r.site).replication.lagMs ?? 0;
      const kill = await killHost(cluster, r.kill);
      kills.push({ site: r.site, at: kill.at, lagMs });
      const servedAt = await waitServedBy(front[r.site], addr[r.to]!);
      // The site is protected again; where the new primary's replica goes may wait for the
      // killed host to be trusted again (round 2: outlet's replica on b1's disk).
      if (r.powerOn && r.next === r.kill) await powerOnAndTrust(cluster, r.kill, before);
      await waitProtected(cluster, r.site, r.to, r.next);
      await waitProtected(cluster, r.other.site, r.other.primary, r.other.next);

      const evs = (await events(cluster)).filter((e) => e.id > before);
      assert.equal(assertOneFailover(evs, `round ${i + 1}`, r.kill, r.to).site, r.site);
      assertNoEvents(evs, ['failover-deferred', 'failover-blocked', 'failover-failed', 'unprotected', 'reprotect-failed', 'spare-denied'], `round ${i + 1}: `);
      assert.ok(!evs.some((e) => e.kind === 'pool-empty' && e.data.waiting === true), `round ${i + 1}: no site waits for a target`);
      const moved = evs.filter((e) => e.kind === 'replica-moved');
      if (r.moved) {
        assert.equal(moved.length, 1, `round ${i + 1}: one replica moved`);
        assert.equal(moved[0]!.site, r.moved.site);
        assert.deepEqual([moved[0]!.data.from, moved[0]!.data.to, moved[0]!.data.host], [storageOf(r.moved.from), storageOf(r.moved.to), r.moved.to]);
        assert.match(
          moved[0]!.message,
          new RegExp(
            `no host on ${storageOf(r.moved.from)} can take ${r.moved.site} over now \\(${r.moved.from} is the (primary|runbook target) of ${r.site}\\)`,
          ),
        );
      } else {
        assert.equal(moved.length, 0, `round ${i + 1}: no replica moved (${moved.map((e) => e.message).join(' | ')})`);
      }
      const st = await status(cluster);
      // Fenced; a round that needed the killed host back (it is the next target) powered it on itself.
      const poweredBack = r.powerOn && r.next === r.kill;
      assert.equal(
        st.hosts.find((h) => h.name === r.kill)!.power,
        poweredBack ? 'on' : 'off',
        poweredBack ? `${r.kill} was powered on again by the test` : `${r.kill} is fenced`,
      );
      assertOthersOn(st, r.kill, `round ${i + 1}: `);
      assert.equal(
        evs.filter((e) => e.kind === 'failover-started' && e.site === r.other.site).length,
        0,
        `round ${i + 1}: ${r.other.site} was not failed over`,
      );
      figures.push(`${r.site} ${r.kill} → ${r.to} served again after ${servedAt - kill.at} ms`);
      if (r.powerOn && r.next !== r.kill) await powerOnAndTrust(cluster, r.kill, before);
    }
    const result = { shop: await loads.shop.stop(), outlet: await loads.outlet.stop() };

    const all = await events(cluster);
    assert.equal(all.filter((e) => e.kind === 'failover-started').length, 4, 'four failovers, no more');
    const missingShop = await missingOrders(front.shop, result.shop.acked);
    const missingOutlet = await missingOrders(front.outlet, result.outlet.acked);
    // outlet is async: an order may be lost only if it was acknowledged within the replication lag before a kill of its primary.
    const inWindow = (o: AckedOrder) => kills.some((k) => k.site === 'outlet' && o.ackAt <= k.at && o.ackAt >= k.at - k.lagMs - 300);
    t.diagnostic(
      `${figures.join('; ')}; shop (sync) acknowledged ${result.shop.acked.length}, missing ${missingShop.length}; outlet (async) acknowledged ${result.outlet.acked.length}, missing ${missingOutlet.length} (lags at its kills: ${kills
        .filter((k) => k.site === 'outlet')
        .map((k) => `${k.lagMs} ms`)
        .join(', ')})`,
    );
    for (const [site, acked] of [
      ['shop', result.shop.acked],
      ['outlet', result.outlet.acked],
    ] as const) {
      assert.ok(acked.length >= 60, `enough acknowledged orders on ${site} (${acked.length})`);
    }
    assertOrdersTakenBy(result.shop.acked, addr, ['a1', 's1'], 'shop ');
    assertOrdersTakenBy(result.outlet.acked, addr, ['b1', 's2'], 'outlet ');
    assert.deepEqual(missingShop, [], 'shop (sync): no acknowledged order lost');
    assert.deepEqual(
      missingOutlet.filter((o) => !inWindow(o)),
      [],
      'outlet (async): nothing acknowledged before the lag window of a kill lost',
    );
    // Each killed host's own disk outlived it: when its storage shipped the tail at the drain, nothing at all is lost.
    const outletDone = all.filter((e) => e.kind === 'failover-complete' && e.site === 'outlet');
    t.diagnostic(`outlet's tails shipped at the drain: ${outletDone.map((e) => String(e.data.tailShipped)).join(', ')}`);
    if (outletDone.length > 0 && outletDone.every((e) => e.data.tailShipped === true))
      assert.deepEqual(missingOutlet, [], 'outlet (async): the tails were shipped, so no acknowledged order is lost');
  },
);
