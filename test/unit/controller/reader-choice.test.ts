import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SiteConfig, UnderstudyConfig } from '../../../src/config/types.ts';
import { chooseReaderHost, failoverStandbyOf } from '../../../src/controller/reader-choice.ts';

// which host becomes the next reader — never the primary, never the failover
// standby, never a host another site uses; a powered-off host first.

function world(standby: string[]) {
  const hosts = Object.fromEntries(['h1', 'h2', 'h3', 'h4', 'h5'].map((h, i) => [h, { name: h, storage: i % 2 === 0 ? 'array-a' : 'array-b' }]));
  const config = { hosts } as unknown as UnderstudyConfig;
  const site = { name: 'shop', primary: 'h1', standby } as unknown as SiteConfig;
  return { config, site };
}

test('the failover standby is kept; a free host of the pool is chosen, off before on', () => {
  const { config, site } = world(['h2', 'h3', 'h4', 'h5']);
  assert.equal(failoverStandbyOf(site, config, 'h1', 'array-b'), 'h2');
  const power = (h: string): 'on' | 'off' => (h === 'h3' ? 'on' : 'off');
  const c = chooseReaderHost({ config, site, primaryHost: 'h1', replicaStorage: 'array-b', readersInUse: new Set(), primaries: new Set(['h1']), power });
  assert.equal(c.host, 'h4');
  assert.match(c.why, /not h2 \(the failover standby\)/);
  const c2 = chooseReaderHost({
    config,
    site,
    primaryHost: 'h1',
    replicaStorage: 'array-b',
    readersInUse: new Set(['h4']),
    primaries: new Set(['h1', 'h5']),
    power,
  });
  assert.equal(c2.host, 'h3', "an already-lent host and another site's primary are skipped");
});

test('a pool with only the failover standby does not scale out, and says why', () => {
  const { config, site } = world(['h2']);
  const c = chooseReaderHost({
    config,
    site,
    primaryHost: 'h1',
    replicaStorage: 'array-b',
    readersInUse: new Set(),
    primaries: new Set(['h1']),
    power: () => 'off',
  });
  assert.equal(c.host, null);
  assert.match(c.why, /no free host in shop's pool \(h2\): not h2 \(the failover standby\)/);
});

test('after a failover the old primary may become a reader; the new primary never', () => {
  const { config, site } = world(['h2', 'h3']);
  // h2 is primary now, its replica on array-a (h1's storage): h1 is the failover standby.
  const c = chooseReaderHost({
    config,
    site: { ...site, standby: ['h1', 'h2', 'h3'] },
    primaryHost: 'h2',
    replicaStorage: 'array-a',
    readersInUse: new Set(),
    primaries: new Set(['h2']),
    power: () => 'off',
  });
  assert.equal(c.host, 'h3');
});

test("a host another site's runbook is taking is not lent as a reader", () => {
  const { config, site } = world(['h2', 'h3', 'h4']);
  const c = chooseReaderHost({
    config,
    site,
    primaryHost: 'h1',
    replicaStorage: 'array-b',
    readersInUse: new Set(),
    primaries: new Set(['h1']),
    power: () => 'off',
    heldElsewhere: (h) => (h === 'h3' ? 'h3 is the target of a running runbook of outlet (priority 0)' : undefined),
  });
  assert.equal(c.host, 'h4');
  assert.match(c.why, /not h2 \(the failover standby\), h3 \(held by another site's runbook\)/);
});
