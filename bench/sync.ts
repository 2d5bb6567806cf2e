/**
 * What sync replication costs a write: POST /api/orders through the director, in
 * async and in sync mode, side by side in one run.
 *
 *   node --import tsx bench/sync.ts [--seconds 8] [--concurrency 8] [--rounds 8] [--storage processes|in-process]
 *
 * Starts (loopback only) two storage processors (one child process each by default, as
 * in production, where each runs on its own storage system; `--storage in-process` puts
 * both on the event loop of the director and the load), the real demo shop as a child
 * process on the primary volume, and the built-in director in this process (with the
 * load generator); replicates array-a → array-b; then runs --concurrency clients for
 * --seconds per mode, after a 1 s warm-up per mode. The time is cut into --rounds rounds
 * per mode, run alternately (async, sync, sync, async, async, …) so that other work on
 * the machine weighs on both modes alike. Prints p50/p99 latency, orders/s, the
 * director's own barrier wait, and the CPU time per order of this process and its
 * children (the shop, the storage processors), in all and by process — what bounds
 * throughput on a small machine. BENCH_PROF=DIR makes each storage processor write a CPU
 * profile there.
 * Stops everything it started, also on Ctrl-C. Target: sync adds ≤ 2 ms at p50. Run it
 * on a quiet machine (check `uptime`).
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import type { RouteTable } from '../src/shared/contracts.ts';
import { startSyncStack } from '../test/unit/director/sync-fixture.ts';
import { background } from '../src/shared/background.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '8' },
    /** processes: one child each (as in production); in-process: both share this process. */
    storage: { type: 'string', default: 'processes' },
  },
});
if (values.storage !== 'in-process' && values.storage !== 'processes') throw new Error('--storage must be in-process or processes');
const STORAGE: 'in-process' | 'processes' = values.storage;
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Math.max(1, Math.floor(Number(values.rounds)));
for (const [k, v] of [
  ['--seconds', SECONDS],
  ['--concurrency', CONCURRENCY],
  ['--rounds', ROUNDS],
] as const) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${k} must be a positive number`);
}

type Mode = 'async' | 'sync';
interface Tally {
  lat: number[];
  errors: number;
  ms: number;
  cpu: Map<string, number>;
  barrierMs: number[];
}
interface Result {
  mode: Mode;
  n: number;
  errors: number;
  p50: number;
  p99: number;
  rate: number;
  barrierP50: number | null;
  cpuPerOrderMs: number;
  cpuByProcess: Map<string, number>;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const TICK_MS = 10; // USER_HZ = 100 on Linux

/** CPU ms used so far by this process and by each live child (the shop, child storage processors), by name. */
function cpuMs(): Map<string, number> {
  const self = process.cpuUsage();
  const out = new Map<string, number>([['bench (director, load)', (self.user + self.system) / 1000]]);
  let pids: string[] = [];
  try {
    pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    /* not Linux */
  }
  for (const pid of pids) {
    let stat: string;
    let cmd: string[];
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[1]) !== process.pid) continue; // field 4: ppid
    const storage = cmd.findIndex((a) => a.endsWith('sync-storage-process.ts'));
    const name = storage >= 0 ? `storage ${cmd[storage + 1] ?? '?'}` : 'shop';
    out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) * TICK_MS); // fields 14, 15: utime, stime
  }
  return out;
}

/** Adds what each process used between two readings of cpuMs() to `into`. */
function addCpu(into: Map<string, number>, from: Map<string, number>, to: Map<string, number>): void {
  for (const [k, v] of to) into.set(k, (into.get(k) ?? 0) + v - (from.get(k) ?? 0));
}

async function main(): Promise<void> {
  const stack = await startSyncStack({ sync: null, storage: STORAGE });
  const pool = new Pool(stack.front, { connections: CONCURRENCY, pipelining: 1 });
  const stopAll = async (): Promise<void> => {
    await pool.destroy().catch(() => undefined);
    await stack.stop();
  };
  process.once('SIGINT', () => {
    background(stopAll().then(() => process.exit(130)));
  });
  const syncRoute: RouteTable['sync'] = { storageUrl: stack.urlA, onReplicaLost: 'degrade', timeoutMs: 2000 };
  const body = JSON.stringify({
    customer: 'bench',
    items: [
      { productId: 1, qty: 1 },
      { productId: 3, qty: 2 },
    ],
  });
  const one = async (): Promise<number> => {
    const t0 = performance.now();
    const res = await pool.request({ path: '/api/orders', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    await res.body.dump();
    if (res.statusCode !== 201) throw new Error(`status ${res.statusCode}`);
    return performance.now() - t0;
  };
  const phase = async (mode: Mode, ms: number, into: Tally | null): Promise<void> => {
    await stack.setSync(mode === 'sync' ? syncRoute : null);
    const c0 = cpuMs();
    const before = stack.director.stats().find((s) => s.site === 'shop')!.sync!;
    const t0 = performance.now();
    const until = t0 + ms;
    let errors = 0;
    const lat: number[] = [];
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < until) {
          try {
            lat.push(await one());
          } catch {
            errors++;
          }
        }
      }),
    );
    if (!into) return;
    const after = stack.director.stats().find((s) => s.site === 'shop')!.sync!;
    into.lat.push(...lat);
    into.errors += errors;
    into.ms += performance.now() - t0;
    addCpu(into.cpu, c0, cpuMs());
    // The director's window covers its last ~10 s: a round's median is close enough.
    if (after.waits > before.waits) into.barrierMs.push(after.latencyMs.p50);
  };
  try {
    const tallies: Record<Mode, Tally> = {
      async: { lat: [], errors: 0, ms: 0, cpu: new Map(), barrierMs: [] },
      sync: { lat: [], errors: 0, ms: 0, cpu: new Map(), barrierMs: [] },
    };
    await phase('async', 1000, null);
    await phase('sync', 1000, null);
    const roundMs = (SECONDS * 1000) / ROUNDS;
    for (let r = 0; r < ROUNDS; r++) {
      const order: Mode[] = r % 2 === 0 ? ['async', 'sync'] : ['sync', 'async'];
      for (const m of order) await phase(m, roundMs, tallies[m]);
    }
    const results: Result[] = (['async', 'sync'] as const).map((mode) => {
      const t = tallies[mode];
      const lat = [...t.lat].sort((a, b) => a - b);
      const b = [...t.barrierMs].sort((x, y) => x - y);
      return {
        mode,
        n: lat.length,
        errors: t.errors,
        p50: pct(lat, 50),
        p99: pct(lat, 99),
        rate: lat.length / (t.ms / 1000),
        barrierP50: b.length > 0 ? pct(b, 50) : null,
        cpuPerOrderMs: [...t.cpu.values()].reduce((x, y) => x + y, 0) / Math.max(1, lat.length),
        cpuByProcess: new Map([...t.cpu].map(([k, v]) => [k, v / Math.max(1, lat.length)])),
      };
    });
    const vol = await stack.volumeStatus();
    const f = (x: number): string => x.toFixed(2).padStart(8);
    console.log(
      `\nPOST /api/orders through the director, ${CONCURRENCY} concurrent, ${SECONDS} s per mode in ${ROUNDS} alternating rounds (loopback; shop synchronous=FULL; storage ${STORAGE}; load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})\n`,
    );
    console.log('mode     orders   errors   p50 ms   p99 ms   orders/s   barrier p50 ms   CPU ms/order');
    for (const r of results) {
      console.log(
        `${r.mode.padEnd(6)} ${String(r.n).padStart(8)} ${String(r.errors).padStart(8)} ${f(r.p50)} ${f(r.p99)} ${r.rate.toFixed(0).padStart(10)} ${r.barrierP50 === null ? '               -' : f(r.barrierP50).padStart(16)} ${r.cpuPerOrderMs.toFixed(2).padStart(14)}`,
      );
    }
    const [a, s] = results as [Result, Result];
    console.log(
      `\nsync adds ${(s.p50 - a.p50).toFixed(2)} ms at p50, ${(s.p99 - a.p99).toFixed(2)} ms at p99; throughput ${((s.rate / a.rate - 1) * 100).toFixed(0)} %; CPU per order +${(s.cpuPerOrderMs - a.cpuPerOrderMs).toFixed(2)} ms; volume sync state: ${vol.sync?.state ?? '-'}`,
    );
    console.log('\nCPU ms per order, by process      async     sync     sync adds');
    for (const name of [...new Set([...a.cpuByProcess.keys(), ...s.cpuByProcess.keys()])].sort()) {
      const x = a.cpuByProcess.get(name) ?? 0;
      const y = s.cpuByProcess.get(name) ?? 0;
      console.log(`${name.padEnd(30)} ${x.toFixed(3).padStart(8)} ${y.toFixed(3).padStart(8)} ${(y - x).toFixed(3).padStart(12)}`);
    }
  } finally {
    await stopAll();
  }
}

await main();
