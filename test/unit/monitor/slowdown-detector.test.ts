import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LatencyWindow } from '../../../src/director/latency-window.ts';
import { RECENT_LATENCY_MS, RECENT_LATENCY_SLOT_MS } from '../../../src/shared/contracts.ts';
import { SlowdownDetector, type SlowdownDecision } from '../../../src/monitor/slowdown-detector.ts';
import { FakeClock } from './fake-clock.ts';

/**
 * Hosts whose latency goes through the director's real LatencyWindow (on the
 * fake clock), so that the detector sees p95s exactly as GET /v1/stats gives them.
 */
class Site {
  readonly windows = new Map<string, LatencyWindow>();
  constructor(
    readonly clock: FakeClock,
    hosts: string[],
  ) {
    for (const h of hosts) this.windows.set(h, new LatencyWindow(10, clock.now));
  }
  /** One second of traffic: 50 requests per host at `ms(host, t)`. */
  second(ms: (host: string) => number): void {
    for (let i = 0; i < 50; i++) {
      this.clock.advance(20);
      for (const [h, w] of this.windows) w.record(ms(h) * (0.9 + 0.2 * (i / 50)));
    }
  }
  stats() {
    return [...this.windows].map(([upstream, w]) => ({ upstream, latencyMs: w.percentiles() }));
  }
}

function drive(d: SlowdownDetector, site: Site, seconds: number, ms: (host: string, s: number) => number): SlowdownDecision[] {
  const out: SlowdownDecision[] = [];
  for (let s = 0; s < seconds; s++) {
    site.second((h) => ms(h, s));
    const r = d.observe(site.stats());
    if (r) out.push(r);
  }
  return out;
}

const A = '127.0.1.1:3000';
const B = '127.0.2.1:3000';
const C = '127.0.3.1:3000';

test('one host slow for the whole window → slowdown of that host only; not before the hold', () => {
  const clock = new FakeClock();
  const d = new SlowdownDetector({ p95Ms: 300, windowMs: 10_000, now: clock.now });
  const site = new Site(clock, [A, B]);
  assert.deepEqual(
    drive(d, site, 30, () => 20),
    [],
  );
  assert.deepEqual(
    drive(d, site, 15, (h) => (h === A ? 800 : 20)),
    [],
    "slow for less than window + the director's window",
  );
  const out = drive(d, site, 10, (h) => (h === A ? 800 : 20));
  assert.deepEqual(
    out.map((o) => o.kind),
    ['slowdown'],
  );
  const e = out[0]!.evidence;
  assert.deepEqual(e.slowHosts, [A]);
  const a = e.hosts.find((h) => h.upstream === A)!;
  assert.ok(a.p95Ms > 700 && a.overThreshold);
  assert.ok(a.baselineP95Ms !== null && a.baselineP95Ms < 30, 'baseline from the calm minutes');
  assert.equal(e.holdMs, 20_000);
  assert.match(out[0]!.reason, /127\.0\.1\.1:3000 p95 \d+ ms .*while 127\.0\.2\.1:3000 p95/);
  assert.equal(d.level, 'slowdown');
  assert.deepEqual(
    drive(d, site, 20, (h) => (h === A ? 800 : 20)),
    [],
    'reported once',
  );
  const cleared = drive(d, site, 30, () => 20);
  assert.deepEqual(
    cleared.map((o) => o.kind),
    ['slowdown-cleared'],
  );
});

test('every host slowed at once, within a factor of each other → global-slowdown, not slowdown', () => {
  const clock = new FakeClock();
  const d = new SlowdownDetector({ p95Ms: 300, windowMs: 10_000, now: clock.now });
  const site = new Site(clock, [A, B, C]);
  drive(d, site, 30, () => 20);
  const out = drive(d, site, 30, (h) => (h === A ? 900 : h === B ? 700 : 800));
  assert.deepEqual(
    out.map((o) => o.kind),
    ['global-slowdown'],
  );
  assert.deepEqual(out[0]!.evidence.slowHosts, [A, B, C]);
  assert.ok(out[0]!.evidence.spread! < 2);
  assert.match(out[0]!.reason, /every host slowed together/);
});

test("every host slowed at once, the standby's sampled p95 just under the threshold → global-slowdown; a calm standby → slowdown", () => {
  // What an e2e run saw: the primary at p95 145 ms, the standby (a few probes a second) at 99 ms, threshold 100, no baseline yet.
  for (const [standbyMs, kind] of [
    [88, 'global-slowdown'],
    [60, 'global-slowdown'],
    [40, 'slowdown'],
    [5, 'slowdown'],
  ] as const) {
    const clock = new FakeClock();
    const d = new SlowdownDetector({ p95Ms: 100, windowMs: 2_000, now: clock.now });
    const site = new Site(clock, [A, B]);
    // No calm minutes before (no baseline yet, as right after a start): only the threshold judges.
    const out = drive(d, site, 20, (h) => (h === A ? 120 : standbyMs));
    assert.deepEqual(
      out.map((o) => o.kind),
      [kind],
      `standby at ${standbyMs} ms`,
    );
    assert.deepEqual(out[0]!.evidence.slowHosts, kind === 'global-slowdown' ? [A, B] : [A]);
  }
});

test('all hosts slow but far apart: the slowest is a host problem → slowdown', () => {
  const clock = new FakeClock();
  const d = new SlowdownDetector({ p95Ms: 300, windowMs: 10_000, now: clock.now });
  const site = new Site(clock, [A, B]);
  const out = drive(d, site, 30, (h) => (h === A ? 3000 : 400));
  assert.deepEqual(
    out.map((o) => o.kind),
    ['slowdown'],
  );
  assert.deepEqual(out[0]!.evidence.slowHosts, [A, B]);
});

test('a site with one host that slows down → slowdown (nothing to compare with)', () => {
  const clock = new FakeClock();
  const d = new SlowdownDetector({ p95Ms: 300, windowMs: 5_000, statsWindowMs: 0, now: clock.now });
  const site = new Site(clock, [A]);
  const out = drive(d, site, 8, () => 900);
  assert.deepEqual(
    out.map((o) => o.kind),
    ['slowdown'],
  );
});

test("a 1-second blip of slow requests → nothing, though the director's p95 shows it for ~10 s", () => {
  const clock = new FakeClock();
  const d = new SlowdownDetector({ p95Ms: 300, windowMs: 10_000, now: clock.now });
  const site = new Site(clock, [A, B]);
  drive(d, site, 30, () => 20);
  let slowSeconds = 0;
  const out: SlowdownDecision[] = [];
  for (let s = 0; s < 40; s++) {
    out.push(...drive(d, site, 1, (h) => (h === A && s === 0 ? 2000 : 20)));
    if (site.stats()[0]!.latencyMs.p95 > 300) slowSeconds++;
  }
  assert.ok(slowSeconds >= 9, `the blip stays in the director's p95 (${slowSeconds} s)`);
  assert.deepEqual(out, []);
});

test("slow against its own baseline, though under the site's threshold → slowdown naming the baseline rule", () => {
  const clock = new FakeClock();
  const d = new SlowdownDetector({ p95Ms: 300, windowMs: 5_000, statsWindowMs: 0, now: clock.now });
  const site = new Site(clock, [A, B]);
  drive(d, site, 60, () => 40);
  const out = drive(d, site, 10, (h) => (h === A ? 200 : 40));
  assert.deepEqual(
    out.map((o) => o.kind),
    ['slowdown'],
  );
  const a = out[0]!.evidence.hosts.find((h) => h.upstream === A)!;
  assert.equal(a.overThreshold, false);
  assert.equal(a.overBaseline, true);
  assert.ok(Math.abs(a.baselineP95Ms! - 40) < 5);
});

test('hosts with too few requests are not judged', () => {
  const clock = new FakeClock();
  const d = new SlowdownDetector({ p95Ms: 300, windowMs: 1_000, statsWindowMs: 0, now: clock.now });
  for (let s = 0; s < 10; s++) {
    clock.advance(1000);
    assert.equal(d.observe([{ upstream: A, latencyMs: { p50: 900, p95: 900, p99: 900, count: 5 } }]), null);
  }
});

/**
 * The director's `recentLatencyMs` as the controller judges it: the last second in
 * quarter-second slots, polled every 500 ms, 200 requests a second, hold = window + 1 s.
 */
function recentDrive(
  windowMs: number,
  slowFor: (t: number) => boolean,
  totalMs: number,
): { decisions: { kind: string; atMs: number }[]; slowFromMs: number | null } {
  const clock = new FakeClock();
  const w = new LatencyWindow(RECENT_LATENCY_MS / 1000, clock.now, RECENT_LATENCY_SLOT_MS);
  const d = new SlowdownDetector({ p95Ms: 100, windowMs, statsWindowMs: RECENT_LATENCY_MS, now: clock.now });
  const decisions: { kind: string; atMs: number }[] = [];
  let slowFromMs: number | null = null;
  for (let t = 0; t < totalMs; t += 5) {
    clock.advance(5);
    const slow = slowFor(t);
    if (slow) slowFromMs ??= t;
    w.record(slow ? 140 : 3);
    if (t % 500 === 0) {
      const r = d.observe([{ upstream: A, latencyMs: w.percentiles() }]);
      if (r) decisions.push({ kind: r.kind, atMs: t });
    }
  }
  return { decisions, slowFromMs };
}

test('recent p95 in quarter-second slots: a slowdown is raised within window + 1.5 s of its start; a burst shorter than the window never', () => {
  const sustained = recentDrive(2000, (t) => t >= 3000, 10_000);
  assert.deepEqual(
    sustained.decisions.map((x) => x.kind),
    ['slowdown'],
  );
  const after = sustained.decisions[0]!.atMs - sustained.slowFromMs!;
  assert.ok(after >= 2000 && after <= 3500, `raised ${after} ms after the slowdown began (window 2 s + 1 s span + one 500 ms poll at most)`);

  for (const burst of [500, 1000, 1500])
    assert.deepEqual(
      recentDrive(2000, (t) => t >= 3000 && t < 3000 + burst, 10_000).decisions,
      [],
      `a burst of ${burst} ms under a 2 s window is not a slowdown`,
    );
});
