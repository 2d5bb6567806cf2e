/**
 * What copying a whole database costs the shop's writers: an app commits orders at a
 * steady rate (synchronous=FULL, one transaction each) into a database of --mb MB while
 *  1. replication moves to a new replica, which takes a new generation (a full image of
 *     the database, shipped), and then
 *  2. a restore point of the volume is taken and sent to the vault.
 * Prints the commit latency (p50, p99, max) before, during each copy and after, and the
 * ratio of each copy's p99 to the p99 before (the goal: at most 2×).
 *
 *   node --import tsx bench/copy-under-load.ts [--mb 50] [--rate 200] [--before 3] [--copies 1]
 *
 * `--copies N` moves replication N times, each time to a fresh storage processor (a full
 * image each time), and adds a row over all N phases' commits: one phase holds about 120
 * commits, so its own p99 is its second-slowest commit; N of them give a p99 that says
 * more.
 *
 * Starts (loopback only) the storage processors in this process — array-a (the primary),
 * array-b and array-c1…cN (replicas), vault (backup: true) — and the writer as a child process
 * on array-a's volume. Every phase is bounded in time; everything it started is stopped and
 * its directory removed, also on Ctrl-C. Run it through the e2e lock:
 *   flock /tmp/understudy-e2e.lock node --import tsx bench/copy-under-load.ts
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { StorageProcessor } from '../src/storage/storage-processor.ts';
import { callJson } from '../src/shared/http-client.ts';
import type { UnderstudyConfig } from '../src/config/types.ts';
import type { VolumeStatus } from '../src/shared/contracts.ts';
import { background } from '../src/shared/background.ts';
import { freePort } from '../test/support/free-port.ts';

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '50' },
    rate: { type: 'string', default: '200' },
    before: { type: 'string', default: '3' },
    copies: { type: 'string', default: '1' },
  },
});
const mb = Number(values.mb);
const rate = Number(values.rate);
const beforeS = Number(values.before);
const copies = Math.max(1, Math.floor(Number(values.copies)));

async function waitFor(what: string, cond: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The writer: one INSERT transaction every 1000/rate ms (on schedule, not after the last
 * one), for at most `maxS` seconds or until its stdin closes; prints `start latency` per
 * commit (ms since the epoch, ms) when it ends.
 */
const WRITER = `
const Database = require(process.argv[1]);
const db = new Database(process.argv[2]);
db.pragma('journal_mode = WAL'); db.pragma('busy_timeout = 5000'); db.pragma('synchronous = FULL');
const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(500))');
const every = 1000 / Number(process.argv[3]);
const until = Date.now() + Number(process.argv[4]) * 1000;
const out = [];
let stop = false;
process.stdin.on('end', () => { stop = true; });
process.stdin.resume();
const t0 = Date.now();
let i = 0;
function tick() {
  if (stop || Date.now() > until) { db.close(); process.stdout.write(out.join('\\n') + '\\n'); process.exit(0); }
  const s = performance.now();
  const at = Date.now();
  ins.run('c' + i);
  out.push(at + ' ' + (performance.now() - s).toFixed(3));
  i++;
  setTimeout(tick, Math.max(0, t0 + i * every - Date.now()));
}
tick();
`;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'us-bench-copy-'));
const fresh = Array.from({ length: copies }, (_, i) => `array-c${i + 1}`);
const names = ['array-a', 'array-b', ...fresh, 'vault'];
const ports = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await freePort()] as const))) as Record<string, number>;
const url = (n: string): string => `http://127.0.0.1:${ports[n]}`;
const config = {
  file: path.join(root, 'understudy.yaml'),
  baseDir: root,
  controller: { listen: { host: '127.0.0.1', port: 1 }, stateDir: path.join(root, 'state') },
  director: { listen: { host: '127.0.0.1', port: 2 }, holdMaxRequests: 10, holdTimeoutMs: 1000 },
  storage: Object.fromEntries(
    names.map((n) => [n, { name: n, path: path.join(root, n), listen: { host: '127.0.0.1', port: ports[n] }, backup: n === 'vault' }]),
  ),
  hosts: {},
  pools: {},
  sites: {},
} as unknown as UnderstudyConfig;
const log = pino({ level: 'warn' });
const procs = names.map((n) => new StorageProcessor(config, n, log));
let writer: ChildProcess | null = null;
const cleanup = async (): Promise<void> => {
  writer?.kill('SIGKILL');
  for (const p of procs) await p.stop().catch(() => undefined);
  fs.rmSync(root, { recursive: true, force: true });
};
process.once('SIGINT', () => {
  background(cleanup().then(() => process.exit(130)));
});

const pct = (xs: number[], p: number): number => (xs.length === 0 ? NaN : xs[Math.min(xs.length - 1, Math.floor(xs.length * p))]!);

try {
  for (const p of procs) await p.start();
  const A = url('array-a');
  await callJson(`${A}/v1/volumes/shop/init`, { body: { epoch: 1 } });
  const file = path.join(root, 'array-a', 'volumes', 'shop', 'orders.db');
  {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, payload BLOB NOT NULL)');
    const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, randomblob(1000))');
    const rows = Math.round((mb * 1024 * 1024) / 1027); // a row takes about 1027 bytes of the file
    db.transaction(() => {
      for (let i = 0; i < rows; i++) ins.run(`seed${i}`);
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
  }
  const dbMb = fs.statSync(file).size / 1024 / 1024;
  const streamingTo = (name: string) => async (): Promise<boolean> => {
    const s = await callJson<VolumeStatus>(`${A}/v1/volumes/shop`);
    return s.replication?.state === 'streaming' && s.replication.to === name && s.replication.lagMs === 0;
  };
  await callJson(`${A}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: url('array-b') } } });
  await waitFor('replication to array-b streaming', streamingTo('array-b'), 120_000);

  const total = beforeS + 120; // the writer's own bound
  writer = spawn(process.execPath, ['-e', WRITER, path.resolve('node_modules/better-sqlite3'), file, String(rate), String(total)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  writer.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((r) => writer!.once('exit', () => r()));
  const phases: { name: string; from: number; to: number; loopMaxMs: number }[] = [];
  // The storage processors run in this process: the longest its event loop was held up.
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const phase = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
    const from = Date.now();
    loop.reset();
    await fn();
    phases.push({ name, from, to: Date.now(), loopMaxMs: loop.max / 1e6 });
  };
  await phase('before', () => new Promise((r) => setTimeout(r, beforeS * 1000)));
  for (const [i, to] of fresh.entries()) {
    await phase(copies === 1 ? 'new generation' : `new generation ${i + 1}`, async () => {
      await callJson(`${A}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: to, url: url(to) } } });
      await waitFor(`replication to ${to} streaming`, streamingTo(to), 120_000);
    });
  }
  await phase('restore point', () => callJson(`${A}/v1/volumes/shop/backup-now`, { body: { vaultUrl: url('vault'), keep: 3 }, timeoutMs: 120_000 }));
  await phase('after', () => new Promise((r) => setTimeout(r, beforeS * 1000)));
  writer.stdin!.end();
  await exited;
  const commits = out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ').map(Number) as [number, number]);
  const base = commits.filter(([at]) => at >= phases[0]!.from && at < phases[0]!.to).map(([, ms]) => ms);
  base.sort((x, y) => x - y);
  const p99Before = pct(base, 0.99);
  console.log(`database ${dbMb.toFixed(1)} MB, ${rate} commits/s (synchronous=FULL), ${commits.length} commits in all`);
  console.log('| phase | seconds | commits | p50 ms | p99 ms | max ms | p99 / before | storage event loop held up, max ms |');
  console.log('|---|---|---|---|---|---|---|---|');
  const rows = [...phases];
  const gens = phases.filter((ph) => ph.name.startsWith('new generation '));
  // Every generation's commits together, placed after the last one.
  if (gens.length > 1)
    rows.splice(rows.indexOf(gens.at(-1)!) + 1, 0, {
      name: `new generations, all ${gens.length}`,
      from: NaN,
      to: NaN,
      loopMaxMs: Math.max(...gens.map((g) => g.loopMaxMs)),
    });
  for (const ph of rows) {
    const within = ph.name.startsWith('new generations, all') ? gens : [ph];
    const xs = commits.filter(([at]) => within.some((w) => at >= w.from && at < w.to)).map(([, ms]) => ms);
    xs.sort((x, y) => x - y);
    const p99 = pct(xs, 0.99);
    const seconds = within.reduce((a, w) => a + (w.to - w.from), 0) / 1000;
    console.log(
      `| ${ph.name} | ${seconds.toFixed(1)} | ${xs.length} | ${pct(xs, 0.5).toFixed(2)} | ${p99.toFixed(2)} | ${(xs.at(-1) ?? NaN).toFixed(2)} | ${(p99 / p99Before).toFixed(2)}× | ${ph.loopMaxMs.toFixed(0)} |`,
    );
  }
} finally {
  await cleanup();
}
