import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { candidatesFor, claimsFrom, heldElsewhere, holdsFrom } from '../../../src/controller/pool-facts.ts';
import { decisionFor } from '../../../src/controller/spare-pool.ts';
import { StateStore } from '../../../src/state/state-store.ts';
import { cleanup, load } from '../config/helpers.ts';
import { SHARED } from './pool-fixture.ts';

after(cleanup);

test("pool facts: candidates are the standbys on the replica's storage system, without the failed host", () => {
  const config = load(SHARED);
  assert.deepEqual(candidatesFor(config, config.sites.shop!, { failed: 'a1', replicaStorage: 'array-b' }), ['s1']);
  assert.deepEqual(candidatesFor(config, config.sites.shop!, { failed: 'a1', replicaStorage: 'array-a' }), ['s2']);
  assert.deepEqual(candidatesFor(config, config.sites.shop!, { failed: 'a1', replicaStorage: null }), []);
  assert.deepEqual(
    candidatesFor(config, config.sites.shop!, { failed: 'a1', replicaStorage: 'array-b', requested: 's2' }),
    [],
    'a --to on the wrong storage is no candidate',
  );
});

test('pool facts: holds and claims come from the state store alone, and a restarted controller reads the same allocation', () => {
  const config = load(SHARED);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-pool-'));
  try {
    const a = new StateStore(dir);
    // shop failed first and its failover has taken s1; outlet failed after and waits.
    a.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'failing-over', replicaStorage: 'array-b' });
    a.putSite({ site: 'outlet', epoch: 1, primaryHost: 'b1', state: 'failing-over', replicaStorage: 'array-b' });
    a.startRunbook('shop', 'failover', { oldPrimary: 'a1', detectedAt: 1000, target: 's1' });
    a.startRunbook('outlet', 'failover', { oldPrimary: 'b1', detectedAt: 2000 });
    const read = (s: StateStore) => {
      const sites = s.listSites();
      const running = s.runningRunbooks();
      return { holds: holdsFrom(sites, running), claims: claimsFrom(config, sites, running) };
    };
    const before = read(a);
    assert.deepEqual(before.holds, [
      { host: 'b1', site: 'outlet', as: 'primary' },
      { host: 'a1', site: 'shop', as: 'primary' },
      { host: 's1', site: 'shop', as: 'target' },
    ]);
    assert.deepEqual(before.claims, [{ site: 'outlet', priority: 5, detectedAt: 2000, candidates: ['s1'] }]);
    const d = decisionFor({ priorities: { shop: 0, outlet: 5 }, holds: before.holds, claims: before.claims, readiness: {} }, 'outlet')!;
    assert.equal(d.kind, 'wait', 'a target already taken is not taken back, even by a higher priority');
    a.close();

    const b = new StateStore(dir);
    assert.deepEqual(read(b), before, 'the same allocation after a restart');
    // shop's failover completes and shop later fails back to a1: s1 is free again, with nothing to release.
    for (const rb of b.runningRunbooks().filter((r) => r.site === 'shop')) b.finishRunbook(rb.id, 'done');
    b.putSite({ site: 'shop', epoch: 3, primaryHost: 'a1', state: 'serving', replicaStorage: 'array-b' });
    const after = read(b);
    assert.equal(decisionFor({ priorities: {}, holds: after.holds, claims: after.claims, readiness: {} }, 'outlet')!.kind, 'granted');
    b.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("pool facts: an operator's --to onto another site's host is refused before anything is fenced; a reader is in the way of a switchover only", () => {
  const config = load(SHARED);
  const sites = [
    { site: 'shop', epoch: 2, primaryHost: 's1', state: 'serving' as const, replicaStorage: 'array-a', updatedAt: 0 },
    { site: 'outlet', epoch: 1, primaryHost: 'b1', state: 'serving' as const, replicaStorage: 'array-b', updatedAt: 0 },
  ];
  assert.equal(
    heldElsewhere(config, { sites, running: [] }, 'outlet', 's1', 'failover'),
    's1 is the primary of shop (priority 0), and a host of a shared pool serves one site at a time: choose another host, or move shop off s1 first',
  );
  assert.equal(heldElsewhere(config, { sites, running: [] }, 'shop', 's1', 'switchover'), undefined, "a site's own host is not held elsewhere");
  const readers = [{ site: 'shop', host: 's2' }];
  assert.equal(heldElsewhere(config, { sites, running: [], readers }, 'outlet', 's2', 'failover'), undefined);
  assert.match(heldElsewhere(config, { sites, running: [], readers }, 'outlet', 's2', 'switchover')!, /^s2 is a reader of shop/);
});
