import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { nextTakeover, placeReplica, replicaMove, standing, takeoverHosts, type PlacementFacts } from '../../../src/controller/placement.ts';
import { candidatesFor } from '../../../src/controller/pool-facts.ts';
import type { Hold } from '../../../src/controller/spare-pool.ts';
import { cleanup, load } from '../config/helpers.ts';

after(cleanup);

/** One disk per host: each host has its own storage system. */
const ONE_DISK_PER_HOST = `storage:
  sa: { path: data/sa }
  sb: { path: data/sb }
  sc: { path: data/sc }
  vault: { path: data/vault, backup: true }
hosts:
  h1: { address: 127.0.1.1, storage: sa }
  h2: { address: 127.0.2.1, storage: sb }
  h3: { address: 127.0.3.1, storage: sc }
  v1: { address: 127.0.4.1, storage: vault }
pools:
  spares: [h2, h3, v1]
sites:
  shop:
    front: 127.0.0.1:8080
    app: { command: [node, server.js], port: 3000 }
    primary: h1
    standby: spares
`;

/** Two sites sharing a pool of two spares, one disk per host. */
const SHARED_POOL = `storage:
  sa: { path: data/sa }
  sb: { path: data/sb }
  sc: { path: data/sc }
  sd: { path: data/sd }
hosts:
  a1: { address: 127.0.1.1, storage: sa }
  b1: { address: 127.0.2.1, storage: sb }
  s1: { address: 127.0.3.1, storage: sc }
  s2: { address: 127.0.4.1, storage: sd }
pools:
  spares: [s1, s2]
sites:
  shop:
    front: 127.0.0.1:8080
    app: { command: [node, server.js], port: 3000 }
    primary: a1
    standby: spares
  outlet:
    front: 127.0.0.1:8081
    app: { command: [node, server.js], port: 3001 }
    primary: b1
    standby: spares
`;

function facts(opts: { untrusted?: string[]; holds?: Hold[]; replicas?: { site: string; storage: string | null }[]; down?: string[] } = {}): PlacementFacts {
  return {
    trusted: (h) => !opts.untrusted?.includes(h),
    holds: opts.holds ?? [],
    replicas: opts.replicas ?? [],
    storageUp: (s) => !opts.down?.includes(s),
  };
}

test('the hosts that may take a site over: its standbys in order, then its configured primary (failback)', () => {
  const c = load(ONE_DISK_PER_HOST);
  assert.deepEqual(takeoverHosts(c.sites.shop!), ['h2', 'h3', 'v1', 'h1']);
  // Target choice uses the same list: after h2 → h3 with the replica on h1's storage, h1 is the candidate.
  assert.deepEqual(candidatesFor(c, c.sites.shop!, { failed: 'h3', replicaStorage: 'sa' }), ['h1']);
  assert.deepEqual(candidatesFor(c, c.sites.shop!, { failed: 'h1', replicaStorage: 'sb' }), ['h2']);
});

test('one disk per host: the replica follows the next target through three failures (a free spare first, then the old primary once trusted)', () => {
  const c = load(ONE_DISK_PER_HOST);
  const shop = c.sites.shop!;
  // Start: h1 primary; h2 is the first free spare.
  assert.deepEqual(placeReplica(c, shop, 'h1', facts()), { storage: 'sb', host: 'h2', standing: 'free' });
  // h1 failed, shop on h2: the replica goes to h3's storage, not to h1's (where no able host is).
  assert.deepEqual(placeReplica(c, shop, 'h2', facts({ untrusted: ['h1'] })), { storage: 'sc', host: 'h3', standing: 'free' });
  // h2 failed too, h1 is on and trusted again: shop on h3 keeps its replica on h1's storage (failback).
  assert.deepEqual(placeReplica(c, shop, 'h3', facts({ untrusted: ['h2'] })), { storage: 'sa', host: 'h1', standing: 'free' });
  // h3 failed, h2 trusted again: shop on h1 replicates to h2's storage.
  assert.deepEqual(placeReplica(c, shop, 'h1', facts({ untrusted: ['h3'] })), { storage: 'sb', host: 'h2', standing: 'free' });
  // Nothing is trusted: the replica still goes somewhere (a spare first), to be ready when a host comes back.
  assert.deepEqual(placeReplica(c, shop, 'h3', facts({ untrusted: ['h1', 'h2'] })), { storage: 'sb', host: 'h2', standing: 'unusable' });
  // Never on a vault, never on the primary's own storage system.
  assert.ok(placeReplica(c, shop, 'h1', facts({ untrusted: ['h2', 'h3'] }))!.storage !== 'vault');
});

test('a replica whose storage system has no able host left moves to one that has; an able one stays put (no back and forth)', () => {
  const c = load(ONE_DISK_PER_HOST);
  const shop = c.sites.shop!;
  // shop on h3, replica on h2's storage, h2 still off (untrusted); h1 powered on and trusted: move to sa.
  assert.deepEqual(replicaMove(c, shop, 'h3', 'sb', facts({ untrusted: ['h2'] })), { storage: 'sa', host: 'h1', standing: 'free' });
  // Both untrusted: nowhere better, it stays.
  assert.equal(replicaMove(c, shop, 'h3', 'sb', facts({ untrusted: ['h1', 'h2'] })), null);
  // h2 is able: it stays, even though h1 would be as good.
  assert.equal(replicaMove(c, shop, 'h3', 'sb', facts()), null);
  // h2's storage system is down: move.
  assert.deepEqual(replicaMove(c, shop, 'h3', 'sb', facts({ down: ['sb'] }))?.storage, 'sa');
});

test('two sites sharing a pool: replicas spread over the spares; one taken by the other site moves the replica to a host still able', () => {
  const c = load(SHARED_POOL);
  const { shop, outlet } = c.sites as Record<string, NonNullable<typeof c.sites.shop>>;
  assert.deepEqual(placeReplica(c, shop!, 'a1', facts()), { storage: 'sc', host: 's1', standing: 'free' });
  // outlet is placed after shop: s1 is already shop's next target, s2 is a spare of its own.
  const afterShop = facts({ replicas: [{ site: 'shop', storage: 'sc' }] });
  assert.equal(standing(c, outlet!, 's1', afterShop), 'shared');
  assert.deepEqual(placeReplica(c, outlet!, 'b1', afterShop), { storage: 'sd', host: 's2', standing: 'free' });

  // a1 fails: shop takes s1. Its new replica: s2 (shared with outlet, but able) before a1 (untrusted).
  const shopOnS1 = facts({
    untrusted: ['a1'],
    holds: [
      { host: 's1', site: 'shop', as: 'primary' },
      { host: 'b1', site: 'outlet', as: 'primary' },
    ],
    replicas: [{ site: 'outlet', storage: 'sd' }],
  });
  assert.deepEqual(placeReplica(c, shop!, 's1', shopOnS1), { storage: 'sd', host: 's2', standing: 'shared' });
  assert.equal(replicaMove(c, outlet!, 'b1', 'sd', shopOnS1), null, "outlet's replica stays: s2 can still take it");

  // b1 fails: outlet takes s2. shop's replica on sd has no able host (s2 is outlet's); a1 is trusted again: move.
  const outletOnS2Facts = {
    holds: [
      { host: 's1', site: 'shop', as: 'primary' as const },
      { host: 's2', site: 'outlet', as: 'primary' as const },
    ],
    untrusted: ['b1'],
    replicas: [{ site: 'shop', storage: 'sd' }],
  };
  const outletOnS2 = facts(outletOnS2Facts);
  assert.deepEqual(replicaMove(c, shop!, 's1', 'sd', outletOnS2), { storage: 'sa', host: 'a1', standing: 'free' });
  // outlet from s2: s1 is shop's primary (held), b1 failed (unusable): the failed host's storage first, for when it returns.
  assert.deepEqual(placeReplica(c, outlet!, 's2', outletOnS2), { storage: 'sb', host: 'b1', standing: 'unusable' });
  // Before a1 is trusted again, shop's replica has nowhere better to go.
  assert.equal(replicaMove(c, shop!, 's1', 'sd', facts({ ...outletOnS2Facts, untrusted: ['a1', 'b1'] })), null);
});

test('next: the host that would take over now — able, on the replica storage, a powered one first; null when none', () => {
  const c = load(SHARED_POOL);
  const shop = c.sites.shop!;
  const powered = (on: string[]) => (h: string) => on.includes(h);
  assert.deepEqual(nextTakeover(c, shop, { primaryHost: 'a1', replicaStorage: 'sc' }, { ...facts(), powered: powered([]) }), { host: 's1', storage: 'sc' });
  assert.equal(
    nextTakeover(c, shop, { primaryHost: 'a1', replicaStorage: 'sc' }, { ...facts({ untrusted: ['s1'] }), powered: powered(['s1']) }),
    null,
    'not trusted',
  );
  assert.equal(
    nextTakeover(
      c,
      shop,
      { primaryHost: 'a1', replicaStorage: 'sc' },
      { ...facts({ holds: [{ host: 's1', site: 'outlet', as: 'primary' }] }), powered: powered(['s1']) },
    ),
    null,
    "another site's primary",
  );
  assert.deepEqual(
    nextTakeover(
      c,
      shop,
      { primaryHost: 'a1', replicaStorage: 'sc' },
      { ...facts({ holds: [{ host: 's1', site: 'outlet', as: 'reader' }] }), powered: powered(['s1']) },
    ),
    { host: 's1', storage: 'sc' },
    'a reader is taken back',
  );
  assert.equal(nextTakeover(c, shop, { primaryHost: 'a1', replicaStorage: null }, { ...facts(), powered: powered([]) }), null, 'unprotected');
});
