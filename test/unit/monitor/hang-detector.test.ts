import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyFailure, HangDetector, isFailureDecision, type HangDecision } from '../../../src/monitor/hang-detector.ts';
import { FakeClock } from './fake-clock.ts';

const ok = (at: number) => ({ ok: true, at, latencyMs: 2 });
const bad = (at: number, error: string) => ({ ok: false, at, latencyMs: 300, error });

/** Feeds probes every 200 ms; returns every non-null decision. */
function run(d: HangDetector, clock: FakeClock, probes: ('ok' | string)[], alive: boolean | null): HangDecision[] {
  const out: HangDecision[] = [];
  for (const p of probes) {
    const at = clock.advance(200);
    const r = d.observeProbe(p === 'ok' ? ok(at) : bad(at, p), alive);
    if (r) out.push(r);
  }
  return out;
}

test('a single lost probe does nothing', () => {
  const clock = new FakeClock();
  const d = new HangDetector({ fall: 2, rise: 2, now: clock.now });
  assert.deepEqual(run(d, clock, ['ok', 'timeout', 'ok', 'ok', 'refused', 'ok'], true), []);
  assert.equal(d.state, 'healthy');
});

test('SIGSTOP-like: timeouts while the process is alive → hang after fall probes, once', () => {
  const clock = new FakeClock();
  const d = new HangDetector({ fall: 2, rise: 2, now: clock.now });
  const out = run(d, clock, ['ok', 'timeout', 'timeout', 'timeout', 'timeout'], true);
  assert.equal(out.length, 1, 'raised once per episode');
  const h = out[0];
  assert.ok(isFailureDecision(h));
  assert.equal(h.kind, 'hang');
  assert.equal(h.evidence.processAlive, true);
  assert.equal(h.evidence.counts.timeout, 2);
  assert.equal(h.evidence.probes.length, 2);
  assert.equal(h.evidence.firstFailureAt, 1_000_400);
  assert.match(h.reason, /alive but 2 of 2 probes timed out/);
  assert.equal(d.state, 'failed');
});

test('refused series → crash; a dead process → crash at once, without waiting for fall', () => {
  const clock = new FakeClock();
  const d = new HangDetector({ fall: 3, rise: 2, now: clock.now });
  const out = run(d, clock, ['ok', 'refused', 'refused', 'refused'], true);
  assert.deepEqual(
    out.map((o) => o.kind),
    ['crash'],
  );
  assert.match(out[0]!.reason, /refused/);

  const d2 = new HangDetector({ fall: 3, rise: 2, now: clock.now });
  const first = d2.observeProbe(bad(clock.advance(200), 'timeout'), false);
  assert.equal(first?.kind, 'crash');
  const d3 = new HangDetector({ fall: 3, rise: 2, now: clock.now });
  assert.equal(d3.observeProcess(true), null);
  const gone = d3.observeProcess(false);
  assert.equal(gone?.kind, 'crash');
  assert.match(gone!.reason, /process is gone/);
});

test('timeouts with unknown liveness are `unresponsive`; wrong answers are `malfunction`', () => {
  const clock = new FakeClock();
  assert.equal(run(new HangDetector({ fall: 2, rise: 2, now: clock.now }), clock, ['timeout', 'timeout'], null)[0]?.kind, 'unresponsive');
  assert.equal(run(new HangDetector({ fall: 2, rise: 2, now: clock.now }), clock, ['status 500', 'body without ok: true'], true)[0]?.kind, 'malfunction');
  assert.equal(run(new HangDetector({ fall: 2, rise: 2, now: clock.now }), clock, ['ECONNRESET', 'ECONNRESET'], true)[0]?.kind, 'unreachable');
});

test('the newest failure decides: a hang that is then killed is a crash', () => {
  const c = classifyFailure(
    [
      { at: 1, error: 'timeout' },
      { at: 2, error: 'refused' },
    ],
    true,
  );
  assert.equal(c.kind, 'crash');
  assert.deepEqual(c.evidence.counts, { refused: 1, timeout: 1, 'bad-answer': 0, other: 0 });
});

test('classifyFailure reads SiteMonitor FailureEvidence.probes as they are', () => {
  const c = classifyFailure(
    [
      { at: 10, error: 'timeout' },
      { at: 50, error: 'timeout' },
    ],
    true,
  );
  assert.equal(c.kind, 'hang');
  assert.equal(c.evidence.lastFailureAt, 50);
});

test('after a failure, rise good probes in a row → recovered; fewer do nothing', () => {
  const clock = new FakeClock();
  const d = new HangDetector({ fall: 2, rise: 3, now: clock.now });
  run(d, clock, ['timeout', 'timeout'], true);
  assert.deepEqual(run(d, clock, ['ok', 'ok', 'timeout', 'ok', 'ok'], true), [], 'an interrupted rise starts over');
  const out = run(d, clock, ['ok'], true);
  assert.equal(out[0]?.kind, 'recovered');
  assert.equal(d.state, 'healthy');
});
