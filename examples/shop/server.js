// The demo shop: an ordinary web application that knows nothing of Understudy.
//
//   DATA_DIR=/path/to/volume node examples/shop/server.js
//
// Everything it has lives in its volume (DATA_DIR):
//   config/site.json   { "listen": { "host": "127.0.1.1", "port": 3000 }, "workers": 1, "name": "shop" }
//   catalog.db         products (SQLite, WAL) — seeded from catalog.json, or a built-in list
//   orders.db          orders (SQLite, WAL)
//   public/            the storefront (index.html at /, other files at /public/*)
//
// Routes: GET /healthz, GET /, GET /api/products, GET /api/products/:id,
// POST /api/orders, GET /api/orders/:id, GET /api/orders?customer=X.
// Every answer carries X-Served-By: <its listen address>.
// READ_ONLY=1: modifying requests get 503 (a read-only host). Its databases are opened
// read-only. It also runs on a reader copy (Understudy's scale-out: only catalog.db and
// public/, no orders.db): the order routes then answer 421 Misdirected Request (the
// director sends such a read to the primary), and catalog.db is reopened whenever it
// is replaced by a newer published image (another inode), so reads follow the copy.
// An order is answered 201 only after its transaction has committed (synchronous=FULL).
//
// Optional behaviour, off unless its variable is set (Understudy's tests use them to
// play apps with faults that are not the host's; any shop may have such code):
//   SHOP_UPLOADS=1     POST /api/uploads stores a small JSON upload in orders.db under the
//                      name in its X-Upload-Name header. The handler does not check that the
//                      header is there: without it the request fails with 500, on every host.
//   SHOP_RATE_LIMIT=N  at most N requests a second per client address (a token bucket of N);
//                      beyond: 429 Too Many Requests with Retry-After: 1, health checks included.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

const MAX_BODY = 1024 * 1024;
const READ_ONLY = process.env.READ_ONLY === '1';
const UPLOADS = process.env.SHOP_UPLOADS === '1';
const RATE_LIMIT = Number(process.env.SHOP_RATE_LIMIT ?? 0);
const MODIFYING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

const DEFAULT_CATALOG = [
  { name: 'Espresso beans, 1 kg', description: 'Dark roast, chocolate notes.', priceCents: 2490 },
  { name: 'Filter coffee, 500 g', description: 'Light roast from Ethiopia.', priceCents: 1290 },
  { name: 'Green tea, 100 g', description: 'Sencha, first flush.', priceCents: 890 },
  { name: 'Black tea, 250 g', description: 'Assam, malty and strong.', priceCents: 990 },
  { name: 'Ceramic mug', description: '350 ml, dishwasher safe.', priceCents: 1450 },
  { name: 'Travel mug', description: 'Insulated steel, 400 ml.', priceCents: 2290 },
  { name: 'Pour-over dripper', description: 'Porcelain, size 02.', priceCents: 2190 },
  { name: 'Paper filters (100)', description: 'Unbleached, size 02.', priceCents: 490 },
  { name: 'Hand grinder', description: 'Conical ceramic burrs.', priceCents: 4990 },
  { name: 'Electric kettle', description: 'Gooseneck, temperature control.', priceCents: 7990 },
  { name: 'Milk frother', description: 'Battery powered whisk.', priceCents: 1190 },
  { name: 'French press', description: 'Glass and steel, 1 l.', priceCents: 3290 },
  { name: 'Moka pot', description: 'Aluminium, 6 cups.', priceCents: 2790 },
  { name: 'Digital scale', description: '0.1 g precision with timer.', priceCents: 2590 },
  { name: 'Tea infuser', description: 'Fine stainless mesh.', priceCents: 690 },
  { name: 'Teapot', description: 'Cast iron, 800 ml.', priceCents: 4490 },
  { name: 'Biscotti, 200 g', description: 'Almond, baked twice.', priceCents: 590 },
  { name: 'Dark chocolate, 100 g', description: '72% cocoa.', priceCents: 390 },
  { name: 'Coffee canister', description: 'Airtight, keeps 500 g.', priceCents: 1890 },
  { name: 'Gift card', description: 'Worth 25.00.', priceCents: 2500 },
];

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

function fail(message) {
  console.error(`shop: ${message}`);
  process.exit(1);
}

// ---------------------------------------------------------------- configuration

const DATA_DIR = process.env.DATA_DIR;
if (!DATA_DIR) fail('DATA_DIR is not set: it must name the site\'s volume');
if (!fs.existsSync(DATA_DIR)) fail(`DATA_DIR ${DATA_DIR} does not exist`);

function readSiteConfig() {
  const file = path.join(DATA_DIR, 'config', 'site.json');
  let site;
  try {
    site = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`cannot read ${file}: ${e.message}`);
  }
  const host = site?.listen?.host;
  const port = site?.listen?.port;
  if (typeof host !== 'string' || host === '') fail(`${file}: listen.host must be an address`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`${file}: listen.port must be a port number`);
  // `workers` is recorded (the transform sets it from the host's cpus) but the shop
  // runs as one process: SQLite in WAL mode serves it well at demo scale.
  return { host, port, workers: site.workers ?? 1, name: site.name ?? 'shop' };
}

const site = readSiteConfig();

// ---------------------------------------------------------------- databases

function openDatabase(file, schema) {
  let db;
  try {
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('synchronous = FULL');
    db.exec(schema);
  } catch (e) {
    db?.close();
    fail(`${file} is not a usable SQLite database (${e.code ?? 'error'}: ${e.message})`);
  }
  return db;
}

/** READ_ONLY: opens an existing database read-only (no schema, no pragma that writes); null if absent and optional. */
function openReadOnly(file, optional) {
  if (!fs.existsSync(file)) {
    if (optional) return null;
    fail(`${file} does not exist (a read-only host needs it)`);
  }
  let db;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    db.prepare('SELECT 1').get();
  } catch (e) {
    db?.close();
    fail(`${file} is not a usable SQLite database (${e.code ?? 'error'}: ${e.message})`);
  }
  return db;
}

const CATALOG_FILE = path.join(DATA_DIR, 'catalog.db');
const ORDERS_FILE = path.join(DATA_DIR, 'orders.db');

function inodeOf(file) {
  try {
    return fs.statSync(file).ino;
  } catch {
    return null;
  }
}

let catalogIno = inodeOf(CATALOG_FILE);
let catalog = READ_ONLY ? openReadOnly(CATALOG_FILE, false) : openDatabase(
  CATALOG_FILE,
  `CREATE TABLE IF NOT EXISTS products (
     id INTEGER PRIMARY KEY,
     name TEXT NOT NULL,
     description TEXT NOT NULL DEFAULT '',
     price_cents INTEGER NOT NULL CHECK (price_cents >= 0)
   );`,
);
const orders = READ_ONLY ? openReadOnly(ORDERS_FILE, true) : openDatabase(
  ORDERS_FILE,
  `CREATE TABLE IF NOT EXISTS orders (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     customer TEXT NOT NULL,
     total_cents INTEGER NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE IF NOT EXISTS order_items (
     order_id INTEGER NOT NULL REFERENCES orders(id),
     line INTEGER NOT NULL,
     product_id INTEGER NOT NULL,
     name TEXT NOT NULL,
     qty INTEGER NOT NULL,
     price_cents INTEGER NOT NULL,
     PRIMARY KEY (order_id, line)
   );
   CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer, id);`,
);

function seedCatalog() {
  if (catalog.prepare('SELECT COUNT(*) AS n FROM products').get().n > 0) return;
  const file = path.join(DATA_DIR, 'catalog.json');
  let items = DEFAULT_CATALOG;
  if (fs.existsSync(file)) {
    try {
      items = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (!Array.isArray(items)) throw new Error('not a list of products');
    } catch (e) {
      fail(`${file}: ${e.message}`);
    }
  }
  const insert = catalog.prepare('INSERT INTO products (id, name, description, price_cents) VALUES (?, ?, ?, ?)');
  catalog.transaction(() => {
    items.forEach((p, i) => {
      const cents = Number.isInteger(p.priceCents) ? p.priceCents : Math.round(Number(p.price) * 100);
      if (typeof p.name !== 'string' || !Number.isInteger(cents) || cents < 0) fail(`${file}: product ${i + 1} needs a name and a priceCents`);
      insert.run(Number.isInteger(p.id) ? p.id : i + 1, p.name, p.description ?? '', cents);
    });
  })();
}
if (!READ_ONLY) seedCatalog();

function catalogQueries(db) {
  return {
    products: db.prepare('SELECT id, name, description, price_cents FROM products ORDER BY id'),
    product: db.prepare('SELECT id, name, description, price_cents FROM products WHERE id = ?'),
    catalogAlive: db.prepare('SELECT 1'),
  };
}

if (UPLOADS && !READ_ONLY) orders.exec('CREATE TABLE IF NOT EXISTS uploads (name TEXT NOT NULL, data TEXT NOT NULL, created_at TEXT NOT NULL)');
const insertUpload = UPLOADS && !READ_ONLY ? orders.prepare('INSERT INTO uploads (name, data, created_at) VALUES (?, ?, ?)') : null;

/** SHOP_RATE_LIMIT: a token bucket of RATE_LIMIT per client address, refilled at RATE_LIMIT a second. */
const buckets = new Map();
function withinRateLimit(address) {
  if (!(RATE_LIMIT > 0)) return true;
  const now = Date.now();
  const b = buckets.get(address) ?? { tokens: RATE_LIMIT, at: now };
  b.tokens = Math.min(RATE_LIMIT, b.tokens + ((now - b.at) / 1000) * RATE_LIMIT);
  b.at = now;
  buckets.set(address, b);
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

/** Order statements; none on a reader copy (no orders.db): the order routes answer 421 there. */
const oq = orders === null ? null : {
  insertOrder: orders.prepare('INSERT INTO orders (customer, total_cents, created_at) VALUES (?, ?, ?)'),
  insertItem: orders.prepare(
    'INSERT INTO order_items (order_id, line, product_id, name, qty, price_cents) VALUES (?, ?, ?, ?, ?, ?)',
  ),
  order: orders.prepare('SELECT id, customer, total_cents, created_at FROM orders WHERE id = ?'),
  items: orders.prepare('SELECT product_id, name, qty, price_cents FROM order_items WHERE order_id = ? ORDER BY line'),
  byCustomer: orders.prepare('SELECT id FROM orders WHERE customer = ? ORDER BY id DESC LIMIT 100'),
  recent: orders.prepare('SELECT id FROM orders ORDER BY id DESC LIMIT 100'),
  ordersAlive: orders.prepare('SELECT 1'),
};

let cq = catalogQueries(catalog);

/**
 * The catalog statements, after reopening catalog.db if a newer image replaced it
 * (READ_ONLY on a reader copy: the storage processor renames a fresh image over it).
 * A stat per request: microseconds.
 */
function catalogNow() {
  if (READ_ONLY) {
    const ino = inodeOf(CATALOG_FILE);
    if (ino !== null && ino !== catalogIno) {
      const next = openReadOnly(CATALOG_FILE, false);
      const old = catalog;
      catalog = next;
      catalogIno = ino;
      cq = catalogQueries(next);
      old.close();
    }
  }
  return cq;
}

/** Every statement the routes use, with the catalog's current. */
const q = new Proxy({}, { get: (_t, k) => (k in cq ? cq[k] : oq?.[k]) });

const money = (cents) => Math.round(cents) / 100;

function productJson(row) {
  return { id: row.id, name: row.name, description: row.description, price: money(row.price_cents), priceCents: row.price_cents };
}

function orderJson(id) {
  const o = q.order.get(id);
  if (!o) return undefined;
  const items = q.items.all(id).map((it) => ({
    productId: it.product_id,
    name: it.name,
    qty: it.qty,
    price: money(it.price_cents),
    priceCents: it.price_cents,
    lineTotal: money(it.price_cents * it.qty),
  }));
  return { id: o.id, customer: o.customer, items, total: money(o.total_cents), totalCents: o.total_cents, createdAt: o.created_at };
}

/** Validates an order body; returns { customer, lines } or { error, field }. */
function validateOrder(body) {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { error: 'body must be a JSON object { customer, items }' };
  const { customer, items } = body;
  if (typeof customer !== 'string' || customer.trim() === '' || customer.length > 200) {
    return { error: 'customer must be a non-empty string (at most 200 characters)', field: 'customer' };
  }
  if (!Array.isArray(items) || items.length === 0 || items.length > 100) {
    return { error: 'items must be a list of 1 to 100 { productId, qty }', field: 'items' };
  }
  const lines = [];
  for (const [i, item] of items.entries()) {
    const field = `items[${i}]`;
    if (typeof item !== 'object' || item === null) return { error: `${field} must be { productId, qty }`, field };
    if (!Number.isInteger(item.productId) || item.productId < 1) return { error: `${field}.productId must be a product id`, field: `${field}.productId` };
    if (!Number.isInteger(item.qty) || item.qty < 1 || item.qty > 1000) return { error: `${field}.qty must be a whole number from 1 to 1000`, field: `${field}.qty` };
    const product = q.product.get(item.productId);
    if (!product) return { error: `${field}.productId: no product ${item.productId}`, field: `${field}.productId` };
    lines.push({ product, qty: item.qty });
  }
  return { customer: customer.trim(), lines };
}

const placeOrder = orders === null ? null : orders.transaction((customer, lines) => {
  const total = lines.reduce((sum, l) => sum + l.product.price_cents * l.qty, 0);
  const { lastInsertRowid } = q.insertOrder.run(customer, total, new Date().toISOString());
  const id = Number(lastInsertRowid);
  lines.forEach((l, i) => q.insertItem.run(id, i + 1, l.product.id, l.product.name, l.qty, l.product.price_cents));
  return id;
});

// ---------------------------------------------------------------- HTTP

const servedBy = site.host.includes(':') ? `[${site.host}]:${site.port}` : `${site.host}:${site.port}`;

function send(res, status, body, headers = {}) {
  const isBuffer = Buffer.isBuffer(body);
  const data = isBuffer || typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': isBuffer || typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(data),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : data);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('body too large (limit 1 MB)'), { status: 413 }));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text === '' ? undefined : JSON.parse(text));
      } catch {
        reject(Object.assign(new Error('body is not valid JSON'), { status: 400 }));
      }
    });
    req.on('error', reject);
  });
}

function serveFile(res, root, rel) {
  const base = path.resolve(root);
  const file = path.resolve(base, rel);
  if (file !== base && !file.startsWith(base + path.sep)) return send(res, 404, { error: 'not found' });
  let data;
  try {
    data = fs.readFileSync(file);
  } catch {
    return send(res, 404, { error: 'not found' });
  }
  const type = CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
  return send(res, 200, data, { 'content-type': type });
}

function methodNotAllowed(res, allow) {
  send(res, 405, { error: `method not allowed (allowed: ${allow})` }, { allow });
}

async function route(req, res) {
  const url = new URL(req.url ?? '/', 'http://shop.invalid');
  const p = url.pathname;
  const m = req.method === 'HEAD' ? 'GET' : req.method;

  if (!withinRateLimit(req.socket.remoteAddress ?? '')) return send(res, 429, { error: 'too many requests' }, { 'retry-after': '1' });
  if (MODIFYING.has(m) && READ_ONLY) return send(res, 503, { error: 'read-only host' }, { 'retry-after': '1' });
  catalogNow();
  if (oq === null && (p === '/api/orders' || p.startsWith('/api/orders/'))) {
    // A reader copy holds the catalog and public/ only: the director retries this read on the primary.
    return send(res, 421, { error: 'this read-only host does not hold orders; ask the primary' });
  }

  if (p === '/healthz') {
    if (m !== 'GET') return methodNotAllowed(res, 'GET, HEAD');
    q.catalogAlive.get();
    if (oq !== null) q.ordersAlive.get();
    return send(res, 200, { ok: true, servedBy, site: site.name, readOnly: READ_ONLY, ...(oq === null ? { readerCopy: true } : {}) });
  }
  if (p === '/' || p === '/index.html') {
    if (m !== 'GET') return methodNotAllowed(res, 'GET, HEAD');
    return serveFile(res, path.join(DATA_DIR, 'public'), 'index.html');
  }
  if (p.startsWith('/public/')) {
    if (m !== 'GET') return methodNotAllowed(res, 'GET, HEAD');
    return serveFile(res, path.join(DATA_DIR, 'public'), decodeURIComponent(p.slice('/public/'.length)));
  }
  if (p === '/api/products') {
    if (m !== 'GET') return methodNotAllowed(res, 'GET, HEAD');
    return send(res, 200, q.products.all().map(productJson));
  }
  let match = /^\/api\/products\/([^/]+)$/.exec(p);
  if (match) {
    if (m !== 'GET') return methodNotAllowed(res, 'GET, HEAD');
    const id = Number(match[1]);
    const row = Number.isInteger(id) ? q.product.get(id) : undefined;
    return row ? send(res, 200, productJson(row)) : send(res, 404, { error: `no product ${match[1]}` });
  }
  if (insertUpload !== null && p === '/api/uploads') {
    if (m !== 'POST') return methodNotAllowed(res, 'POST');
    const body = await readJson(req);
    const name = req.headers['x-upload-name'].trim(); // no header: a TypeError, answered 500
    insertUpload.run(name, JSON.stringify(body ?? null), new Date().toISOString());
    return send(res, 201, { name });
  }
  if (p === '/api/orders') {
    if (m === 'GET') {
      const customer = url.searchParams.get('customer');
      const rows = customer === null ? q.recent.all() : q.byCustomer.all(customer);
      return send(res, 200, rows.map((r) => orderJson(r.id)));
    }
    if (m !== 'POST') return methodNotAllowed(res, 'GET, HEAD, POST');
    const input = validateOrder(await readJson(req));
    if (input.error) return send(res, 400, { error: input.error, ...(input.field ? { field: input.field } : {}) });
    const id = placeOrder(input.customer, input.lines); // committed (synchronous=FULL) when this returns
    return send(res, 201, orderJson(id), { location: `/api/orders/${id}` });
  }
  match = /^\/api\/orders\/([^/]+)$/.exec(p);
  if (match) {
    if (m !== 'GET') return methodNotAllowed(res, 'GET, HEAD');
    const id = Number(match[1]);
    const order = Number.isInteger(id) ? orderJson(id) : undefined;
    return order ? send(res, 200, order) : send(res, 404, { error: `no order ${match[1]}` });
  }
  return send(res, 404, { error: `no route ${req.method} ${p}` });
}

const server = http.createServer((req, res) => {
  res.setHeader('x-served-by', servedBy);
  route(req, res).catch((e) => {
    const status = e.status ?? 500;
    if (status === 500) console.error(`shop: ${req.method} ${req.url}: ${e.stack ?? e}`);
    if (!res.headersSent) send(res, status, { error: status === 500 ? 'internal error' : e.message });
    else res.destroy();
  });
});

server.on('error', (e) => fail(`cannot listen on ${servedBy}: ${e.message}`));
server.listen(site.port, site.host, () => {
  console.log(`shop listening on http://${servedBy} (data: ${DATA_DIR})`);
});

// ---------------------------------------------------------------- shutdown

let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close(() => {
    catalog.close();
    orders?.close();
    process.exit(0);
  });
  server.closeIdleConnections();
  setTimeout(() => {
    server.closeAllConnections();
  }, 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
