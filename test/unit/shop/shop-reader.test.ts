import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { freePort } from '../../support/free-port.ts';

/**
 * the demo shop read-only on a reader copy — only catalog.db (a rollback-
 * journal image, replaced by rename when the copy is published again), public/ and
 * config/. It serves the storefront and the catalog, answers 421 for orders (the
 * director then asks the primary), 503 for writes, and follows a new catalog image.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-shop-reader-'));
const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

function catalogImage(file: string, names: string[]): void {
  const db = new Database(file);
  db.exec("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '', price_cents INTEGER NOT NULL)");
  const ins = db.prepare('INSERT INTO products (name, price_cents) VALUES (?, 100)');
  for (const n of names) ins.run(n);
  db.close();
}

test('shop on a reader copy: catalog and storefront served, orders 421, writes 503, a new catalog image is followed', async () => {
  const dir = path.join(tmp, 'readers-shop');
  fs.mkdirSync(path.join(dir, 'public'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'config'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'public', 'index.html'), '<h1>reader</h1>');
  catalogImage(path.join(dir, 'catalog.db'), ['tea', 'cup']);
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'config', 'site.json'), JSON.stringify({ listen: { host: '127.0.0.1', port } }));
  const proc = spawn(process.execPath, [path.join(ROOT, 'examples/shop/server.js')], {
    env: { ...process.env, DATA_DIR: dir, READ_ONLY: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200 && !out.includes('listening'); i++) await new Promise((r) => setTimeout(r, 25));
  assert.match(out, /listening/, out);

  const health = await fetch(`${base}/healthz`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { readerCopy?: boolean }).readerCopy, true);
  assert.equal(await (await fetch(`${base}/`)).text(), '<h1>reader</h1>');
  assert.deepEqual(
    ((await (await fetch(`${base}/api/products`)).json()) as { name: string }[]).map((p) => p.name),
    ['tea', 'cup'],
  );
  const order = await fetch(`${base}/api/orders/1`);
  assert.equal(order.status, 421);
  assert.equal((await fetch(`${base}/api/orders?customer=x`)).status, 421);
  const post = await fetch(`${base}/api/orders`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  assert.equal(post.status, 503);

  // The storage processor publishes a newer image by renaming it over the file.
  const next = path.join(dir, '.understudy-tmp-catalog.db-publish');
  catalogImage(next, ['tea', 'cup', 'pot']);
  fs.renameSync(next, path.join(dir, 'catalog.db'));
  assert.deepEqual(
    ((await (await fetch(`${base}/api/products`)).json()) as { name: string }[]).map((p) => p.name),
    ['tea', 'cup', 'pot'],
  );
  assert.ok(!fs.existsSync(path.join(dir, 'orders.db')), 'a read-only shop creates nothing');
  assert.deepEqual(fs.readdirSync(dir).sort(), ['catalog.db', 'config', 'public']);
});
