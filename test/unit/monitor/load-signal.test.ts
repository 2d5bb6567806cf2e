import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { HttpProbe } from '../../../src/monitor/http-probe.ts';
import { LoadWatch, type LoadEpisode } from '../../../src/monitor/load-watch.ts';
import { loadSignal } from '../../../src/monitor/load-signal.ts';
import type { SiteStats } from '../../../src/shared/contracts.ts';
import { FakeClock } from './fake-clock.ts';

test('loadSignal: 429 always, 503 only with Retry-After', () => {
  assert.deepEqual(loadSignal(429, undefined), { status: 429, retryAfter: null });
  assert.deepEqual(loadSignal(503, '5'), { status: 503, retryAfter: '5' });
  assert.deepEqual(loadSignal(503, ['Wed, 21 Oct 2026 07:28:00 GMT']), { status: 503, retryAfter: 'Wed, 21 Oct 2026 07:28:00 GMT' });
  assert.equal(loadSignal(503, undefined), null);
  assert.equal(loadSignal(503, ''), null);
  assert.equal(loadSignal(500, '5'), null);
  assert.equal(loadSignal(200, undefined), null);
});

test('the probe: a load answer is never a failed probe; a 503 without Retry-After is', async (t) => {
  let answer: { status: number; headers: Record<string, string> } = { status: 429, headers: { 'retry-after': '1' } };
  const server = http.createServer((_req, res) => {
    res.writeHead(answer.status, answer.headers);
    res.end('{"error":"busy"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const probe = new HttpProbe(`http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`, 1000);
  t.after(() => probe.close());
  const a = await probe.run();
  assert.equal(a.ok, true);
  assert.deepEqual(a.load, { status: 429, retryAfter: '1' });
  answer = { status: 503, headers: { 'retry-after': '2' } };
  const b = await probe.run();
  assert.equal(b.ok, true);
  assert.equal(b.load?.status, 503);
  answer = { status: 503, headers: {} };
  const c = await probe.run();
  assert.equal(c.ok, false);
  assert.equal(c.error, 'status 503');
  assert.equal(c.load, undefined);
});

function upstream(name: string, requests: number, shed: number) {
  return {
    upstream: name,
    requests,
    errors5xx: 0,
    connErrors: 0,
    lastConnErrorAt: null,
    latencyMs: { p50: 1, p95: 1, p99: 1, count: 0 },
    recentLatencyMs: { p50: 1, p95: 1, p99: 1, count: 0 },
    inflight: 0,
    shed,
    shed5xx: 0,
  };
}

/** The site's serving upstream u1, and an old upstream the director still counts (not serving: ignored). */
function stats(requests: number, shed: number, old = 0): SiteStats[] {
  return [{ site: 'shop', epoch: 1, held: 0, heldTimedOut: 0, upstreams: [upstream('u1', requests, shed), upstream('old', old, old)] }];
}

test('load watch: raised once when the traffic sheds load, cleared after a calm window; a few load answers are nothing', () => {
  const clock = new FakeClock();
  const seen: LoadEpisode[] = [];
  const w = new LoadWatch(
    'shop',
    { windowMs: 2000, probeFall: 2, now: clock.now },
    () => ['u1'],
    (e) => seen.push(e),
  );
  let req = 0;
  let shed = 0;
  const run = (ms: number, perPoll: number, shedPerPoll: number) => {
    for (let t = 0; t < ms; t += 250) {
      clock.advance(250);
      req += perPoll;
      shed += shedPerPoll;
      w.observeStats(stats(req, shed, req * 10));
    }
  };
  run(3000, 20, 1); // 5 %: not an episode
  assert.equal(seen.length, 0);
  run(3000, 20, 10);
  assert.deepEqual(
    seen.map((e) => e.kind),
    ['load-shedding'],
  );
  assert.match(seen[0]!.reason, /^the app sheds load: \d+ of \d+ answers in the last \d+ ms said so/);
  run(3000, 20, 10);
  assert.equal(seen.length, 1, 'once per episode');
  run(3000, 20, 0);
  assert.deepEqual(
    seen.map((e) => e.kind),
    ['load-shedding', 'load-shedding-cleared'],
  );
});

test('load watch: probeFall load answers in a row raise it; right answers in a row end it when the traffic is calm', () => {
  const clock = new FakeClock();
  const seen: LoadEpisode[] = [];
  const w = new LoadWatch(
    'shop',
    { windowMs: 1000, probeFall: 2, now: clock.now },
    () => ['u1'],
    (e) => seen.push(e),
  );
  const at = clock.now();
  w.observeProbe({ ok: true, at, latencyMs: 1, status: 429, load: { status: 429, retryAfter: '1' } });
  w.observeProbe({ ok: true, at, latencyMs: 1, status: 200 });
  w.observeProbe({ ok: true, at, latencyMs: 1, status: 429, load: { status: 429, retryAfter: '1' } });
  assert.equal(seen.length, 0, 'not in a row');
  w.observeProbe({ ok: true, at, latencyMs: 1, status: 503, load: { status: 503, retryAfter: '3' } });
  assert.deepEqual(
    seen.map((e) => e.kind),
    ['load-shedding'],
  );
  assert.match(seen[0]!.reason, /its probe answered 429 \(Retry-After: 1\), 503 with Retry-After: 3/);
  for (let i = 0; i < 6; i++) {
    clock.advance(250);
    w.observeStats(stats(100 + i * 10, 0));
  }
  w.observeProbe({ ok: true, at, latencyMs: 1, status: 200 });
  assert.equal(seen.length, 1);
  w.observeProbe({ ok: true, at, latencyMs: 1, status: 200 });
  assert.deepEqual(
    seen.map((e) => e.kind),
    ['load-shedding', 'load-shedding-cleared'],
  );
});
