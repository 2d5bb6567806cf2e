import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eachLimited } from '../../../src/shared/each-limited.ts';

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('eachLimited runs every item, at most `limit` at a time, begun in order', async () => {
  let running = 0;
  let most = 0;
  const begun: number[] = [];
  await eachLimited([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 3, async (i) => {
    begun.push(i);
    running++;
    most = Math.max(most, running);
    await tick(5 + (i % 3));
    running--;
  });
  assert.deepEqual(begun, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(most, 3);
  await eachLimited([], 3, () => Promise.reject(new Error('never called')));
});

test('eachLimited: after a failure nothing new begins, the ones under way end, then the first failure is thrown', async () => {
  const begun: number[] = [];
  const ended: number[] = [];
  await assert.rejects(
    eachLimited([1, 2, 3, 4, 5, 6], 2, async (i) => {
      begun.push(i);
      await tick(i === 2 ? 5 : 20);
      if (i === 2) throw new Error('site 2 did not start');
      ended.push(i);
    }),
    /site 2 did not start/,
  );
  assert.deepEqual(begun, [1, 2], 'nothing begun after the failure');
  assert.deepEqual(ended, [1], 'the start under way was waited for');
});
