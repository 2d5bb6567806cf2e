import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { ROOT, TWO_HOSTS, api, http, sleep, startCluster, waitUntil } from '../support/cluster.ts';
import { waitServing, type Status, type Ev } from '../support/views.ts';

function hasCustomer(dir: string, customer: string): boolean {
  const tmp = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'us-stale-'));
  for (const f of ['orders.db', 'orders.db-wal']) if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(tmp, f));
  const db = new Database(path.join(tmp, 'orders.db'));
  try {
    return (db.prepare('SELECT count(*) AS n FROM orders WHERE customer = ?').get(customer) as { n: number }).n > 0;
  } finally {
    db.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

test(
  'an old primary whose app comes back by itself writes only to its own stale copy: never routed, never replicated, and the event log says so',
  { timeout: 180_000 },
  async (t) => {
    const cluster = await startCluster({
      hosts: TWO_HOSTS,
    });
    t.after(() => cluster.stop());
    const h1 = cluster.hostAddress('h1');
    const h2 = cluster.hostAddress('h2');
    await waitUntil('streaming', async () => (await api<Status>(cluster, '/v1/status')).sites[0]!.replication.state === 'streaming');
    const st = await api<Status>(cluster, '/v1/status');
    process.kill(-st.hosts.find((h) => h.name === 'h1')!.pid!, 'SIGKILL');
    // Failed over to h2 and protected again onto array-a.
    await waitServing(cluster, { host: 'h2' }, 30_000);

    // The old primary's app is started again outside Understudy, on the copy it had.
    const staleDir = path.join(cluster.dir, 'array-a', 'volumes', 'shop');
    const siteJson = JSON.parse(fs.readFileSync(path.join(staleDir, 'config', 'site.json'), 'utf8')) as { listen: { host: string } };
    assert.equal(siteJson.listen.host, h1, 'the stale copy still says h1');
    const rogue = spawn(process.execPath, [path.join(ROOT, 'examples/shop/server.js')], { env: { ...process.env, DATA_DIR: staleDir }, stdio: 'ignore' });
    t.after(() => {
      rogue.kill('SIGKILL');
    });
    await waitUntil('the stale app to answer', async () => (await http(`http://${h1}:3000/healthz`).catch(() => null))?.status === 200);
    const stale = await http(`http://${h1}:3000/api/orders`, {
      method: 'POST',
      body: { customer: 'written-to-the-stale-primary', items: [{ productId: 1, qty: 1 }] },
    });
    assert.equal(stale.status, 201, 'the stale app takes the write on its own copy');

    // The director never routes to it.
    for (let i = 0; i < 40; i++) {
      const r = await http(`${cluster.front}/api/products`);
      assert.equal(r.status, 200);
      assert.ok(r.servedBy?.startsWith(`${h2}:`), `served by the current primary, not ${r.servedBy}`);
      await sleep(25);
    }
    const viaFront = await http(`${cluster.front}/api/orders?customer=written-to-the-stale-primary`);
    assert.equal(viaFront.status, 200, 'the front answers the order list');
    assert.ok(Array.isArray(viaFront.body), `the order list is a JSON array (${JSON.stringify(viaFront.body)})`);
    assert.equal(viaFront.body.length, 0, 'the stale write is not visible through the front');
    const onStale = await http(`http://${h1}:3000/api/orders?customer=written-to-the-stale-primary`);
    assert.ok(Array.isArray(onStale.body) && onStale.body.length === 1, 'the same query on the stale app finds its write: the query itself works');

    // Nothing it wrote reaches any replica or the current primary.
    await sleep(1500);
    assert.equal(hasCustomer(path.join(cluster.dir, 'array-b', 'volumes', 'shop'), 'written-to-the-stale-primary'), false);
    assert.equal(hasCustomer(path.join(cluster.dir, 'array-a', 'replicas', 'shop'), 'written-to-the-stale-primary'), false);
    assert.equal(hasCustomer(staleDir, 'written-to-the-stale-primary'), true, 'the write stayed on the stale copy');

    // The event log says so.
    const ev = await waitUntil('a stale-primary event', async () =>
      (await api<{ events: Ev[] }>(cluster, '/v1/events')).events.find((e) => e.kind === 'stale-primary'),
    );
    assert.equal(ev.host, 'h1');
  },
);
