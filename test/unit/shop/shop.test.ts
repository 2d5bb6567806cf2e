import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { background } from '../../../src/shared/background.ts';
import { freePort } from '../../support/free-port.ts';

/**
 * The demo shop as a real process: seeded volume in a temp DATA_DIR, listening on
 * 127.0.0.1 on a free port. Every process started here is killed in t.after/after.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SERVER = path.join(ROOT, 'examples/shop/server.js');
const SEED = path.join(ROOT, 'examples/shop/seed');
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-shop-'));
const started = new Set<ChildProcess>();

after(() => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

/** A fresh volume from the seed, with site.json pointing at 127.0.0.1:<free port>. */
async function makeVolume(): Promise<{ dir: string; port: number }> {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'vol-'));
  fs.cpSync(SEED, dir, { recursive: true });
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'config/site.json'), JSON.stringify({ listen: { host: '127.0.0.1', port }, workers: 1, name: 'shop' }));
  return { dir, port };
}

interface Shop {
  proc: ChildProcess;
  base: string;
  output: () => string;
  exited: Promise<number | null>;
}

function startShop(dir: string, env: Record<string, string> = {}): Promise<Shop> {
  const proc = spawn(process.execPath, [SERVER], { cwd: ROOT, env: { ...process.env, DATA_DIR: dir, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(proc);
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`shop did not start:\n${out}`)), 10_000);
    const check = (): void => {
      const m = /shop listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, base: m[1]!, output: () => out, exited });
      }
    };
    proc.stdout?.on('data', check);
    background(
      exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`shop exited with ${code}:\n${out}`));
      }),
    );
  });
}

async function stop(shop: Shop): Promise<void> {
  if (shop.proc.exitCode === null && shop.proc.signalCode === null) shop.proc.kill('SIGKILL');
  await shop.exited.catch(() => undefined);
}

async function json(base: string, p: string, init?: RequestInit): Promise<{ status: number; body: unknown; servedBy: string | null; headers: Headers }> {
  const res = await fetch(base + p, init);
  const text = await res.text();
  return {
    status: res.status,
    body: text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text,
    servedBy: res.headers.get('x-served-by'),
    headers: res.headers,
  };
}

const post = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

test('shop: every route, with X-Served-By on every answer', async (t) => {
  const { dir, port } = await makeVolume();
  const shop = await startShop(dir);
  t.after(() => stop(shop));
  const me = `127.0.0.1:${port}`;
  assert.equal(shop.base, `http://${me}`);
  assert.match(shop.output(), new RegExp(`^shop listening on http://${me.replace(/\./g, '\\.')} \\(data: ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)\n$`));
  assert.ok(fs.existsSync(path.join(dir, 'catalog.db')) && fs.existsSync(path.join(dir, 'orders.db')), 'databases created');

  const health = await json(shop.base, '/healthz');
  assert.equal(health.status, 200);
  assert.deepEqual({ ok: (health.body as { ok: boolean }).ok, servedBy: (health.body as { servedBy: string }).servedBy }, { ok: true, servedBy: me });
  assert.equal(health.servedBy, me);

  const home = await json(shop.base, '/');
  assert.equal(home.status, 200);
  assert.match(home.headers.get('content-type') ?? '', /text\/html/);
  assert.match(home.body as string, /\/api\/products/);
  assert.equal(home.servedBy, me);

  const css = await json(shop.base, '/public/shop.css');
  assert.equal(css.status, 200);
  assert.match(css.headers.get('content-type') ?? '', /text\/css/);
  assert.equal((await json(shop.base, '/public/../config/site.json')).status, 404);
  assert.equal((await json(shop.base, '/public/%2e%2e/config/site.json')).status, 404);

  const products = await json(shop.base, '/api/products');
  assert.equal(products.status, 200);
  const list = products.body as { id: number; name: string; priceCents: number; price: number }[];
  assert.equal(list.length, 20, 'seeded from catalog.json');
  assert.deepEqual(list[0], { id: 1, name: 'Espresso beans, 1 kg', description: 'Dark roast, chocolate notes.', price: 24.9, priceCents: 2490 });
  assert.equal(products.servedBy, me);

  const one = await json(shop.base, '/api/products/2');
  assert.equal(one.status, 200);
  assert.equal((one.body as { name: string }).name, 'Filter coffee, 500 g');
  const none = await json(shop.base, '/api/products/999');
  assert.equal(none.status, 404);
  assert.match((none.body as { error: string }).error, /no product 999/);
  assert.equal(none.servedBy, me);

  const created = await json(
    shop.base,
    '/api/orders',
    post({
      customer: 'ada',
      items: [
        { productId: 1, qty: 2 },
        { productId: 8, qty: 1 },
      ],
    }),
  );
  assert.equal(created.status, 201);
  assert.equal(created.servedBy, me);
  const order = created.body as {
    id: number;
    customer: string;
    items: { productId: number; qty: number; priceCents: number }[];
    total: number;
    totalCents: number;
    createdAt: string;
  };
  assert.ok(Number.isInteger(order.id));
  assert.equal(order.customer, 'ada');
  assert.deepEqual(
    order.items.map((i) => [i.productId, i.qty, i.priceCents]),
    [
      [1, 2, 2490],
      [8, 1, 490],
    ],
  );
  assert.equal(order.totalCents, 2 * 2490 + 490);
  assert.equal(order.total, 54.7);
  assert.ok(!Number.isNaN(Date.parse(order.createdAt)));
  assert.equal(created.headers.get('location'), `/api/orders/${order.id}`);

  const fetched = await json(shop.base, `/api/orders/${order.id}`);
  assert.equal(fetched.status, 200);
  assert.deepEqual(fetched.body, order);
  assert.equal((await json(shop.base, '/api/orders/424242')).status, 404);

  await json(shop.base, '/api/orders', post({ customer: 'bob', items: [{ productId: 3, qty: 1 }] }));
  const mine = await json(shop.base, '/api/orders?customer=ada');
  assert.deepEqual(
    (mine.body as { id: number }[]).map((o) => o.id),
    [order.id],
  );

  const bad: [unknown, RegExp][] = [
    ['{not json', /not valid JSON/],
    [{ items: [{ productId: 1, qty: 1 }] }, /customer/],
    [{ customer: 'x', items: [] }, /items/],
    [{ customer: 'x', items: [{ productId: 1, qty: 0 }] }, /qty/],
    [{ customer: 'x', items: [{ productId: 'one', qty: 1 }] }, /productId/],
    [{ customer: 'x', items: [{ productId: 999, qty: 1 }] }, /no product 999/],
    [[1, 2], /JSON object/],
  ];
  for (const [body, re] of bad) {
    const r = await json(shop.base, '/api/orders', post(body));
    assert.equal(r.status, 400, `400 for ${JSON.stringify(body)}`);
    assert.match((r.body as { error: string }).error, re);
    assert.equal(r.servedBy, me);
  }
  const unknownRoute = await json(shop.base, '/nope');
  assert.equal(unknownRoute.status, 404);
  assert.equal(unknownRoute.servedBy, me);
  assert.equal((await json(shop.base, '/api/products', post({}))).status, 405);
});

test('shop: an order survives SIGKILL and restart', async (t) => {
  const { dir } = await makeVolume();
  const first = await startShop(dir);
  t.after(() => stop(first));
  const created = await json(first.base, '/api/orders', post({ customer: 'carol', items: [{ productId: 5, qty: 3 }] }));
  assert.equal(created.status, 201);
  const id = (created.body as { id: number }).id;
  first.proc.kill('SIGKILL');
  await first.exited;

  const second = await startShop(dir);
  t.after(() => stop(second));
  const again = await json(second.base, `/api/orders/${id}`);
  assert.equal(again.status, 200);
  assert.deepEqual(again.body, created.body);
  assert.equal((await json(second.base, '/api/products')).body instanceof Array, true);
  assert.equal(((await json(second.base, '/api/products')).body as unknown[]).length, 20, 'catalog not seeded twice');
});

test('shop: SIGTERM closes and exits 0', async () => {
  const { dir } = await makeVolume();
  const shop = await startShop(dir);
  shop.proc.kill('SIGTERM');
  assert.equal(await shop.exited, 0);
});

test('shop: READ_ONLY=1 refuses modifying requests with 503, serves reads', async (t) => {
  const { dir } = await makeVolume();
  const rw = await startShop(dir);
  await json(rw.base, '/api/orders', post({ customer: 'dan', items: [{ productId: 1, qty: 1 }] }));
  rw.proc.kill('SIGTERM');
  await rw.exited;
  const ro = await startShop(dir, { READ_ONLY: '1' });
  t.after(() => stop(ro));
  const r = await json(ro.base, '/api/orders', post({ customer: 'x', items: [{ productId: 1, qty: 1 }] }));
  assert.equal(r.status, 503);
  assert.deepEqual(r.body, { error: 'read-only host' });
  assert.ok(r.servedBy);
  assert.equal((await json(ro.base, '/api/orders?customer=dan')).status, 200);
  assert.equal((await json(ro.base, '/api/products/1')).status, 200);
});

test('shop: built-in catalog when there is no catalog.json', async (t) => {
  const { dir } = await makeVolume();
  fs.rmSync(path.join(dir, 'catalog.json'));
  const shop = await startShop(dir);
  t.after(() => stop(shop));
  const list = (await json(shop.base, '/api/products')).body as unknown[];
  assert.equal(list.length, 20);
});

test('shop: a .db file that is not a database → exit 1 naming the file', async () => {
  for (const name of ['orders.db', 'catalog.db']) {
    const { dir } = await makeVolume();
    fs.writeFileSync(path.join(dir, name), 'this is not a database, it is a note '.repeat(50));
    const proc = spawn(process.execPath, [SERVER], { cwd: ROOT, env: { ...process.env, DATA_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(proc);
    let err = '';
    proc.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
    assert.equal(code, 1, err);
    assert.match(err, new RegExp(`${path.join(dir, name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a usable SQLite database`));
  }
});

test('shop: a missing DATA_DIR or site.json is a clear error', async () => {
  const run = (env: Record<string, string | undefined>): Promise<{ code: number | null; err: string }> =>
    new Promise((resolve) => {
      const e = { ...process.env, ...env };
      if (env.DATA_DIR === undefined) delete e.DATA_DIR;
      const proc = spawn(process.execPath, [SERVER], { cwd: ROOT, env: e, stdio: ['ignore', 'ignore', 'pipe'] });
      started.add(proc);
      let err = '';
      proc.stderr.on('data', (c: Buffer) => {
        err += c.toString();
      });
      proc.on('exit', (code) => resolve({ code, err }));
    });
  const noDir = await run({ DATA_DIR: undefined });
  assert.equal(noDir.code, 1);
  assert.match(noDir.err, /DATA_DIR is not set/);
  const empty = fs.mkdtempSync(path.join(tmpRoot, 'empty-'));
  const noSite = await run({ DATA_DIR: empty });
  assert.equal(noSite.code, 1);
  assert.match(noSite.err, /config\/site\.json/);
});
