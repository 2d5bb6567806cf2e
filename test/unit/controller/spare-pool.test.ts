import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  allocate,
  decisionFor,
  describeWait,
  freeForReader,
  reclaimable,
  type Claim,
  type Decision,
  type PoolFacts,
} from '../../../src/controller/spare-pool.ts';

const T0 = Date.parse('2026-11-25T07:00:00Z');

function claim(site: string, opts: Partial<Claim> = {}): Claim {
  return { site, priority: 0, detectedAt: T0, candidates: ['s1'], ...opts };
}

function facts(partial: Partial<PoolFacts>): PoolFacts {
  return { priorities: {}, holds: [], claims: [], readiness: {}, ...partial };
}

function granted(d: Decision | undefined): string | undefined {
  return d?.kind === 'granted' ? d.host : undefined;
}

test('spare pool: one site waiting takes its first warm candidate, a warm host before a cold one', () => {
  const f = facts({ claims: [claim('shop', { candidates: ['s1', 's2'] })], readiness: { s1: { state: 'cold' }, s2: { state: 'warm' } } });
  assert.deepEqual(decisionFor(f, 'shop'), { kind: 'granted', site: 'shop', host: 's2', warm: true });
  const cold = facts({ claims: [claim('shop', { candidates: ['s1', 's2'] })], readiness: { s1: { state: 'cold' }, s2: { state: 'cold' } } });
  assert.deepEqual(decisionFor(cold, 'shop'), { kind: 'granted', site: 'shop', host: 's1', warm: false });
});

test('spare pool: two sites want the last spare at once — the higher priority gets it, whatever failed first', () => {
  const f = facts({
    priorities: { shop: 0, outlet: 10 },
    claims: [claim('shop', { detectedAt: T0 }), claim('outlet', { priority: 10, detectedAt: T0 + 900 })],
  });
  const [first, second] = allocate(f);
  assert.deepEqual(first, { kind: 'granted', site: 'outlet', host: 's1', warm: true });
  assert.equal(second!.kind, 'wait');
  assert.equal(second!.site, 'shop');
  const wait = second as Extract<Decision, { kind: 'wait' }>;
  assert.equal(wait.event, 'spare-denied');
  assert.deepEqual(wait.blockers, [{ host: 's1', why: 'taken', site: 'outlet', priority: 10, detectedAt: T0 + 900 }]);
  const msg = describeWait(wait, f, { replicaStorage: 'array-b' });
  assert.match(msg, /shop \(priority 0\) lost the last spare: s1 goes to outlet, which also waits for a target \(higher priority 10 than 0\)/);
  assert.match(msg, /takes the first spare on array-b that becomes free/);
});

test('spare pool: at equal priority the first to fail (by detection time) gets the spare; the order of the claims does not matter', () => {
  const a = claim('shop', { detectedAt: T0 + 50 });
  const b = claim('outlet', { detectedAt: T0 });
  for (const claims of [
    [a, b],
    [b, a],
  ]) {
    const f = facts({ claims });
    assert.equal(granted(decisionFor(f, 'outlet')), 's1');
    const lost = decisionFor(f, 'shop')!;
    assert.equal(lost.kind, 'wait');
    assert.match(
      describeWait(lost as Extract<Decision, { kind: 'wait' }>, f, { replicaStorage: 'array-b' }),
      /same priority 0, failed first \(detected 2026-11-25T07:00:00\.000Z\)/,
    );
  }
  // Same priority, same instant: the name decides, so every caller ranks alike.
  const tie = facts({ claims: [claim('zeta'), claim('alpha')] });
  assert.equal(granted(decisionFor(tie, 'alpha')), 's1');
});

test("spare pool: a host that is another site's primary or runbook target is never free; the site waits with pool-empty naming the holder", () => {
  const f = facts({
    priorities: { shop: 0, outlet: 5 },
    holds: [
      { host: 's1', site: 'shop', as: 'primary' },
      { host: 's2', site: 'shop', as: 'target' },
    ],
    claims: [claim('outlet', { priority: 5, candidates: ['s1', 's2'] })],
  });
  const d = decisionFor(f, 'outlet') as Extract<Decision, { kind: 'wait' }>;
  assert.equal(d.kind, 'wait');
  assert.equal(d.event, 'pool-empty', 'a higher priority does not take a spare back from a primary');
  assert.deepEqual(d.blockers, [
    { host: 's1', why: 'held', site: 'shop', as: 'primary', priority: 0 },
    { host: 's2', why: 'held', site: 'shop', as: 'target', priority: 0 },
  ]);
  const msg = describeWait(d, f, { replicaStorage: 'array-b' });
  assert.match(
    msg,
    /^no spare is free for outlet \(priority 5\): s1 is the primary of shop \(priority 0\); s2 is the target of a running runbook of shop \(priority 0\)\. outlet stays down/,
  );
});

test('spare pool: the spare becomes free again when its holder moves off it (the allocation is derived, nothing to release)', () => {
  const held = facts({ holds: [{ host: 's1', site: 'shop', as: 'primary' }], claims: [claim('outlet')] });
  assert.equal(decisionFor(held, 'outlet')!.kind, 'wait');
  const returned = facts({ holds: [{ host: 'h1', site: 'shop', as: 'primary' }], claims: [claim('outlet')] });
  assert.equal(granted(decisionFor(returned, 'outlet')), 's1');
});

test('spare pool: an empty pool or a pool of unusable hosts is pool-empty at once, with the reason per host', () => {
  const none = facts({ claims: [claim('shop', { candidates: [] })] });
  const d = decisionFor(none, 'shop') as Extract<Decision, { kind: 'wait' }>;
  assert.equal(d.event, 'pool-empty');
  assert.match(describeWait(d, none, { replicaStorage: 'array-b' }), /no standby is attached to array-b, which holds its replica/);
  const untrusted = facts({ claims: [claim('shop')], readiness: { s1: { state: 'unusable', why: 'not trusted: 1 good probe of 2' } } });
  const u = decisionFor(untrusted, 'shop') as Extract<Decision, { kind: 'wait' }>;
  assert.equal(u.event, 'pool-empty');
  assert.deepEqual(u.blockers, [{ host: 's1', why: 'unusable', detail: 'not trusted: 1 good probe of 2' }]);
});

test('spare pool: a lower-ranked site still gets a host the higher-ranked one did not need', () => {
  const f = facts({
    claims: [claim('shop', { detectedAt: T0, candidates: ['s1', 's2'] }), claim('outlet', { detectedAt: T0 + 10, candidates: ['s1', 's2'] })],
    readiness: { s1: { state: 'warm' }, s2: { state: 'cold' } },
  });
  assert.deepEqual(allocate(f).map(granted), ['s1', 's2']);
  // A host only the later site can use is its own, whatever the ranking.
  const g = facts({ claims: [claim('shop', { priority: 9, candidates: ['s1'] }), claim('outlet', { candidates: ['s3'] })] });
  assert.equal(granted(decisionFor(g, 'outlet')), 's3');
});

test('spare pool: readers are taken back by a failover of another site, only when no host is free outright', () => {
  const holds = [{ host: 's1', site: 'outlet', as: 'reader' as const }];
  const busy = facts({ holds, claims: [claim('shop', { candidates: ['s1'] })] });
  assert.deepEqual(decisionFor(busy, 'shop'), { kind: 'granted', site: 'shop', host: 's1', warm: true, reclaim: { from: 'outlet' } });
  assert.deepEqual(reclaimable(busy, 'shop', ['s1', 's2']), [{ host: 's1', from: 'outlet' }]);
  assert.deepEqual(reclaimable(busy, 'outlet', ['s1']), [], "a site's own reader is not reclaimed from itself");
  // Failover beats scale-out whatever the priorities.
  const low = facts({ priorities: { outlet: 100 }, holds, claims: [claim('shop', { priority: -1, candidates: ['s1'] })] });
  assert.equal(granted(decisionFor(low, 'shop')), 's1');
  // A free host comes first.
  const free = facts({ holds, claims: [claim('shop', { candidates: ['s1', 's2'] })] });
  assert.deepEqual(decisionFor(free, 'shop'), { kind: 'granted', site: 'shop', host: 's2', warm: true });
  // A site's own reader is reused without a reclaim from another site.
  const own = facts({ holds, claims: [claim('outlet', { candidates: ['s1'] })] });
  assert.deepEqual(decisionFor(own, 'outlet'), { kind: 'granted', site: 'outlet', host: 's1', warm: true, reclaim: { from: 'outlet' } });
});

test('spare pool: a scale-out may not take a host that is held or that a waiting failover gets', () => {
  const f = facts({
    holds: [
      { host: 's1', site: 'shop', as: 'primary' },
      { host: 's3', site: 'outlet', as: 'reader' },
    ],
    claims: [claim('blog', { candidates: ['s2'] })],
  });
  assert.deepEqual(freeForReader(f, 'outlet', 's1'), { free: false, why: 's1 is the primary of shop (priority 0)' });
  assert.deepEqual(freeForReader(f, 'outlet', 's2'), { free: false, why: 's2 goes to the failover of blog, which is waiting for a target' });
  assert.deepEqual(freeForReader(f, 'outlet', 's3'), { free: true });
  assert.deepEqual(freeForReader(f, 'shop', 's3'), { free: false, why: 's3 is a reader of outlet (priority 0)' });
  assert.deepEqual(freeForReader(f, 'shop', 's4'), { free: true });
});

test('spare pool: an avoided host (the last failover source of a failover let through its cooldown) is taken only when no other will do', () => {
  // h1 is warm, h3 must be booted: h3 all the same, as h1 is avoided.
  const f = facts({ claims: [claim('shop', { candidates: ['h1', 'h3'], avoid: ['h1'] })], readiness: { h1: { state: 'warm' }, h3: { state: 'cold' } } });
  assert.deepEqual(decisionFor(f, 'shop'), { kind: 'granted', site: 'shop', host: 'h3', warm: false });
  // h3 is not usable: h1 rather than waiting.
  const only = facts({
    claims: [claim('shop', { candidates: ['h1', 'h3'], avoid: ['h1'] })],
    readiness: { h1: { state: 'warm' }, h3: { state: 'unusable', why: 'booting' } },
  });
  assert.deepEqual(decisionFor(only, 'shop'), { kind: 'granted', site: 'shop', host: 'h1', warm: true });
});
