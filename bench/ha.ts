/**
 * bench/ha: how long the controllers are without a leader when theirs is lost, with the
 * leader lease (src/controller/leader-lease.ts) on a real three-member etcd (Debian's
 * etcd-server), on loopback.
 *
 *   npm run bench:ha -- [--trials 10] [--ttl 2000] [--loop 250] [--retry 800]
 *
 * Each trial: two controllers' leases step on the same key; the leader is then lost in
 * one of two ways, alternately:
 *  - crash: it stops stepping without giving the key up (a SIGKILLed controller);
 *  - cut: its only etcd member is paused (SIGSTOP), as a network cut would.
 * Printed: from the loss to the other holding the lease (p50, p95, max), and for a cut
 * also when the old leader stopped acting: never after the new one began.
 *
 * What this does not measure yet: the whole of a controller taking over (its state is
 * still one SQLite file; no controller runs the lease), a director's loss, and the cost
 * etcd adds to a failover: the issue's other figures.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { LeaderLease, checkLeaseTimings } from '../src/controller/leader-lease.ts';
import { EtcdClient } from '../src/state/etcd-client.ts';
import { hasEtcd, startEtcd } from '../test/support/etcd.ts';

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '10' },
    ttl: { type: 'string', default: '2000' },
    loop: { type: 'string', default: '250' },
    retry: { type: 'string', default: '800' },
  },
});
const TRIALS = Math.max(1, Math.floor(Number(values.trials)));
const timing = { ttlMs: Number(values.ttl), loopMs: Number(values.loop), retryMs: Number(values.retry) };
const bad = checkLeaseTimings(timing);
if (bad) throw new Error(bad);
if (!hasEtcd()) throw new Error('etcd is not installed: apt-get install etcd-server');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, withinMs: number, what: string): Promise<number> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > withinMs) throw new Error(`timed out after ${withinMs} ms waiting for ${what}`);
    await sleep(5);
  }
  return performance.now();
}

const etcd = await startEtcd(3);
const takeover: Record<'crash' | 'cut', number[]> = { crash: [], cut: [] };
const stoppedBefore: number[] = [];
let overlaps = 0;
const stop = async (): Promise<void> => {
  await etcd.stop();
};
process.once('SIGINT', () => {
  stop().then(
    () => process.exit(130),
    () => process.exit(130),
  );
});
try {
  for (let i = 0; i < TRIALS; i++) {
    const kind: 'crash' | 'cut' = i % 2 === 0 ? 'crash' : 'cut';
    const key = `/understudy/bench-ha/${i}/leader`;
    // The leader reaches etcd through member m1 only, the other through m2 and m3.
    const aClient = new EtcdClient([etcd.endpoints[0]!], timing.retryMs);
    const bClient = new EtcdClient(etcd.endpoints.slice(1), timing.retryMs);
    const a = new LeaderLease({ client: aClient, key, name: 'ctl-a', ...timing });
    const b = new LeaderLease({ client: bClient, key, name: 'ctl-b', ...timing });
    a.start();
    await until(() => a.holds(), 10_000, 'the first leader');
    b.start();
    await sleep(timing.loopMs * 3);
    const lostAt = performance.now();
    if (kind === 'crash') await a.stop(false);
    else etcd.pause(0);
    let aStoppedAt = a.holds() ? 0 : lostAt;
    const bLeads = await until(
      () => {
        if (aStoppedAt === 0 && !a.holds()) aStoppedAt = performance.now();
        return b.holds();
      },
      timing.ttlMs * 4 + 10_000,
      'the new leader',
    );
    if (aStoppedAt === 0 || aStoppedAt > bLeads) overlaps++;
    takeover[kind].push(bLeads - lostAt);
    if (kind === 'cut') stoppedBefore.push(bLeads - aStoppedAt);
    await a.stop(false);
    await b.stop(true);
    if (kind === 'cut') etcd.resume(0);
    await aClient.close();
    await bClient.close();
    await sleep(1000); // m1 catches up
  }
} finally {
  await stop();
}

const q = (xs: number[], p: number): string => {
  if (xs.length === 0) return '-';
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!.toFixed(0);
};
console.log(`leader lease on a three-member etcd (loopback), ttl ${timing.ttlMs} ms, loop ${timing.loopMs} ms, retry ${timing.retryMs} ms, ${TRIALS} trials`);
console.log('| leader lost by | trials | loss → new leader p50 | p95 | max |');
console.log('|---|---:|---:|---:|---:|');
for (const kind of ['crash', 'cut'] as const) {
  const xs = takeover[kind];
  console.log(
    `| ${kind === 'crash' ? 'crash (no renewal, key kept)' : 'cut from etcd (its member paused)'} | ${xs.length} | ${q(xs, 0.5)} ms | ${q(xs, 0.95)} ms | ${q(xs, 1)} ms |`,
  );
}
console.log(
  `cut: the old leader stopped acting ${q(stoppedBefore, 0.5)} ms (p50) before the new one began (min ${stoppedBefore.length ? Math.min(...stoppedBefore).toFixed(0) : '-'} ms); two leaders at once: ${overlaps}`,
);
console.log('target (leader takeover): p95 ≤ 3000 ms');
