import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ActionGovernor } from '../../../src/controller/action-governor.ts';
import { FakeClock } from '../monitor/fake-clock.ts';

test('cooldown: one automatic action of a kind per site per cooldown; other sites and actions are independent', () => {
  const clock = new FakeClock();
  const g = new ActionGovernor({ rise: 2, cooldownMs: { failover: 30_000 }, now: clock.now });
  const first = g.decide('shop', 'failover', 'hang of h1');
  assert.equal(first.allowed, true);
  clock.advance(10_000);
  const second = g.decide('shop', 'failover', 'crash of h2');
  assert.equal(second.allowed, false);
  if (second.allowed) throw new Error('unreachable');
  assert.equal(second.code, 'cooldown');
  assert.equal(second.retryAt, clock.t + 20_000);
  assert.match(second.why, /10000 ms ago; the cooldown is 30000 ms \(20000 ms left\)/);
  assert.equal(g.decide('blog', 'failover', 'crash').allowed, true, 'another site');
  assert.equal(g.decide('shop', 'scale-out', 'slowdown').allowed, true, 'another action');
  clock.advance(20_000);
  assert.equal(g.decide('shop', 'failover', 'crash of h2').allowed, true);
});

test('a deferred answer does not restart the cooldown; completed() does', () => {
  const clock = new FakeClock();
  const g = new ActionGovernor({ rise: 2, cooldownMs: { 'scale-out': 10_000 }, now: clock.now });
  g.decide('shop', 'scale-out', 'slowdown');
  clock.advance(9_000);
  assert.equal(g.decide('shop', 'scale-out', 'slowdown').allowed, false);
  clock.advance(1_000);
  assert.equal(g.cooldownLeft('shop', 'scale-out'), 0);
  g.completed('shop', 'scale-out');
  assert.equal(g.cooldownLeft('shop', 'scale-out'), 10_000);
});

test('every action needs a reason', () => {
  const g = new ActionGovernor({ rise: 2 });
  const d = g.decide('shop', 'failover', ' ');
  assert.equal(d.allowed, false);
  assert.equal(!d.allowed && d.code, 'no-reason');
});

test('a host that failed is trusted only after rise good probes in a row', () => {
  const clock = new FakeClock();
  const g = new ActionGovernor({ rise: 3, cooldownMs: { failover: 0 }, now: clock.now });
  assert.equal(g.trust('h1').trusted, true, 'a host that never failed');
  g.hostFailed('h1');
  g.hostProbe('h1', true);
  g.hostProbe('h1', true);
  g.hostProbe('h1', false);
  g.hostProbe('h1', true);
  g.hostProbe('h1', true);
  const d = g.decide('shop', 'failover', 'crash of h2', { target: 'h1' });
  assert.equal(d.allowed, false);
  assert.equal(!d.allowed && d.code, 'host-untrusted');
  assert.match(d.why, /h1 failed and has 2 of 3 good probes/);
  assert.equal(g.hostProbe('h1', true).state, 'trusted');
  assert.equal(g.decide('shop', 'failover', 'crash of h2', { target: 'h1' }).allowed, true);
});

test('a host that flaps is held out with a growing backoff (30 s, 60 s, 120 s … capped), and is forgiven once stable', () => {
  const clock = new FakeClock();
  const g = new ActionGovernor({ rise: 2, flapWindowMs: 300_000, backoffBaseMs: 30_000, backoffMaxMs: 100_000, now: clock.now });
  const comeBack = (): void => {
    g.hostProbe('h1', true);
    g.hostProbe('h1', true);
  };
  // First failure of a host that never failed: no backoff, only rise.
  assert.equal(g.hostFailed('h1').heldUntil, null);
  comeBack();
  assert.equal(g.trust('h1').state, 'trusted');

  const holds: number[] = [];
  for (let i = 0; i < 4; i++) {
    clock.advance(5_000); // fails again soon after being trusted: a flap
    const t = g.hostFailed('h1');
    assert.equal(t.state, 'held-out');
    holds.push(t.heldUntil! - clock.t);
    comeBack();
    assert.equal(g.trust('h1').state, 'held-out', 'good probes do not shorten the hold-out');
    const d = g.decide('shop', 'failback', 'h1 is back', { target: 'h1' });
    assert.equal(!d.allowed && d.code, 'host-held-out');
    assert.equal(!d.allowed && d.retryAt, t.heldUntil);
    clock.advance(holds[i]! - 1);
    assert.equal(g.trust('h1').trusted, false);
    clock.advance(1);
    assert.equal(g.trust('h1').state, 'trusted', 'trusted once the hold-out is over (it rose meanwhile)');
  }
  assert.deepEqual(holds, [30_000, 60_000, 100_000, 100_000]);
  assert.equal(g.trust('h1').flaps, 4);

  // Stable for a whole flap window: the next failure is not a flap.
  clock.advance(300_001);
  const t = g.hostFailed('h1');
  assert.equal(t.flaps, 0);
  assert.equal(t.state, 'recovering');
});

test('a host that never rose stays untrusted however long it waits; a bad probe restarts its count', () => {
  const clock = new FakeClock();
  const g = new ActionGovernor({ rise: 2, now: clock.now });
  g.hostFailed('h1');
  g.hostProbe('h1', true);
  clock.advance(3_600_000);
  assert.equal(g.trust('h1').state, 'recovering');
  g.hostProbe('h1', false);
  assert.equal(g.hostProbe('h1', true).goodProbes, 1);
});

test('a caller may give a site its own cooldown of an action (e.g. its scale.cooldown); it is kept for later calls', () => {
  const clock = new FakeClock();
  const g = new ActionGovernor({ rise: 2, cooldownMs: { 'scale-out': 30_000 }, now: clock.now });
  assert.equal(g.decide('shop', 'scale-out', 'slow', { cooldownMs: 5_000 }).allowed, true);
  assert.equal(g.cooldownLeft('shop', 'scale-out'), 5_000);
  assert.equal(g.cooldownOf('blog', 'scale-out'), 30_000, 'other sites keep the governor-wide cooldown');
  clock.advance(4_000);
  const d = g.decide('shop', 'scale-out', 'slow');
  assert.equal(d.allowed, false);
  assert.match(d.why, /the cooldown is 5000 ms \(1000 ms left\)/);
  clock.advance(1_000);
  assert.equal(g.decide('shop', 'scale-out', 'slow').allowed, true);
});

test('failover cooldown: an independent crash (hard evidence, another host, a target other than the last source) runs at once; a flap between the same hosts is deferred', () => {
  const clock = new FakeClock();
  const g = new ActionGovernor({ rise: 1, cooldownMs: { failover: 10_000 }, now: clock.now });
  const crash = (from: string, targets: string[], hardEvidence = true) => ({ failover: { from, hardEvidence, targets } });
  // h1 → h2, the first failover of the site.
  const first = g.decide('shop', 'failover', 'crash of h1', crash('h1', ['h2']));
  assert.equal(first.allowed, true);
  assert.equal(first.allowed && first.avoid, undefined, 'out of any cooldown: nothing to avoid');
  clock.advance(5000);

  // h2 crashes 5 s later, and h3 can take the site: independent, at once, avoiding h1.
  const second = g.decide('shop', 'failover', 'crash of h2', crash('h2', ['h3', 'h1']));
  assert.equal(second.allowed, true);
  if (!second.allowed) throw new Error('unreachable');
  assert.deepEqual(second.avoid, ['h1']);
  assert.match(
    second.why,
    /the last failover of shop was 5000 ms ago; the cooldown is 10000 ms \(5000 ms left\), but this is an independent crash: hard evidence against h2, which is not where the last failover came from \(h1\), and h3 can take shop over \(h1 is avoided\)/,
  );
  assert.equal(g.cooldownLeft('shop', 'failover'), 10_000, 'it starts a new cooldown');

  clock.advance(2000);
  // The same pair: h3 crashes and its only trusted target is h2, where the last failover came from.
  const flap = g.decide('shop', 'failover', 'crash of h3', crash('h3', ['h2']));
  assert.equal(flap.allowed, false);
  if (flap.allowed) throw new Error('unreachable');
  assert.equal(flap.code, 'cooldown');
  assert.equal(flap.retryAt, clock.t + 8000);
  assert.match(
    flap.why,
    /\(8000 ms left\); not an independent crash: its only trusted target is h2, where the last failover came from: shop would flap between h2 and h3/,
  );

  // Soft evidence (a hang) on another host keeps the cooldown: the rule it names says so.
  const hang = g.decide('shop', 'failover', 'hang of h3', crash('h3', ['h4'], false));
  assert.equal(hang.allowed, false);
  assert.match(hang.why, /not an independent crash: the evidence against h3 is not hard \(a process gone or connections refused\)/);

  // No trusted target at all: deferred, saying so.
  const none = g.decide('shop', 'failover', 'crash of h3', crash('h3', []));
  assert.match(!none.allowed ? none.why : '', /not an independent crash: no trusted host could take shop over/);

  // The primary is the last failover's own source (it came back by a switchover): a flap.
  const g2 = new ActionGovernor({ rise: 1, cooldownMs: { failover: 10_000 }, now: clock.now });
  g2.decide('shop', 'failover', 'crash of h1', crash('h1', ['h2']));
  clock.advance(1000);
  const back = g2.decide('shop', 'failover', 'crash of h1', crash('h1', ['h2', 'h3']));
  assert.equal(back.allowed, false);
  assert.match(!back.allowed ? back.why : '', /h1 is where the last failover came from: shop would flap between the same hosts/);

  // A failover whose source is unknown (asked without facts): the cooldown holds.
  const g3 = new ActionGovernor({ rise: 1, cooldownMs: { failover: 10_000 }, now: clock.now });
  g3.decide('shop', 'failover', 'corrupt copy');
  const after = g3.decide('shop', 'failover', 'crash of h2', crash('h2', ['h3']));
  assert.match(!after.allowed ? after.why : '', /where the last failover of shop came from is not known/);
});

test('memory: a new governor on the kept memory (a restarted controller, the next leader) still holds a flapping host out and keeps the cooldown; probes of a trusted host save nothing', async () => {
  const { StateStore } = await import('../../../src/state/state-store.ts');
  const { createGovernor } = await import('../../../src/controller/governor-setup.ts');
  const { load, MINIMAL, cleanup } = await import('../config/helpers.ts');
  const config = load(MINIMAL);
  const store = new StateStore({ mirrored: true });
  let saves = 0;
  const counted = { getMemory: store.getMemory.bind(store), putMemory: (n: string, v: unknown) => (saves++, store.putMemory(n, v)) };
  const env = { UNDERSTUDY_FAILOVER_MIN_GAP_MS: '60000', UNDERSTUDY_FLAP_WINDOW_MS: '300000', UNDERSTUDY_FLAP_BACKOFF_MS: '60000' };
  const g1 = createGovernor(config, env, counted);
  for (let i = 0; i < 50; i++) g1.hostProbe('h2', true);
  assert.equal(saves, 0, 'a trusted host’s probes change nothing to keep');
  g1.hostFailed('h1');
  for (let i = 0; i < 5; i++) g1.hostProbe('h1', true);
  g1.hostFailed('h1'); // failed again soon after it was trusted again: a flap
  assert.equal(g1.trust('h1').state, 'held-out');
  assert.equal(g1.decide('shop', 'failover', 'crash of h1').allowed, true);
  assert.ok(saves > 0 && saves < 20, `saved on changes only (${saves})`);

  const g2 = createGovernor(config, env, store);
  assert.equal(g2.trust('h1').state, 'held-out', 'the flap is remembered');
  assert.equal(g2.trust('h1').flaps, 1);
  const again = g2.decide('shop', 'failover', 'crash of h1 again');
  assert.equal(again.allowed, false, 'the cooldown is remembered');
  assert.equal(again.allowed === false && again.code, 'cooldown');
  assert.equal(g2.trust('h2').state, 'trusted');
  store.close();
  cleanup();
});
