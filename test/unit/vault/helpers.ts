import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import { callJson } from '../../../src/shared/http-client.ts';
import type { VaultPoint } from '../../../src/shared/contracts.ts';
import { freePort, makeConfig, tempDir, testLogger } from '../storage/helpers.ts';

/**
 * Three real storage processors on 127.0.0.1: array-a holds the primary of `shop`,
 * array-b is a restore target, vault has `backup: true`. Schedules are off (the tests
 * call backup-now and verify) and the vault collects garbage without a grace period.
 */
export interface Trio {
  a: StorageProcessor;
  b: StorageProcessor;
  vault: StorageProcessor;
  urlA: string;
  urlB: string;
  urlVault: string;
  root: string;
  volA: string;
  vaultPath: string;
}

export async function startTrio(t: { after: (fn: () => Promise<void> | void) => void }, orders = 4000): Promise<Trio> {
  const root = tempDir('us-vault-');
  const [pa, pb, pv] = [await freePort(), await freePort(), await freePort()];
  const config = makeConfig([
    { name: 'array-a', path: path.join(root, 'a'), port: pa },
    { name: 'array-b', path: path.join(root, 'b'), port: pb },
    { name: 'vault', path: path.join(root, 'v'), port: pv },
  ]);
  config.storage.vault!.backup = true;
  const opts = { vault: { verifyEveryMs: 0, backupTickMs: 0, gcGraceMs: 0 } };
  const a = new StorageProcessor(config, 'array-a', testLogger(), opts);
  const b = new StorageProcessor(config, 'array-b', testLogger(), opts);
  const vault = new StorageProcessor(config, 'vault', testLogger(), opts);
  t.after(async () => {
    for (const p of [a, b, vault]) await p.stop().catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  });
  for (const p of [a, b, vault]) await p.start();
  const urlA = `http://127.0.0.1:${pa}`;
  await callJson(`${urlA}/v1/volumes/shop/init`, { body: { epoch: 1, seed: makeShopSeed(root, orders) } });
  return {
    a,
    b,
    vault,
    urlA,
    urlB: `http://127.0.0.1:${pb}`,
    urlVault: `http://127.0.0.1:${pv}`,
    root,
    volA: path.join(root, 'a', 'volumes', 'shop'),
    vaultPath: path.join(root, 'v'),
  };
}

/** A shop volume: catalog.db, orders.db (WAL, `orders` rows of ~400 bytes), public/, config/. */
export function makeShopSeed(root: string, orders: number): string {
  const seed = path.join(root, 'seed');
  fs.mkdirSync(path.join(seed, 'public'), { recursive: true });
  fs.mkdirSync(path.join(seed, 'config'), { recursive: true });
  fs.writeFileSync(path.join(seed, 'public', 'index.html'), '<h1>shop</h1>');
  fs.writeFileSync(path.join(seed, 'config', 'site.json'), JSON.stringify({ listen: { host: '127.0.0.1' }, workers: 1 }));
  const cat = new Database(path.join(seed, 'catalog.db'));
  cat.pragma('journal_mode = WAL');
  cat.exec("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO products (name) VALUES ('tea'), ('cup')");
  cat.close();
  const db = new Database(path.join(seed, 'orders.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total INTEGER NOT NULL, payload BLOB NOT NULL)');
  const ins = db.prepare('INSERT INTO orders (customer, total, payload) VALUES (?, ?, randomblob(400))');
  db.transaction(() => {
    for (let i = 0; i < orders; i++) ins.run(`c${i}`, i);
  })();
  db.close();
  return seed;
}

/** The app's connection to the primary's orders.db. */
export function openOrders(volDir: string): Database.Database {
  const db = new Database(path.join(volDir, 'orders.db'));
  db.pragma('busy_timeout = 5000');
  return db;
}

export function backupNow(trio: Trio, keep = 10): Promise<VaultPoint> {
  return callJson<VaultPoint>(`${trio.urlA}/v1/volumes/shop/backup-now`, { body: { vaultUrl: trio.urlVault, keep }, timeoutMs: 30_000 });
}
