import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { api, http, startCluster, waitUntil, type Cluster } from '../support/cluster.ts';
import { waitServing, type Status, type Ev } from '../support/views.ts';

interface SiteJson {
  listen: { host: string; port: number };
  workers: number;
  cacheMb: number;
  name: string;
}

function siteJson(cluster: Cluster, storage: 'array-a' | 'array-b'): SiteJson {
  return JSON.parse(fs.readFileSync(path.join(cluster.dir, storage, 'volumes', 'shop', 'config', 'site.json'), 'utf8')) as SiteJson;
}

test(
  "the volume is fitted to each host's profile: a failover to a smaller host rewrites address, workers and cache size, and the switch back restores the first host's values",
  { timeout: 240_000 },
  async (t) => {
    const cluster = await startCluster({
      hosts: [
        { name: 'h1', storage: 'array-a', boot: true, cpus: 2, memoryMb: 2048 },
        { name: 'h2', storage: 'array-b', boot: true, cpus: 1, memoryMb: 512 },
      ],
      transform: [{ file: 'config/site.json', set: { cacheMb: '{{host.profile.memoryMb / 4}}' } }],
    });
    t.after(() => cluster.stop());
    const h1 = cluster.hostAddress('h1');
    const h2 = cluster.hostAddress('h2');

    // First start: the volume on array-a is fitted to h1 (2 cpus, 2048 MiB).
    const st = await waitServing(cluster);
    assert.equal(st.sites[0]!.primary.host, 'h1');
    assert.deepEqual(siteJson(cluster, 'array-a'), { listen: { host: h1, port: 3000 }, workers: 2, name: 'shop', cacheMb: 512 });
    const first = await http(`${cluster.front}/healthz`);
    assert.equal(first.status, 200);
    assert.ok(first.servedBy?.startsWith(`${h1}:`), `served by h1 first (${first.servedBy})`);

    // Crash of h1: the failover fits the promoted replica on array-b to h2 (1 cpu, 512 MiB).
    const pid = st.hosts.find((h) => h.name === 'h1')!.pid!;
    assert.ok(pid > 0, 'h1 has a process group');
    process.kill(-pid, 'SIGKILL');
    await waitServing(cluster, { host: 'h2', streaming: false }, 30_000);
    assert.deepEqual(siteJson(cluster, 'array-b'), { listen: { host: h2, port: 3000 }, workers: 1, name: 'shop', cacheMb: 128 });
    await waitUntil(
      'an answer from h2',
      async () => {
        const r = await http(`${cluster.front}/healthz`).catch(() => null);
        return r && r.status === 200 && r.servedBy?.startsWith(`${h2}:`) ? r : null;
      },
      20_000,
    );
    assert.equal(
      (await http(`http://${h1}:3000/healthz`, { timeoutMs: 500 }).catch(() => null))?.status ?? 'no answer',
      'no answer',
      'h1 no longer answers: it was fenced',
    );

    const events = (await api<{ events: Ev[] }>(cluster, '/v1/events?limit=5000')).events;
    const toH2 = events.find((e) => e.kind === 'transformed' && e.host === 'h2');
    assert.ok(toH2, `a transformed event for h2: ${events.map((e) => `${e.kind}(${e.host ?? ''})`).join(', ')}`);
    t.diagnostic(`transformed event: ${toH2.message}`);
    assert.match(toH2.message, /shop's volume on array-b fitted to h2:/);
    const diffH2 = toH2.message.split('\n').slice(1);
    assert.deepEqual(diffH2, [`config/site.json: listen.host ${h1} → ${h2}`, 'config/site.json: workers 2 → 1', 'config/site.json: cacheMb 512 → 128']);

    // h1 returns as the standby, catches up, and the site switches back to it.
    await api(cluster, '/v1/hosts/h1/power', { action: 'on' });
    await waitServing(cluster, { caughtUp: true }, 80_000);
    const back = await api<{ status: string }>(cluster, '/v1/sites/shop/switchover', { to: 'h1' });
    assert.equal(back.status, 'done');
    assert.equal((await api<Status>(cluster, '/v1/status')).sites[0]!.primary.host, 'h1');
    assert.deepEqual(siteJson(cluster, 'array-a'), { listen: { host: h1, port: 3000 }, workers: 2, name: 'shop', cacheMb: 512 });
    const served = await http(`${cluster.front}/healthz`);
    assert.equal(served.status, 200);
    assert.ok(served.servedBy?.startsWith(`${h1}:`), `served by h1 again (${served.servedBy})`);

    const later = (await api<{ events: Ev[] }>(cluster, `/v1/events?after=${toH2.id}&limit=5000`)).events;
    const toH1 = later.find((e) => e.kind === 'transformed' && e.host === 'h1');
    assert.ok(toH1, `a transformed event for h1 after the switchover: ${later.map((e) => `${e.kind}(${e.host ?? ''})`).join(', ')}`);
    assert.deepEqual(toH1.message.split('\n').slice(1), [
      `config/site.json: listen.host ${h2} → ${h1}`,
      'config/site.json: workers 1 → 2',
      'config/site.json: cacheMb 128 → 512',
    ]);
  },
);
