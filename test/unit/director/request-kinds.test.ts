import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RequestKinds, routeOf } from '../../../src/director/request-kinds.ts';

test('routeOf: ids become :id, long or deep paths are cut, plain paths are kept as they are', () => {
  assert.equal(routeOf('/api/products'), '/api/products');
  assert.equal(routeOf('/'), '/');
  assert.equal(routeOf('/api/orders/123'), '/api/orders/:id');
  assert.equal(routeOf('/u/2f9c1d/files/x'), '/u/:id/files/x');
  assert.equal(routeOf('/a/b/c/d/e/f'), '/a/b/c/d/*');
  assert.equal(routeOf(`/blob/${'x'.repeat(50)}`), '/blob/:id');
});

test('kinds: counts answers, errors and load answers per method and route; samples only failing GETs without a body', () => {
  const k = new RequestKinds();
  k.record('GET', '/api/products', '/api/products', 200, false, false);
  k.record('POST', '/api/uploads', '/api/uploads', 500, false, true);
  k.record('POST', '/api/uploads', '/api/uploads', 201, false, true);
  k.record('GET', '/api/orders/7', '/api/orders/7?x=1', 500, false, false);
  k.record('GET', '/api/orders/8', '/api/orders/8', 503, true, false);
  k.record('GET', '/api/orders/9', '/api/orders/9', 429, true, false);
  for (let i = 0; i < 5; i++) k.record('GET', `/api/orders/${i}`, `/api/orders/${i}`, 502, false, false);
  const snap = Object.fromEntries(k.snapshot().map((s) => [s.kind, s]));
  assert.deepEqual(Object.keys(snap).sort(), ['GET /api/orders/:id', 'GET /api/products', 'POST /api/uploads']);
  assert.deepEqual(snap['POST /api/uploads'], { kind: 'POST /api/uploads', method: 'POST', requests: 2, errors: 1, shed: 0 });
  const o = snap['GET /api/orders/:id']!;
  assert.equal(o.requests, 8);
  assert.equal(o.errors, 6, 'the 503 with Retry-After and the 429 are load answers, not errors');
  assert.equal(o.shed, 2);
  assert.deepEqual(o.samples, ['/api/orders/2', '/api/orders/3', '/api/orders/4'], 'the newest 3 failing requests');
});

test('kinds: at most 64 per upstream, the rest under METHOD *', () => {
  const k = new RequestKinds();
  for (let i = 0; i < 100; i++)
    k.record('GET', `/p${String.fromCharCode(97 + (i % 26))}${String.fromCharCode(97 + Math.floor(i / 26))}`, '/x', 200, false, false);
  const snap = k.snapshot();
  assert.equal(snap.length, 65);
  assert.equal(snap.find((s) => s.kind === 'GET *')!.requests, 36);
});
