import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ActionGovernor } from '../../../src/controller/action-governor.ts';
import { DirectorStatsFeed } from '../../../src/controller/director-stats-feed.ts';
import { createGovernor } from '../../../src/controller/governor-setup.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import { HostTrustWatch } from '../../../src/controller/host-trust-watch.ts';
import { describeSkipped, trustedCandidates } from '../../../src/controller/trusted-candidates.ts';
import type { UnderstudyConfig } from '../../../src/config/types.ts';
import type { SiteStats } from '../../../src/shared/contracts.ts';

const stats = (requests: number): SiteStats[] => [
  {
    site: 'shop',
    epoch: 1,
    held: 0,
    heldTimedOut: 0,
    upstreams: [
      {
        upstream: '127.0.1.1:3000',
        requests,
        errors5xx: 0,
        connErrors: 0,
        lastConnErrorAt: null,
        latencyMs: { p50: 1, p95: 2, p99: 3, count: requests },
        recentLatencyMs: { p50: 1, p95: 2, p99: 3, count: requests },
        inflight: 0,
      },
    ],
  },
];

test('director stats feed: every snapshot to every listener, a throwing listener does not stop the others, no snapshot while the director is down', async (t) => {
  let n = 0;
  let up = true;
  const errors: string[] = [];
  const feed = new DirectorStatsFeed(
    async () => {
      if (!up) throw new Error('ECONNREFUSED');
      return { sites: stats(++n) };
    },
    (e) => errors.push(e.message),
    20,
  );
  t.after(() => feed.stop());
  const seen: number[] = [];
  feed.subscribe(() => {
    throw new Error('listener bug');
  });
  feed.subscribe((s, at) => {
    seen.push(s[0]!.upstreams[0]!.requests);
    assert.ok(at <= Date.now());
  });
  feed.start();
  await new Promise((r) => setTimeout(r, 110));
  assert.ok(seen.length >= 3, `snapshots: ${seen.length}`);
  assert.deepEqual(
    seen,
    [...seen].sort((a, b) => a - b),
    'in order',
  );
  assert.ok(errors.length >= 3 && errors.every((e) => e === 'listener bug'));
  assert.equal(feed.latest?.stats[0]!.upstreams[0]!.requests, seen[seen.length - 1]);
  up = false;
  const before = seen.length;
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(seen.length, before, 'nothing while the director does not answer');
  feed.stop();
  up = true;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(seen.length, before, 'nothing after stop');
});

test('host trust watch: powered hosts whose agent answers earn trust back after rise probes, with one host-trusted event; primaries are not probed here', async (t) => {
  const governor = new ActionGovernor({ rise: 2, cooldownMs: { failover: 0 } });
  const events: { kind: string; host: string | null; message: string }[] = [];
  const asked: string[] = [];
  let h2Up = false;
  const w = new HostTrustWatch(
    {
      governor,
      addEvent: (e) => {
        events.push({ kind: e.kind, host: e.host, message: e.message });
      },
      hosts: () => ['h1', 'h2', 'h3'],
      primaries: () => new Set(['h1']),
      powered: (h) => h !== 'h3',
      agentAnswers: async (h) => {
        asked.push(h);
        if (h === 'h2' && !h2Up) throw new Error('timeout');
        return {};
      },
    },
    20,
  );
  t.after(() => w.stop());
  w.noteFailed(governor.hostFailed('h2'));
  w.noteFailed(governor.hostFailed('h3'));
  w.start();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(governor.trust('h2').state, 'recovering', 'its agent does not answer');
  assert.equal(governor.trust('h3').state, 'recovering', 'powered off: never a good probe');
  assert.ok(!asked.includes('h1'), 'the primary is probed by its site monitor, not here');
  assert.ok(!asked.includes('h3'), 'a powered-off host is not asked');
  h2Up = true;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(governor.trust('h2').state, 'trusted');
  const trusted = events.filter((e) => e.kind === 'host-trusted');
  assert.equal(trusted.length, 1);
  assert.equal(trusted[0]!.host, 'h2');
  assert.match(trusted[0]!.message, /h2 is trusted again: h2 came back: 2 good probes in a row since its failure/);
  // The primary's own probes (from its site monitor) count the same way.
  governor.hostFailed('h1');
  w.probe('h1', true);
  w.probe('h1', true);
  assert.equal(governor.trust('h1').state, 'trusted');
});

function config(): UnderstudyConfig {
  const host = (name: string, storage: string) => ({ name, address: '127.0.0.1', storage });
  const probe = { path: '/healthz', everyMs: 100, timeoutMs: 300, fall: 2, rise: 3 };
  return {
    controller: { failover: { cooldownMs: 10_000, flapWindowMs: 300_000, flapBackoffMs: 10_000, drainTimeoutMs: 1000 } },
    hosts: { h1: host('h1', 'a'), h2: host('h2', 'b'), h3: host('h3', 'b'), h4: host('h4', 'a') },
    sites: { shop: { name: 'shop', primary: 'h1', standby: ['h2', 'h3', 'h4'], health: { probe }, scale: { max: 1, cooldownMs: 30_000 } } },
  } as unknown as UnderstudyConfig;
}

test('trusted candidates: standbys on the replica storage, minus the failed host, split by trust with the reason', () => {
  const cfg = config();
  const g = new ActionGovernor({ rise: 2, backoffBaseMs: 10_000 });
  g.hostFailed('h2');
  const r = trustedCandidates(cfg, cfg.sites.shop!, { failed: 'h1', replicaStorage: 'b' }, g);
  assert.deepEqual(r.candidates, ['h3']);
  assert.deepEqual(
    r.skipped.map((s) => [s.host, s.state, s.retryAt]),
    [['h2', 'recovering', null]],
  );
  assert.match(describeSkipped(r.skipped), /h2 is not trusted yet \(h2 failed and has 0 of 2 good probes/);
  assert.deepEqual(trustedCandidates(cfg, cfg.sites.shop!, { failed: 'h1', replicaStorage: null }, g), { candidates: [], skipped: [] });
});

test('the controller governor: the largest rise of any site, failover cooldown and flap backoff from controller.failover, environment overrides validated', () => {
  const cfg = config();
  const dflt = createGovernor(cfg, {});
  dflt.decide('shop', 'failover', 'crash');
  assert.ok(dflt.cooldownLeft('shop', 'failover') > 10_000 - 100);
  dflt.hostFailed('h2');
  for (let i = 0; i < 2; i++) dflt.hostProbe('h2', true);
  assert.equal(dflt.trust('h2').state, 'recovering', 'rise is 3 (the site says so)');
  dflt.hostProbe('h2', true);
  assert.equal(dflt.trust('h2').state, 'trusted');
  assert.equal(dflt.backoff(1), 10_000);

  const zero = createGovernor(cfg, { UNDERSTUDY_FAILOVER_MIN_GAP_MS: '0' });
  assert.equal(zero.decide('shop', 'failover', 'crash').allowed, true);
  assert.equal(zero.decide('shop', 'failover', 'crash again').allowed, true, 'no cooldown');
  assert.equal(zero.backoff(3), 0, 'and no flap hold-out (the backoff follows an overridden cooldown)');
  const explicit = createGovernor(cfg, { UNDERSTUDY_FAILOVER_MIN_GAP_MS: '0', UNDERSTUDY_FLAP_BACKOFF_MS: '5000' });
  assert.equal(explicit.backoff(2), 10_000);
  for (const bad of ['soon', '-1', '1.5', '10s']) {
    assert.throws(
      () => createGovernor(cfg, { UNDERSTUDY_FAILOVER_MIN_GAP_MS: bad }),
      (e: unknown) => {
        assert.ok(e instanceof UnderstudyError);
        assert.equal(e.code, 'US_BAD_ENV');
        assert.match(
          e.message,
          new RegExp(`UNDERSTUDY_FAILOVER_MIN_GAP_MS=${JSON.stringify(bad).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: must be a whole number of milliseconds`),
        );
        return true;
      },
      `${bad} is refused, not replaced by a default`,
    );
  }
  assert.throws(() => createGovernor(cfg, { UNDERSTUDY_FLAP_WINDOW_MS: 'x' }), /UNDERSTUDY_FLAP_WINDOW_MS="x": must be/);
});

test('a deferred failover is cancelled only by the same kind of evidence: healthy probes, or a full calm traffic window', async () => {
  const { primaryRecovered } = await import('../../../src/controller/primary-recovered.ts');
  type Mon = Parameters<typeof primaryRecovered>[1];
  type Watch = Parameters<typeof primaryRecovered>[2];
  const now = Date.now();
  const hang = { source: 'probe' as const, failure: 'hang' as const, reason: 'hang', detectedAt: now, lastHealthyAt: now, data: {} };
  const traffic = { ...hang, source: 'traffic' as const, failure: 'malfunction' as const };
  const monitor = (healthy: boolean, host = 'h1') => ({ healthy, target: { host } }) as unknown as Mon;
  const watch = (w: object | null, host = 'h1') => ({ target: { host }, window: () => w }) as unknown as Watch;
  assert.equal(primaryRecovered(hang, monitor(true), undefined, 'h1'), 'h1 answers its probes again');
  assert.equal(primaryRecovered(hang, monitor(false), undefined, 'h1'), null);
  assert.equal(primaryRecovered(hang, monitor(true, 'h2'), undefined, 'h1'), null, "another host's monitor says nothing of h1");
  assert.equal(primaryRecovered(hang, undefined, undefined, 'h1'), null);
  assert.equal(primaryRecovered(traffic, monitor(true), undefined, 'h1'), null, 'good probes do not clear a traffic malfunction');
  assert.equal(primaryRecovered(traffic, monitor(true), watch(null), 'h1'), null, 'no full window yet');
  assert.equal(
    primaryRecovered(traffic, monitor(true), watch({ rate: 0.5, base: 100, minRequests: 20, threshold: 0.2, windowMs: 2000, errors: 50 }), 'h1'),
    null,
  );
  assert.equal(
    primaryRecovered(traffic, monitor(true), watch({ rate: 0.01, base: 10, minRequests: 20, threshold: 0.2, windowMs: 2000, errors: 0 }), 'h1'),
    null,
    'too few requests',
  );
  assert.match(
    primaryRecovered(traffic, monitor(false), watch({ rate: 0.01, base: 100, minRequests: 20, threshold: 0.2, windowMs: 2000, errors: 1 }), 'h1') ?? '',
    /error rate of h1's traffic is down to 1 % over the last 2000 ms window \(1 of 100\)/,
  );
});
