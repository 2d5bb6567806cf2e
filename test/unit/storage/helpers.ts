import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import type { UnderstudyConfig } from '../../../src/config/types.ts';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import type { ReplicationTuning } from '../../../src/storage/volume-shipper.ts';
import { freePort as freePortOf } from '../../support/free-port.ts';
export { freePort } from '../../support/free-port.ts';

/** Test helpers for the storage processor: configs built by hand, free ports, temp dirs. */
export function tempDir(prefix = 'us-storage-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function makeConfig(storages: { name: string; path: string; port: number }[]): UnderstudyConfig {
  return {
    file: '/test/understudy.yaml',
    baseDir: '/test',
    controller: {
      listen: { host: '127.0.0.1', port: 1 },
      stateDir: '/test/state',
      etcd: null,
      members: {},
      eventsKeep: 20_000,
      failover: { cooldownMs: 0, flapWindowMs: 0, flapBackoffMs: 0, drainTimeoutMs: 0 },
    },
    director: { listen: { host: '127.0.0.1', port: 2 }, members: {}, holdMaxRequests: 10, holdTimeoutMs: 1000 },
    storage: Object.fromEntries(storages.map((s) => [s.name, { name: s.name, path: s.path, listen: { host: '127.0.0.1', port: s.port }, backup: false }])),
    hosts: {},
    pools: {},
    sites: {},
  };
}

export function testLogger(): Logger {
  return pino({ level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'silent' });
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Two storage processors in this process on real sockets (array-a, array-b, each under
 * `root`), started; stopped and `root` removed after the test. `configure` may add to the
 * config (sites) before they start.
 */
export async function startStoragePair(
  t: { after: (fn: () => Promise<void>) => void },
  prefix: string,
  tuning: ReplicationTuning,
  configure?: (config: UnderstudyConfig, root: string) => void,
): Promise<{ a: StorageProcessor; b: StorageProcessor; urlA: string; urlB: string; root: string }> {
  const root = tempDir(prefix);
  const [pa, pb] = [await freePortOf(), await freePortOf()];
  const config = makeConfig([
    { name: 'array-a', path: path.join(root, 'a'), port: pa },
    { name: 'array-b', path: path.join(root, 'b'), port: pb },
  ]);
  configure?.(config, root);
  const a = new StorageProcessor(config, 'array-a', testLogger(), { tuning });
  const b = new StorageProcessor(config, 'array-b', testLogger(), { tuning });
  t.after(async () => {
    await a.stop().catch(() => undefined);
    await b.stop().catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  });
  await a.start();
  await b.start();
  return { a, b, urlA: `http://127.0.0.1:${pa}`, urlB: `http://127.0.0.1:${pb}`, root };
}
