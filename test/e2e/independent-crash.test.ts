import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitUntil } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { events, killHost, siteOf, sleep, startLayout, status, waitProtected, waitServedBy, type Layout } from '../support/one-disk-per-host.ts';
import { assertNoEvents } from '../support/views.ts';

/**
 * The failover cooldown (the default, 10 s) protects against flapping between the
 * same hosts, not against an independent crash: h1 is SIGKILLed, h2 takes over; 5 s
 * after the first kill h2 is SIGKILLed too, while the cooldown still runs. The second
 * failover starts at once — no `failover-deferred` — to h3 (the replica is on its disk),
 * with a `cooldown-waived` event that names the rule. (A flap between the same pair
 * is still deferred: test/e2e/failover-cooldown.test.ts and the governor's unit tests.)
 */

const layout: Layout = {
  hosts: ['h1', 'h2', 'h3'],
  pools: { spares: ['h2', 'h3'] },
  sites: [{ name: 'shop', primary: 'h1', standby: 'spares', replication: 'async' }],
};

test(
  'two crashes of different hosts 5 s apart: the second failover starts at once, within the cooldown, with nothing deferred',
  { timeout: 90_000 },
  async (t) => {
    const { cluster, addr } = await startLayout(t, layout);
    await waitProtected(cluster, 'shop', 'h1', 'h2');
    const load = startLoad(cluster.front, { workers: 3, maxMs: 60_000, tag: 'independent' });
    t.after(() => load.stop());
    await sleep(500);

    const kill1 = await killHost(cluster, 'h1');
    await waitServedBy(cluster.front, addr.h2!);
    await waitProtected(cluster, 'shop', 'h2', 'h3', 15_000);
    const first = (await events(cluster)).find((e) => e.kind === 'failover-complete')!;
    assert.equal(first.data.to, 'h2');
    const lag2 = siteOf(await status(cluster), 'shop').replication.lagMs ?? 0;

    // Second crash, of another host, 5 s after the first.
    await sleep(Math.max(0, kill1.at + 5000 - Date.now()));
    const kill2 = await killHost(cluster, 'h2');
    assert.ok(kill2.at - kill1.at >= 5000 && kill2.at - kill1.at < 6000, `5 s apart (${kill2.at - kill1.at} ms)`);
    assert.ok(kill2.at - first.at < 10_000, `within the default 10 s cooldown after the first failover ended (${kill2.at - first.at} ms)`);
    const servedAt = await waitServedBy(cluster.front, addr.h3!);
    const second = await waitUntil(
      'the second failover-complete',
      async () => (await events(cluster)).filter((e) => e.kind === 'failover-complete')[1],
      20_000,
      100,
    );
    await sleep(500);
    const result = await load.stop();

    const all = await events(cluster);
    const detected = all.filter((e) => e.kind === 'failure-detected');
    const started = all.filter((e) => e.kind === 'failover-started');
    assert.equal(detected.length, 2, 'one detection per crash');
    assert.equal(started.length, 2, 'two failovers, no more');
    assert.equal(second.data.from, 'h2');
    assert.equal(second.data.to, 'h3');
    const startDelay = started[1]!.at - detected[1]!.at;
    assert.ok(startDelay < 500, `the second failover started at once after its detection (${startDelay} ms)`);
    assertNoEvents(all, ['failover-deferred', 'failover-blocked', 'failover-failed', 'pool-empty']);
    const waived = all.filter((e) => e.kind === 'cooldown-waived');
    assert.equal(waived.length, 1, 'one waiver, for the second crash');
    assert.match(
      waived[0]!.message,
      /shop: automatic failover from h2 starts at once: the last failover of shop was \d+ ms ago; the cooldown is 10000 ms \(\d+ ms left\), but this is an independent crash: hard evidence against h2, which is not where the last failover came from \(h1\), and h3 can take shop over \(h1 is avoided\)/,
    );
    const st = await status(cluster);
    assert.equal(st.hosts.find((h) => h.name === 'h1')!.power, 'off', 'h1 stays fenced (nobody powered it on)');
    assert.equal(st.hosts.find((h) => h.name === 'h2')!.power, 'off', 'h2 is fenced');
    assert.equal(siteOf(st, 'shop').primary.host, 'h3');

    // Async: nothing acknowledged before one replication lag ahead of each kill is lost.
    const lag1 = Number(first.data.replicationLagMsAtFailure ?? 0);
    const lagAt2 = Math.max(lag2, Number(second.data.replicationLagMsAtFailure ?? 0));
    const windows = [
      [kill1.at - lag1 - 300, kill1.at],
      [kill2.at - lagAt2 - 300, kill2.at],
    ] as const;
    const missing = await missingOrders(cluster.front, result.acked);
    const outside = missing.filter((o) => !windows.some(([from, to]) => o.ackAt >= from && o.ackAt <= to));
    t.diagnostic(
      `second failover: detected → started ${startDelay} ms, served again ${servedAt - kill2.at} ms after the kill; orders acknowledged ${result.acked.length}, lost inside the lag windows ${missing.length - outside.length}`,
    );
    assert.ok(result.acked.length >= 50, `enough acknowledged orders (${result.acked.length})`);
    assert.deepEqual(outside, [], 'no order acknowledged before the lag window of a kill is lost');
    // Each host died alone, its storage processor lived on and shipped the tail before the promotion: nothing is lost at all.
    assert.deepEqual([first.data.tailShipped, second.data.tailShipped], [true, true], 'each failover shipped the old copy’s tail');
    assert.deepEqual(missing, [], 'no acknowledged order is lost');
  },
);
