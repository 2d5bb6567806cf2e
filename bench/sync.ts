/**
 * What sync replication costs a write: POST /api/orders through the director, in
 * async and in sync mode, side by side in one run.
 *
 *   node --import tsx bench/sync.ts [--seconds 8] [--concurrency 8] [--storage in-process|processes]
 *
 * Starts (loopback only) two storage processors (in this process by default, or one
 * child process each), the real demo shop as a child process on the primary volume,
 * and the built-in director in this process (with the load generator); replicates
 * array-a → array-b; then runs each mode for --seconds with --concurrency clients
 * after a 1 s warm-up, and prints p50/p99 latency and orders/s, plus the director's own
 * barrier wait. Stops everything it started, also on Ctrl-C. Target: sync adds ≤ 2 ms
 * at p50. Run it on a quiet machine (check `uptime`).
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import type { RouteTable } from '../src/shared/contracts.ts';
import { startSyncStack, type SyncStack } from '../test/unit/director/sync-fixture.ts';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '8' },
  concurrency: { type: 'string', default: '8' },
  /** in-process: both storage processors share this process; processes: one child each. */
  storage: { type: 'string', default: 'in-process' },
} });
if (values.storage !== 'in-process' && values.storage !== 'processes') throw new Error('--storage must be in-process or processes');
const STORAGE: 'in-process' | 'processes' = values.storage;
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);

interface Result { mode: string; n: number; errors: number; p50: number; p99: number; rate: number; barrierP50: number | null }

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function run(stack: SyncStack, pool: Pool, mode: string, sync: RouteTable['sync']): Promise<Result> {
  await stack.setSync(sync);
  const body = JSON.stringify({ customer: 'bench', items: [{ productId: 1, qty: 1 }, { productId: 3, qty: 2 }] });
  const one = async (): Promise<number> => {
    const t0 = performance.now();
    const res = await pool.request({ path: '/api/orders', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    await res.body.dump();
    if (res.statusCode !== 201) throw new Error(`status ${res.statusCode}`);
    return performance.now() - t0;
  };
  const phase = async (ms: number, record: boolean): Promise<{ lat: number[]; errors: number; elapsed: number }> => {
    const lat: number[] = [];
    let errors = 0;
    const t0 = performance.now();
    const until = t0 + ms;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        try { const l = await one(); if (record) lat.push(l); } catch { errors++; }
      }
    }));
    return { lat, errors, elapsed: performance.now() - t0 };
  };
  await phase(1000, false);
  const before = stack.director.stats().find((s) => s.site === 'shop')!.sync!;
  const { lat, errors, elapsed } = await phase(SECONDS * 1000, true);
  const after = stack.director.stats().find((s) => s.site === 'shop')!.sync!;
  lat.sort((a, b) => a - b);
  return {
    mode, n: lat.length, errors, p50: pct(lat, 50), p99: pct(lat, 99), rate: lat.length / (elapsed / 1000),
    // The director's window covers the last ~10 s: close enough to this phase.
    barrierP50: after.waits > before.waits ? after.latencyMs.p50 : null,
  };
}

async function main(): Promise<void> {
  const stack = await startSyncStack({ sync: null, storage: STORAGE });
  const pool = new Pool(stack.front, { connections: CONCURRENCY, pipelining: 1 });
  const stopAll = async (): Promise<void> => { await pool.destroy().catch(() => undefined); await stack.stop(); };
  process.once('SIGINT', () => { void stopAll().then(() => process.exit(130)); });
  try {
    const results: Result[] = [];
    results.push(await run(stack, pool, 'async', null));
    results.push(await run(stack, pool, 'sync', { storageUrl: stack.urlA, onReplicaLost: 'degrade', timeoutMs: 2000 }));
    const vol = await stack.volumeStatus();
    const f = (x: number): string => x.toFixed(2).padStart(8);
    console.log(`\nPOST /api/orders through the director, ${CONCURRENCY} concurrent, ${SECONDS} s per mode (loopback; shop synchronous=FULL; storage ${STORAGE})\n`);
    console.log('mode     orders   errors   p50 ms   p99 ms   orders/s   barrier p50 ms');
    for (const r of results) {
      console.log(`${r.mode.padEnd(6)} ${String(r.n).padStart(8)} ${String(r.errors).padStart(8)} ${f(r.p50)} ${f(r.p99)} ${r.rate.toFixed(0).padStart(10)} ${r.barrierP50 === null ? '               -' : f(r.barrierP50).padStart(16)}`);
    }
    const [a, s] = results as [Result, Result];
    console.log(`\nsync adds ${(s.p50 - a.p50).toFixed(2)} ms at p50, ${(s.p99 - a.p99).toFixed(2)} ms at p99; throughput ${((s.rate / a.rate - 1) * 100).toFixed(0)} %; volume sync state: ${vol.sync?.state ?? '-'}`);
  } finally {
    await stopAll();
  }
}

await main();
