/**
 * bench/switchover: planned switchovers back and forth under a steady load of
 * orders and reads. Prints, per run: failed requests of any kind, orders lost,
 * and how long the director held requests during each switchover (p50, p95, max).
 *
 *   npm run bench:switchover -- [--count 10] [--replication async|sync]
 */
import { api, sleep, startCluster, waitUntil, type Cluster } from '../test/support/cluster.ts';
import { missingOrders, startLoad } from '../test/support/load.ts';
import type { Status, Ev } from '../test/support/views.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const COUNT = Number(opt('count', '10'));
const REPLICATION = opt('replication', 'async') as 'async' | 'sync';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

async function streaming(cluster: Cluster): Promise<Status> {
  return waitUntil(
    'streaming',
    async () => {
      const st = await api<Status>(cluster, '/v1/status');
      return st.sites[0]!.state === 'serving' && st.sites[0]!.replication.state === 'streaming' ? st : null;
    },
    60_000,
    50,
  );
}

async function main(): Promise<void> {
  const cluster = await startCluster({
    slot: 16,
    replication: REPLICATION,
    hosts: [
      { name: 'h1', storage: 'array-a', boot: true },
      { name: 'h2', storage: 'array-b', boot: true },
    ],
  });
  try {
    await streaming(cluster);
    const load = startLoad(cluster.front, { workers: 4, maxMs: 15 * 60_000 });
    await sleep(1000);
    const held: number[] = [];
    const total: number[] = [];
    for (let i = 0; i < COUNT; i++) {
      const st = await streaming(cluster);
      const to = st.sites[0]!.primary.host === 'h1' ? 'h2' : 'h1';
      const t0 = Date.now();
      const r = await api<{ status: string; runbook: number }>(cluster, '/v1/sites/shop/switchover', { to });
      total.push(Date.now() - t0);
      if (r.status !== 'done') throw new Error(`switchover ${i + 1} ended ${r.status}`);
      const { events } = await api<{ events: Ev[] }>(cluster, '/v1/events?limit=5000');
      const done = events.filter((e) => e.kind === 'switchover-complete').pop()!;
      held.push(Number(done.data.heldMs));
      process.stderr.write(`switchover ${i + 1} → ${to}: held ${String(done.data.heldMs)} ms, runbook ${Date.now() - t0} ms\n`);
      await sleep(700);
    }
    const result = await load.stop();
    const missing = await missingOrders(cluster.front, result.acked);
    console.log(
      `\nbench/switchover — ${COUNT} planned switchovers under load (4 clients: POST /api/orders + GET /api/products), ${REPLICATION} replication, loopback`,
    );
    console.log('requests held ms (p50 p95 max)   switchover ms (p50 p95 max)   failed POSTs  failed GETs  orders acked  orders lost');
    console.log(
      `${pct(held, 50).toFixed(0).padStart(6)} ${pct(held, 95).toFixed(0).padStart(6)} ${Math.max(...held)
        .toFixed(0)
        .padStart(6)}          ${pct(total, 50).toFixed(0).padStart(6)} ${pct(total, 95).toFixed(0).padStart(6)} ${Math.max(...total)
        .toFixed(0)
        .padStart(
          6,
        )}          ${String(result.postsFailed.length).padStart(6)}       ${String(result.getsFailed.length).padStart(6)}       ${String(result.acked.length).padStart(7)}      ${String(missing.length).padStart(6)}`,
    );
  } finally {
    await cluster.stop();
  }
}

await main();
