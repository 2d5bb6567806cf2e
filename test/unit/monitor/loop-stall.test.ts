import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoopStallClock } from '../../../src/monitor/loop-stall.ts';

test('a late tick is a stall; stalledDuring counts the part of a window it covers, a stall still going on included', () => {
  let now = 1000;
  const clock = new LoopStallClock(20, 30, 60_000, () => now);
  clock.start();
  clock.stop(); // ticked by hand below
  for (let i = 0; i < 5; i++) {
    now += 20;
    clock.tick();
  }
  assert.equal(clock.stalledDuring(0, now), 0, 'on-time ticks: no stall');
  const before = now;
  now += 520; // held up for 500 ms past the next tick
  clock.tick();
  assert.equal(clock.stalledDuring(before, now), 500);
  assert.equal(clock.stalledDuring(before + 300, before + 400), 100, 'only the overlap');
  assert.equal(clock.stalledDuring(now, now + 100), 0, 'after it: nothing');
  const stallEnd = now;
  now += 60_001; // a minute later (itself a stall): the 500 ms one is older than keepMs, forgotten
  clock.tick();
  assert.equal(clock.stalledDuring(before, stallEnd), 0);
});

test('a stall still going on when asked counts (the asker itself came late)', () => {
  let now = 5000;
  const clock = new LoopStallClock(20, 30, 60_000, () => now);
  clock.start();
  now += 400; // no tick ran yet: the loop is still held up from the asker's point of view
  assert.equal(clock.stalledDuring(5000, now), 380);
  clock.stop();
});
