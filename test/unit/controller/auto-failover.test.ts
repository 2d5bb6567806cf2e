import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ActionGovernor } from '../../../src/monitor/action-governor.ts';
import type { Detection } from '../../../src/monitor/detection.ts';
import { AutoFailover, type AutoFailoverDeps } from '../../../src/controller/auto-failover.ts';
import type { TargetCandidates } from '../../../src/controller/trusted-candidates.ts';

interface Recorded { kind: string; message: string; data: Record<string, unknown> }

function detection(failure: Detection['failure'] = 'hang'): Detection {
  const now = Date.now();
  return { source: 'probe', failure, reason: `${failure}: the process is alive but 2 of 2 probes timed out`, detectedAt: now, lastHealthyAt: now - 500, data: { failure, detectedAt: now, lastHealthyAt: now - 500 } };
}

function harness(opts: { cooldownMs?: number; candidates?: () => TargetCandidates; recovered?: () => string | null } = {}) {
  const governor = new ActionGovernor({ rise: 2, cooldownMs: { failover: opts.cooldownMs ?? 0 }, backoffBaseMs: 0 });
  const events: Recorded[] = [];
  const started: string[] = [];
  let primary = 'h1';
  const deps: AutoFailoverDeps = {
    governor,
    hostFailed: (h) => governor.hostFailed(h),
    addEvent: (e) => { events.push({ kind: e.kind, message: e.message, data: e.data }); },
    stillPrimary: (_site, host) => host === primary,
    candidates: opts.candidates ?? (() => ({ candidates: ['h2'], skipped: [] })),
    recovered: opts.recovered ?? (() => null),
    start: async (_site, host) => { started.push(host); primary = 'h2'; },
  };
  const af = new AutoFailover(deps);
  return { af, events, started, governor, setPrimary: (h: string) => { primary = h; } };
}

test('a detection records its evidence, marks the host failed and starts the failover', async (t) => {
  const h = harness();
  t.after(() => h.af.stop());
  h.af.onDetection('shop', 'h1', detection('hang'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(h.started, ['h1']);
  assert.deepEqual(h.events.map((e) => e.kind), ['failure-detected']);
  assert.equal(h.events[0]!.data.failure, 'hang');
  assert.equal(h.governor.trust('h1').state, 'recovering', 'the failed host is not trusted until rise good probes');
});

test('a detection for a host that is no longer the primary does nothing', (t) => {
  const h = harness();
  t.after(() => h.af.stop());
  h.af.onDetection('shop', 'h3', detection());
  assert.deepEqual(h.started, []);
  assert.deepEqual(h.events, []);
});

test('within the cooldown the failover is deferred with one event that says why and when; it runs at the retry', async (t) => {
  const h = harness({ cooldownMs: 300 });
  t.after(() => h.af.stop());
  h.governor.decide('shop', 'failover', 'an earlier failover');
  h.af.onDetection('shop', 'h1', detection('crash'));
  // Further findings while deferred only refresh the evidence.
  h.af.onDetection('shop', 'h1', detection('crash'));
  assert.deepEqual(h.started, []);
  const deferred = h.events.filter((e) => e.kind === 'failover-deferred');
  assert.equal(deferred.length, 1);
  assert.match(deferred[0]!.message, /deferred: the last failover of shop was \d+ ms ago; the cooldown is 300 ms .*retrying at .* \(in \d+ ms\)/);
  assert.equal(deferred[0]!.data.code, 'cooldown');
  assert.equal(typeof deferred[0]!.data.retryAt, 'number');
  assert.equal(h.events.filter((e) => e.kind === 'failure-detected').length, 1, 'one failure-detected per episode');
  assert.deepEqual(h.af.deferred('shop')?.code, 'cooldown');
  await new Promise((r) => setTimeout(r, 450));
  assert.deepEqual(h.started, ['h1']);
  assert.equal(h.af.deferred('shop'), null);
});

test('a primary that recovered during the deferral is not failed over: failover-cancelled', async (t) => {
  let healthy = false;
  const h = harness({ cooldownMs: 150, recovered: () => (healthy ? 'h1 answers its probes again' : null) });
  t.after(() => h.af.stop());
  h.governor.decide('shop', 'failover', 'an earlier failover');
  h.af.onDetection('shop', 'h1', detection('hang'));
  healthy = true;
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(h.started, []);
  const cancelled = h.events.find((e) => e.kind === 'failover-cancelled');
  assert.ok(cancelled);
  assert.match(cancelled.message, /cancelled: h1 answers its probes again/);
});

test('no trusted standby left: deferred (nothing fenced) until one is trusted, the event names each host and why', async (t) => {
  let trusted = false;
  const h = harness({
    candidates: () => (trusted
      ? { candidates: ['h2'], skipped: [] }
      : { candidates: [], skipped: [{ host: 'h2', state: 'recovering', why: 'h2 failed and has 0 of 2 good probes in a row needed to be trusted', retryAt: null }] }),
  });
  t.after(() => h.af.stop());
  h.af.onDetection('shop', 'h1', detection('malfunction'));
  assert.deepEqual(h.started, []);
  const deferred = h.events.filter((e) => e.kind === 'failover-deferred');
  assert.equal(deferred.length, 1);
  assert.equal(deferred[0]!.data.code, 'no-trusted-target');
  assert.match(deferred[0]!.message, /no trusted standby is left: h2 is not trusted yet \(h2 failed and has 0 of 2 good probes/);
  assert.match(deferred[0]!.message, /retrying every 500 ms until a standby has its good probes/);
  trusted = true;
  await new Promise((r) => setTimeout(r, 700));
  assert.deepEqual(h.started, ['h1']);
  assert.equal(h.events.filter((e) => e.kind === 'failover-deferred').length, 1, 'no repeated deferral event for the same reason');
});

test('a host that fails again soon after regaining trust is held out, and the event says so', (t) => {
  const governor = new ActionGovernor({ rise: 1, cooldownMs: { failover: 0 }, backoffBaseMs: 60_000 });
  const events: Recorded[] = [];
  let primary = 'h1';
  const af = new AutoFailover({
    governor, hostFailed: (h) => governor.hostFailed(h),
    addEvent: (e) => { events.push({ kind: e.kind, message: e.message, data: e.data }); },
    stillPrimary: (_s, host) => host === primary,
    candidates: () => ({ candidates: ['h2'], skipped: [] }),
    recovered: () => null,
    start: async () => undefined,
  });
  t.after(() => af.stop());
  af.onDetection('shop', 'h1', detection('crash'));
  governor.hostProbe('h1', true); // trusted again after rise (1) good probe
  assert.equal(governor.trust('h1').state, 'trusted');
  primary = 'h1';
  af.onDetection('shop', 'h1', detection('crash'));
  const held = events.find((e) => e.kind === 'host-held-out');
  assert.ok(held, events.map((e) => e.kind).join(', '));
  assert.match(held.message, /h1 is held out of automatic use: h1 flapped \(1 time failing within 300000 ms of being trusted\): held out for 60000 ms more/);
  assert.equal(governor.trust('h1').state, 'held-out');
});
