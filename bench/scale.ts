/**
 * bench/scale: how fast a slowed site gets a reader, and what it does to read latency.
 * Per trial: an open-loop, read-heavy load (200 requests/s, 4 GETs per POST); the
 * primary's process group is slowed (SIGSTOP 150 ms / SIGCONT 150 ms); the time is
 * taken from the threshold breach (the director's recent p95 of the primary first above
 * `health.performance.p95`) to the slowdown event and to the first GET a reader
 * answered; then the slowdown and the load end and the reader is given back before
 * the next trial. Printed as a table, with the p95 of GETs before the slowdown,
 * slowed without a reader, and with the reader.
 *
 * The detector holds a slowdown for `window` + the span of the director's recent p95
 * (1 s) before it acts (a burst shorter than the window is never acted on). The
 * target ("≤ 2 s after the window") is breach→serving ≤ window + 2 s; "after-window"
 * prints breach→serving − window.
 *
 *   npm run bench:scale -- [--trials 3] [--p95 100] [--window 2s]
 */
import { api, ports, sleep, startCluster, waitStreaming, waitUntil, type Cluster } from '../test/support/cluster.ts';
import { dutyCycle } from '../test/support/duty-cycle.ts';
import { p95, startReadLoad, type Sample } from '../test/support/read-load.ts';
import { parseDuration } from '../src/config/duration.ts';
import { RECENT_LATENCY_MS } from '../src/shared/contracts.ts';
import type { Status, Ev } from '../test/support/views.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const TRIALS = Number(opt('trials', '3'));
const THRESHOLD = Number(opt('p95', '100'));
const WINDOW = opt('window', '2s');
const WINDOW_MS = parseDuration(WINDOW)!;
const STATS_WINDOW_MS = RECENT_LATENCY_MS;
const SLOT = 30;

async function events(cluster: Cluster, after = 0): Promise<Ev[]> {
  return (await api<{ events: Ev[] }>(cluster, `/v1/events?limit=5000&after=${after}`)).events;
}

async function primaryP95(): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${ports(SLOT).director}/v1/stats`, { signal: AbortSignal.timeout(1000) });
  const s = (await res.json()) as { sites: { upstreams: { upstream: string; recentLatencyMs: { p95: number; count: number } }[] }[] };
  return Math.max(0, ...s.sites[0]!.upstreams.filter((u) => u.recentLatencyMs.count >= 20).map((u) => u.recentLatencyMs.p95));
}

interface Row {
  trial: number;
  breachToDetected: number;
  detectedToServing: number;
  breachToServing: number;
  afterWindow: number;
  p95Calm: number;
  p95Slow: number;
  p95Reader: number;
  /** The scale-out runbook's steps: name and ms from its start to the step's end. */
  steps: string;
}

/** The newest scale-out runbook's steps, each as `step +ms` from the runbook's first entry to the step's `end`. */
async function scaleOutSteps(cluster: Cluster): Promise<string> {
  const rbs = await api<{ runbooks: { kind: string; id: number; journal: { step: string; phase: string; at: number }[] }[] }>(
    cluster,
    '/v1/runbooks?site=shop',
  );
  const rb = rbs.runbooks.filter((r) => r.kind === 'scale-out').sort((a, b) => b.id - a.id)[0];
  if (!rb || rb.journal.length === 0) return '';
  const t0 = rb.journal[0]!.at;
  return rb.journal
    .filter((j) => j.phase === 'end')
    .map((j) => `${j.step} +${j.at - t0}`)
    .join(', ');
}

async function trial(cluster: Cluster, n: number, readerAddress: string): Promise<Row> {
  const st = await api<Status>(cluster, '/v1/status');
  const pid = st.hosts.find((h) => h.name === 'h1')!.pid!;
  const lastId = (await events(cluster)).at(-1)?.id ?? 0;
  const load = startReadLoad(cluster.front, { rate: 200, readsPerWrite: 4, maxMs: 120_000 });
  try {
    await sleep(4000);
    const calmTo = Date.now();
    const slow = dutyCycle([pid], { stopMs: 150, runMs: 150 });
    let breachAt = 0;
    let firstReaderAt = 0;
    let detectedAt = 0;
    try {
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && (firstReaderAt === 0 || detectedAt === 0)) {
        if (breachAt === 0 && (await primaryP95().catch(() => 0)) > THRESHOLD) breachAt = Date.now();
        if (detectedAt === 0)
          detectedAt = ((await events(cluster, lastId)).find((e) => e.kind === 'slowdown-detected')?.data.detectedAt as number | undefined) ?? 0;
        const r = load.samples.find((s: Sample) => s.method === 'GET' && s.servedBy?.startsWith(`${readerAddress}:`));
        if (r) firstReaderAt = r.at;
        await sleep(50);
      }
      if (!breachAt || !detectedAt || !firstReaderAt) throw new Error(`trial ${n}: breach ${breachAt}, detected ${detectedAt}, reader ${firstReaderAt}`);
      await sleep(4000);
    } finally {
      await slow.stop();
    }
    const steps = await scaleOutSteps(cluster);
    const samples = await load.stop();
    const gets = samples.filter((s) => s.method === 'GET');
    const calm = gets.filter((s) => s.startedAt < calmTo && s.startedAt > calmTo - 3000).map((s) => s.ms);
    const slowed = gets.filter((s) => s.startedAt > breachAt && s.startedAt < firstReaderAt - 500).map((s) => s.ms);
    const withReader = gets.filter((s) => s.startedAt > firstReaderAt + 500).map((s) => s.ms);
    return {
      trial: n,
      breachToDetected: detectedAt - breachAt,
      detectedToServing: firstReaderAt - detectedAt,
      breachToServing: firstReaderAt - breachAt,
      afterWindow: firstReaderAt - breachAt - WINDOW_MS,
      p95Calm: p95(calm),
      p95Slow: p95(slowed),
      p95Reader: p95(withReader),
      steps,
    };
  } finally {
    await load.stop();
    // The reader is given back (stabilization 3 s after the director's window empties).
    await waitUntil('scale-in', async () => (await api<Status>(cluster, '/v1/status')).sites[0]!.readers.length === 0 || null, 60_000, 250);
    await waitUntil(
      'the reader powered off',
      async () => (await api<Status>(cluster, '/v1/status')).hosts.find((h) => h.name === 'h3')!.power === 'off' || null,
      20_000,
      250,
    );
  }
}

async function main(): Promise<void> {
  const cluster = await startCluster({
    slot: SLOT,
    hosts: [
      { name: 'h1', storage: 'array-a', boot: true },
      { name: 'h2', storage: 'array-b', boot: true },
      { name: 'h3', storage: 'array-b', boot: false },
    ],
    readonly: ['catalog.db', 'public/'],
    health: { probe: { every: '100ms', timeout: '500ms', fall: 2, rise: 1 }, performance: { p95: `${THRESHOLD}ms`, window: WINDOW } },
    // A cooldown shorter than a trial, so that every trial may scale out.
    scale: { max: 2, cooldown: '1s', stabilization: '3s' },
  });
  const rows: Row[] = [];
  try {
    await waitStreaming<Status>(cluster);
    const reader = cluster.hostAddress('h3');
    for (let i = 1; i <= TRIALS; i++) {
      rows.push(await trial(cluster, i, reader));
      process.stderr.write(`trial ${i} done\n`);
      await sleep(3000);
    }
  } finally {
    await cluster.stop();
  }
  const f = (x: number): string => String(Math.round(x)).padStart(8);
  console.log(
    `bench/scale: threshold p95 ${THRESHOLD} ms, window ${WINDOW} (detector hold = window + ${STATS_WINDOW_MS / 1000} s recent-p95 span = ${(WINDOW_MS + STATS_WINDOW_MS) / 1000} s), load 200 req/s (4 GET : 1 POST), primary stopped 150 ms of every 300 ms`,
  );
  console.log('trial  breach→detected  detected→serving  breach→serving  after-window GET p95 calm  slowed  with-reader (ms)');
  for (const r of rows)
    console.log(
      `${String(r.trial).padStart(5)}  ${f(r.breachToDetected)}         ${f(r.detectedToServing)}          ${f(r.breachToServing)}        ${f(r.afterWindow)}   ${f(r.p95Calm)}     ${f(r.p95Slow)}  ${f(r.p95Reader)}`,
    );
  for (const r of rows) console.log(`trial ${r.trial} scale-out steps (ms from its start): ${r.steps}`);
  const med = (k: Exclude<keyof Row, 'steps'>): number => {
    const s = rows.map((r) => r[k]).sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)]!;
  };
  console.log(
    `median ${f(med('breachToDetected'))}         ${f(med('detectedToServing'))}          ${f(med('breachToServing'))}        ${f(med('afterWindow'))}   ${f(med('p95Calm'))}     ${f(med('p95Slow'))}  ${f(med('p95Reader'))}`,
  );
}

main().catch((e: Error) => {
  console.error(e.stack ?? e.message);
  process.exit(1);
});
