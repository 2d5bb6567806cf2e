import { freePort } from '../storage/helpers.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import type { UnderstudyConfig } from '../../../src/config/types.ts';
import { Director } from '../../../src/director/director.ts';
import { silentLogger } from '../../../src/director/logger.ts';
import type { RouteTable, VolumeStatus } from '../../../src/shared/contracts.ts';
import { callJson } from '../../../src/shared/http-client.ts';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import type { ReplicationTuning } from '../../../src/storage/volume-shipper.ts';
import { background } from '../../../src/shared/background.ts';

/**
 * Sync mode end to end, in one process plus the shop: two storage processors on real
 * sockets (array-a holds the primary volume, array-b the replica), the real demo shop
 * (examples/shop/server.js) as a child process on the primary volume, and the
 * built-in director in front with a route that carries `sync`. Used by
 * sync-mode.test.ts and bench/sync.ts. `stop()` ends everything it started and
 * removes the temp dir; call it from t.after (or finally).
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SHOP = path.join(ROOT, 'examples/shop/server.js');
const SEED = path.join(ROOT, 'examples/shop/seed');

export interface SyncStack {
  config: UnderstudyConfig;
  urlA: string;
  urlB: string;
  volA: string;
  volB: string;
  director: Director;
  front: string;
  shopAddr: string;
  /** Pushes the route again with this sync setting (null = async). */
  setSync(sync: RouteTable['sync']): Promise<void>;
  /** Stops the replica's storage processor (the replica is lost). */
  stopReplica(): Promise<void>;
  /** Starts it again on the same port and directory. */
  startReplica(): Promise<void>;
  /** The primary volume's status (array-a). */
  volumeStatus(): Promise<VolumeStatus>;
  /** Order ids in a copy of the replica's orders.db, taken while the replica is quiet (in-process storage only). */
  replicaOrderIds(): Promise<Set<number>>;
  stop(): Promise<void>;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function makeConfig(root: string, pa: number, pb: number): UnderstudyConfig {
  const probe = { path: '/healthz', everyMs: 200, timeoutMs: 500, fall: 2, rise: 2 };
  return {
    file: path.join(root, 'understudy.yaml'),
    baseDir: root,
    controller: {
      listen: { host: '127.0.0.1', port: 0 },
      stateDir: path.join(root, 'state'),
      etcd: null,
      members: {},
      eventsKeep: 20_000,
      failover: { cooldownMs: 0, flapWindowMs: 0, flapBackoffMs: 0, drainTimeoutMs: 0 },
    },
    director: { listen: { host: '127.0.0.1', port: 0 }, members: {}, holdMaxRequests: 1000, holdTimeoutMs: 5000 },
    storage: {
      'array-a': { name: 'array-a', path: path.join(root, 'a'), listen: { host: '127.0.0.1', port: pa }, backup: false },
      'array-b': { name: 'array-b', path: path.join(root, 'b'), listen: { host: '127.0.0.1', port: pb }, backup: false },
    },
    hosts: {},
    pools: {},
    sites: {
      shop: {
        name: 'shop',
        front: { host: '127.0.0.1', port: 0 },
        app: { command: ['node', SHOP], port: 3000, env: {} },
        primary: 'h1',
        standby: [],
        priority: 0,
        volume: { replication: 'sync', readonly: [], sync: { onReplicaLost: 'degrade', timeoutMs: 2000 } },
        transform: [],
        health: { probe, malfunction: { errorRate: 0.2, windowMs: 5000 }, performance: { p95Ms: 300, windowMs: 10_000 } },
        scale: { max: 1, cooldownMs: 30_000 },
      },
    },
  };
}

function startShop(dataDir: string): Promise<{ proc: ChildProcess; exited: Promise<void> }> {
  const proc = spawn(process.execPath, [SHOP], { cwd: ROOT, env: { ...process.env, DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`shop did not start:\n${out}`));
    }, 10_000);
    const onData = (c: Buffer): void => {
      out += c.toString();
      if (/shop listening on/.test(out)) {
        clearTimeout(timer);
        resolve({ proc, exited });
      }
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    background(
      exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`shop exited:\n${out}`));
      }),
    );
  });
}

/** A storage processor in this process, or as a child process (bench: no shared event loop). */
interface StorageHandle {
  stop(): Promise<void>;
  /** In-process only. */
  processor?: StorageProcessor;
}

async function startStorage(
  config: UnderstudyConfig,
  name: string,
  where: 'in-process' | 'processes',
  tuning: ReplicationTuning | undefined,
): Promise<StorageHandle> {
  if (where === 'in-process') {
    const sp = new StorageProcessor(config, name, pino({ level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'silent' }), tuning ? { tuning } : {});
    await sp.start();
    return { processor: sp, stop: () => sp.stop().catch(() => undefined) };
  }
  // BENCH_PROF=DIR: each storage processor writes a CPU profile there when it stops.
  const prof = process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [];
  const proc = spawn(process.execPath, [...prof, '--import', 'tsx', path.join(ROOT, 'test/unit/director/sync-storage-process.ts'), name], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  proc.stdin!.end(JSON.stringify({ config, tuning }));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`storage ${name} did not start`));
    }, 15_000);
    proc.stdout!.on('data', (c: Buffer) => {
      if (String(c).includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    background(
      exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`storage ${name} exited`));
      }),
    );
  });
  return {
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

export async function startSyncStack(opts: {
  sync: RouteTable['sync'] | 'default';
  tuning?: ReplicationTuning;
  storage?: 'in-process' | 'processes';
}): Promise<SyncStack> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'us-sync-'));
  const [pa, pb, shopPort] = [await freePort(), await freePort(), await freePort()];
  const config = makeConfig(root, pa, pb);
  const where = opts.storage ?? 'in-process';
  const mk = (name: string): Promise<StorageHandle> => startStorage(config, name, where, opts.tuning);
  const started: { a?: StorageHandle; b?: StorageHandle; shop?: { proc: ChildProcess; exited: Promise<void> }; director?: Director } = {};
  const stop = async (): Promise<void> => {
    await started.director?.stop().catch(() => undefined);
    if (started.shop && started.shop.proc.exitCode === null && started.shop.proc.signalCode === null) started.shop.proc.kill('SIGKILL');
    await started.shop?.exited;
    await started.a?.stop();
    await started.b?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  };
  try {
    const urlA = `http://127.0.0.1:${pa}`;
    const urlB = `http://127.0.0.1:${pb}`;
    started.a = await mk('array-a');
    started.b = await mk('array-b');
    const volA = path.join(root, 'a', 'volumes', 'shop');
    const volB = path.join(root, 'b', 'replicas', 'shop');
    await callJson(`${urlA}/v1/volumes/shop/init`, { body: { epoch: 1, seed: SEED } });
    fs.writeFileSync(path.join(volA, 'config/site.json'), JSON.stringify({ listen: { host: '127.0.0.1', port: shopPort }, workers: 1, name: 'shop' }));
    started.shop = await startShop(volA);
    await callJson(`${urlA}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: urlB } } });
    await waitFor('replication streaming', async () => {
      const s = await callJson<VolumeStatus>(`${urlA}/v1/volumes/shop`);
      return s.replication?.state === 'streaming' && s.replication.lagMs === 0 && fs.existsSync(path.join(volB, 'orders.db'));
    });
    started.director = new Director({ config, logger: silentLogger, stopGraceMs: 500 });
    await started.director.start();
    const director = started.director;
    const shopAddr = `127.0.0.1:${shopPort}`;
    const setSync = async (sync: RouteTable['sync']): Promise<void> => {
      await callJson(`${director.adminUrl}/v1/routes/shop`, { method: 'PUT', body: { epoch: 1, primary: shopAddr, readers: [], sync } });
    };
    await setSync(opts.sync === 'default' ? { storageUrl: urlA, onReplicaLost: 'degrade', timeoutMs: 2000 } : opts.sync);
    const stack: SyncStack = {
      config,
      urlA,
      urlB,
      volA,
      volB,
      director,
      front: director.frontUrl('shop'),
      shopAddr,
      setSync,
      async stopReplica() {
        await started.b?.stop();
        delete started.b;
      },
      async startReplica() {
        started.b = await mk('array-b');
      },
      volumeStatus: () => callJson<VolumeStatus>(`${urlA}/v1/volumes/shop`),
      async replicaOrderIds() {
        const copy = fs.mkdtempSync(path.join(root, 'copy-'));
        const b = started.b?.processor;
        if (!b) throw new Error('replicaOrderIds needs the replica processor running in this process');
        await b.withVolumeQuiesced('shop', async (dir) => {
          for (const f of ['orders.db', 'orders.db-wal']) {
            if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(copy, f));
          }
        });
        const db = new Database(path.join(copy, 'orders.db'));
        try {
          return new Set((db.prepare('SELECT id FROM orders').all() as { id: number }[]).map((r) => r.id));
        } finally {
          db.close();
          fs.rmSync(copy, { recursive: true, force: true });
        }
      },
      stop,
    };
    return stack;
  } catch (e) {
    await stop();
    throw e;
  }
}

/** One order through the director: status, id (on 201), error code (on 503), time taken. */
export async function placeOrder(
  front: string,
  customer: string,
): Promise<{ status: number; id?: number; code?: string; retryAfter?: string | null; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${front}/api/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ customer, items: [{ productId: 1, qty: 1 }] }),
  });
  const body = (await res.json()) as { id?: number; error?: { code?: string } };
  const ms = performance.now() - t0;
  return {
    status: res.status,
    ...(body.id !== undefined ? { id: body.id } : {}),
    ...(body.error?.code ? { code: body.error.code } : {}),
    retryAfter: res.headers.get('retry-after'),
    ms,
  };
}
