import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  api,
  configHead,
  hostsSection,
  shopSite,
  http,
  sleep,
  startCluster,
  waitUntil,
  type Cluster,
  type ConfigContext,
  type ConfigDoc,
} from '../support/cluster.ts';
import { type Status, events } from '../support/views.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * two sites, one shared spare. Both primaries are SIGKILLed, one after
 * the other: the first site to fail takes the spare and serves from it; the second
 * stays down with a `pool-empty` event that names the spare's holder and the
 * priorities. The spare never serves both sites. A controller killed while the
 * second site waits comes back with the same allocation (it is derived from the
 * state store). Then the spare is returned — the first site's old host is powered
 * back on, trusted again, and the first site fails back to it — and the second site
 * takes the spare and serves again.
 *
 * Layout: both sites' primaries on array-a, both replicate to array-b, where the one
 * spare s1 is attached (so it can take either site over).
 */

const SLOT = claimSlot();

const config = (ctx: ConfigContext): ConfigDoc => {
  const site = (i: number) => ({
    ...shopSite(ctx, i),
    primary: i === 0 ? 'a1' : 'b1',
    standby: 'spares',
    transform: [{ file: 'config/site.json', set: { 'listen.host': '{{host.address}}', 'listen.port': '{{site.app.port}}' } }],
    health: { probe: { path: '/healthz', every: '100ms', timeout: '300ms', fall: 2, rise: 1 } },
  });
  return {
    ...configHead(ctx, { vault: true }),
    hosts: hostsSection(ctx, [
      { name: 'a1', storage: 'array-a', boot: true },
      { name: 'b1', storage: 'array-a', boot: true },
      { name: 's1', storage: 'array-b', boot: true },
    ]),
    pools: { spares: ['s1'] },
    sites: { shop: site(0), outlet: site(1) },
  };
};

const siteOf = (st: Status, name: string) => st.sites.find((s) => s.name === name)!;

/**
 * Watches the spare every 100 ms until stopped: which apps its agent runs, which
 * sites the status says it serves, and which fronts it answers. Records any moment
 * at which it serves both sites.
 */
function watchSpare(cluster: Cluster, spare: string, fronts: Record<string, string>) {
  const violations: string[] = [];
  const seen = new Set<string>();
  /** Every answer of a front that came from the spare. */
  const answered: { site: string; servedBy: string; sent: number; at: number }[] = [];
  let stopped = false;
  const agent = `http://${cluster.hostAddress(spare)}:7001/v1/status`;
  const loop = (async () => {
    while (!stopped) {
      const [ag, st, ...answers] = await Promise.all([
        http(agent, { timeoutMs: 500 }).catch(() => null),
        api<Status>(cluster, '/v1/status').catch(() => null),
        ...Object.entries(fronts).map(async ([site, url]) => {
          const sent = Date.now();
          const r = await http(`${url}/healthz`, { timeoutMs: 400 }).catch(() => null);
          return r?.status === 200 && r.servedBy?.startsWith(`${cluster.hostAddress(spare)}:`) ? { site, servedBy: r.servedBy, sent, at: r.at } : null;
        }),
      ]);
      const running = ((ag?.body as { sites?: { site: string; state: string }[] } | undefined)?.sites ?? [])
        .filter((s) => s.state === 'running' || s.state === 'starting')
        .map((s) => s.site);
      const listed = st?.hosts.find((h) => h.name === spare)?.sites ?? [];
      const serving = answers.filter((a) => a !== null);
      for (const s of [...running, ...serving.map((a) => a.site)]) seen.add(s);
      if (running.length > 1) violations.push(`agent of ${spare} runs ${running.join(' and ')}`);
      if (listed.length > 1) violations.push(`status lists ${listed.join(' and ')} on ${spare}`);
      for (const a of serving) answered.push(a);
      await sleep(100);
    }
  })();
  return {
    seen,
    violations,
    /**
     * The spare's answers must come in turns: every answer of one site before every
     * answer of the other (answers of a held request arrive late, so a round of
     * samples may see both sites; only an interleaving would mean both were served).
     */
    /** Milliseconds from the spare's last answer for `a` to its first for `b`. */
    gap: (a: string, b: string): number =>
      Math.min(...answered.filter((x) => x.site === b).map((x) => x.at)) - Math.max(...answered.filter((x) => x.site === a).map((x) => x.at)),
    interleaved: (): string[] => {
      const out: string[] = [];
      for (const [a, b] of [
        ['shop', 'outlet'],
        ['outlet', 'shop'],
      ] as const) {
        const firstB = Math.min(...answered.filter((x) => x.site === b).map((x) => x.at));
        const lateA = answered.filter((x) => x.site === a && x.sent > firstB && answered.some((y) => y.site === a && y.at < firstB));
        for (const x of lateA)
          out.push(
            `${a} answered by ${x.servedBy} (sent ${new Date(x.sent).toISOString()}) after ${b} was answered by the spare (${new Date(firstB).toISOString()})`,
          );
      }
      return out;
    },
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

test(
  'g) two sites, one shared spare: the first to fail takes it; the second stays down with pool-empty saying why, and takes the spare once it is returned',
  { timeout: 90_000 },
  async (t) => {
    const cluster = await startCluster({ slot: SLOT, config });
    t.after(() => cluster.stop());
    const front = { shop: cluster.front, outlet: cluster.front.replace(/:(\d+)$/, (_, p: string) => `:${Number(p) + 1}`) };
    const s1 = cluster.hostAddress('s1');
    const a1 = cluster.hostAddress('a1');

    const ready = await waitUntil(
      'both sites serving and replicating to array-b',
      async () => {
        const st = await api<Status>(cluster, '/v1/status');
        return st.sites.length === 2 && st.sites.every((s) => s.state === 'serving' && s.replication.state === 'streaming' && s.replication.to === 'array-b')
          ? st
          : null;
      },
      30_000,
    );
    const watch = watchSpare(cluster, 's1', front);
    t.after(() => watch.stop());

    // 1. shop's primary dies: shop takes the spare and serves from it.
    process.kill(-ready.hosts.find((h) => h.name === 'a1')!.pid!, 'SIGKILL');
    await waitUntil(
      'shop served by s1',
      async () => {
        const r = await http(`${front.shop}/healthz`, { timeoutMs: 1000 }).catch(() => null);
        return r?.status === 200 && r.servedBy?.startsWith(`${s1}:`);
      },
      20_000,
      50,
    );
    assert.equal(siteOf(await api<Status>(cluster, '/v1/status'), 'shop').primary.host, 's1');
    // outlet still serves, but its pool is empty now: it is told at once, before any failure.
    const standing = await waitUntil(
      'a standing pool-empty for outlet',
      async () => (await events(cluster)).find((e) => e.site === 'outlet' && e.kind === 'pool-empty' && e.data.waiting === false),
      5000,
      100,
    );
    assert.match(standing.message, /outlet \(priority 0\) serves on b1 but has no spare left to fail over to: s1 is the primary of shop \(priority 0\)/);

    // 2. outlet's primary dies: no spare is free; outlet stays down and the event says why.
    const st = await api<Status>(cluster, '/v1/status');
    process.kill(-st.hosts.find((h) => h.name === 'b1')!.pid!, 'SIGKILL');
    const empty = await waitUntil(
      "a pool-empty event for outlet's failover",
      async () => (await events(cluster)).find((e) => e.site === 'outlet' && (e.kind === 'pool-empty' || e.kind === 'spare-denied') && e.data.waiting === true),
      20_000,
      100,
    );
    t.diagnostic(`outlet: ${empty.kind}: ${empty.message}`);
    assert.equal(empty.kind, 'pool-empty');
    assert.match(empty.message, /s1 is the primary of shop \(priority 0\)/);
    assert.match(empty.message, /no spare is free for outlet \(priority 0\)/);
    assert.deepEqual(
      (empty.data.blockers as Record<string, unknown>[]).map((b) => [b.host, b.why, b.site, b.as]),
      [['s1', 'held', 'shop', 'primary']],
    );
    await sleep(1500);
    const waiting = await api<Status>(cluster, '/v1/status');
    assert.equal(siteOf(waiting, 'outlet').state, 'down', 'outlet stays down');
    assert.equal(siteOf(waiting, 'outlet').primary.host, 'b1', 'outlet was not moved anywhere');
    assert.equal(siteOf(waiting, 'shop').primary.host, 's1', 'shop keeps the spare');
    assert.equal(waiting.hosts.find((h) => h.name === 'b1')!.power, 'off', "outlet's failed primary is fenced");
    const outletNow = await http(`${front.outlet}/healthz`, { timeoutMs: 8000 }).catch(() => null);
    assert.ok(!outletNow || outletNow.status !== 200, `outlet does not answer while it waits (${outletNow?.status} ${outletNow?.servedBy})`);
    const shopNow = await http(`${front.shop}/api/orders`, { method: 'POST', body: { customer: 'while-outlet-waits', items: [{ productId: 1, qty: 1 }] } });
    assert.equal(shopNow.status, 201, 'shop serves writes from the spare meanwhile');
    const kinds = (await events(cluster)).filter((e) => e.site === 'outlet').map((e) => e.kind);
    assert.ok(!kinds.includes('failover-complete') && !kinds.includes('promoted'), `outlet took nothing: ${kinds.join(', ')}`);
    assert.equal(
      (await events(cluster)).filter((e) => e.site === 'outlet' && e.kind === 'pool-empty' && e.data.waiting === true).length,
      1,
      'one pool-empty while the reason stays the same',
    );

    // 3. a1, shop's old host, is repaired: powered back on, and trusted again after its good probes.
    await api(cluster, '/v1/hosts/a1/power', { action: 'on' });
    await waitUntil('a1 trusted again', async () => (await events(cluster)).some((e) => e.kind === 'host-trusted' && e.host === 'a1'), 20_000, 100);
    assert.equal(
      siteOf(await api<Status>(cluster, '/v1/status'), 'outlet').state,
      'down',
      "a1 is no target of outlet (not its standby, not on its replica's storage)",
    );

    // 4. The controller dies while outlet waits: the new one reads the same allocation from
    //    the state store — outlet keeps waiting (its failover resumed), shop keeps the spare.
    const { pid: controllerPid } = await api<{ pid: number }>(cluster, '/healthz');
    const lastBefore = (await events(cluster)).at(-1)!.id;
    process.kill(controllerPid, 'SIGKILL');
    await waitUntil('a new controller', async () => (await api<{ pid: number }>(cluster, '/healthz')).pid !== controllerPid, 30_000, 100);
    const resumedWait = await waitUntil(
      "outlet's failover resumed and waiting again",
      async () => {
        const evs = (await events(cluster)).filter((e) => e.id > lastBefore && e.site === 'outlet');
        return evs.some((e) => e.kind === 'runbook-resumed') ? evs.find((e) => e.kind === 'pool-empty' && e.data.waiting === true) : null;
      },
      20_000,
      100,
    );
    assert.match(resumedWait.message, /s1 is the primary of shop/);
    const afterRestart = await api<Status>(cluster, '/v1/status');
    assert.equal(siteOf(afterRestart, 'outlet').state, 'down');
    assert.equal(siteOf(afterRestart, 'shop').primary.host, 's1');

    // 5. The spare is returned: shop fails back to a1, and s1 is free.
    await waitUntil(
      "shop's replica streaming to array-a",
      async () => {
        const s = siteOf(await api<Status>(cluster, '/v1/status'), 'shop');
        return s.replication.to === 'array-a' && s.replication.state === 'streaming';
      },
      20_000,
      100,
    );
    const back = await api<{ status: string }>(cluster, '/v1/sites/shop/switchover', { to: 'a1' });
    assert.equal(back.status, 'done');

    // 6. outlet takes the returned spare and serves again.
    const served = await waitUntil(
      'outlet served by s1',
      async () => {
        const r = await http(`${front.outlet}/api/orders`, {
          method: 'POST',
          body: { customer: 'after-spare-returned', items: [{ productId: 2, qty: 1 }] },
          timeoutMs: 2000,
        }).catch(() => null);
        return r?.status === 201 ? r : null;
      },
      20_000,
      100,
    );
    assert.ok(served.servedBy?.startsWith(`${s1}:`), `outlet's writes go to s1 (${served.servedBy})`);
    const shopBack = await http(`${front.shop}/healthz`);
    assert.ok(shopBack.servedBy?.startsWith(`${a1}:`), `shop is served by a1 again (${shopBack.servedBy})`);
    // outlet is re-protected (its replica now on array-a, where b1's copy was) and serving.
    const final = await waitUntil(
      'outlet serving and replicating again',
      async () => {
        const s = await api<Status>(cluster, '/v1/status');
        const o = siteOf(s, 'outlet');
        return o.state === 'serving' && o.replication.state === 'streaming' ? s : null;
      },
      20_000,
      100,
    );
    assert.equal(siteOf(final, 'outlet').primary.host, 's1');
    assert.equal(siteOf(final, 'outlet').replication.to, 'array-a');
    const granted = (await events(cluster)).find((e) => e.site === 'outlet' && e.kind === 'spare-granted');
    assert.ok(granted, 'a spare-granted event');
    assert.equal(granted.host, 's1');

    await watch.stop();
    t.diagnostic(`the spare's last answer for shop came ${watch.gap('shop', 'outlet')} ms before its first for outlet`);
    assert.deepEqual(watch.violations, [], 'the spare never runs both sites');
    assert.deepEqual(watch.interleaved(), [], 'the spare never serves both sites');
    assert.deepEqual([...watch.seen].sort(), ['outlet', 'shop'], 'the spare served each site in turn');
  },
);
