/**
 * What re-protection costs after a failover, full copy against differential
 * (failback): the bytes a new replication generation sends and how long it takes until
 * the replica streams.
 *
 *   node --import tsx bench/failback.ts [--mib 32] [--changed 1]
 *
 * Three storage processors in this process on loopback (array-a, array-b, array-c).
 * array-a holds a primary orders.db of --mib MiB and replicates to array-b (a full
 * first copy). Then the "failover": array-b is promoted at epoch 2 and --changed % of
 * the rows are updated there (plus a few new orders). Re-protection is measured twice
 * from array-b: to array-a, which still holds its old primary copy (differential), and
 * to array-c, which holds nothing (full). Prints bytes sent, pages sent and the time
 * from the replicate command to a streaming, caught-up replica, and checks that both
 * replicas equal the primary. Stops everything and removes its temp dir.
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { StorageProcessor } from '../src/storage/storage-processor.ts';
import { callJson } from '../src/shared/http-client.ts';
import type { VolumeStatus } from '../src/shared/contracts.ts';
import { freePort, makeConfig, tempDir } from '../test/unit/storage/helpers.ts';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '32' }, changed: { type: 'string', default: '1' } } });
const MIB = Number(values.mib);
const CHANGED = Number(values.changed) / 100;
if (!(MIB > 0) || !(CHANGED >= 0 && CHANGED <= 1)) throw new Error('--mib must be > 0 and --changed a percentage');

function digest(file: string): string {
  const db = new Database(file, { readonly: true });
  try {
    const h = createHash('sha256');
    for (const r of db.prepare('SELECT id, customer, payload FROM orders ORDER BY id').iterate() as Iterable<{ id: number; customer: string; payload: Buffer }>)
      h.update(`${r.id}:${r.customer}:`).update(r.payload);
    return h.digest('hex');
  } finally {
    db.close();
  }
}

async function main(): Promise<void> {
  const root = tempDir('us-bench-failback-');
  const names = ['array-a', 'array-b', 'array-c'] as const;
  const ports = [await freePort(), await freePort(), await freePort()];
  const config = makeConfig(names.map((name, i) => ({ name, path: path.join(root, name), port: ports[i]! })));
  const sp = names.map((n) => new StorageProcessor(config, n, pino({ level: 'silent' })));
  const url = (i: number): string => `http://127.0.0.1:${ports[i]!}`;
  try {
    for (const s of sp) await s.start();
    const seed = path.join(root, 'seed');
    fs.mkdirSync(path.join(seed, 'public'), { recursive: true });
    fs.writeFileSync(path.join(seed, 'public', 'index.html'), '<h1>shop</h1>');
    await callJson(`${url(0)}/v1/volumes/shop/init`, { body: { epoch: 1, seed } });
    const volA = path.join(root, 'array-a', 'volumes', 'shop');
    const dbA = new Database(path.join(volA, 'orders.db'));
    dbA.pragma('journal_mode = WAL');
    dbA.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, payload BLOB NOT NULL)');
    const rows = Math.ceil((MIB * 1024 * 1024) / 560);
    const insA = dbA.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)');
    dbA.transaction(() => {
      for (let i = 0; i < rows; i++) insA.run(`c${i}`, randomBytes(500));
    })();
    dbA.pragma('wal_checkpoint(TRUNCATE)');

    const protect = async (from: number, to: number, epoch: number): Promise<{ ms: number; st: VolumeStatus }> => {
      const t0 = performance.now();
      await callJson(`${url(from)}/v1/volumes/shop/replicate`, { body: { epoch, to: { name: names[to], url: url(to) } }, timeoutMs: 60_000 });
      for (;;) {
        const st = await callJson<VolumeStatus>(`${url(from)}/v1/volumes/shop`);
        if (st.replication?.state === 'streaming' && st.replication.lagMs === 0 && (st.replication.seeds?.length ?? 0) > 0) {
          await callJson(`${url(from)}/v1/volumes/shop/confirm`, { body: { timeoutMs: 30_000 }, timeoutMs: 35_000 });
          return { ms: performance.now() - t0, st: await callJson<VolumeStatus>(`${url(from)}/v1/volumes/shop`) };
        }
        if (performance.now() - t0 > 120_000) throw new Error(`replication of shop to ${names[to]} did not stream within 120 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const first = await protect(0, 1, 1);
    dbA.close(); // the old primary's app is gone (crash); its copy stays on array-a

    await callJson(`${url(1)}/v1/volumes/shop/promote`, { body: { epoch: 2 } });
    await callJson(`${url(0)}/v1/volumes/shop/demote`, { body: { epoch: 2 } });
    const volB = path.join(root, 'array-b', 'volumes', 'shop');
    const dbB = new Database(path.join(volB, 'orders.db'));
    dbB.pragma('journal_mode = WAL');
    const upd = dbB.prepare("UPDATE orders SET customer = customer || '*' WHERE id = ?");
    const changed = Math.round(rows * CHANGED);
    dbB.transaction(() => {
      for (let i = 0; i < changed; i++) upd.run(1 + Math.floor(Math.random() * rows));
    })();
    const insB = dbB.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)');
    for (let i = 0; i < 20; i++) insB.run(`after-failover-${i}`, randomBytes(500));

    const diff = await protect(1, 0, 2);
    await callJson(`${url(1)}/v1/volumes/shop/demote`, { body: { epoch: 2 } }).catch(() => undefined);
    // A second primary shipping would need another epoch; ship to array-c from array-b at epoch 3.
    await callJson(`${url(1)}/v1/volumes/shop/init`, { body: { epoch: 3 } });
    const full = await protect(1, 2, 3);
    dbB.close();

    const want = digest(path.join(volB, 'orders.db'));
    const check = async (i: number): Promise<boolean> => {
      const copy = path.join(root, `copy-${i}`);
      fs.mkdirSync(copy);
      await sp[i]!.withVolumeQuiesced('shop', async (dir) => {
        for (const f of ['orders.db', 'orders.db-wal']) if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(copy, f));
      });
      return digest(path.join(copy, 'orders.db')) === want;
    };
    const mib = (b: number): string => (b / 1024 / 1024).toFixed(2);
    console.log(
      `\nRe-protection after a failover: orders.db of ${mib(fs.statSync(path.join(volB, 'orders.db')).size)} MiB, ${changed} of ${rows} rows updated (${(CHANGED * 100).toFixed(1)} %) + 20 new, loopback, storage processors in one process\n`,
    );
    console.log('copy                         kind           pages sent   MiB sent   file bytes   to streaming   replica = primary');
    for (const [label, r, i] of [
      ['first protection (a → b)', first, 1],
      ['failback (b → a, old copy)', diff, 0],
      ['to an empty storage (b → c)', full, 2],
    ] as const) {
      const s = r.st.replication!.seeds!.find((x) => x.db === 'orders.db')!;
      const same = i === 1 ? '(superseded)' : String(await check(i));
      console.log(
        `${label.padEnd(28)} ${s.kind.padEnd(14)} ${`${s.blocksSent}/${s.blocks}`.padStart(11)} ${mib(s.bytesSent).padStart(10)} ${String(r.st.replication!.fileBytesSent ?? 0).padStart(12)} ${`${r.ms.toFixed(0)} ms`.padStart(14)}   ${same}`,
      );
    }
  } finally {
    for (const s of sp) await s.stop().catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
