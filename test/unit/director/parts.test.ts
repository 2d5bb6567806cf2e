import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clientResponseHeaders, hasRequestBody, upstreamRequestHeaders } from '../../../src/director/headers.ts';
import { HoldQueue, releases } from '../../../src/director/held-requests.ts';
import { LatencyWindow } from '../../../src/director/latency-window.ts';
import { parseRouteTable, RouteStore } from '../../../src/director/route-table.ts';

// The director's parts on their own, without sockets.

test('request headers: hop-by-hop and Connection-named headers dropped, X-Forwarded-* added', () => {
  const out = upstreamRequestHeaders(
    [
      'Host',
      'shop.test',
      'Connection',
      'keep-alive, X-Hop',
      'X-Hop',
      '1',
      'Keep-Alive',
      'timeout=5',
      'Transfer-Encoding',
      'chunked',
      'X-Forwarded-For',
      '10.0.0.1',
      'Cookie',
      'a=1',
      'Expect',
      '100-continue',
      'Host',
      'dup',
    ],
    '127.0.0.9',
    'keep-alive, X-Hop',
  );
  assert.deepEqual(out, [
    'Host',
    'shop.test',
    'Cookie',
    'a=1',
    'x-forwarded-for',
    '10.0.0.1, 127.0.0.9',
    'x-forwarded-proto',
    'http',
    'x-forwarded-host',
    'shop.test',
  ]);
});

test('response headers: hop-by-hop dropped, duplicates and X-Served-By kept', () => {
  const out = clientResponseHeaders({
    connection: 'close, x-secret',
    'x-secret': 's',
    'transfer-encoding': 'chunked',
    'keep-alive': 'timeout=5',
    'set-cookie': ['a=1', 'b=2'],
    'x-served-by': '127.0.2.1',
  });
  assert.deepEqual(out, { 'set-cookie': ['a=1', 'b=2'], 'x-served-by': '127.0.2.1' });
  assert.equal(hasRequestBody({ 'content-length': '0' }), false);
  assert.equal(hasRequestBody({ 'content-length': '3' }), true);
  assert.equal(hasRequestBody({ 'transfer-encoding': 'chunked' }), true);
  assert.equal(hasRequestBody({}), false);
});

test('hold queue: bounded, FIFO release by reason, timeout, early removal', async () => {
  const q = new HoldQueue<string>(3);
  const timedOut: string[] = [];
  const onTimeout = (s: string) => {
    timedOut.push(s);
  };
  assert.ok(q.add('a', { kind: 'no-primary' }, 1000, onTimeout));
  const tb = q.add('b', { kind: 'upstream-failed', epoch: 2, upstream: 'h1:1' }, 1000, onTimeout)!;
  assert.ok(q.add('c', { kind: 'no-primary' }, 20, onTimeout));
  assert.equal(q.add('d', { kind: 'no-primary' }, 1000, onTimeout), null, 'bound not enforced');
  await new Promise((r) => setTimeout(r, 40));
  assert.deepEqual(timedOut, ['c']);
  assert.equal(q.size, 2);
  // Same primary, same epoch: only the no-primary entry goes.
  assert.deepEqual(q.release({ site: 's', epoch: 2, primary: 'h1:1', readers: [] }), ['a']);
  assert.deepEqual(q.release({ site: 's', epoch: 2, primary: null, readers: [] }), []);
  q.remove(tb);
  q.remove(tb);
  assert.equal(q.size, 0);
  assert.deepEqual(q.drain(), []);
  assert.equal(releases({ kind: 'upstream-failed', epoch: 2, upstream: 'h1:1' }, { site: 's', epoch: 3, primary: 'h1:1', readers: [] }), true);
  assert.equal(releases({ kind: 'upstream-failed', epoch: 2, upstream: 'h1:1' }, { site: 's', epoch: 2, primary: 'h2:1', readers: [] }), true);
});

test('latency window: percentiles within a bucket, old seconds slide out', () => {
  let now = 100_000;
  const w = new LatencyWindow(10, () => now);
  for (let i = 1; i <= 100; i++) w.record(i); // 1..100 ms
  const p = w.percentiles();
  assert.equal(p.count, 100);
  assert.ok(Math.abs(p.p50 - 50) / 50 < 0.05, `p50 ${p.p50}`);
  assert.ok(Math.abs(p.p95 - 95) / 95 < 0.05, `p95 ${p.p95}`);
  assert.ok(Math.abs(p.p99 - 99) / 99 < 0.05, `p99 ${p.p99}`);
  now += 5000;
  w.record(1000);
  assert.equal(w.percentiles().count, 101);
  now += 6000; // the first second is now 11 s old
  assert.deepEqual(w.percentiles().count, 1);
  now += 20_000;
  assert.deepEqual(w.percentiles(), { p50: 0, p95: 0, p99: 0, count: 0 });
});

test('latency window: the recent span counts only its last slots, so a slowdown shows at once and a calm second ends it', () => {
  let now = 100_000;
  const w = new LatencyWindow(10, () => now);
  for (let s = 0; s < 5; s++) {
    for (let i = 0; i < 50; i++) w.record(500);
    now += 1000;
  } // five slow seconds
  for (let i = 0; i < 50; i++) w.record(2); // the current second is calm
  assert.ok(w.percentiles().p95 > 400, 'the 10 s window still remembers the slow seconds');
  assert.ok(w.percentiles(2).p95 > 400, 'the previous second is in the 2 s span');
  assert.equal(w.percentiles(2).count, 100);
  now += 1000;
  for (let i = 0; i < 50; i++) w.record(2);
  assert.ok(w.percentiles(2).p95 < 3, `two calm seconds: recent p95 ${w.percentiles(2).p95}`);
  assert.equal(w.percentiles(1).count, 50);
});

test('route table: validation names fields, stale epoch refused, readers deduplicated', () => {
  assert.throws(
    () => parseRouteTable('shop', { epoch: -1, primary: 'x', readers: [1] }),
    (e: Error & { code?: string }) => e.code === 'US_BAD_REQUEST' && /epoch/.test(e.message) && /primary/.test(e.message) && /readers\.0/.test(e.message),
  );
  assert.throws(() => parseRouteTable('shop', { site: 'other', epoch: 1, primary: null }), /URL names "shop"/);
  const r = parseRouteTable('shop', { epoch: 1, primary: '127.0.0.1:80', readers: ['127.0.0.1:80', '[::1]:81', '[::1]:81'] });
  assert.deepEqual(r, { site: 'shop', epoch: 1, primary: '127.0.0.1:80', readers: ['[::1]:81'] });
  const store = new RouteStore(new Set(['shop']));
  const seen: number[] = [];
  store.onChange((_s, next) => seen.push(next.epoch));
  store.set(r);
  assert.throws(
    () => store.set({ ...r, epoch: 0 }),
    (e: Error & { code?: string }) => e.code === 'US_STALE_EPOCH',
  );
  store.set({ ...r, readers: [] });
  assert.deepEqual(seen, [1, 1]);
  assert.throws(
    () => store.set({ ...r, site: 'x' }),
    (e: Error & { code?: string }) => e.code === 'US_NOT_FOUND',
  );
});
