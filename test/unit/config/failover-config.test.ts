import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

after(cleanup);

test('controller.failover: documented defaults (cooldown 10s, flap window 5m, backoff = the cooldown)', () => {
  assert.deepEqual(load(MINIMAL).controller.failover, { cooldownMs: 10_000, flapWindowMs: 300_000, flapBackoffMs: 10_000, drainTimeoutMs: 1000 });
});

test('controller.failover: durations in ms; 0s turns a setting off; the backoff follows the cooldown unless written', () => {
  const at = (failover: string) => load(`controller: { failover: ${failover} }\n${MINIMAL}`).controller.failover;
  assert.deepEqual(at('{ cooldown: 30s }'), { cooldownMs: 30_000, flapWindowMs: 300_000, flapBackoffMs: 30_000, drainTimeoutMs: 1000 });
  assert.deepEqual(at('{ cooldown: 0s, flapWindow: 1m }'), { cooldownMs: 0, flapWindowMs: 60_000, flapBackoffMs: 0, drainTimeoutMs: 1000 });
  assert.deepEqual(at('{ cooldown: 5s, flapWindow: 2m, flapBackoff: 1m30s }'), {
    cooldownMs: 5000,
    flapWindowMs: 120_000,
    flapBackoffMs: 90_000,
    drainTimeoutMs: 1000,
  });
  assert.equal(at('{ drainTimeout: 250ms }').drainTimeoutMs, 250);
  assert.equal(at('{ drainTimeout: 0s }').drainTimeoutMs, 0);
});

test('controller.failover: a bad value is reported at its place, never replaced by a default', () => {
  const message = 'must be a duration like 10s (0s turns it off)';
  assert.deepEqual(lines(`controller: { failover: { cooldown: 10 } }\n${MINIMAL}`), [`1:37: controller.failover.cooldown: ${message}`]);
  assert.deepEqual(lines(`controller:\n  failover:\n    cooldown: soon\n    flapWindow: -5s\n${MINIMAL}`), [
    `3:15: controller.failover.cooldown: ${message}`,
    `4:17: controller.failover.flapWindow: ${message}`,
  ]);
  assert.deepEqual(lines(`controller: { failover: { coolDown: 5s } }\n${MINIMAL}`), [
    '1:27: controller.failover.coolDown: unknown key (did you mean cooldown?)',
  ]);
  assert.deepEqual(
    lines(`controller: { failover: 10s }\n${MINIMAL}`).map((l) => l.replace(/: .*$/, '')),
    ['1:25'],
  );
});
