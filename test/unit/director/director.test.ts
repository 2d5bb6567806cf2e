import assert from 'node:assert/strict';
import { test } from 'node:test';
import { client, closedPort, makeConfig, putRoute, siteStats, startDirector, startFakeController, startUpstream, waitFor } from './helpers.ts';

// The director against real sockets on 127.0.0.1: upstream apps, a fake
// controller, and a Director on free ports, all closed in t.after.

test('routes requests to the primary and passes status, headers and body both ways', async (t) => {
  const a = await startUpstream(t, 'A');
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  assert.equal((await putRoute(http, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [] })).status, 200);

  const get = await http(`${d.frontUrl('shop')}/api/products?x=1`, { headers: { 'x-custom': 'yes' } });
  assert.equal(get.status, 200);
  assert.equal(get.servedBy, 'A');
  const echoed = get.json as { url: string; headers: Record<string, string> };
  assert.equal(echoed.url, '/api/products?x=1');
  assert.equal(echoed.headers['x-custom'], 'yes');
  assert.equal(echoed.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(echoed.headers['x-forwarded-proto'], 'http');
  assert.equal(echoed.headers['x-forwarded-host'], new URL(d.frontUrl('shop')).host);

  const post = await http(`${d.frontUrl('shop')}/api/orders`, { method: 'POST', body: { customer: 'c', items: [{ productId: 1, qty: 2 }] } });
  assert.equal(post.status, 201);
  assert.deepEqual(JSON.parse((post.json as { body: string }).body), { customer: 'c', items: [{ productId: 1, qty: 2 }] });

  const routes = await http(`${d.adminUrl}/v1/routes`);
  assert.deepEqual(routes.json, { routes: [{ site: 'shop', epoch: 1, primary: a.addr, readers: [] }] });
});

test('POST goes only to the primary while GETs spread over primary and readers', async (t) => {
  const a = await startUpstream(t, 'A');
  const b = await startUpstream(t, 'B');
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [b.addr] });

  const gets = await Promise.all(Array.from({ length: 20 }, () => http(`${d.frontUrl('shop')}/`)));
  const byHost = (rs: { servedBy: string | undefined }[]) =>
    rs.reduce<Record<string, number>>((m, r) => {
      m[r.servedBy!] = (m[r.servedBy!] ?? 0) + 1;
      return m;
    }, {});
  const g = byHost(gets);
  assert.ok((g.A ?? 0) >= 5 && (g.B ?? 0) >= 5, `GETs not spread: ${JSON.stringify(g)}`);

  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    const rs = await Promise.all(Array.from({ length: 10 }, () => http(`${d.frontUrl('shop')}/api/orders`, { method, body: { n: 1 } })));
    assert.deepEqual(byHost(rs), { A: 10 }, `${method} reached a reader`);
  }
  assert.equal(b.seen.filter((s) => !s.startsWith('GET')).length, 0);
});

test('a stale epoch is refused with 409 and leaves the route unchanged; an equal epoch may update', async (t) => {
  const a = await startUpstream(t, 'A');
  const b = await startUpstream(t, 'B');
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  await putRoute(http, d, { site: 'shop', epoch: 5, primary: a.addr, readers: [] });

  const stale = await putRoute(http, d, { site: 'shop', epoch: 4, primary: b.addr, readers: [] });
  assert.equal(stale.status, 409);
  assert.equal((stale.json as { error: { code: string } }).error.code, 'US_STALE_EPOCH');
  assert.equal((await http(`${d.frontUrl('shop')}/`)).servedBy, 'A');
  assert.equal(d.routes.get('shop')!.primary, a.addr);

  const same = await putRoute(http, d, { site: 'shop', epoch: 5, primary: a.addr, readers: [b.addr] });
  assert.equal(same.status, 200);
  assert.deepEqual(d.routes.get('shop')!.readers, [b.addr]);

  const unknown = await putRoute(http, d, { site: 'nope', epoch: 9, primary: a.addr, readers: [] });
  assert.equal(unknown.status, 404);
  const bad = await http(`${d.adminUrl}/v1/routes/shop`, { method: 'PUT', body: { epoch: 'x', primary: 'no-port', readers: [] } });
  assert.equal(bad.status, 400);
  const msg = (bad.json as { error: { message: string } }).error.message;
  assert.match(msg, /epoch/);
  assert.match(msg, /primary/);
  assert.equal(d.routes.get('shop')!.epoch, 5, 'a bad body changed the route');
});

test('requests are held while there is no primary and released, in order, when a route arrives', async (t) => {
  const a = await startUpstream(t, 'A');
  const d = await startDirector(t, makeConfig());
  const http = client(t);

  // No route at all yet.
  const early = Array.from({ length: 10 }, (_, i) => http(`${d.frontUrl('shop')}/r${i}`, i % 2 ? { method: 'POST', body: { i } } : {}));
  await waitFor(() => siteStats(d).holding === 10, 3000, '10 held requests');
  // A route with a null primary (failover in progress) keeps holding.
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: null, readers: [] });
  const more = Array.from({ length: 10 }, (_, i) => http(`${d.frontUrl('shop')}/s${i}`, i % 2 ? { method: 'POST', body: { i } } : {}));
  await waitFor(() => siteStats(d).holding === 20, 3000, '20 held requests');
  assert.equal(a.seen.length, 0);

  await putRoute(http, d, { site: 'shop', epoch: 2, primary: a.addr, readers: [] });
  const all = await Promise.all([...early, ...more]);
  assert.deepEqual(
    all.map((r) => r.status).filter((s) => s >= 300),
    [],
    'a held request failed',
  );
  assert.ok(all.every((r) => r.servedBy === 'A'));
  const s = siteStats(d);
  assert.equal(s.held, 20);
  assert.equal(s.released, 20);
  assert.equal(s.holding, 0);
  assert.equal(s.epoch, 2);
});

test('a held request times out with 503 + Retry-After; a full hold queue answers 503 at once', async (t) => {
  const d = await startDirector(t, makeConfig({ holdTimeoutMs: 200, holdMaxRequests: 3 }));
  const http = client(t);
  const t0 = Date.now();
  const held = Array.from({ length: 3 }, () => http(`${d.frontUrl('shop')}/`, { method: 'POST', body: {} }));
  await waitFor(() => siteStats(d).holding === 3, 3000, '3 held');
  const rejected = await http(`${d.frontUrl('shop')}/`);
  assert.equal(rejected.status, 503);
  assert.equal((rejected.json as { error: { code: string } }).error.code, 'US_HOLD_FULL');

  for (const r of await Promise.all(held)) {
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '1');
    assert.equal((r.json as { error: { code: string } }).error.code, 'US_HOLD_TIMEOUT');
  }
  assert.ok(Date.now() - t0 >= 190, 'answered before the hold timeout');
  const s = siteStats(d);
  assert.equal(s.heldTimedOut, 3);
  assert.equal(s.holdRejected, 1);
});

test('killing the primary under load: refused requests are held and served by the next primary', async (t) => {
  const a = await startUpstream(t, 'A');
  const b = await startUpstream(t, 'B');
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [] });

  // 1) Deterministic: an idle pool, A gone, then a POST and a GET: both refused, held, moved.
  await http(`${d.frontUrl('shop')}/warm`);
  await a.kill();
  const post = http(`${d.frontUrl('shop')}/api/orders`, { method: 'POST', body: { n: 1 } });
  const get = http(`${d.frontUrl('shop')}/api/products`);
  await waitFor(() => siteStats(d).holding === 2, 3000, 'refused requests held');
  // The same route again (idempotent PUT) does not release them: A is still the one that failed.
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [] });
  assert.equal(siteStats(d).holding, 2);
  await putRoute(http, d, { site: 'shop', epoch: 2, primary: b.addr, readers: [] });
  const [p, g] = await Promise.all([post, get]);
  assert.equal(p.status, 201);
  assert.equal(p.servedBy, 'B');
  assert.equal(g.status, 200);
  assert.equal(g.servedBy, 'B');

  // 2) Under load: 16 clients, GETs and POSTs, B killed mid-way, route moves to C.
  const c = await startUpstream(t, 'C');
  let stop = false;
  const results: { method: string; status: number; code?: string; servedBy?: string }[] = [];
  const worker = async (w: number) => {
    for (let i = 0; i < 400 && !stop; i++) {
      const method = (i + w) % 2 ? 'POST' : 'GET';
      const r = await http(`${d.frontUrl('shop')}/w${w}/${i}`, method === 'POST' ? { method, body: { w, i } } : {});
      results.push({ method, status: r.status, code: (r.json as { error?: { code: string } } | undefined)?.error?.code, servedBy: r.servedBy });
    }
  };
  const load = Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
  await waitFor(() => results.length >= 100, 5000, 'load');
  const heldBefore = siteStats(d).held;
  await b.kill();
  await waitFor(() => siteStats(d).holding > 0, 3000, 'held after the kill');
  await new Promise((r) => setTimeout(r, 50));
  await putRoute(http, d, { site: 'shop', epoch: 3, primary: c.addr, readers: [] });
  await waitFor(() => results.filter((r) => r.servedBy === 'C').length >= 100, 5000, 'served by C');
  stop = true;
  await load;

  const gets = results.filter((r) => r.method === 'GET');
  assert.deepEqual(
    gets.filter((r) => r.status !== 200),
    [],
    'a GET failed',
  );
  for (const r of results.filter((x) => x.method === 'POST')) {
    // A POST in flight at the moment of the crash may have an unknown outcome; it must say so.
    assert.ok(r.status === 201 || (r.status === 503 && r.code === 'US_OUTCOME_UNKNOWN'), `POST answered ${r.status} ${r.code}`);
  }
  const s = siteStats(d);
  if (process.env.DEBUG_DIRECTOR) console.log(JSON.stringify({ results: results.length, s }));
  assert.ok(s.held > heldBefore, 'nothing was held');
  assert.equal(s.holding, 0);
  assert.equal(s.released, s.held);
  assert.ok(s.outcomeUnknown <= 16, `outcomeUnknown ${s.outcomeUnknown}: more than the requests in flight`);
  assert.equal(results.filter((r) => r.status >= 500).length, s.outcomeUnknown);
});

test('a connection broken after the request was sent: POST → 503 US_OUTCOME_UNKNOWN, GET retried elsewhere', async (t) => {
  const bad = await startUpstream(t, 'BAD', 'destroy-after-read');
  const good = await startUpstream(t, 'GOOD');
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: bad.addr, readers: [good.addr] });

  const post = await http(`${d.frontUrl('shop')}/api/orders`, { method: 'POST', body: { n: 1 } });
  assert.equal(post.status, 503);
  assert.equal(post.headers['retry-after'], '1');
  assert.equal((post.json as { error: { code: string } }).error.code, 'US_OUTCOME_UNKNOWN');
  assert.equal(bad.seen.length, 1, 'the POST reached the app exactly once');
  assert.equal(good.seen.length, 0, 'a POST went to a reader');

  const gets = await Promise.all(Array.from({ length: 10 }, () => http(`${d.frontUrl('shop')}/api/products`)));
  assert.ok(gets.every((r) => r.status === 200 && r.servedBy === 'GOOD'));
  assert.ok(siteStats(d).retried >= 1);

  // No other upstream in the route: the GET is held and sent to the next route.
  await putRoute(http, d, { site: 'shop', epoch: 2, primary: bad.addr, readers: [] });
  const held = http(`${d.frontUrl('shop')}/api/products/1`);
  await waitFor(() => siteStats(d).holding === 1, 3000, 'GET held for retry');
  await putRoute(http, d, { site: 'shop', epoch: 3, primary: good.addr, readers: [] });
  const r = await held;
  assert.equal(r.status, 200);
  assert.equal(r.servedBy, 'GOOD');
  const s = siteStats(d);
  assert.equal(s.outcomeUnknown, 1);
  assert.ok(s.upstreams.find((u) => u.upstream === bad.addr)!.connErrors >= 2);
});

test('a refused connection is signalled to the controller, at most once per 50 ms per upstream', async (t) => {
  const ctl = await startFakeController(t);
  const a = await startUpstream(t, 'A');
  const dead = await closedPort();
  const d = await startDirector(t, makeConfig({ holdTimeoutMs: 3000 }), ctl.url);
  const http = client(t);
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: dead, readers: [] });

  const pending = Array.from({ length: 20 }, () => http(`${d.frontUrl('shop')}/`));
  await waitFor(() => ctl.signals.length >= 1, 3000, 'a signal');
  const sig = ctl.signals[0] as { kind: string; site: string; upstream: string; at: number; error: string };
  assert.equal(sig.kind, 'conn-error');
  assert.equal(sig.site, 'shop');
  assert.equal(sig.upstream, dead);
  assert.equal(sig.error, 'ECONNREFUSED');
  assert.ok(Math.abs(Date.now() - sig.at) < 5000);
  await waitFor(() => siteStats(d).holding === 20, 3000, 'all refused requests held');
  assert.ok(ctl.signals.length <= 3, `${ctl.signals.length} signals for one burst`);
  const st = siteStats(d).upstreams.find((u) => u.upstream === dead)!;
  assert.equal(st.connErrors, 20);
  assert.ok(st.lastConnErrorAt !== null);

  await putRoute(http, d, { site: 'shop', epoch: 2, primary: a.addr, readers: [] });
  assert.ok((await Promise.all(pending)).every((r) => r.status === 200 && r.servedBy === 'A'));
});

test('stats count requests and 5xx and give plausible latency percentiles; /metrics parses', async (t) => {
  const a = await startUpstream(t, 'A');
  a.delayMs = 20;
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [] });
  for (let i = 0; i < 5; i++) await Promise.all(Array.from({ length: 10 }, () => http(`${d.frontUrl('shop')}/`)));

  const stats = (await http(`${d.adminUrl}/v1/stats`)).json as {
    sites: {
      site: string;
      epoch: number;
      upstreams: { upstream: string; requests: number; errors5xx: number; latencyMs: { p50: number; p95: number; p99: number; count: number } }[];
    }[];
  };
  const shop = stats.sites.find((s) => s.site === 'shop')!;
  assert.equal(shop.epoch, 1);
  const u = shop.upstreams.find((x) => x.upstream === a.addr)!;
  assert.equal(u.requests, 50);
  assert.equal(u.errors5xx, 0);
  assert.equal(u.latencyMs.count, 50);
  assert.ok(u.latencyMs.p50 >= 18 && u.latencyMs.p50 < 200, `p50 ${u.latencyMs.p50}`);
  assert.ok(u.latencyMs.p95 >= u.latencyMs.p50 && u.latencyMs.p99 >= u.latencyMs.p95);

  const metrics = await http(`${d.adminUrl}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(String(metrics.headers['content-type']), /text\/plain/);
  const text = metrics.json as string;
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? -?(\d+(\.\d+)?([eE][-+]?\d+)?|\+Inf|NaN)$/;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    assert.match(line, sample);
  }
  assert.ok(text.includes(`understudy_director_requests_total{site="shop",upstream="${a.addr}",code="200"} 50`), text);
  assert.match(text, /understudy_director_held_total\{site="shop"\} 0/);
  assert.match(text, new RegExp(`understudy_director_request_duration_seconds_count\\{site="shop",upstream="${a.addr.replace(/\./g, '\\.')}"\\} 50`));
});

test('stop() answers held requests 503 and closes the listeners', async (t) => {
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  const front = d.frontUrl('shop');
  const held = http(`${front}/`);
  await waitFor(() => siteStats(d).holding === 1, 3000, 'held');
  await d.stop();
  const r = await held;
  assert.equal(r.status, 503);
  assert.equal((r.json as { error: { code: string } }).error.code, 'US_DIRECTOR_STOPPING');
  await assert.rejects(http(`${front}/`));
});

test('large bodies stream both ways; a client that goes away aborts its upstream request', async (t) => {
  const a = await startUpstream(t, 'A');
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: a.addr, readers: [] });

  const big = 'x'.repeat(2 * 1024 * 1024);
  const r = await http(`${d.frontUrl('shop')}/upload`, { method: 'POST', body: { big } });
  assert.equal(r.status, 201);
  assert.equal(JSON.parse((r.json as { body: string }).body).big.length, big.length, 'request body truncated');

  // The client gives up while the app is still working: the director aborts its upstream request.
  a.delayMs = 300;
  const ac = new AbortController();
  const gone = fetch(`${d.frontUrl('shop')}/slow`, { signal: ac.signal }).catch((e: Error) => e);
  await waitFor(() => a.seen.includes('GET /slow'), 3000, 'request at the app');
  ac.abort();
  assert.ok((await gone) instanceof Error);
  a.delayMs = 0;
  const after = await http(`${d.frontUrl('shop')}/after`);
  assert.equal(after.status, 200);
  assert.equal(siteStats(d).outcomeUnknown, 0);
});

test('ready: 503 US_DIRECTOR_NOT_READY until the director holds a route for every site of its config, then 200', async (t) => {
  const a = await startUpstream(t, 'A');
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  const before = await http(`${d.adminUrl}/v1/ready`);
  assert.equal(before.status, 503);
  assert.equal((before.json as { error: { code: string } }).error.code, 'US_DIRECTOR_NOT_READY');
  assert.match((before.json as { error: { message: string } }).error.message, /shop/);
  await putRoute(http, d, { site: 'shop', epoch: 3, primary: a.addr, readers: [] });
  const after = await http(`${d.adminUrl}/v1/ready`);
  assert.equal(after.status, 200);
  assert.deepEqual(after.json, { ready: true });
});

test('stats carry the fencing report once a token was seen: a refused command of an older leader is counted for the controller to record', async (t) => {
  const a = await startUpstream(t, 'A');
  const d = await startDirector(t, makeConfig());
  const http = client(t);
  assert.equal(((await http(`${d.adminUrl}/v1/stats`)).json as { fencing?: unknown }).fencing, undefined, 'no token seen: no report');
  const route = { site: 'shop', epoch: 1, primary: a.addr, readers: [] };
  const put = (token: string) => http(`${d.adminUrl}/v1/routes/shop`, { method: 'PUT', body: route, headers: { 'x-understudy-fencing-token': token } });
  assert.equal((await put('12')).status, 200);
  const stale = await put('2');
  assert.equal(stale.status, 409);
  const f = ((await http(`${d.adminUrl}/v1/stats`)).json as { fencing: { highest: number; refused: number; lastRefused: { token: number; method: string } } })
    .fencing;
  assert.deepEqual([f.highest, f.refused, f.lastRefused.token, f.lastRefused.method], [12, 1, 2, 'PUT']);
});

test('where several controllers elect a leader, a connection error is signalled to each (the leader acts on it)', async (t) => {
  const c1 = await startFakeController(t);
  const c2 = await startFakeController(t);
  const dead = await closedPort();
  const d = await startDirector(t, makeConfig({ holdTimeoutMs: 500 }), [c1.url, c2.url]);
  const http = client(t);
  await putRoute(http, d, { site: 'shop', epoch: 1, primary: dead, readers: [] });
  await http(`${d.frontUrl('shop')}/`);
  await waitFor(() => c1.signals.length >= 1 && c2.signals.length >= 1, 3000, 'a signal at each controller');
  assert.equal((c2.signals[0] as { upstream: string }).upstream, dead);
});
