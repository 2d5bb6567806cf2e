import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { callJson } from '../../../src/shared/http-client.ts';
import { isUnderstudyError } from '../../../src/shared/errors.ts';
import type { SiteConfig } from '../../../src/config/types.ts';
import type { StorageStatus } from '../../../src/shared/contracts.ts';
import { portionFilter } from '../../../src/storage/reader-portion.ts';
import { startStoragePair, waitFor } from './helpers.ts';

/**
 * the primary's storage ships only the site's read-only portion
 * (catalog.db, public/) to a reader copy on another storage system; the copy is
 * published for a read-only app, kept current, never gets orders.db, keeps its own
 * config/, and is dropped on scale-in.
 */

const TUNING = { walPollMs: 5, checkpointFrames: 150, fileScanMs: 100 };

async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  let seed = '';
  const { urlA, urlB, root } = await startStoragePair(t, 'us-reader-', TUNING, (config, dir) => {
    seed = path.join(dir, 'seed');
    fs.mkdirSync(path.join(seed, 'public'), { recursive: true });
    fs.mkdirSync(path.join(seed, 'config'), { recursive: true });
    fs.writeFileSync(path.join(seed, 'public', 'index.html'), '<h1>shop</h1>');
    fs.writeFileSync(path.join(seed, 'catalog.json'), '[]');
    fs.writeFileSync(path.join(seed, 'config', 'site.json'), JSON.stringify({ listen: { host: '127.0.0.1', port: 3000 }, workers: 1 }));
    const cat = new Database(path.join(seed, 'catalog.db'));
    cat.pragma('journal_mode = WAL');
    cat.exec("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO products (name) VALUES ('tea'), ('cup')");
    cat.close();
    config.sites.shop = {
      name: 'shop',
      app: { command: ['true'], port: 3000, env: {}, seed },
      volume: { replication: 'async', readonly: ['catalog.db', 'public/'] },
    } as unknown as SiteConfig;
  });
  await callJson(`${urlA}/v1/volumes/shop/init`, { body: { epoch: 3, seed } });
  const vol = path.join(root, 'a', 'volumes', 'shop');
  const orders = new Database(path.join(vol, 'orders.db'));
  orders.pragma('journal_mode = WAL');
  orders.exec("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT); INSERT INTO orders (customer) VALUES ('ann')");
  orders.close();
  return { urlA, urlB, vol, copy: path.join(root, 'b', 'readers', 'shop'), root };
}

function productNames(file: string): string[] {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT name FROM products ORDER BY id').all() as { name: string }[]).map((r) => r.name);
  } finally {
    db.close();
  }
}

test('portion filter: files exactly, directories by prefix', () => {
  const f = portionFilter(['catalog.db', 'public/']);
  assert.ok(f('catalog.db') && f('public/index.html') && f('public/img/a.png'));
  assert.ok(!f('orders.db') && !f('config/site.json') && !f('catalog.json') && !f('publication.txt'));
});

test('a reader copy gets only the read-only portion, published for a read-only app, and follows the primary', async (t) => {
  const s = await setup(t);
  await callJson(`${s.urlA}/v1/volumes/shop/readers`, { body: { epoch: 3, to: { name: 'array-b', url: s.urlB } } });
  await callJson(`${s.urlA}/v1/volumes/shop/readers/catch-up`, { body: { timeoutMs: 10_000, to: 'array-b' } });
  assert.deepEqual(productNames(path.join(s.copy, 'catalog.db')), ['tea', 'cup']);
  assert.equal(fs.readFileSync(path.join(s.copy, 'public', 'index.html'), 'utf8'), '<h1>shop</h1>');
  for (const absent of ['orders.db', 'catalog.json', 'config']) assert.ok(!fs.existsSync(path.join(s.copy, absent)), `${absent} is not in the reader copy`);
  // The served database is a plain rollback-journal image: nothing but the file itself.
  assert.deepEqual(fs.readdirSync(s.copy).sort(), ['catalog.db', 'public']);
  const head = fs.readFileSync(path.join(s.copy, 'catalog.db')).subarray(18, 20);
  assert.deepEqual([...head], [1, 1], 'rollback-journal mode (no WAL for the app to miss)');

  // The controller fits config/site.json (outside the portion, started from the seed).
  const tr = await callJson<{ changes: unknown[] }>(`${s.urlB}/v1/readers/shop/transform`, {
    body: { epoch: 3, rules: [{ file: 'config/site.json', set: { 'listen.host': '127.0.9.1' } }] },
  });
  assert.equal(tr.changes.length, 1);

  // Writes to the portion reach the copy by the next catch-up; the config stays.
  const ino = fs.statSync(path.join(s.copy, 'catalog.db')).ino;
  const cat = new Database(path.join(s.vol, 'catalog.db'));
  cat.exec("INSERT INTO products (name) VALUES ('pot')");
  cat.close();
  fs.writeFileSync(path.join(s.vol, 'public', 'new.css'), 'body{}');
  await callJson(`${s.urlA}/v1/volumes/shop/readers/catch-up`, { body: { timeoutMs: 10_000 } });
  assert.deepEqual(productNames(path.join(s.copy, 'catalog.db')), ['tea', 'cup', 'pot']);
  assert.notEqual(fs.statSync(path.join(s.copy, 'catalog.db')).ino, ino, 'a new image was renamed over the served file');
  assert.equal(fs.readFileSync(path.join(s.copy, 'public', 'new.css'), 'utf8'), 'body{}');
  assert.equal(JSON.parse(fs.readFileSync(path.join(s.copy, 'config', 'site.json'), 'utf8')).listen.host, '127.0.9.1');
  const orders = new Database(path.join(s.vol, 'orders.db'));
  orders.exec("INSERT INTO orders (customer) VALUES ('bob')");
  orders.close();
  await callJson(`${s.urlA}/v1/volumes/shop/readers/catch-up`, { body: { timeoutMs: 10_000 } });
  assert.ok(!fs.existsSync(path.join(s.copy, 'orders.db')), 'orders never reach a reader');

  const stA = await callJson<StorageStatus>(`${s.urlA}/v1/status`);
  assert.equal(stA.volumes[0]!.readers?.[0]?.to, 'array-b');
  const stB = await callJson<StorageStatus>(`${s.urlB}/v1/status`);
  assert.equal(stB.readerCopies?.[0]?.site, 'shop');
  assert.deepEqual(stB.readerCopies?.[0]?.databases, ['catalog.db']);
  // The site's replica storage is untouched by the reader copy.
  assert.ok(!stB.volumes.some((v) => v.site === 'shop'));

  // A stale epoch cannot feed or change it.
  await assert.rejects(
    callJson(`${s.urlB}/v1/readers/shop/transform`, { body: { epoch: 2, rules: [] } }),
    (e) => isUnderstudyError(e) && e.code === 'US_STALE_EPOCH',
  );
  // Scale-in: shipping stops, the copy is deleted.
  await callJson(`${s.urlA}/v1/volumes/shop/readers/stop`, { body: { to: 'array-b' } });
  await callJson(`${s.urlB}/v1/readers/shop/drop`, { body: { epoch: 3 } });
  assert.ok(!fs.existsSync(s.copy));
  const after = await callJson<StorageStatus>(`${s.urlA}/v1/status`);
  assert.equal(after.volumes[0]!.readers, undefined);
});

test('only the primary feeds readers, at its epoch; a demoted primary stops feeding them', async (t) => {
  const s = await setup(t);
  await assert.rejects(
    callJson(`${s.urlA}/v1/volumes/shop/readers`, { body: { epoch: 2, to: { name: 'array-b', url: s.urlB } } }),
    (e) => isUnderstudyError(e) && e.code === 'US_STALE_EPOCH',
  );
  await callJson(`${s.urlA}/v1/volumes/shop/readers`, { body: { epoch: 3, to: { name: 'array-b', url: s.urlB } } });
  await waitFor('the reader copy', () => fs.existsSync(path.join(s.copy, 'catalog.db')), 10_000);
  await callJson(`${s.urlA}/v1/volumes/shop/demote`, { body: { epoch: 4 } });
  const st = await callJson<StorageStatus>(`${s.urlA}/v1/status`);
  assert.equal(st.volumes[0]!.readers, undefined, 'no reader is fed by a copy that is not primary');
  await assert.rejects(
    callJson(`${s.urlA}/v1/volumes/shop/readers`, { body: { epoch: 4, to: { name: 'array-b', url: s.urlB } } }),
    (e) => isUnderstudyError(e) && e.code === 'US_VOLUME_ROLE',
  );
});
