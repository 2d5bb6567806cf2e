import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { SiteConfig, UnderstudyConfig } from '../../../src/config/types.ts';
import type { ActionGovernor, GovernorDecision } from '../../../src/controller/action-governor.ts';
import type { SiteStats } from '../../../src/shared/contracts.ts';
import { StateStore } from '../../../src/state/state-store.ts';
import { ScaleController } from '../../../src/controller/scale-controller.ts';
import { ReaderSet } from '../../../src/controller/reader-set.ts';
import type { PartClients } from '../../../src/controller/clients.ts';
import type { RelayDriver } from '../../../src/power/relay.ts';

/**
 * the scale controller's decisions, from director stats on a fake clock.
 * The governor is a spy that defers everything, so no runbook starts: what is
 * checked is what was asked (scale-out for which host) and what was told (events).
 */

async function world(opts: { max: number; readonly?: string[]; readers?: string[] }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-scale-'));
  const hosts = Object.fromEntries(
    ['h1', 'h2', 'h3', 'h4'].map((h, i) => [h, { name: h, address: `127.0.${i + 1}.1`, storage: i % 2 === 0 ? 'array-a' : 'array-b' }]),
  );
  const site = {
    name: 'shop',
    primary: 'h1',
    standby: ['h2', 'h3', 'h4'],
    app: { port: 3000 },
    volume: { readonly: opts.readonly ?? ['catalog.db'], replication: 'async' },
    health: { probe: { path: '/healthz', timeoutMs: 300 }, performance: { p95Ms: 100, windowMs: 2000 } },
    scale: { max: opts.max, cooldownMs: 1000, stabilizationMs: 3000 },
  } as unknown as SiteConfig;
  const config = { controller: { stateDir: dir }, hosts, sites: { shop: site }, storage: {} } as unknown as UnderstudyConfig;
  if (opts.readers) {
    const set = new ReaderSet(dir);
    for (const h of opts.readers) await set.put('shop', { host: h, epoch: 1, state: 'serving', since: 0, reason: 'test' });
  }
  const store = new StateStore(dir);
  store.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: 'array-b' });
  let clock = 1_000_000;
  const asked: { action: string; target: string | null }[] = [];
  const governor = {
    decide: (s: string, action: string, reason: string, o: { target?: string } = {}): GovernorDecision => {
      asked.push({ action, target: o.target ?? null });
      return { allowed: false, site: s, action, reason, target: o.target ?? null, at: clock, why: 'test', code: 'cooldown', retryAt: null };
    },
    completed: () => undefined,
  } as unknown as ActionGovernor;
  const relay = { status: () => ({ power: 'off', pid: null }) } as unknown as RelayDriver;
  const clients = {
    agentStatus: () => Promise.reject(new Error('off')),
    putRoute: () => Promise.resolve({}),
    storageUrl: () => 'http://127.0.0.1:9',
  } as unknown as PartClients;
  let listener: ((stats: SiteStats[], at: number, bySite: ReadonlyMap<string, SiteStats>) => void) | null = null;
  const log = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const sc = new ScaleController({
    config,
    store,
    relay,
    clients,
    log,
    governor,
    onDirectorStats: (l) => {
      listener = l;
    },
    siteBusy: () => false,
    now: () => clock,
  });
  sc.start([]);
  const feed = (p95s: Record<string, number>, forMs: number): void => {
    for (let t = 0; t < forMs; t += 500) {
      clock += 500;
      const upstreams = Object.entries(p95s).map(([upstream, p95]) => ({
        upstream,
        requests: 0,
        errors5xx: 0,
        connErrors: 0,
        lastConnErrorAt: null,
        latencyMs: { p50: p95 / 2, p95, p99: p95, count: 500 },
        recentLatencyMs: { p50: p95 / 2, p95, p99: p95, count: 500 },
        inflight: 0,
      }));
      const snapshot = [{ site: 'shop', epoch: 1, upstreams } as unknown as SiteStats];
      listener!(snapshot, clock, new Map(snapshot.map((s) => [s.site, s])));
    }
  };
  const kinds = (): string[] => store.listEvents({}).map((e) => e.kind);
  const done = (): void => {
    sc.stop();
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { feed, asked, kinds, store, done };
}

test('a slow primary: slowdown-detected after window + 2 s (the recent p95 span), then a scale-out is asked for a free pool host (not the failover standby)', async () => {
  const w = await world({ max: 2 });
  try {
    w.feed({ '127.0.1.1:3000': 250 }, 3_000);
    assert.ok(!w.kinds().includes('slowdown-detected'), 'not before the hold');
    w.feed({ '127.0.1.1:3000': 250 }, 2_000);
    assert.ok(w.kinds().includes('slowdown-detected'));
    assert.deepEqual(w.asked[0], { action: 'scale-out', target: 'h3' });
    assert.ok(w.kinds().includes('scale-out-deferred'), "the governor's deferral is told");
    assert.ok(!w.kinds().some((k) => k.startsWith('failover')));
  } finally {
    w.done();
  }
});

test('every serving host slow together: global-slowdown, and nothing is asked', async () => {
  const w = await world({ max: 3, readers: ['h3'] });
  try {
    w.feed({ '127.0.1.1:3000': 250, '127.0.3.1:3000': 220 }, 14_000);
    assert.ok(w.kinds().includes('global-slowdown'));
    assert.ok(!w.kinds().includes('slowdown-detected'));
    assert.deepEqual(
      w.asked.filter((a) => a.action === 'scale-out'),
      [],
    );
  } finally {
    w.done();
  }
});

test('a site that cannot scale still raises the slowdown, and says why it does nothing', async () => {
  const w = await world({ max: 1 });
  try {
    w.feed({ '127.0.1.1:3000': 250 }, 14_000);
    assert.ok(w.kinds().includes('slowdown-detected'));
    const deferred = w.store.listEvents({}).find((e) => e.kind === 'scale-out-deferred');
    assert.equal(deferred?.data.code, 'cannot-scale');
    assert.deepEqual(w.asked, []);
  } finally {
    w.done();
  }
});

test('a reader and low load for the stabilization window: a scale-in is asked; a one-second blip asks nothing', async () => {
  const w = await world({ max: 2, readers: ['h3'] });
  try {
    w.feed({ '127.0.1.1:3000': 10, '127.0.3.1:3000': 400 }, 1000);
    w.feed({ '127.0.1.1:3000': 10, '127.0.3.1:3000': 10 }, 2500);
    assert.deepEqual(w.asked, [], 'not before the stabilization window');
    w.feed({ '127.0.1.1:3000': 10, '127.0.3.1:3000': 10 }, 1000);
    assert.deepEqual(w.asked, [{ action: 'scale-in', target: null }]);
    assert.ok(!w.kinds().includes('slowdown-detected'));
  } finally {
    w.done();
  }
});
