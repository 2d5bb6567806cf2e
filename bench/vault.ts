/**
 * What the vault costs and saves: restore points of a ~50 MB shop orders.db.
 *
 *   node --import tsx bench/vault.ts [--mb 50] [--points 10] [--change 1] [--chunk 65536]
 *
 * Starts (loopback only, in this process) three storage processors — array-a holding
 * the primary volume, array-b as a restore target, and the vault (backup: true) —
 * on temp dirs. Builds a real SQLite orders.db (WAL) of --mb MB, takes --points
 * restore points with --change % of the database's pages changed between two
 * (UPDATEs of random rows, ~one row per page), then restores the newest point onto
 * array-b. Prints stored bytes vs full copies, time per restore point (p50/max) and
 * the restore time. Bounded (aborts after 5 minutes); stops everything it started
 * and removes its temp dirs, also on Ctrl-C.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import type { UnderstudyConfig } from '../src/config/types.ts';
import type { RestoreResponse, VaultPoint } from '../src/shared/contracts.ts';
import { callJson } from '../src/shared/http-client.ts';
import { StorageProcessor } from '../src/storage/storage-processor.ts';
import { freePort } from '../test/unit/storage/helpers.ts';
import { background } from '../src/shared/background.ts';

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '50' },
    points: { type: 'string', default: '10' },
    change: { type: 'string', default: '1' },
    chunk: { type: 'string', default: String(64 * 1024) },
  },
});
const MB = Number(values.mb);
const POINTS = Number(values.points);
const CHANGE = Number(values.change) / 100;
const CHUNK = Number(values.chunk);
if (!(MB > 0 && MB <= 1024 && POINTS >= 1 && POINTS <= 100 && CHANGE >= 0 && CHANGE <= 1 && CHUNK >= 4096))
  throw new Error('bad arguments: --mb 1..1024, --points 1..100, --change 0..100, --chunk ≥ 4096');

const PAYLOAD = 400;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'us-bench-vault-'));
const processors: StorageProcessor[] = [];

async function cleanup(): Promise<void> {
  for (const p of processors.splice(0)) await p.stop().catch(() => undefined);
  fs.rmSync(root, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  background(cleanup().finally(() => process.exit(130)));
});
const deadline = setTimeout(() => {
  console.error('bench/vault: aborted after 5 minutes');
  background(cleanup().finally(() => process.exit(2)));
}, 5 * 60_000);
deadline.unref();

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += fs.statSync(path.join(e.parentPath, e.name)).size;
  }
  return n;
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function buildSeed(): { seed: string; rows: number } {
  const seed = path.join(root, 'seed');
  fs.mkdirSync(path.join(seed, 'public'), { recursive: true });
  fs.writeFileSync(path.join(seed, 'public', 'index.html'), '<h1>shop</h1>');
  const db = new Database(path.join(seed, 'orders.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total INTEGER NOT NULL, payload BLOB NOT NULL)');
  const rows = Math.round((MB * 1048576) / (PAYLOAD + 60));
  const ins = db.prepare('INSERT INTO orders (customer, total, payload) VALUES (?, ?, randomblob(?))');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) ins.run(`customer-${i}`, i, PAYLOAD);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { seed, rows };
}

async function main(): Promise<void> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const names = ['array-a', 'array-b', 'vault'];
  const config: UnderstudyConfig = {
    file: '(bench)',
    baseDir: root,
    controller: {
      listen: { host: '127.0.0.1', port: 1 },
      stateDir: path.join(root, 'state'),
      etcd: null,
      members: {},
      eventsKeep: 20_000,
      failover: { cooldownMs: 0, flapWindowMs: 0, flapBackoffMs: 0, drainTimeoutMs: 0 },
    },
    director: { listen: { host: '127.0.0.1', port: 2 }, members: {}, holdMaxRequests: 10, holdTimeoutMs: 1000 },
    storage: Object.fromEntries(
      names.map((n, i) => [n, { name: n, path: path.join(root, n), listen: { host: '127.0.0.1', port: ports[i]! }, backup: n === 'vault' }]),
    ),
    hosts: {},
    pools: {},
    sites: {},
  };
  const log = pino({ level: 'warn' });
  for (const n of names) {
    const p = new StorageProcessor(config, n, log, { vault: { verifyEveryMs: 0, backupTickMs: 0, chunkBytes: CHUNK } });
    processors.push(p);
    await p.start();
  }
  const [urlA, urlB, urlV] = ports.map((p) => `http://127.0.0.1:${p}`) as [string, string, string];

  const t0 = performance.now();
  const { seed, rows } = buildSeed();
  console.log(`built orders.db: ${rows} rows, ${mib(fs.statSync(path.join(seed, 'orders.db')).size)} in ${Math.round(performance.now() - t0)} ms`);
  await callJson(`${urlA}/v1/volumes/shop/init`, { body: { epoch: 1, seed }, timeoutMs: 60_000 });

  const app = new Database(path.join(root, 'array-a', 'volumes', 'shop', 'orders.db'));
  app.pragma('busy_timeout = 5000');
  const pages = app.pragma('page_count', { simple: true }) as number;
  const perPoint = Math.round(pages * CHANGE);
  const upd = app.prepare('UPDATE orders SET total = total + 1 WHERE id = ?');
  let seedRng = 12345;
  const rnd = (n: number): number => {
    seedRng = (seedRng * 1103515245 + 12345) & 0x7fffffff;
    return seedRng % n;
  };

  const times: number[] = [];
  const points: VaultPoint[] = [];
  for (let i = 0; i < POINTS; i++) {
    if (i > 0)
      app.transaction(() => {
        for (let k = 0; k < perPoint; k++) upd.run(1 + rnd(rows));
      })();
    const s = performance.now();
    points.push(await callJson<VaultPoint>(`${urlA}/v1/volumes/shop/backup-now`, { body: { vaultUrl: urlV, keep: POINTS }, timeoutMs: 120_000 }));
    times.push(performance.now() - s);
  }
  app.close();

  const s = performance.now();
  const r = await callJson<RestoreResponse>(`${urlB}/v1/volumes/shop/restore`, {
    body: { epoch: 2, point: 'latest-good', vaultUrl: urlV },
    timeoutMs: 120_000,
  });
  const restoreMs = performance.now() - s;

  const stored = dirBytes(path.join(root, 'vault', 'chunks')) + dirBytes(path.join(root, 'vault', 'points'));
  const full = points.reduce((a, p) => a + p.bytes, 0);
  const sorted = [...times].sort((a, b) => a - b);
  console.log(
    `\n${POINTS} restore points of a ${mib(points[0]!.bytes)} volume, ${perPoint} random row updates (${(CHANGE * 100).toFixed(1)} % of ${pages} pages) between points, ${CHUNK / 1024} KiB chunks\n`,
  );
  const table: [string, string][] = [
    [`stored after ${POINTS} points (chunks + manifests)`, mib(stored)],
    [`${POINTS} full copies`, mib(full)],
    ['ratio', `${((stored / full) * 100).toFixed(1)} %`],
    [
      'new bytes per point after the first (p50)',
      mib(
        pct(
          points
            .slice(1)
            .map((p) => p.newBytes)
            .sort((a, b) => a - b),
          50,
        ) || 0,
      ),
    ],
    ['take a restore point: first (full)', `${Math.round(times[0]!)} ms`],
    ['take a restore point: p50 / max', `${Math.round(pct(sorted, 50))} ms / ${Math.round(sorted[sorted.length - 1]!)} ms`],
    [`restore latest-good onto another storage processor (${mib(r.bytes)}, verified)`, `${Math.round(restoreMs)} ms (server: ${r.ms} ms)`],
  ];
  const w = Math.max(...table.map(([k]) => k.length));
  for (const [k, v] of table) console.log(`${k.padEnd(w)}  ${v}`);
}

main().then(cleanup, async (e: unknown) => {
  console.error(e);
  await cleanup();
  process.exitCode = 1;
});
