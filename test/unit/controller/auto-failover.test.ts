import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ActionGovernor } from '../../../src/controller/action-governor.ts';
import type { Detection } from '../../../src/monitor/detection.ts';
import { AutoFailover, type AutoFailoverDeps } from '../../../src/controller/auto-failover.ts';
import type { TargetCandidates } from '../../../src/controller/trusted-candidates.ts';

interface Recorded {
  kind: string;
  message: string;
  data: Record<string, unknown>;
}

function detection(failure: Detection['failure'] = 'hang'): Detection {
  const now = Date.now();
  return {
    source: 'probe',
    failure,
    reason: `${failure}: the process is alive but 2 of 2 probes timed out`,
    detectedAt: now,
    lastHealthyAt: now - 500,
    data: { failure, detectedAt: now, lastHealthyAt: now - 500 },
  };
}

function harness(opts: { cooldownMs?: number; candidates?: () => TargetCandidates; recovered?: () => string | null } = {}) {
  const governor = new ActionGovernor({ rise: 2, cooldownMs: { failover: opts.cooldownMs ?? 0 }, backoffBaseMs: 0 });
  const events: Recorded[] = [];
  const started: string[] = [];
  let primary = 'h1';
  const deps: AutoFailoverDeps = {
    governor,
    hostFailed: (h) => governor.hostFailed(h),
    addEvent: (e) => {
      events.push({ kind: e.kind, message: e.message, data: e.data });
    },
    stillPrimary: (_site, host) => host === primary,
    candidates: opts.candidates ?? (() => ({ candidates: ['h2'], skipped: [] })),
    recovered: opts.recovered ?? (() => null),
    start: async (_site, host) => {
      started.push(host);
      primary = 'h2';
    },
  };
  const af = new AutoFailover(deps);
  return {
    af,
    events,
    started,
    governor,
    setPrimary: (h: string) => {
      primary = h;
    },
  };
}

test('a detection records its evidence, marks the host failed and starts the failover', async (t) => {
  const h = harness();
  t.after(() => h.af.stop());
  h.af.onDetection('shop', 'h1', detection('hang'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(h.started, ['h1']);
  assert.deepEqual(
    h.events.map((e) => e.kind),
    ['failure-detected'],
  );
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
    candidates: () =>
      trusted
        ? { candidates: ['h2'], skipped: [] }
        : {
            candidates: [],
            skipped: [{ host: 'h2', state: 'recovering', why: 'h2 failed and has 0 of 2 good probes in a row needed to be trusted', retryAt: null }],
          },
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
    governor,
    hostFailed: (h) => governor.hostFailed(h),
    addEvent: (e) => {
      events.push({ kind: e.kind, message: e.message, data: e.data });
    },
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

test('two crashes of different hosts within the cooldown: the second starts at once (cooldown-waived, avoiding the first source); a flap back is deferred', async (t) => {
  const governor = new ActionGovernor({ rise: 1, cooldownMs: { failover: 10_000 }, backoffBaseMs: 0 });
  const events: Recorded[] = [];
  const started: { host: string; avoid: string[] }[] = [];
  let primary = 'h1';
  let candidates: string[] = ['h2'];
  const af = new AutoFailover({
    governor,
    hostFailed: (h) => governor.hostFailed(h),
    addEvent: (e) => {
      events.push({ kind: e.kind, message: e.message, data: e.data });
    },
    stillPrimary: (_s, host) => host === primary,
    candidates: () => ({ candidates, skipped: [] }),
    recovered: () => null,
    start: async (_s, host, _d, opts) => {
      started.push({ host, avoid: opts.avoid });
    },
  });
  t.after(() => af.stop());

  af.onDetection('shop', 'h1', detection('crash'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [{ host: 'h1', avoid: [] }]);
  // The failover took h2; h1 is powered on and trusted again, h3 is a free spare.
  primary = 'h2';
  governor.hostProbe('h1', true);
  candidates = ['h3', 'h1'];
  af.onDetection('shop', 'h2', detection('crash'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started[1], { host: 'h2', avoid: ['h1'] }, 'started at once, told to avoid h1');
  assert.ok(!events.some((e) => e.kind === 'failover-deferred'), 'no failover-deferred for an independent crash');
  const waived = events.find((e) => e.kind === 'cooldown-waived');
  assert.ok(waived);
  assert.match(
    waived.message,
    /shop: automatic failover from h2 starts at once: the last failover of shop was \d+ ms ago; the cooldown is 10000 ms \(\d+ ms left\), but this is an independent crash: hard evidence against h2/,
  );
  assert.deepEqual(waived.data.avoid, ['h1']);

  // Now h3 serves and crashes; its only trusted target is h2, where the last failover came from: a flap, deferred.
  primary = 'h3';
  governor.hostProbe('h2', true);
  candidates = ['h2'];
  af.onDetection('shop', 'h3', detection('crash'));
  assert.equal(started.length, 2, 'the flap back to h2 is not started');
  const deferred = events.filter((e) => e.kind === 'failover-deferred');
  assert.equal(deferred.length, 1);
  assert.equal(deferred[0]!.data.code, 'cooldown');
  assert.match(
    deferred[0]!.message,
    /not an independent crash: its only trusted target is h2, where the last failover came from: shop would flap between h2 and h3; retrying at/,
  );

  // A hang on another host keeps the cooldown too.
  const g2 = new ActionGovernor({ rise: 1, cooldownMs: { failover: 10_000 } });
  g2.decide('blog', 'failover', 'crash of h1', { failover: { from: 'h1', hardEvidence: true, targets: ['h2'] } });
  const hung: Recorded[] = [];
  const af2 = new AutoFailover({
    governor: g2,
    hostFailed: (h) => g2.hostFailed(h),
    addEvent: (e) => {
      hung.push({ kind: e.kind, message: e.message, data: e.data });
    },
    stillPrimary: (_s, host) => host === 'h2',
    candidates: () => ({ candidates: ['h3'], skipped: [] }),
    recovered: () => null,
    start: async () => undefined,
  });
  t.after(() => af2.stop());
  af2.onDetection('blog', 'h2', detection('hang'));
  assert.match(hung.find((e) => e.kind === 'failover-deferred')?.message ?? '', /not an independent crash: the evidence against h2 is not hard/);
});
