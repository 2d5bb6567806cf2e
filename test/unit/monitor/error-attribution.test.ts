import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Detection } from '../../../src/monitor/detection.ts';
import { MalfunctionWatch } from '../../../src/monitor/malfunction-watch.ts';
import type { RequestKindStats, SiteStats } from '../../../src/shared/contracts.ts';
import { FakeClock } from './fake-clock.ts';

const UP = '127.0.1.1:3000';

/** Cumulative director counters of one upstream, by kind, as GET /v1/stats gives them. */
class Traffic {
  private readonly kinds = new Map<string, RequestKindStats>();
  connErrors = 0;
  /** `n` answers of `kind`, `errors` of them 5xx (`shed` more: load answers, 503 with Retry-After, so in errors5xx too). */
  add(kind: string, n: number, errors: number, shed = 0, samples?: string[]): void {
    const k = this.kinds.get(kind) ?? { kind, method: kind.split(' ')[0]!, requests: 0, errors: 0, shed: 0 };
    k.requests += n + shed;
    k.errors += errors;
    k.shed += shed;
    if (samples) k.samples = samples;
    this.kinds.set(kind, k);
  }
  snapshot(): SiteStats[] {
    const kinds = [...this.kinds.values()].map((k) => ({ ...k }));
    const requests = kinds.reduce((s, k) => s + k.requests, 0) + this.connErrors;
    const shed = kinds.reduce((s, k) => s + k.shed, 0);
    const errors5xx = kinds.reduce((s, k) => s + k.errors, 0) + shed;
    return [
      {
        site: 'shop',
        epoch: 1,
        held: 0,
        heldTimedOut: 0,
        upstreams: [
          {
            upstream: UP,
            requests,
            errors5xx,
            connErrors: this.connErrors,
            lastConnErrorAt: null,
            latencyMs: { p50: 1, p95: 1, p99: 1, count: 0 },
            recentLatencyMs: { p50: 1, p95: 1, p99: 1, count: 0 },
            inflight: 0,
            shed,
            shed5xx: shed,
            kinds,
          },
        ],
      },
    ];
  }
}

function harness() {
  const clock = new FakeClock();
  const found: Detection[] = [];
  const watch = new MalfunctionWatch(
    { site: 'shop', host: 'h1', upstream: UP },
    { errorRate: 0.2, windowMs: 2000, minRequests: 10, now: clock.now },
    () => 0,
    (d) => found.push(d),
  );
  const tr = new Traffic();
  /** Polls every 250 ms for `ms`, with `step` adding each poll's traffic. */
  const run = (ms: number, step: (tr: Traffic) => void): void => {
    for (let t = 0; t < ms; t += 250) {
      clock.advance(250);
      step(tr);
      watch.observeStats(tr.snapshot());
    }
  };
  return { clock, found, watch, tr, run };
}

test('one kind fails for every request while it also succeeds on the host: the errors follow the request', () => {
  const h = harness();
  h.run(3000, (tr) => {
    tr.add('POST /api/uploads', 10, 0);
    tr.add('GET /api/products', 5, 0);
  });
  h.run(3000, (tr) => {
    tr.add('POST /api/uploads', 10, 9);
    tr.add('GET /api/products', 5, 0);
  });
  assert.equal(h.found.length, 1, 'the watch raised: the error rate is far over the threshold');
  const a = h.watch.attribute(null)!;
  assert.equal(a.owner, 'request', a.reason);
  assert.equal(a.rule, 'kind');
  assert.deepEqual(
    a.failing.map((f) => [f.kind, f.verdict]),
    [['POST /api/uploads', 'request']],
  );
  assert.deepEqual(
    a.clean.map((c) => c.kind),
    ['GET /api/products'],
  );
  assert.match(
    a.reason,
    /POST \/api\/uploads fails .* latest requests succeed on h1: what fails depends on the request; meanwhile h1 answers GET \/api\/products/,
  );
});

test('a kind that never worked fails while the others are answered well: the request; the watch leaves it out once excused', () => {
  const h = harness();
  h.run(4000, (tr) => {
    tr.add('GET /broken', 8, 8);
    tr.add('GET /api/products', 2, 0);
  });
  assert.equal(h.found.length, 1);
  const a = h.watch.attribute(null)!;
  assert.equal(a.owner, 'request', a.reason);
  assert.equal(a.failing[0]!.verdict, 'undecided');
  h.watch.excuse(['GET /broken']);
  h.run(6000, (tr) => {
    tr.add('GET /broken', 8, 8);
    tr.add('GET /api/products', 2, 0);
  });
  assert.equal(h.found.length, 1, 'an excused kind raises nothing more');
  assert.deepEqual(h.watch.excusedKinds, ['GET /broken']);
  // A window without its errors: forgiven, counted again, and raised again when it fails again.
  h.run(2500, (tr) => {
    tr.add('GET /api/products', 2, 0);
  });
  assert.deepEqual(h.watch.excusedKinds, []);
  h.run(4000, (tr) => {
    tr.add('GET /broken', 8, 8);
    tr.add('GET /api/products', 2, 0);
  });
  assert.equal(h.found.length, 2);
});

test('a kind answered well on this host until its errors began, and not since: the host (a read-only disk)', () => {
  const h = harness();
  h.run(3000, (tr) => {
    tr.add('POST /api/orders', 5, 0);
    tr.add('GET /api/products', 5, 0);
  });
  h.run(3000, (tr) => {
    tr.add('POST /api/orders', 5, 5);
    tr.add('GET /api/products', 5, 0);
  });
  assert.equal(h.found.length, 1);
  const a = h.watch.attribute(null)!;
  assert.equal(a.owner, 'host', a.reason);
  assert.equal(a.failing[0]!.verdict, 'host');
  assert.ok(a.failing[0]!.okBefore >= 5);
  assert.match(a.reason, /^POST \/api\/orders: h1 answered it well \d+ times before its errors began/);
});

test('every kind fails, the probe fails, or the requests cannot connect: the host', () => {
  let h = harness();
  h.run(4000, (tr) => {
    tr.add('GET /a', 5, 2);
    tr.add('GET /b', 5, 2);
  });
  assert.equal(h.found.length, 1);
  assert.equal(h.watch.attribute(null)!.rule, 'every-kind');
  assert.equal(h.watch.attribute(null)!.owner, 'host');

  h = harness();
  h.run(4000, (tr) => {
    tr.add('GET /broken', 8, 8);
    tr.add('GET /ok', 2, 0);
  });
  const a = h.watch.attribute('status 500')!;
  assert.equal(a.owner, 'host');
  assert.equal(a.rule, 'probe');
  assert.match(a.reason, /the probe of h1 fails as well \(status 500\)/);

  h = harness();
  h.run(4000, (tr) => {
    tr.add('GET /ok', 6, 0);
    tr.connErrors += 4;
  });
  assert.equal(h.found.length, 1);
  assert.equal(h.watch.attribute(null)!.rule, 'connections');
});

test('failed requests sent again: succeed elsewhere → the host; succeed here, or fail elsewhere too → the request', () => {
  const h = harness();
  h.run(4000, (tr) => {
    tr.add('GET /api/orders/:id', 8, 8, 0, ['/api/orders/1', '/api/orders/2']);
    tr.add('GET /ok', 2, 0);
  });
  assert.deepEqual(h.watch.replayable(), [{ kind: 'GET /api/orders/:id', requests: ['/api/orders/1', '/api/orders/2'] }]);
  const elsewhereOk = h.watch.attribute(null, [
    { kind: 'GET /api/orders/:id', request: '/api/orders/1', primary: { status: 500 }, elsewhere: [{ host: 'h3', status: 200 }] },
  ])!;
  assert.equal(elsewhereOk.owner, 'host');
  assert.match(elsewhereOk.reason, /fails again on h1 \(status 500\) but succeeds on h3 \(200\)/);
  const hereOk = h.watch.attribute(null, [{ kind: 'GET /api/orders/:id', request: '/api/orders/1', primary: { status: 200 }, elsewhere: [] }])!;
  assert.equal(hereOk.owner, 'request');
  assert.match(hereOk.reason, /sent again to h1 without the client's headers and body answered 200/);
  const bothFail = h.watch.attribute(null, [
    { kind: 'GET /api/orders/:id', request: '/api/orders/1', primary: { status: 500 }, elsewhere: [{ host: 'h3', status: 500 }] },
  ])!;
  assert.equal(bothFail.owner, 'request');
  assert.match(bothFail.reason, /fails on h3 too \(status 500\)/);
  const readerMisdirected = h.watch.attribute(null, [
    { kind: 'GET /api/orders/:id', request: '/api/orders/1', primary: { status: 500 }, elsewhere: [{ host: 'h3', status: 421 }] },
  ])!;
  assert.equal(readerMisdirected.failing[0]!.verdict, 'undecided', 'a reader that does not hold the data proves nothing');
});

test('load answers are neither errors nor good answers: a site shedding load raises no malfunction', () => {
  const h = harness();
  // 90 % of the answers are 429 or 503 with Retry-After, the rest are fine.
  h.run(6000, (tr) => {
    tr.add('GET /api/products', 2, 0, 18);
  });
  assert.equal(h.found.length, 0);
});
