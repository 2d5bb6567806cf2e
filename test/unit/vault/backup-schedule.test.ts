import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackupSchedule, backupTickFor } from '../../../src/storage/vault/backup-schedule.ts';

/**
 * Regression for "the backup scheduler skips": with `every: 1s` the newest
 * point must never be older than every + tick + the time a point takes. Simulated with
 * a fake clock: ticks every `tickMs`, each point takes `pointMs`.
 */
function simulate(o: { everyMs: number; tickMs: number; pointMs: number; untilMs: number; failAt?: (t: number) => boolean }) {
  let now = 0;
  const s = new BackupSchedule(() => now);
  s.seed('shop', 0);
  const starts: number[] = [];
  const ends: { at: number; ok: boolean }[] = [];
  let busyUntil = -1;
  for (now = 0; now <= o.untilMs; now += o.tickMs) {
    if (busyUntil >= 0 && now >= busyUntil) {
      s.finished('shop');
      busyUntil = -1;
    }
    if (s.due('shop', o.everyMs)) {
      starts.push(s.started('shop'));
      busyUntil = now + o.pointMs;
      ends.push({ at: busyUntil, ok: !o.failAt?.(now) });
    }
  }
  return { starts, ends };
}

test('with every 1s and the tick backupTickFor picks, a point starts at most every + tick after the previous one', () => {
  const tickMs = backupTickFor([1000], 1000);
  assert.equal(tickMs, 100);
  const { starts } = simulate({ everyMs: 1000, tickMs, pointMs: 80, untilMs: 30_000 });
  const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
  assert.ok(starts.length >= 29, `${starts.length} points in 30 s`);
  assert.ok(Math.max(...gaps) <= 1000 + tickMs, `largest gap ${Math.max(...gaps)} ms`);
});

test('the old rule (a 1 s tick, measured from when the point was stamped) took a point only every 2 s', () => {
  // What vault-service did before: lastTakenAt stamped after the capture (a few ms after the tick).
  let last = -Infinity;
  const starts: number[] = [];
  for (let now = 0; now <= 30_000; now += 1000) {
    if (now - last < 1000) continue;
    starts.push(now);
    last = now + 5;
  }
  assert.ok(starts.length <= 16, 'the skip this file guards against');
  const { starts: fixed } = simulate({ everyMs: 1000, tickMs: 1000, pointMs: 5, untilMs: 30_000 });
  assert.ok(fixed.length >= 30, `measured from the start, even a 1 s tick takes a point every second (${fixed.length})`);
});

test('a point that takes longer than every does not overlap the next; the next starts at the first tick after it ends', () => {
  const { starts, ends } = simulate({ everyMs: 1000, tickMs: 100, pointMs: 1500, untilMs: 10_000 });
  for (let i = 1; i < starts.length; i++) assert.ok(starts[i]! >= ends[i - 1]!.at, 'no overlap');
  const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
  assert.ok(Math.max(...gaps) <= 1500 + 100, `gap ${Math.max(...gaps)}`);
});

test("a failed attempt is retried every, not at every tick; the first point after a start is due every after the vault's newest", () => {
  const { starts } = simulate({ everyMs: 1000, tickMs: 100, pointMs: 10, untilMs: 5000, failAt: () => true });
  assert.ok(starts.length <= 6, `${starts.length} attempts in 5 s`);
  let now = 10_000;
  const s = new BackupSchedule(() => now);
  assert.equal(s.due('shop', 1000), false, 'unknown until seeded');
  s.seed('shop', 9_500);
  assert.equal(s.due('shop', 1000), false);
  now = 10_500;
  assert.equal(s.due('shop', 1000), true);
  s.started('shop');
  assert.equal(s.due('shop', 0), false, 'never two at once');
  s.forget('shop');
  assert.equal(s.knows('shop'), true, 'not forgotten while a point runs');
  s.finished('shop');
  s.forget('shop');
  assert.equal(s.knows('shop'), false);
});
