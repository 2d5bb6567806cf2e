import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MalfunctionDetector } from '../../../src/monitor/malfunction-detector.ts';
import { MalfunctionWatch } from '../../../src/monitor/malfunction-watch.ts';
import type { Detection } from '../../../src/monitor/detection.ts';
import type { SiteStats } from '../../../src/shared/contracts.ts';
import { FakeClock } from './fake-clock.ts';

function snapshot(site: string, upstream: string, c: { requests: number; errors5xx: number; connErrors: number }): SiteStats[] {
  return [
    {
      site,
      epoch: 1,
      held: 0,
      heldTimedOut: 0,
      upstreams: [
        {
          upstream,
          ...c,
          lastConnErrorAt: null,
          latencyMs: { p50: 1, p95: 1, p99: 1, count: 0 },
          recentLatencyMs: { p50: 1, p95: 1, p99: 1, count: 0 },
          inflight: 0,
        },
      ],
    },
  ];
}

test('countConnErrors: connection errors count as failed requests of the window', () => {
  const clock = new FakeClock();
  const withConn = new MalfunctionDetector({ errorRate: 0.2, windowMs: 2000, now: clock.now, countConnErrors: true, minRequests: 10 });
  const without = new MalfunctionDetector({ errorRate: 0.2, windowMs: 2000, now: clock.now, minRequests: 10 });
  const c = { upstream: 'u', requests: 0, errors5xx: 0, connErrors: 0 };
  const raised: string[] = [];
  for (let i = 0; i < 20; i++) {
    clock.advance(250);
    c.requests += 10;
    c.connErrors += 5; // half the requests could not connect, none got a 5xx
    const a = withConn.observeStats(c);
    const b = without.observeStats(c);
    if (a) raised.push(`with:${a.kind}`);
    if (b) raised.push(`without:${b.kind}`);
  }
  assert.deepEqual(raised, ['with:malfunction']);
  const w = withConn.window()!;
  assert.equal(w.countConnErrors, true);
  assert.equal(w.errors, w.connErrors);
  assert.equal(w.base, w.requests);
  assert.equal(w.rate, 0.5);
});

test('malfunction watch: reads only its site and upstream, fires once with the window, requests, errors and rate', () => {
  const found: Detection[] = [];
  const w = new MalfunctionWatch(
    { site: 'shop', host: 'h1', upstream: '127.0.1.1:3000' },
    { errorRate: 0.2, windowMs: 600, minRequests: 10 },
    () => 42,
    (d) => found.push(d),
  );
  let c = { requests: 0, errors5xx: 0, connErrors: 0 };
  const start = Date.now();
  // Real time (the watch's detector uses Date.now): polls every ~60 ms for ~1.2 s.
  while (Date.now() - start < 1200) {
    c = { requests: c.requests + 10, errors5xx: c.errors5xx + 5, connErrors: c.connErrors };
    w.observeStats(snapshot('blog', '127.0.1.1:3000', { requests: 1, errors5xx: 1, connErrors: 0 })); // another site: ignored
    w.observeStats(snapshot('shop', '127.0.2.1:3000', c)); // another upstream (a reader): ignored
    w.observeStats(snapshot('shop', '127.0.1.1:3000', c));
    const until = Date.now() + 60;
    while (Date.now() < until) {
      /* spin: a synchronous poll loop */
    }
  }
  assert.equal(found.length, 1, 'raised once');
  const d = found[0]!;
  assert.equal(d.failure, 'malfunction');
  assert.equal(d.source, 'traffic');
  assert.equal(d.lastHealthyAt, 42);
  assert.match(
    d.reason,
    /^malfunction: error rate 50 %: \d+ of \d+ requests failed \(\d+ 5xx, 0 connection errors\) over \d+ ms \(threshold 20 % over a 600 ms window/,
  );
  const ev = d.data.evidence as { windowMs: number; requests: number; errors: number; rate: number; errorRate: number; upstream: string };
  assert.equal(ev.windowMs, 600);
  assert.equal(ev.rate, 0.5);
  assert.equal(ev.errorRate, 0.2);
  assert.equal(ev.upstream, '127.0.1.1:3000');
  assert.equal(ev.errors * 2, ev.requests);
  assert.equal(d.data.failure, 'malfunction');
});

test('malfunction watch: probe content — wrong answers fall probes in a row; timeouts are not its business', () => {
  const found: Detection[] = [];
  const w = new MalfunctionWatch(
    { site: 'shop', host: 'h1', upstream: '127.0.1.1:3000' },
    { errorRate: 0.2, windowMs: 5000 },
    () => 7,
    (d) => found.push(d),
  );
  const at = Date.now();
  w.observeProbe({ ok: false, at, latencyMs: 500, error: 'timeout' });
  w.observeProbe({ ok: false, at, latencyMs: 500, error: 'timeout' });
  w.observeProbe({ ok: true, at, latencyMs: 1, status: 200 });
  w.observeProbe({ ok: false, at, latencyMs: 1, status: 200, error: 'body does not match /UP/' });
  w.observeProbe({ ok: true, at, latencyMs: 1, status: 204 });
  assert.equal(found.length, 0, 'a single wrong answer, and timeouts, raise nothing');
  w.observeProbe({ ok: false, at, latencyMs: 1, status: 404, error: 'status 404' });
  w.observeProbe({ ok: false, at, latencyMs: 1, status: 500, error: 'status 500' });
  assert.equal(found.length, 1);
  assert.equal(found[0]!.source, 'probe-content');
  assert.match(found[0]!.reason, /2 probes in a row answered wrongly \(status 404, status 500\)/);
  w.observeProbe({ ok: false, at, latencyMs: 1, status: 500, error: 'status 500' });
  w.observeProbe({ ok: false, at, latencyMs: 1, status: 500, error: 'status 500' });
  assert.equal(found.length, 1, 'once');
});
