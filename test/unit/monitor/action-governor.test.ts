import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ActionGovernor } from '../../../src/monitor/action-governor.ts';
import { FakeClock } from './fake-clock.ts';

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
  const comeBack = (): void => { g.hostProbe('h1', true); g.hostProbe('h1', true); };
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
