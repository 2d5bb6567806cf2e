/**
 * bench/machines: crash failovers with every part on its own machine (the namespace
 * rig of test/support/machines.ts: hosts, storage nodes, director and controller
 * each alone in a network namespace, hosts fenced through ipmi_sim BMCs over the
 * management network), beside the same on the embedded default (`understudy up`,
 * process groups, loopback) in the same run. Each round crashes the primary's
 * machine (every process in it SIGKILLed; embedded: its process group) under a
 * steady load, then powers the old host on again (through its BMC on the rig) as
 * the next target. Prints detection, the fence's own time (power off confirmed),
 * and kill → first OK request through the director: p50, p95, max.
 *
 *   npm run bench:machines -- [--rounds 20] [--sync]
 *
 * Needs root, iproute2, nftables, openipmi (ipmi_sim) and ipmitool.
 */
import { http, sleep, startCluster, waitUntil, type HttpAnswer } from '../test/support/cluster.ts';
import { missingOrders, startLoad } from '../test/support/load.ts';
import { rigCall, startRigCluster } from '../test/support/rig-cluster.ts';
import type { Status, Ev, Runbook } from '../test/support/views.ts';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const ROUNDS = arg('rounds', 20);
const REPLICATION = (args.includes('--sync') ? 'sync' : 'async') as 'async' | 'sync';
/** The embedded comparison's loopback slot (ports 26600…). */
const SLOT = 66;

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function get<T>(s: Setup, p: string): Promise<T> {
  const r = await s.call(p);
  if (r.status >= 400) throw new Error(`${p}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as T;
}

interface Setup {
  name: string;
  /** A call to the controller's API (with its token where it has one). */
  call(p: string, init?: { method?: string; body?: unknown; timeoutMs?: number }): Promise<HttpAnswer>;
  front: string;
  /** Crashes the host for real. */
  crash(st: Status, host: string): void;
  /** The old host's agent answers again. */
  agentUp(host: string, address: string): Promise<boolean>;
}

interface Row {
  detection: number[];
  fence: number[];
  serving: number[];
  acked: number;
  lost: number;
  notAcked: number;
}

async function rounds(s: Setup, n: number): Promise<Row> {
  const row: Row = { detection: [], fence: [], serving: [], acked: 0, lost: 0, notAcked: 0 };
  const load = startLoad(s.front, { workers: 4, maxMs: 20 * 60_000, maxRequests: 2_000_000 });
  try {
    let lastId = 0;
    for (let i = 0; i < n; i++) {
      const st = await waitUntil(
        'serving and streaming',
        async () => {
          const x = await get<Status>(s, `/v1/status`);
          return x.sites[0]!.state === 'serving' && x.sites[0]!.replication.state === 'streaming' ? x : null;
        },
        60_000,
        50,
      );
      await sleep(700);
      const primary = st.sites[0]!.primary;
      const killAt = Date.now();
      s.crash(st, primary.host);
      const done = await waitUntil(
        'failover-complete',
        async () => {
          const { events } = await get<{ events: Ev[] }>(s, `/v1/events?after=${lastId}`);
          const detected = events.find((e) => e.kind === 'failure-detected');
          const complete = events.find((e) => e.kind === 'failover-complete' || e.kind === 'failover-failed' || e.kind === 'failover-blocked');
          return detected && complete ? { detected, complete, lastId: events[events.length - 1]!.id } : null;
        },
        60_000,
        50,
      );
      if (done.complete.kind !== 'failover-complete') throw new Error(`${s.name}: failover did not complete: ${JSON.stringify(done.complete)}`);
      lastId = done.lastId;
      const firstOk = await waitUntil(
        'a served answer from the new primary',
        async () => load.result.answers.find((x) => x.ok && x.at > killAt && x.servedBy && !x.servedBy.startsWith(`${primary.address}:`)) ?? null,
        30_000,
        20,
      );
      const { runbooks } = await get<{ runbooks: Runbook[] }>(s, `/v1/runbooks?site=shop`);
      const fence = runbooks
        .filter((r) => r.kind === 'failover')
        .at(-1)!
        .journal.find((j) => j.step === 'fence' && j.phase === 'end')!;
      const r = { detection: Number(done.detected.data.detectedAt) - killAt, fence: Number(fence.data.ms ?? NaN), serving: firstOk.at - killAt };
      row.detection.push(r.detection);
      row.fence.push(r.fence);
      row.serving.push(r.serving);
      process.stderr.write(`${s.name} #${i + 1}: detection ${r.detection} ms, fence ${r.fence} ms, serving again ${r.serving} ms after the kill\n`);
      // The old host comes back, powered through its relay, as the next round's target.
      const on = await s.call(`/v1/hosts/${primary.host}/power`, { method: 'POST', body: { action: 'on' } });
      if (on.status !== 200) throw new Error(`power on ${primary.host}: ${on.status} ${JSON.stringify(on.body)}`);
      await waitUntil(`the agent of ${primary.host}`, () => s.agentUp(primary.host, primary.address), 20_000, 50);
    }
  } finally {
    const result = await load.stop();
    await sleep(500);
    row.acked = result.acked.length;
    row.lost = (await missingOrders(s.front, result.acked)).length;
    row.notAcked = result.postsFailed.length;
  }
  return row;
}

async function main(): Promise<void> {
  const out: [string, Row][] = [];
  const rig = await startRigCluster({ replication: REPLICATION, env: { UNDERSTUDY_FAILOVER_MIN_GAP_MS: '0' } });
  try {
    out.push([
      'machines (rig, IPMI)',
      await rounds(
        {
          name: 'rig',
          call: rig.call,
          front: rig.front,
          crash: (_st, host) => rig.rig.killAll(rig.rig.ns(host)),
          agentUp: async (_h, address) => (await rigCall(`https://${address}:7001/healthz`, { timeoutMs: 500 })).status === 200,
        },
        ROUNDS,
      ),
    ]);
  } finally {
    rig.stop();
  }
  const cluster = await startCluster({
    slot: SLOT,
    replication: REPLICATION,
    hosts: [
      { name: 'h1', storage: 'array-a', boot: true },
      { name: 'h2', storage: 'array-b', boot: true },
    ],
    env: { UNDERSTUDY_FAILOVER_MIN_GAP_MS: '0' },
  });
  try {
    out.push([
      'embedded (up, local)',
      await rounds(
        {
          name: 'embedded',
          call: (p, init) => http(`${cluster.api}${p}`, init),
          front: cluster.front,
          crash: (st, host) => process.kill(-st.hosts.find((h) => h.name === host)!.pid!, 'SIGKILL'),
          agentUp: async (_h, address) => (await http(`http://${address}:7001/healthz`, { timeoutMs: 500 })).status === 200,
        },
        ROUNDS,
      ),
    ]);
  } finally {
    await cluster.stop();
  }
  const fmt = (xs: number[]) =>
    `${pct(xs, 50).toFixed(0).padStart(5)} ${pct(xs, 95).toFixed(0).padStart(5)} ${Math.max(...xs)
      .toFixed(0)
      .padStart(5)}`;
  console.log(`\nbench/machines — ${ROUNDS} crash failovers each, ${REPLICATION} replication, under load (4 workers)`);
  console.log('setup                  detection ms        fence ms            kill → first OK ms   orders acked/lost');
  console.log('                       p50   p95   max     p50   p95   max     p50   p95   max');
  for (const [name, r] of out) {
    console.log(`${name.padEnd(22)} ${fmt(r.detection)}   ${fmt(r.fence)}   ${fmt(r.serving)}    ${r.acked}/${r.lost}`);
  }
  const rigRow = out[0]![1];
  console.log(`\ntarget: p95 kill → first OK ≤ 1000 ms on the rig: ${pct(rigRow.serving, 95) <= 1000 ? 'met' : 'NOT met'} (${pct(rigRow.serving, 95)} ms)`);
}

await main();
