import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DirectorCounters, agreedRoutes, firstAccepted, mergedStats } from '../../../src/controller/director-set.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import type { RouteTable, SiteStats, UpstreamStats } from '../../../src/shared/contracts.ts';

const ok = <T>(value: T): PromiseSettledResult<T> => ({ status: 'fulfilled', value });
const no = (code: string): PromiseSettledResult<never> => ({
  status: 'rejected',
  reason: new UnderstudyError(code as 'US_UNREACHABLE', `${code} from a director`),
});

test('a route sent to every director: done once one has it; a stale-epoch refusal from any wins; none answering is an error naming each', () => {
  assert.equal(firstAccepted([no('US_UNREACHABLE'), ok('b')]), 'b');
  assert.throws(
    () => firstAccepted([ok('a'), no('US_STALE_EPOCH')]),
    (e: Error & { code?: string }) => e.code === 'US_STALE_EPOCH',
  );
  assert.throws(
    () => firstAccepted([no('US_UNREACHABLE'), no('US_TIMEOUT')]),
    (e: Error & { code?: string }) => e.code === 'US_UNREACHABLE' && /US_UNREACHABLE from a director; US_TIMEOUT from a director/.test(e.message),
  );
});

test('routes in force: only those every answering director holds the same; a director down is left out', () => {
  const r = (site: string, epoch: number, primary: string | null, readers: string[] = []): RouteTable => ({ site, epoch, primary, readers });
  const a = [r('shop', 2, 'h2:3000'), r('blog', 1, 'h1:3000', ['h3:3000', 'h2:3000']), r('wiki', 1, 'h1:3000')];
  const b = [r('shop', 1, 'h1:3000'), r('blog', 1, 'h1:3000', ['h2:3000', 'h3:3000'])];
  assert.deepEqual(
    agreedRoutes([ok(a), ok(b)]).map((x) => x.site),
    ['blog'],
    'shop differs (epoch), wiki is missing on one: both are sent again',
  );
  assert.deepEqual(
    agreedRoutes([ok(a), no('US_UNREACHABLE')]).map((x) => x.site),
    ['shop', 'blog', 'wiki'],
  );
  assert.throws(() => agreedRoutes([no('US_UNREACHABLE'), no('US_UNREACHABLE')]));
});

test('stats of several directors: counters summed per site and upstream, latency from the director that carried most, the newest epoch', () => {
  const up = (requests: number, p95: number, count: number, extra: Partial<UpstreamStats> = {}): UpstreamStats => ({
    upstream: 'h1:3000',
    requests,
    errors5xx: 1,
    connErrors: 0,
    lastConnErrorAt: null,
    latencyMs: { p50: 1, p95, p99: p95, count },
    recentLatencyMs: { p50: 1, p95, p99: p95, count },
    inflight: 2,
    ...extra,
  });
  const s = (epoch: number, u: UpstreamStats[]): SiteStats[] => [{ site: 'shop', epoch, held: 1, heldTimedOut: 0, upstreams: u }];
  const merged = mergedStats([
    ok(s(2, [up(1000, 50, 900, { lastConnErrorAt: 5, kinds: [{ kind: 'GET /', method: 'GET', requests: 1000, errors: 1, shed: 0 }] })])),
    ok(s(1, [up(10, 900, 10, { kinds: [{ kind: 'GET /', method: 'GET', requests: 10, errors: 1, shed: 0 }] }), { ...up(5, 10, 5), upstream: 'h2:3000' }])),
    no('US_UNREACHABLE'),
  ]);
  assert.equal(merged.length, 1);
  const site = merged[0]!;
  assert.equal(site.epoch, 2);
  assert.equal(site.held, 2);
  const h1 = site.upstreams.find((u) => u.upstream === 'h1:3000')!;
  assert.equal(h1.requests, 1010);
  assert.equal(h1.errors5xx, 2);
  assert.equal(h1.inflight, 4);
  assert.equal(h1.latencyMs.p95, 50, 'the busier director’s window, not a mix');
  assert.equal(h1.lastConnErrorAt, 5);
  assert.deepEqual(
    h1.kinds?.map((k) => [k.kind, k.requests, k.errors]),
    [['GET /', 1010, 2]],
  );
  assert.equal(site.upstreams.find((u) => u.upstream === 'h2:3000')?.requests, 5);
});

test('several directors’ counters only grow: a director missing a poll subtracts nothing, its return adds only what it counted since, a restart adds what it counted after', () => {
  const up = (requests: number, errors5xx: number): UpstreamStats => ({
    upstream: 'h1:3000',
    requests,
    errors5xx,
    connErrors: 0,
    lastConnErrorAt: null,
    latencyMs: { p50: 1, p95: 2, p99: 3, count: 10 },
    recentLatencyMs: { p50: 1, p95: 2, p99: 3, count: 10 },
    inflight: 1,
  });
  const s = (requests: number, errors5xx: number): SiteStats[] => [{ site: 'shop', epoch: 1, held: 0, heldTimedOut: 0, upstreams: [up(requests, errors5xx)] }];
  const c = new DirectorCounters();
  /** One poll of the directors' answers (a director's stats, or null: it did not answer); the merged h1 requests and 5xx. */
  const poll = (...answers: [string, SiteStats[] | null][]) => {
    const m = c.merge(new Map(answers));
    return [m[0]!.upstreams[0]!.requests, m[0]!.upstreams[0]!.errors5xx];
  };
  assert.deepEqual(poll(['a', s(1000, 10)], ['b', s(50, 40)]), [1050, 50], 'the first poll: the sum');
  assert.deepEqual(poll(['a', s(1100, 10)], ['b', null]), [1150, 50], 'b missed a poll: nothing subtracted');
  assert.deepEqual(poll(['a', s(1200, 10)], ['b', s(60, 41)]), [1260, 51], 'b back: only its increase');
  assert.deepEqual(poll(['a', s(1300, 10)], ['b', s(5, 0)]), [1365, 51], 'b restarted (its counter went down): what it counted since');
  assert.deepEqual(poll(['a', s(1300, 10)], ['b', s(5, 0)], ['x', s(9999, 9999)]), [1365, 51], 'a director first seen later adds nothing at first');
  assert.deepEqual(poll(['a', s(1300, 10)], ['b', s(5, 0)], ['x', s(10_009, 9999)]), [1375, 51], '…then its increases');
});
