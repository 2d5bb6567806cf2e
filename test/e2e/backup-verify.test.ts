import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { api, http, startCluster, waitUntil } from '../support/cluster.ts';
import type { Ev } from '../support/views.ts';

interface Points {
  vault: string;
  points: { id: string; takenAt: number; bytes: number; newBytes: number }[];
}

test(
  'restore points are taken on schedule; a corrupted primary copy is detected and replaced (verified replica or vault); a restore by hand brings the site back',
  { timeout: 120_000 },
  async (t) => {
    const cluster = await startCluster({ backup: { every: '1s', keep: 3 } });
    t.after(() => cluster.stop());
    let lastAckAt = 0;
    for (let i = 0; i < 200; i++) {
      const r = await http(`${cluster.front}/api/orders`, { method: 'POST', body: { customer: `backup-${i}`, items: [{ productId: 3, qty: 2 }] } });
      assert.equal(r.status, 201);
      lastAckAt = r.at;
    }
    // Three points, the newest taken after the last order: it holds all 200 (a point's time is
    // stamped before its capture). The corruption below is found within about a second, so
    // without this the newest good point could predate some of them.
    const listed = await waitUntil(
      'three restore points, the newest holding every order',
      async () => {
        const p = await api<Points>(cluster, '/v1/sites/shop/backups');
        return p.points.length >= 3 && p.points[0]!.takenAt > lastAckAt ? p : null;
      },
      30_000,
      200,
    );
    assert.equal(listed.vault, 'vault');
    assert.ok(listed.points.length <= 3, 'retention keeps 3');
    assert.ok(listed.points[0]!.takenAt >= listed.points[1]!.takenAt, 'newest first');
    assert.ok(
      listed.points.some((p) => p.newBytes < p.bytes),
      'unchanged chunks are stored once',
    );

    // Overwrite the first bytes of every page of orders.db but the first, on the primary's
    // storage. (A page whose newest version is still in the WAL is shadowed by it; the others are
    // read from the damaged file.)
    const db = path.join(cluster.dir, 'array-a', 'volumes', 'shop', 'orders.db');
    const fd = fs.openSync(db, 'r+');
    const pages = Math.floor(fs.fstatSync(fd).size / 4096);
    assert.ok(pages >= 3, `orders.db has pages to damage (${pages})`);
    for (let page = 1; page < pages; page++) fs.writeSync(fd, Buffer.alloc(16, 0xa5), 0, 16, page * 4096);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    const corruptedAt = Date.now();
    const ev = await waitUntil(
      'a corruption-detected event',
      async () => {
        const { events } = await api<{ events: Ev[] }>(cluster, '/v1/events');
        return events.find((e) => e.kind === 'corruption-detected');
      },
      30_000,
      200,
    );
    t.diagnostic(`corruption detected ${Date.now() - corruptedAt} ms after the overwrite: ${ev.message}`);
    assert.equal(ev.site, 'shop');
    assert.match(ev.message, /orders\.db/);
    assert.equal(ev.data.storage, 'array-a');

    // The copy is replaced: by the replica if its last verification was good, else from the vault.
    const replaced = await waitUntil(
      'the corrupt copy replaced',
      async () => {
        const { events } = await api<{ events: Ev[] }>(cluster, '/v1/events');
        return events.find((e) => e.kind === 'failover-complete' || e.kind === 'restore-complete');
      },
      60_000,
      200,
    );
    assert.match(JSON.stringify(replaced.data.reason), /corrupt/);
    const h2 = cluster.hostAddress('h2');
    const after = await http(`${cluster.front}/api/orders?customer=backup-10`);
    assert.equal(after.status, 200);
    assert.ok(after.servedBy?.startsWith(`${h2}:`), `served by h2 (${after.servedBy})`);

    // A restore from the vault by hand (what `understudy restore shop` calls), onto h1's storage.
    const newest = (await api<Points>(cluster, '/v1/sites/shop/backups')).points[0]!;
    const r = await api<{ status: string }>(cluster, '/v1/sites/shop/restore', { to: 'h1' });
    assert.equal(r.status, 'done');
    const { events } = await api<{ events: Ev[] }>(cluster, '/v1/events');
    const restored = events.filter((e) => e.kind === 'restore-complete').pop();
    assert.ok(restored, 'a restore-complete event');
    assert.equal(typeof restored.data.lostMs, 'number');
    // The newest point that verifies: points taken from the damaged copy are skipped.
    const skipped = restored.data.skipped as { id: string }[];
    assert.ok(Number(restored.data.takenAt) <= Date.now());
    assert.ok(Number(restored.data.takenAt) >= newest.takenAt || skipped.length > 0, 'a newer point was used only if it verified');
    t.diagnostic(restored.message);
    const h1 = cluster.hostAddress('h1');
    const served = await http(`${cluster.front}/api/orders?customer=backup-150`);
    assert.equal(served.status, 200);
    assert.ok(served.servedBy?.startsWith(`${h1}:`), `served by h1 after the restore (${served.servedBy})`);
    const list = Array.isArray(served.body) ? served.body : ((served.body as { orders?: unknown[] }).orders ?? []);
    assert.equal(list.length, 1, 'an order taken before the restore point is there');
  },
);
