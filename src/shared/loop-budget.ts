import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * For a pass over many sites that mostly finds nothing to do, and so runs without
 * ever waiting: call the returned function after each site (`await spent()`); once
 * `budgetMs` of work went by since the last time, it gives the event loop a turn, so
 * that probes' answers, timers and API calls are served in between. Without it a pass
 * over a thousand sites holds the loop for a second, and probe timeouts fire late.
 */
export function loopBudget(budgetMs = 20): () => Promise<void> | undefined {
  let since = performance.now();
  return () => {
    if (performance.now() - since < budgetMs) return undefined;
    return nextTurn().then(() => {
      since = performance.now();
    });
  };
}
