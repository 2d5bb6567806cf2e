/**
 * bench/failover: crash failovers under a steady load of orders and reads, on
 * real processes. Prints detection time, time from the kill to the first
 * successful request through the director (p50, p95, max), orders lost, and the
 * replication lag (p50, p99) sampled under the load — for warm standbys (the
 * target host already powered) and cold ones (the target must be booted).
 *
 *   npm run bench:failover -- [--warm 20] [--cold 5] [--sync]
 */
import { api, http, sleep, startCluster, waitUntil, type Cluster } from '../test/support/cluster.ts';
import { missingOrders, startLoad } from '../test/support/load.ts';
import { background } from '../src/shared/background.ts';
import type { Status, Ev } from '../test/support/views.ts';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const WARM = arg('warm', 20);
const COLD = arg('cold', 5);
const REPLICATION = (args.includes('--sync') ? 'sync' : 'async') as 'async' | 'sync';

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function trial(cluster: Cluster, load: ReturnType<typeof startLoad>, cold: boolean, lastEventId: number) {
  let st = await api<Status>(cluster, '/v1/status');
  try {
    await waitUntil(
      'replication streaming',
      async () => {
        st = await api<Status>(cluster, '/v1/status');
        return st.sites[0]!.state === 'serving' && st.sites[0]!.replication.state === 'streaming';
      },
      60_000,
      50,
    );
  } catch (e) {
    // What the site and the controller said, for whoever reads why the bench stopped.
    const { events } = await api<{ events: Ev[] }>(cluster, `/v1/events?after=${lastEventId}`);
    throw new Error(
      `${(e as Error).message}: site ${JSON.stringify(st.sites[0])}; hosts ${JSON.stringify(st.hosts.map((h) => [h.name, h.power]))}; events since the last trial: ${events.map((x) => `${x.kind}: ${x.message}`).join(' | ')}`,
      { cause: e },
    );
  }
  const primary = st.sites[0]!.primary;
  const replicaStorage = st.sites[0]!.replication.to!;
  if (cold) {
    for (const h of st.hosts.filter((x) => x.storage === replicaStorage && x.power === 'on' && x.name !== primary.host)) {
      await api(cluster, `/v1/hosts/${h.name}/power`, { action: 'off' });
    }
  }
  await sleep(700);
  const pid = st.hosts.find((h) => h.name === primary.host)!.pid!;
  const killAt = Date.now();
  process.kill(-pid, 'SIGKILL');
  const done = await waitUntil(
    'failover-complete',
    async () => {
      const { events } = await api<{ events: Ev[] }>(cluster, `/v1/events?after=${lastEventId}`);
      const detected = events.find((e) => e.kind === 'failure-detected');
      const complete = events.find((e) => e.kind === 'failover-complete' || e.kind === 'failover-failed' || e.kind === 'failover-blocked');
      return detected && complete ? { detected, complete, lastId: events[events.length - 1]!.id } : null;
    },
    60_000,
    50,
  );
  if (done.complete.kind !== 'failover-complete') throw new Error(`failover did not complete: ${JSON.stringify(done.complete)}`);
  const firstOk = await waitUntil(
    'a served answer from the new primary',
    async () => {
      const a = load.result.answers.find((x) => x.ok && x.at > killAt && x.servedBy && !x.servedBy.startsWith(`${primary.address}:`));
      return a ?? null;
    },
    30_000,
    20,
  );
  // The old host comes back as a warm spare for the next trial (its agent answering).
  const back = [primary.host, ...(cold ? st.hosts.filter((x) => x.storage === replicaStorage && x.name !== primary.host).map((x) => x.name) : [])];
  for (const h of back) {
    await api(cluster, `/v1/hosts/${h}/power`, { action: 'on' });
    const address = st.hosts.find((x) => x.name === h)!.address;
    await waitUntil(`the agent of ${h}`, async () => (await http(`http://${address}:7001/healthz`, { timeoutMs: 500 })).status === 200, 20_000, 50);
  }
  return {
    detectionMs: Number(done.detected.data.detectedAt) - killAt,
    servingMs: firstOk.at - killAt,
    lagAtKill: Number(done.complete.data.replicationLagMsAtFailure ?? NaN),
    lastId: done.lastId,
  };
}

async function main(): Promise<void> {
  const cluster = await startCluster({
    slot: 15,
    replication: REPLICATION,
    hosts: [
      { name: 'h1', storage: 'array-a', boot: true },
      { name: 'h2', storage: 'array-b', boot: true },
      { name: 'h3', storage: 'array-a', boot: true },
      { name: 'h4', storage: 'array-b', boot: true },
    ],
    env: { UNDERSTUDY_FAILOVER_MIN_GAP_MS: '0' },
  });
  const stopAll: (() => Promise<unknown>)[] = [() => cluster.stop()];
  process.on('SIGINT', () => {
    background(Promise.all(stopAll.map((f) => f())).then(() => process.exit(130)));
  });
  try {
    const load = startLoad(cluster.front, { workers: 4, maxMs: 30 * 60_000, maxRequests: 2_000_000 });
    stopAll.unshift(() => load.stop());
    const lags: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const st = await api<Status>(cluster, '/v1/status').catch(() => null);
        const lag = st?.sites[0]?.replication.lagMs;
        if (st?.sites[0]?.replication.state === 'streaming' && typeof lag === 'number') lags.push(lag);
        await sleep(100);
      }
    })();
    const rows: { kind: string; detection: number[]; serving: number[]; lagAtKill: number[] }[] = [];
    let lastId = 0;
    for (const [kind, n] of [
      ['warm', WARM],
      ['cold', COLD],
    ] as const) {
      const row = { kind, detection: [] as number[], serving: [] as number[], lagAtKill: [] as number[] };
      for (let i = 0; i < n; i++) {
        const r = await trial(cluster, load, kind === 'cold', lastId);
        lastId = r.lastId;
        row.detection.push(r.detectionMs);
        row.serving.push(r.servingMs);
        row.lagAtKill.push(r.lagAtKill);
        process.stderr.write(
          `${kind} #${i + 1}: detection ${r.detectionMs} ms, serving again ${r.servingMs} ms after the kill, lag at kill ${r.lagAtKill} ms\n`,
        );
      }
      rows.push(row);
    }
    sampling = false;
    await sampler;
    const result = await load.stop();
    await sleep(500);
    const missing = await missingOrders(cluster.front, result.acked);
    const fmt = (xs: number[]) =>
      `${pct(xs, 50).toFixed(0).padStart(6)} ${pct(xs, 95).toFixed(0).padStart(6)} ${Math.max(...xs)
        .toFixed(0)
        .padStart(6)}`;
    console.log(`\nbench/failover — crash failovers (SIGKILL of the primary host's process group) under load, ${REPLICATION} replication, loopback`);
    console.log('standby  trials  detection ms (p50 p95 max)   kill → first OK request ms (p50 p95 max)');
    for (const r of rows) console.log(`${r.kind.padEnd(8)} ${String(r.detection.length).padStart(6)}  ${fmt(r.detection)}                ${fmt(r.serving)}`);
    const by503 = result.postsFailed.filter((f) => f.status === 503).length;
    console.log(
      `\norders acknowledged: ${result.acked.length}; lost: ${missing.length}; POSTs not acknowledged: ${result.postsFailed.length} (answered 503 + Retry-After: ${by503}, other: ${result.postsFailed.length - by503}); GETs ok: ${result.getsOk}, failed: ${result.getsFailed.length}`,
    );
    console.log(
      `replication lag under load (sampled every 100 ms, n=${lags.length}): p50 ${pct(lags, 50)} ms, p99 ${pct(lags, 99)} ms; lag at the kill p50 ${pct(
        rows.flatMap((r) => r.lagAtKill),
        50,
      )} ms, max ${Math.max(...rows.flatMap((r) => r.lagAtKill))} ms`,
    );
  } finally {
    for (const f of stopAll) await f().catch(() => undefined);
  }
}

await main();
