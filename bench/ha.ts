/**
 * bench/ha: what losing a controller, a director or etcd members costs, with several
 * controllers sharing their state in a real three-member etcd (Debian's etcd-server)
 * and two directors sharing the front by VRRP (keepalived), each part on its own
 * machine of the namespace rig (test/support/machines.ts).
 *
 *   npm run bench:ha -- [--trials 10] [--ttl 2000] [--loop 250] [--retry 800]
 *                       [--leaders 5] [--directors 10] [--failovers 3] [--only lease,leader,director,failover]
 *
 * Sections, each printed as a table:
 *  - lease: two leader leases on the same key, on loopback; the leader lost by crash
 *    (it stops stepping, key kept) or cut (its only etcd member paused), alternately:
 *    loss → the other holds the lease; and whether the old one stopped acting first.
 *  - leader: three controllers on the rig; the leading one SIGKILLed: kill → another
 *    controller leads (its term began: the state read from etcd, its controller
 *    started). The killed one is started again between trials.
 *  - director: two directors with keepalived; the one holding the front SIGKILLed:
 *    kill → the front answers again (a new connection every 25 ms, 150 ms to connect).
 *  - failover: the primary's power cut through its BMC, kill → first OK answer from
 *    the new primary through the front and the runbook's own figures, with the state
 *    in etcd (three controllers) beside the embedded default (one controller, SQLite)
 *    on the same rig shape, in the same run: the cost etcd adds.
 *
 * Needs root, iproute2, nftables, openipmi, ipmitool, etcd-server, keepalived, curl.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { LeaderLease, checkLeaseTimings } from '../src/controller/leader-lease.ts';
import { EtcdClient } from '../src/state/etcd-client.ts';
import { hasEtcd, startEtcd } from '../test/support/etcd.ts';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { waitUntil } from '../test/support/cluster.ts';
import { frontBack } from '../test/support/front-probe.ts';
import { rigCall, startRigCluster, waitRigServing, type RigCluster } from '../test/support/rig-cluster.ts';
import type { Ev } from '../test/support/views.ts';

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '10' },
    ttl: { type: 'string', default: '2000' },
    loop: { type: 'string', default: '250' },
    retry: { type: 'string', default: '800' },
    leaders: { type: 'string', default: '5' },
    directors: { type: 'string', default: '10' },
    failovers: { type: 'string', default: '3' },
    only: { type: 'string', default: 'lease,leader,director,failover' },
  },
});
const ONLY = new Set(String(values.only).split(','));
const TRIALS = Math.max(1, Math.floor(Number(values.trials)));
const timing = { ttlMs: Number(values.ttl), loopMs: Number(values.loop), retryMs: Number(values.retry) };
const bad = checkLeaseTimings(timing);
if (bad) throw new Error(bad);
if (!hasEtcd()) throw new Error('etcd is not installed: apt-get install etcd-server');

const q = (xs: number[], p: number): string => {
  if (xs.length === 0) return '-';
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!.toFixed(0);
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, withinMs: number, what: string): Promise<number> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > withinMs) throw new Error(`timed out after ${withinMs} ms waiting for ${what}`);
    await sleep(5);
  }
  return performance.now();
}

async function leaseSection(): Promise<void> {
  const etcd = await startEtcd(3);
  const takeover: Record<'crash' | 'cut', number[]> = { crash: [], cut: [] };
  const stoppedBefore: number[] = [];
  let overlaps = 0;
  const stop = async (): Promise<void> => {
    await etcd.stop();
  };
  const onInt = () => {
    stop().then(
      () => process.exit(130),
      () => process.exit(130),
    );
  };
  process.once('SIGINT', onInt);
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
    process.off('SIGINT', onInt);
    await stop();
  }

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
}

// ---------------------------------------------------------------- on the machines rig
/** The controllers' lease on the rig: the same timings as the lease section (--ttl, --loop, --retry). */
/** Failovers back and forth in a row, as bench/machines does: no minimum gap between two of a site (the no-flapping cooldown). */
const NO_GAP = { UNDERSTUDY_FAILOVER_MIN_GAP_MS: '0' };
const LEASE = { ttl: `${timing.ttlMs / 1000}s`, loop: `${timing.loopMs}ms`, retry: `${timing.retryMs}ms` };

async function roleOf(c: RigCluster, n: string): Promise<string | null> {
  try {
    const r = await c.callTo(n, '/v1/status', { timeoutMs: 1000 });
    return r.status === 200 ? ((r.body as { controller?: { role?: string } }).controller?.role ?? null) : null;
  } catch {
    return null;
  }
}

async function leaderSection(c: RigCluster, trials: number): Promise<void> {
  const xs: number[] = [];
  for (let i = 0; i < trials; i++) {
    await waitUntil('a leader', async () => (await c.leader()) !== null, 30_000, 50);
    const leader = (await c.leader())!;
    const others = c.controllers.filter((n) => n !== leader);
    await c.killPart(`controller-${leader}`);
    const at = performance.now();
    let next: string | null = null;
    for (let k = 0; k < 2000 && next === null; k++) {
      for (const n of others) if ((await roleOf(c, n)) === 'leader') next = n;
      if (next === null) await sleep(20);
    }
    if (next === null) throw new Error('no controller led after the leader was killed');
    xs.push(performance.now() - at);
    c.startPart(`controller-${leader}`);
    await waitUntil(`${leader} follows again`, async () => (await roleOf(c, leader)) === 'follower', 30_000, 100);
    await waitRigServing(c);
    await sleep(1000);
  }
  console.log(`\nleader loss on the rig: three controllers, etcd ×3, ttl ${LEASE.ttl}, loop ${LEASE.loop}, retry ${LEASE.retry}, ${trials} trials`);
  console.log('| leader SIGKILLed → another controller leads (its term began) | p50 | p95 | max |');
  console.log('|---|---:|---:|---:|');
  console.log(`| ${xs.length} trials | ${q(xs, 0.5)} ms | ${q(xs, 0.95)} ms | ${q(xs, 1)} ms |`);
  console.log('target (leader takeover): p95 ≤ 3000 ms');
}

async function directorSection(c: RigCluster, trials: number): Promise<void> {
  const xs: number[] = [];
  for (let i = 0; i < trials; i++) {
    await waitUntil('a director holds the front', async () => c.frontHolder() !== null, 30_000, 50);
    const holder = c.frontHolder()!;
    await c.killPart(`director-${holder}`);
    const at = Date.now();
    xs.push(await frontBack(`${c.front}/api/products`, at));
    c.startPart(`director-${holder}`);
    await waitUntil(
      `${holder} ready again`,
      async () => (await rigCall(`http://${c.rig.address(holder)}:7071/v1/ready`, { timeoutMs: 500 }).catch(() => null))?.status === 200,
      30_000,
      100,
    );
    await sleep(1500);
  }
  console.log(`\ndirector loss on the rig: two directors, keepalived (VRRP v3, adverts every 200 ms, director-ready.sh every 200 ms), ${trials} trials`);
  console.log('| director holding the front SIGKILLed → the front answers again | p50 | p95 | max |');
  console.log('|---|---:|---:|---:|');
  console.log(`| ${xs.length} trials | ${q(xs, 0.5)} ms | ${q(xs, 0.95)} ms | ${q(xs, 1)} ms |`);
  console.log('target (front back): p95 ≤ 2000 ms');
}

interface FailoverFigures {
  firstOk: number[];
  detection: number[];
  servingAgain: number[];
}

async function failovers(c: RigCluster, trials: number): Promise<FailoverFigures> {
  const out: FailoverFigures = { firstOk: [], detection: [], servingAgain: [] };
  const pw = path.join(c.dir, 'bmc-password');
  for (let i = 0; i < trials; i++) {
    const st = await waitRigServing(c);
    const from = st.sites[0]!.primary.host;
    const to = from === 'h1' ? 'h2' : 'h1';
    const events = async () => ((await c.call('/v1/events?limit=5000')).body as { events: Ev[] }).events;
    const before = (await events()).filter((e) => e.kind === 'failover-complete').length;
    execFileSync('ipmitool', ['-I', 'lanplus', '-H', c.rig.bmcAddress(from), '-U', 'admin', '-f', pw, '-C', '3', 'chassis', 'power', 'off']);
    const at = Date.now();
    out.firstOk.push(await frontBack(`${c.front}/api/products`, at, { withinMs: 60_000, servedBy: `${c.hostAddress(to)}:` }));
    await waitUntil('the failover recorded', async () => (await events()).filter((e) => e.kind === 'failover-complete').length > before, 30_000, 100);
    const done = (await events()).filter((e) => e.kind === 'failover-complete').at(-1)!;
    out.detection.push(Number(done.data.detectionMs));
    out.servingAgain.push(Number(done.data.servingAgainMs));
    const on = await c.call(`/v1/hosts/${from}/power`, { method: 'POST', body: { action: 'on' } });
    if (on.status !== 200) throw new Error(`power on ${from}: ${on.status} ${JSON.stringify(on.body)}`);
    await waitRigServing(c, to);
    await sleep(1000);
  }
  return out;
}

async function failoverSection(etcdRig: RigCluster, trials: number): Promise<void> {
  const withEtcd = await failovers(etcdRig, trials);
  etcdRig.stop();
  const embedded = await startRigCluster({ replication: 'async', directors: ['da', 'db'], env: NO_GAP });
  let plain: FailoverFigures;
  try {
    plain = await failovers(embedded, trials);
  } finally {
    embedded.stop();
  }
  console.log(`\ncrash failover on the rig (primary's power cut through its BMC), ${trials} trials each`);
  console.log('| state | kill → first OK from the new primary p50 | p95 | detection p50 | serving again (runbook) p50 | p95 |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [name, f] of [
    ['embedded (one controller, SQLite)', plain],
    ['etcd ×3 (three controllers, leader lease)', withEtcd],
  ] as const)
    console.log(
      `| ${name} | ${q(f.firstOk, 0.5)} ms | ${q(f.firstOk, 0.95)} ms | ${q(f.detection, 0.5)} ms | ${q(f.servingAgain, 0.5)} ms | ${q(f.servingAgain, 0.95)} ms |`,
    );
  const cost = Number(q(withEtcd.firstOk, 0.5)) - Number(q(plain.firstOk, 0.5));
  console.log(`the cost etcd adds (p50 of kill → first OK): ${cost.toFixed(0)} ms`);
}

if (ONLY.has('lease')) await leaseSection();
if (ONLY.has('leader') || ONLY.has('director') || ONLY.has('failover')) {
  const c = await startRigCluster({ replication: 'async', controllers: ['c1', 'c2', 'c3'], directors: ['da', 'db'], lease: LEASE, env: NO_GAP });
  const onSig = () => {
    c.stop();
    process.exit(130);
  };
  process.once('SIGINT', onSig);
  try {
    await waitRigServing(c, 'h1');
    if (ONLY.has('director')) await directorSection(c, Math.max(1, Number(values.directors)));
    if (ONLY.has('leader')) await leaderSection(c, Math.max(1, Number(values.leaders)));
    if (ONLY.has('failover')) await failoverSection(c, Math.max(1, Number(values.failovers)));
  } finally {
    c.stop();
  }
}
