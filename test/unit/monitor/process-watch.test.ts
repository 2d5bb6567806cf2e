import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProcessWatch } from '../../../src/monitor/process-watch.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a thousand watchers of two processes cost two checks a round, and each hears of a death once', async () => {
  const alive = new Set([101, 202]);
  const checks: number[] = [];
  const watch = new ProcessWatch(5, (pid) => {
    checks.push(pid);
    return alive.has(pid);
  });
  const told = new Map<number, number>();
  for (let i = 0; i < 1000; i++) {
    const pid = i % 2 === 0 ? 101 : 202;
    watch.watch(pid, () => told.set(i, (told.get(i) ?? 0) + 1));
  }
  await sleep(40);
  const rounds = checks.filter((p) => p === 101).length;
  assert.ok(rounds >= 2, `the watch ran (${rounds} rounds)`);
  assert.equal(checks.length, rounds * 2, 'one check per distinct process per round, not one per watcher');
  assert.equal(told.size, 0, 'no death told while both live');

  alive.delete(101);
  await sleep(40);
  assert.equal(told.size, 500, 'every watcher of the dead process was told');
  assert.ok(
    [...told.values()].every((n) => n === 1),
    'each once',
  );
  assert.equal(watch.size, 1, 'the dead process is no longer watched');
  checks.length = 0;
  await sleep(20);
  assert.ok(checks.length > 0 && checks.every((p) => p === 202), 'only the live process is checked afterwards');
});

test('a watch stopped before the death is not told, and the timer stops with the last watch', async () => {
  let live = true;
  let checks = 0;
  const watch = new ProcessWatch(5, () => {
    checks++;
    return live;
  });
  let told = 0;
  const stop = watch.watch(7, () => told++);
  await sleep(20);
  stop();
  assert.equal(watch.size, 0);
  const before = checks;
  live = false;
  await sleep(30);
  assert.equal(told, 0, 'a stopped watch hears nothing');
  assert.equal(checks, before, 'no check runs once nothing is watched');
});
