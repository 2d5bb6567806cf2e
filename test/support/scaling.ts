import type { TestContext } from 'node:test';
import { sleep, type ClusterOptions } from './cluster.ts';
import { dutyCycle } from './duty-cycle.ts';
import { startReadLoad } from './read-load.ts';

/**
 * Test support for reads and readers: a site that can add reader hosts, and its hosts
 * slowed for real under a read-heavy load.
 */

/**
 * `startCluster` options for a site that can scale out: h1 (array-a) primary, h2 (array-b)
 * its standby, `spares` powered off (alternately on array-b and array-a); catalog.db and
 * public/ read-only; a host is slow when its p95 passes `p95Ms` over a 2 s window.
 */
export function scalingOptions(scale: { max: number; stabilization: string }, opts: { p95Ms?: number; spares?: string[] } = {}): ClusterOptions {
  const spares = opts.spares ?? ['h3'];
  return {
    hosts: [
      { name: 'h1', storage: 'array-a', boot: true },
      { name: 'h2', storage: 'array-b', boot: true },
      ...spares.map((name, i) => ({ name, storage: i % 2 === 0 ? ('array-b' as const) : ('array-a' as const), boot: false })),
    ],
    readonly: ['catalog.db', 'public/'],
    health: { probe: { every: '100ms', timeout: '500ms', fall: 2, rise: 1 }, performance: { p95: `${opts.p95Ms ?? 100}ms`, window: '2s' } },
    scale: { max: scale.max, cooldown: '3s', stabilization: scale.stabilization },
  };
}

/**
 * A read-heavy load (120 requests a second, 4 reads a write) for `maxMs`, then after 1.5 s
 * the process groups `pids` stopped 150 ms of every 150 + `runMs` ms; both end at the
 * test's end at the latest. `slowFrom` is when the slowdown began.
 */
export async function slowedUnderReads(t: Pick<TestContext, 'after'>, front: string, pids: number[], opts: { maxMs: number; runMs?: number }) {
  const load = startReadLoad(front, { rate: 120, readsPerWrite: 4, maxMs: opts.maxMs });
  t.after(() => load.stop());
  await sleep(1500);
  const slowFrom = Date.now();
  const slow = dutyCycle(pids, { stopMs: 150, runMs: opts.runMs ?? 150 });
  t.after(() => slow.stop());
  return { load, slow, slowFrom };
}
