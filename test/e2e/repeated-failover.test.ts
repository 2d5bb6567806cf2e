import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missingOrders, startLoad } from '../support/load.ts';
import {
  assertOneFailover,
  assertOrdersTakenBy,
  assertOthersOn,
  events,
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
 * One disk per host (h1, h2, h3 each with its own storage system), pool [h2, h3],
 * primary h1, sync replication, orders written all along. Three failures in a row:
 * kill the primary, power the old host on and wait until it is trusted again, kill
 * the next. Each time the replica was on the disk of the host `status` names as
 * `next`, that host takes over at once (the cooldown, 60 s here, is waived for
 * these independent crashes), the site is re-protected onto the next able host —
 * the old primary once it is trusted again (failback) — and no acknowledged order
 * is lost.
 */

const layout: Layout = {
  hosts: ['h1', 'h2', 'h3'],
  pools: { spares: ['h2', 'h3'] },
  sites: [{ name: 'shop', primary: 'h1', standby: 'spares', replication: 'sync' }],
  failover: { cooldown: '60s' },
};

test(
  'one disk per host, sync: three failures in a row under load — served each time by the host status named next, re-protected each time, 0 acknowledged orders lost',
  { timeout: 120_000 },
  async (t) => {
    const { cluster, addr } = await startLayout(t, layout);

    // h1 serves; its replica is on h2's disk (the first free spare), and status says h2 is next.
    const first = await waitProtected(cluster, 'shop', 'h1', 'h2');
    const epoch0 = first.epoch;
    const load = startLoad(cluster.front, { workers: 3, maxMs: 100_000, tag: 'repeated' });
    t.after(() => load.stop());

    // Each round: the primary is killed; the host named next takes over; the site is
    // protected again by the host expected next; the killed host is powered on again.
    const rounds = [
      { kill: 'h1', to: 'h2', next: 'h3', powerOn: true },
      { kill: 'h2', to: 'h3', next: 'h1', powerOn: true },
      { kill: 'h3', to: 'h1', next: 'h2', powerOn: false },
    ];
    const figures: string[] = [];
    for (const [i, r] of rounds.entries()) {
      const before = await lastEventId(cluster);
      const acked = load.result.acked.length;
      const kill = await killHost(cluster, r.kill);
      const servedAt = await waitServedBy(cluster.front, addr[r.to]!);
      const done = await waitProtected(cluster, 'shop', r.to, r.next);
      assert.equal(done.epoch, epoch0 + i + 1, 'one epoch per failover');
      const evs = (await events(cluster)).filter((e) => e.id > before);
      const complete = assertOneFailover(evs, `round ${i + 1}`, r.kill, r.to);
      assertNoEvents(
        evs,
        ['failover-deferred', 'failover-blocked', 'failover-failed', 'pool-empty', 'replica-moved', 'unprotected', 'reprotect-failed'],
        `round ${i + 1}: `,
      );
      // Rounds 2 and 3 come within the 60 s cooldown: let through as independent crashes, each avoiding the last source.
      const waived = evs.filter((e) => e.kind === 'cooldown-waived');
      if (i === 0) assert.equal(waived.length, 0, 'the first failover needs no waiver');
      else {
        assert.equal(waived.length, 1, `round ${i + 1} was within the cooldown and waived`);
        assert.match(
          waived[0]!.message,
          new RegExp(
            `automatic failover from ${r.kill} starts at once: .*the cooldown is 60000 ms .*but this is an independent crash: hard evidence against ${r.kill}`,
          ),
        );
        assert.deepEqual(waived[0]!.data.avoid, [rounds[i - 1]!.kill]);
      }
      const st = await status(cluster);
      assert.equal(st.hosts.find((h) => h.name === r.kill)!.power, 'off', `${r.kill} is fenced`);
      assertOthersOn(st, r.kill);
      assert.equal(siteOf(st, 'shop').replication.to, storageOf(r.next));
      assert.ok(load.result.acked.length > acked, `orders were acknowledged during round ${i + 1}`);
      figures.push(
        `round ${i + 1}: ${r.kill} → ${r.to}, served again ${servedAt - kill.at} ms after the kill (detection ${String(complete.data.detectionMs)} ms)`,
      );
      if (r.powerOn) await powerOnAndTrust(cluster, r.kill, before);
    }
    // The last round's new primary takes orders too, before the load stops.
    await waitServedBy(cluster.front, addr.h1!);
    const result = await load.stop();

    const all = await events(cluster);
    assert.equal(all.filter((e) => e.kind === 'failover-started').length, 3, 'three failovers, no more');
    assert.equal(all.filter((e) => e.kind === 'failure-detected').length, 3, 'one detection per kill');
    assertOrdersTakenBy(result.acked, addr, ['h1', 'h2', 'h3']);
    assert.ok(result.acked.length >= 50, `enough acknowledged orders to prove something (${result.acked.length})`);
    const missing = await missingOrders(cluster.front, result.acked);
    t.diagnostic(`${figures.join('; ')}; orders acknowledged ${result.acked.length}, missing ${missing.length}, POSTs refused ${result.postsFailed.length}`);
    assert.deepEqual(missing, [], 'sync mode: no acknowledged order is lost across three failovers');
  },
);
