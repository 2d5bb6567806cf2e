import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loopBudget } from '../../../src/shared/loop-budget.ts';

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    /* a site's share of a pass */
  }
}

test('a long pass that awaits its budget lets timers run in between; one that never waits holds them all', async () => {
  const pass = async (withBudget: boolean) => {
    let turns = 0;
    const timer = setInterval(() => turns++, 5);
    const spent = loopBudget(20);
    for (let i = 0; i < 200; i++) {
      busy(1);
      if (withBudget) await spent();
      else await Promise.resolve(); // awaiting something ready gives no turn to timers
    }
    clearInterval(timer);
    return turns;
  };
  const held = await pass(false);
  const shared = await pass(true);
  assert.equal(held, 0, 'without the budget the loop is held for the whole pass');
  assert.ok(shared >= 5, `with it, timers ran ${shared} times during a 200 ms pass`);
});
