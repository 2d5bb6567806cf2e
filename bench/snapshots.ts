/**
 * What replication by snapshots costs an app that keeps its databases in rollback-journal
 * mode: the notes app (test/fixtures/notes-app) writes `notes.sqlite` and `attachments`,
 * --concurrency clients POST notes and attachments alternately for --seconds, once without
 * and once with the sync barrier after each POST (what the director does in sync mode).
 *
 *   node --import tsx bench/snapshots.ts [--seconds 4] [--concurrency 4]
 *
 * Starts (loopback only) two storage processors in this process, replicating array-a →
 * array-b, and the notes app as a child process on the primary volume. Prints writes/s,
 * p50/p95 of POST (+ barrier), the snapshots shipped per database and the last one's time,
 * and the worst lag of the last 2 s (async). Stops everything it started, also on Ctrl-C.
 * Run it through the e2e lock: flock /tmp/understudy-e2e.lock node --import tsx bench/snapshots.ts
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { request } from 'undici';
import { StorageProcessor } from '../src/storage/storage-processor.ts';
import { callJson } from '../src/shared/http-client.ts';
import type { UnderstudyConfig } from '../src/config/types.ts';
import type { VolumeStatus } from '../src/shared/contracts.ts';
import { background } from '../src/shared/background.ts';
import { freePort } from '../test/support/free-port.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '4' }, concurrency: { type: 'string', default: '4' } } });
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);

async function waitFor(cond: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const pct = (xs: number[], p: number): string => (xs.length === 0 ? '-' : xs[Math.min(xs.length - 1, Math.floor(xs.length * p))]!.toFixed(1));

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'us-bench-snapshots-'));
const [pa, pb, appPort] = [await freePort(), await freePort(), await freePort()];
const config: UnderstudyConfig = {
  file: path.join(root, 'understudy.yaml'),
  baseDir: root,
  controller: { listen: { host: '127.0.0.1', port: 1 }, stateDir: path.join(root, 'state') },
  director: { listen: { host: '127.0.0.1', port: 2 }, holdMaxRequests: 10, holdTimeoutMs: 1000 },
  storage: {
    'array-a': { name: 'array-a', path: path.join(root, 'a'), listen: { host: '127.0.0.1', port: pa }, backup: false },
    'array-b': { name: 'array-b', path: path.join(root, 'b'), listen: { host: '127.0.0.1', port: pb }, backup: false },
  },
  hosts: {},
  pools: {},
  sites: {},
} as unknown as UnderstudyConfig;
const log = pino({ level: 'warn' });
const a = new StorageProcessor(config, 'array-a', log);
const b = new StorageProcessor(config, 'array-b', log);
let app: ReturnType<typeof spawn> | null = null;
const cleanup = async (): Promise<void> => {
  app?.kill('SIGKILL');
  await a.stop().catch(() => undefined);
  await b.stop().catch(() => undefined);
  fs.rmSync(root, { recursive: true, force: true });
};
process.once('SIGINT', () => {
  background(cleanup().then(() => process.exit(130)));
});

try {
  await a.start();
  await b.start();
  const A = `http://127.0.0.1:${pa}`;
  await callJson(`${A}/v1/volumes/notes/init`, { body: { epoch: 1 } });
  await callJson(`${A}/v1/volumes/notes/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: `http://127.0.0.1:${pb}` } } });
  const vol = path.join(root, 'a', 'volumes', 'notes');
  app = spawn(
    process.execPath,
    [path.resolve(import.meta.dirname, '../test/fixtures/notes-app/server.mjs'), '--listen', `127.0.0.1:${appPort}`, '--data', vol],
    { stdio: 'ignore' },
  );
  const url = `http://127.0.0.1:${appPort}`;
  await waitFor(async () => (await (await request(`${url}/health`)).body.text()) === 'OK', 10_000);
  await waitFor(async () => {
    const s = await callJson<VolumeStatus>(`${A}/v1/volumes/notes`);
    return s.replication?.state === 'streaming' && (s.replication.databases ?? []).filter((d) => d.method === 'snapshots').length === 2;
  }, 10_000);
  for (const sync of [false, true]) {
    const total: number[] = [];
    const t0 = Date.now();
    let peak = 0;
    const sampler = setInterval(() => {
      void callJson<VolumeStatus>(`${A}/v1/volumes/notes`).then(
        (s) => {
          peak = Math.max(peak, s.replication?.lagPeakMs ?? 0);
        },
        () => undefined,
      );
    }, 100);
    await Promise.all(
      Array.from({ length: concurrency }, async (_, w) => {
        for (let i = 0; Date.now() - t0 < seconds * 1000; i++) {
          const kind = i % 2 === 0 ? 'notes' : 'attachments';
          const s = performance.now();
          const r = await request(`${url}/${kind}`, { method: 'POST', body: `client ${w} write ${i}` });
          await r.body.text();
          if (r.statusCode !== 201) throw new Error(`POST /${kind}: ${r.statusCode}`);
          if (sync) {
            const br = await a.syncBarrier('notes', 'strict', 5000);
            if (br.state !== 'sync') throw new Error(`barrier: ${br.state} ${br.reason ?? ''}`);
          }
          total.push(performance.now() - s);
        }
      }),
    );
    clearInterval(sampler);
    total.sort((x, y) => x - y);
    const st = await callJson<VolumeStatus>(`${A}/v1/volumes/notes`);
    const dbs = (st.replication?.databases ?? []).map((d) => `${d.path}: ${d.snapshots} snapshots, last ${d.lastSnapshotMs} ms`).join('; ');
    console.log(
      `${sync ? 'sync ' : 'async'}: ${(total.length / seconds).toFixed(0)} writes/s, POST${sync ? ' + barrier' : ''} p50 ${pct(total, 0.5)} ms p95 ${pct(total, 0.95)} ms${sync ? '' : `, worst lag of 2 s seen ${peak} ms`}; ${dbs}`,
    );
  }
} finally {
  await cleanup();
}
