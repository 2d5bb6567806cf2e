import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MalfunctionDetector, type MalfunctionDecision } from '../../../src/monitor/malfunction-detector.ts';
import { FakeClock } from './fake-clock.ts';

const POLL_MS = 250;

/**
 * Simulated director counters for one upstream: `perPoll` requests answered per
 * poll, of which `errorsAt(t)` (a share) are 5xx. Cumulative, like /v1/stats.
 */
class Traffic {
  requests = 0;
  errors5xx = 0;
  connErrors = 0;
  private errorDebt = 0;
  constructor(readonly upstream = '127.0.1.1:3000') {}
  step(n: number, errorShare: number): void {
    this.requests += n;
    this.errorDebt += n * errorShare;
    const e = Math.floor(this.errorDebt + 1e-9);
    this.errors5xx += e;
    this.errorDebt -= e;
  }
}

/** Polls every 250 ms for `ms`, with traffic shaped by `share(t since start)`; returns the decisions. */
function drive(d: MalfunctionDetector, clock: FakeClock, tr: Traffic, ms: number, share: (t: number) => number, perPoll = 5): MalfunctionDecision[] {
  const out: MalfunctionDecision[] = [];
  for (let t = 0; t < ms; t += POLL_MS) {
    clock.advance(POLL_MS);
    tr.step(perPoll, share(t));
    const r = d.observeStats(tr);
    if (r) out.push(r);
  }
  return out;
}

const opts = (clock: FakeClock) => ({ errorRate: 0.2, windowMs: 5000, now: clock.now });

test('sustained 30 % errors over the window → one malfunction naming rate, window and requests', () => {
  const clock = new FakeClock();
  const d = new MalfunctionDetector(opts(clock));
  const tr = new Traffic();
  assert.deepEqual(
    drive(d, clock, tr, 10_000, () => 0),
    [],
    'healthy traffic raises nothing',
  );
  // 30 % errors starting now: not before the window is full of them.
  assert.deepEqual(
    drive(d, clock, tr, 4_000, () => 0.3),
    [],
    'not before a full window of errors',
  );
  const out = drive(d, clock, tr, 3_000, () => 0.3);
  assert.equal(out.length, 1);
  const m = out[0]!;
  assert.equal(m.kind, 'malfunction');
  assert.equal(m.source, 'traffic');
  if (m.source !== 'traffic') throw new Error('unreachable');
  const e = m.evidence;
  assert.ok(e.rate! >= 0.2 && e.rate! <= 0.31, `rate ${e.rate}`);
  assert.equal(e.windowMs, 5000);
  assert.ok(e.to - e.from >= 5000);
  assert.ok(e.answered >= 20);
  assert.equal(e.requests, e.answered + e.connErrors);
  assert.equal(e.upstream, '127.0.1.1:3000');
  assert.equal(e.slices.length, 5);
  assert.ok(e.slices.every((s) => s.rate! >= 0.1));
  assert.match(m.reason, /5xx over 5\d\d\d ms/);
  assert.equal(d.malfunctioning, true);
  assert.deepEqual(
    drive(d, clock, tr, 3_000, () => 0.3),
    [],
    'raised once',
  );
  const cleared = drive(d, clock, tr, 6_000, () => 0);
  assert.deepEqual(
    cleared.map((c) => c.kind),
    ['malfunction-cleared'],
  );
});

test('a 1-second blip of errors (shorter than the window) does nothing, even when it lifts the average to the threshold', () => {
  const clock = new FakeClock();
  const d = new MalfunctionDetector(opts(clock));
  const tr = new Traffic();
  drive(d, clock, tr, 6_000, () => 0);
  // 1 s of 100 % errors in a 5 s window: the window's average is exactly 20 %.
  let maxRate = 0;
  const out: MalfunctionDecision[] = [];
  for (let t = 0; t < 12_000; t += POLL_MS) {
    out.push(...drive(d, clock, tr, POLL_MS, () => (t < 1000 ? 1 : 0)));
    maxRate = Math.max(maxRate, d.window()!.rate!);
  }
  assert.ok(maxRate >= 0.2, `the blip lifts the window's average to the threshold (${maxRate})`);
  assert.deepEqual(out, []);
  assert.equal(d.malfunctioning, false);
});

test('too few requests prove nothing; connection errors are not 5xx', () => {
  const clock = new FakeClock();
  const d = new MalfunctionDetector(opts(clock));
  const tr = new Traffic();
  // 1 request per 250 ms, all failing... but only 20 in 5 s is the minimum: use fewer.
  const out: MalfunctionDecision[] = [];
  for (let i = 0; i < 60; i++) {
    clock.advance(POLL_MS);
    if (i % 2 === 0) tr.step(1, 1);
    const r = d.observeStats(tr);
    if (r) out.push(r);
  }
  assert.deepEqual(out, [], '10 answered requests per window is below minRequests');
  const w = d.window()!;
  assert.equal(w.answered, 10);
  assert.equal(w.rate, 1);
  assert.equal(w.sustained, false);

  const d2 = new MalfunctionDetector(opts(clock));
  const tr2 = new Traffic();
  for (let i = 0; i < 40; i++) {
    clock.advance(POLL_MS);
    tr2.requests += 5;
    tr2.connErrors += 5;
    assert.equal(d2.observeStats(tr2), null, "refused connections are HangDetector's evidence");
  }
  assert.equal(d2.window()!.connErrors, 100);
});

test('a director restart (counters go down) or a new primary starts the window again', () => {
  const clock = new FakeClock();
  const d = new MalfunctionDetector(opts(clock));
  const tr = new Traffic();
  drive(d, clock, tr, 3_000, () => 0.5);
  const fresh = new Traffic();
  assert.deepEqual(
    drive(d, clock, fresh, 4_000, () => 0.5),
    [],
    "the restart's window is not full yet",
  );
  assert.equal(drive(d, clock, fresh, 2_000, () => 0.5).length, 1);
  const moved = new Traffic('127.0.2.1:3000');
  moved.requests = fresh.requests;
  moved.errors5xx = fresh.errors5xx;
  assert.deepEqual(
    drive(d, clock, moved, 4_000, () => 0.5),
    [],
    'another upstream: a new window',
  );
});

test('probe content: wrong answers (status, body) fall times in a row → malfunction; once → nothing; no answer is not its evidence', () => {
  const clock = new FakeClock();
  const d = new MalfunctionDetector({ ...opts(clock), probeFall: 2, probeRise: 2 });
  const good = { ok: true, at: 1, status: 200 };
  const wrong = { ok: false, at: 2, status: 500, error: 'status 500' };
  assert.equal(d.observeProbe(good), null);
  assert.equal(d.observeProbe(wrong), null, 'a single wrong answer does nothing');
  assert.equal(d.observeProbe(good), null);
  assert.equal(d.observeProbe({ ok: false, at: 3, error: 'timeout' }), null, "no answer is not this detector's evidence");
  assert.equal(d.observeProbe(wrong), null);
  const m = d.observeProbe({ ok: false, at: 4, status: 200, error: 'body does not match /UP/' });
  assert.equal(m?.kind, 'malfunction');
  if (m?.source !== 'probe' || m.kind !== 'malfunction') throw new Error('expected a probe malfunction');
  assert.equal(m.evidence.probes.length, 2);
  assert.equal(m.evidence.probes[0]!.wrong, 'status 500');
  assert.match(m.reason, /body does not match \/UP\//);
  assert.equal(d.observeProbe(good), null);
  assert.equal(d.observeProbe(good)?.kind, 'malfunction-cleared');
});
