import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { readPathMatcher } from '../../../src/director/read-paths.ts';
import { client, makeConfig, putRoute, siteStats, startDirector, startUpstream, waitFor } from './helpers.ts';

// how the director uses readers — read paths, the reader's 421, fewest in
// flight, and read your writes (cookie + catch-up marks against a fake storage).

function byHost(rs: { servedBy: string | undefined }[]): Record<string, number> {
  return rs.reduce<Record<string, number>>((m, r) => {
    m[r.servedBy!] = (m[r.servedBy!] ?? 0) + 1;
    return m;
  }, {});
}

/** A reader app that answers 421 for /api/orders* (it does not hold orders) and 200 otherwise. */
async function startReaderApp(t: TestContext, name: string): Promise<{ addr: string; seen: string[] }> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const misdirected = req.url!.startsWith('/api/orders');
    const body = JSON.stringify(misdirected ? { error: 'no orders here' } : { servedBy: name });
    res.writeHead(misdirected ? 421 : 200, { 'content-type': 'application/json', 'x-served-by': name, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return { addr: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** A fake storage processor whose reader catch-up answers only when released. */
async function startFakeStorage(t: TestContext): Promise<{ url: string; calls: number; release: () => void; auto: boolean }> {
  const state = {
    url: '',
    calls: 0,
    waiting: [] as (() => void)[],
    auto: false,
    release: () => {
      for (const w of state.waiting.splice(0)) w();
    },
  };
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const answer = (): void => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"readers":["b"]}');
      };
      if (req.url === '/v1/volumes/shop/readers/catch-up') {
        state.calls++;
        if (state.auto) answer();
        else state.waiting.push(answer);
        return;
      }
      res.writeHead(404);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(
    () =>
      new Promise<void>((r) => {
        state.release();
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

test('read paths: exact paths and prefixes; empty means every path', () => {
  const m = readPathMatcher(['/', '/api/products', '/public/*']);
  assert.ok(m('/') && m('/api/products') && m('/public/shop.css'));
  assert.ok(!m('/api/products/1') && !m('/api/orders') && !m('/index.html'));
  assert.ok(readPathMatcher(undefined)('/anything'));
  assert.ok(readPathMatcher(['/*'])('/anything'));
});

test("only reads of the route's readPaths go to readers; other reads and every write stay on the primary", async (t) => {
  const a = await startUpstream(t, 'A');
  const b = await startUpstream(t, 'B');
  const d = await startDirector(t, makeConfig());
  const c = client(t);
  await putRoute(c, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [b.addr], readPaths: ['/api/products*'] });
  const listed = byHost(await Promise.all(Array.from({ length: 20 }, () => c(`${d.frontUrl('shop')}/api/products?page=1`))));
  assert.ok((listed.A ?? 0) > 0 && (listed.B ?? 0) > 0, JSON.stringify(listed));
  const other = byHost(await Promise.all(Array.from({ length: 10 }, () => c(`${d.frontUrl('shop')}/account`))));
  assert.deepEqual(other, { A: 10 });
  const posts = byHost(await Promise.all(Array.from({ length: 10 }, () => c(`${d.frontUrl('shop')}/api/products`, { method: 'POST', body: {} }))));
  assert.deepEqual(posts, { A: 10 });
});

test("a reader's 421 sends the read to the primary; the client never sees the 421", async (t) => {
  const a = await startUpstream(t, 'A');
  const r = await startReaderApp(t, 'R');
  const d = await startDirector(t, makeConfig());
  const c = client(t);
  await putRoute(c, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [r.addr] });
  const rs = await Promise.all(Array.from({ length: 20 }, () => c(`${d.frontUrl('shop')}/api/orders/7`)));
  assert.ok(
    rs.every((x) => x.status === 200 && x.servedBy === 'A'),
    JSON.stringify(byHost(rs)),
  );
  assert.ok(r.seen.length > 0, 'some went to the reader first');
  assert.equal((siteStats(d) as { misdirected?: number }).misdirected, r.seen.length);
  const products = byHost(await Promise.all(Array.from({ length: 20 }, () => c(`${d.frontUrl('shop')}/api/products`))));
  assert.ok((products.R ?? 0) > 0, 'the reader serves what it holds');
});

test('reads go to the host with the fewest in flight: a slow primary gets few', async (t) => {
  const a = await startUpstream(t, 'A');
  const b = await startUpstream(t, 'B');
  a.delayMs = 300;
  const d = await startDirector(t, makeConfig());
  const c = client(t);
  await putRoute(c, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [b.addr] });
  const rs = await Promise.all(
    Array.from({ length: 40 }, async (_, i) => {
      await new Promise((r) => setTimeout(r, i * 5));
      return c(`${d.frontUrl('shop')}/`);
    }),
  );
  const h = byHost(rs);
  assert.ok((h.A ?? 0) <= 3 && (h.B ?? 0) >= 37, JSON.stringify(h));
});

test('read your writes: a client that wrote reads from the primary until the readers confirmed its write', async (t) => {
  const a = await startUpstream(t, 'A');
  const b = await startUpstream(t, 'B');
  const storage = await startFakeStorage(t);
  const d = await startDirector(t, makeConfig());
  const c = client(t);
  await putRoute(c, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [b.addr], ryw: { storageUrl: storage.url, timeoutMs: 5000 } });
  // The first mark (nothing written yet) is released: anonymous reads spread.
  await waitFor(() => storage.calls >= 1, 2000, 'the first mark');
  storage.release();
  const post = await c(`${d.frontUrl('shop')}/api/orders`, { method: 'POST', body: { n: 1 } });
  assert.equal(post.status, 201);
  const setCookie = String(post.headers['set-cookie']);
  assert.match(setCookie, /^us_ryw_shop=[0-9a-f]{8}\.1; Path=\/; Max-Age=3600; HttpOnly; SameSite=Lax$/);
  const cookie = setCookie.split(';')[0]!;
  await waitFor(() => storage.calls >= 2, 2000, 'a mark for the write');
  // Not confirmed yet: this client reads from the primary only; others still from both.
  const mine = byHost(await Promise.all(Array.from({ length: 10 }, () => c(`${d.frontUrl('shop')}/`, { headers: { cookie: `other=1; ${cookie}` } }))));
  assert.deepEqual(mine, { A: 10 });
  const anyone = byHost(await Promise.all(Array.from({ length: 10 }, () => c(`${d.frontUrl('shop')}/`))));
  assert.ok((anyone.B ?? 0) > 0, JSON.stringify(anyone));
  // Confirmed: the client may read from readers again.
  storage.release();
  let reachedReader = false;
  const until = Date.now() + 2000;
  while (!reachedReader && Date.now() < until) {
    const r = await c(`${d.frontUrl('shop')}/`, { headers: { cookie } });
    reachedReader = r.servedBy === 'B';
  }
  assert.ok(reachedReader, 'after the mark the client reads from readers too');
  // A cookie of another director process is covered once a mark succeeded.
  const foreign = byHost(await Promise.all(Array.from({ length: 10 }, () => c(`${d.frontUrl('shop')}/`, { headers: { cookie: 'us_ryw_shop=00000000.99' } }))));
  assert.ok((foreign.B ?? 0) > 0, JSON.stringify(foreign));
});
