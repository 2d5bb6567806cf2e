import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { api, http, ports, startCluster, waitStreaming, waitUntil, type Cluster } from '../support/cluster.ts';
import { missingOrders, startLoad, type AckedOrder } from '../support/load.ts';
import { inspectWalChain } from '../../src/storage/wal-chain-check.ts';
import { WAL_HEADER_SIZE, frameOffset, parseWalHeader, scanFrames } from '../../src/storage/wal-format.ts';
import { readWalIndexHeader } from '../../src/storage/wal-index.ts';
import { type Status, events, newestPointAfter, waitEvent, waitExplained, waitServing } from '../support/views.ts';
import { EVERY_SECOND, startWithRestorePoints, waitRestoreEnd } from '../support/restore-points.ts';

/**
 * Damage at rest in the shop's orders.db and orders.db-wal, written with plain fs writes of
 * junk in the middle of the files while the shop takes orders, as a disk fault would. SQLite
 * does not see it: the running shop reads through its WAL index, quick_check says ok; only a
 * fresh open (a restart, a promotion, a restore point of a copy) runs WAL recovery, which
 * stops at the first damaged frame and drops every later commit. Each test proves that on a
 * copy of the damaged files taken right after the damage.
 *
 * Verification budget: every storage processor runs its live copy check every second (the
 * WAL frame chain and the db file's pages of every primary and replica, against what was
 * shipped and confirmed), and the controller polls the processors every 250 ms: damage is an
 * event within 1 s + the round's duration + 250 ms. Asserted: 2.5 s, for a shared 2-core machine.
 */
const VERIFICATION_BUDGET_MS = 2500;
const ACTIONS = /^(failover|restore|switchover|promotion)-/;

const volA = (c: Cluster): string => path.join(c.dir, 'array-a', 'volumes', 'shop');
const volB = (c: Cluster): string => path.join(c.dir, 'array-b', 'replicas', 'shop');

/** The committed frames of a copy's orders.db-wal: the WAL index's on a live primary, the chain from the header on a replica. */
function committedFrames(dir: string): { salt1: number; salt2: number; frames: number } {
  const db = path.join(dir, 'orders.db');
  const idx = readWalIndexHeader(`${db}-shm`);
  if (idx && idx.mxFrame > 0) return { salt1: idx.salt1, salt2: idx.salt2, frames: idx.mxFrame };
  const wal = fs.readFileSync(`${db}-wal`);
  const hdr = parseWalHeader(wal)!;
  return { salt1: hdr.salt1, salt2: hdr.salt2, frames: scanFrames(wal.subarray(WAL_HEADER_SIZE), hdr, 1, hdr.checksum).lastCommitIndex };
}

interface Damage {
  file: string;
  offset: number;
  original: Buffer;
  what: string;
}

/** 16 KiB of junk in the middle of the committed frames of the copy's WAL. */
function damageWal(dir: string): Damage {
  const c = committedFrames(dir);
  assert.ok(c.frames >= 20, `the WAL holds committed frames to damage (${c.frames})`);
  const frame = Math.floor(c.frames / 2);
  return overwrite(`${path.join(dir, 'orders.db')}-wal`, frameOffset(4096, frame) + 1000, `orders.db-wal frames ${frame}-${frame + 4} of ${c.frames}`);
}

/**
 * The first of four pages in a row of the copy's orders.db, nearest its middle, that no
 * live WAL frame supersedes (damage there is damage at rest in the db file); null when
 * there is none yet (the WAL still holds most pages of a young database).
 */
function dbRunToDamage(dir: string): { page: number; pages: number } | null {
  const db = path.join(dir, 'orders.db');
  const shadowed = inspectWalChain(db, 'orders.db', { committed: committedFrames(dir) }).shadowed ?? new Set<number>();
  const pages = Math.floor(fs.statSync(db).size / 4096);
  const middle = Math.floor(pages / 2);
  // From the middle outwards; never the first pages (the header and the schema).
  for (let d = 0; d < pages; d++) {
    for (const page of [middle + d, middle - d]) {
      if (page >= 3 && page + 3 <= pages && ![0, 1, 2, 3].some((k) => shadowed.has(page + k))) return { page, pages };
    }
  }
  return null;
}

/** 16 KiB of junk over four pages of the copy's orders.db that no live WAL frame supersedes. */
function damageDb(dir: string): Damage {
  const run = dbRunToDamage(dir);
  assert.ok(run, `orders.db has 4 pages in a row that the WAL does not hold (${Math.floor(fs.statSync(path.join(dir, 'orders.db')).size / 4096)} pages)`);
  return overwrite(path.join(dir, 'orders.db'), (run.page - 1) * 4096, `orders.db pages ${run.page}-${run.page + 3} of ${run.pages}`);
}

function overwrite(file: string, offset: number, what: string): Damage {
  const fd = fs.openSync(file, 'r+');
  try {
    const original = Buffer.alloc(16 * 1024);
    fs.readSync(fd, original, 0, original.length, offset);
    const junk = Buffer.alloc(16 * 1024);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 131 + 17) & 0xff;
    fs.writeSync(fd, junk, 0, junk.length, offset);
    return { file, offset, original, what };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The proof that a damage is real: orders.db + -wal of a copy, copied right after the damage,
 * opened fresh (as a restart would) twice — as damaged, and with the original bytes put back.
 */
function freshOpenProof(t: TestContext, dir: string, damages: Damage[]): { damaged: number; undamaged: number } {
  const snap = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-waldamage-'));
  t.after(() => fs.rmSync(snap, { recursive: true, force: true }));
  for (const f of ['orders.db', 'orders.db-wal']) fs.copyFileSync(path.join(dir, f), path.join(snap, `d-${f}`));
  for (const f of ['orders.db', 'orders.db-wal']) fs.copyFileSync(path.join(snap, `d-${f}`), path.join(snap, `u-${f}`));
  for (const d of damages) {
    const fd = fs.openSync(path.join(snap, `u-${path.basename(d.file)}`), 'r+');
    fs.writeSync(fd, d.original, 0, d.original.length, d.offset);
    fs.closeSync(fd);
  }
  const count = (prefix: string): number => {
    const sub = path.join(snap, prefix);
    fs.mkdirSync(sub);
    for (const f of ['orders.db', 'orders.db-wal']) fs.renameSync(path.join(snap, `${prefix}-${f}`), path.join(sub, f));
    const db = new Database(path.join(sub, 'orders.db'));
    try {
      return (db.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n;
    } catch {
      return -1;
    } finally {
      db.close();
    }
  };
  return { damaged: count('d'), undamaged: count('u') };
}

/** Waits until the site serves with replication streaming and no lag. */
const serving = (c: Cluster): Promise<Status> => waitServing(c, { caughtUp: true }, 60_000, 100);

/**
 * A switchover to `host` (powered on first if a fence cut it): the copy on its storage is
 * promoted, so its databases are opened fresh. Retried while the host is not trusted yet.
 */
async function switchTo(c: Cluster, host: string): Promise<void> {
  await api(c, `/v1/hosts/${host}/power`, { action: 'on' });
  await serving(c);
  await waitUntil(
    `a switchover to ${host}`,
    async () => {
      const r = await http(`${c.api}/v1/sites/shop/switchover`, { method: 'POST', body: { to: host }, timeoutMs: 60_000 });
      if (r.status === 409) return null;
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return (r.body as { status: string }).status === 'done';
    },
    30_000,
    500,
  );
  assert.equal((await api<Status>(c, '/v1/status')).sites[0]!.primary.host, host);
}

/** Orders acknowledged in `acked` that the shop no longer has. */
async function lost(c: Cluster, acked: AckedOrder[]): Promise<AckedOrder[]> {
  return missingOrders(c.front, acked);
}

test(
  'damage in the db file and the WAL of every live copy while the shop writes: found within the budget, the newest good restore point restored, no order acknowledged before it lost, also after a switchover reopens the db',
  { timeout: 180_000 },
  async (t) => {
    const { cluster, load } = await startWithRestorePoints(t, 'wd', { loadMs: 90_000 });
    // Until orders were checkpointed into the primary's orders.db (the shipper does it every
    // 1000 frames) and a restore point holds 150 of them.
    // Checked and damaged in one step, with no wait between: a checkpoint in between would restart a WAL.
    const [onA, onB] = await waitExplained(
      cluster,
      'orders in orders.db and a restore point holding 150 of them',
      async () => {
        const a = load.result.acked[149];
        if (!a || !(await newestPointAfter(cluster, a.ackAt))) return null;
        const ready =
          fs.statSync(path.join(volA(cluster), 'orders.db')).size >= 24 * 4096 &&
          committedFrames(volA(cluster)).frames >= 40 &&
          committedFrames(volB(cluster)).frames >= 40 &&
          dbRunToDamage(volA(cluster)) !== null &&
          dbRunToDamage(volB(cluster)) !== null;
        return ready
          ? [
              [damageWal(volA(cluster)), damageDb(volA(cluster))],
              [damageWal(volB(cluster)), damageDb(volB(cluster))],
            ]
          : null;
      },
      40_000,
      100,
    );
    const damagedAt = Date.now();
    const ackedBefore = load.result.acked.length;
    const proofA = freshOpenProof(t, volA(cluster), onA);
    const proofB = freshOpenProof(t, volB(cluster), onB);
    t.diagnostic(`damaged ${[...onA, ...onB].map((d) => `${d.file.includes('replicas') ? 'replica' : 'primary'} ${d.what}`).join('; ')}`);
    t.diagnostic(
      `${ackedBefore} orders acknowledged; a fresh open of the damaged primary copy reads ${proofA.damaged} (undamaged: ${proofA.undamaged}), of the replica ${proofB.damaged} (undamaged: ${proofB.undamaged})`,
    );
    assert.ok(proofA.damaged < proofA.undamaged, 'the damage is real: a fresh open of the primary loses commits');
    assert.ok(proofB.damaged < proofB.undamaged, 'the damage is real: a fresh open of the replica loses commits');
    // The running shop sees nothing wrong: it reads through its WAL index.
    assert.equal((await http(`${cluster.front}/api/orders?customer=${encodeURIComponent(load.result.acked[ackedBefore - 1]!.customer)}`)).status, 200);

    const detected = await waitEvent(
      cluster,
      'the primary copy found damaged',
      (e) => e.kind === 'corruption-detected' && e.data.role === 'primary',
      VERIFICATION_BUDGET_MS + 5000,
    );
    const detectedAfterMs = detected.at - damagedAt;
    t.diagnostic(`found ${detectedAfterMs} ms after the damage: ${detected.message.slice(0, 400)}`);
    assert.ok(detectedAfterMs <= VERIFICATION_BUDGET_MS, `found within the verification budget (${detectedAfterMs} ms)`);
    assert.equal(detected.data.storage, 'array-a');
    assert.match(detected.message, /orders\.db-wal: wal-frame \(frame \d+ \(page \d+\) does not verify/);

    const done = await waitRestoreEnd(cluster, 60_000);
    const r = await load.stop();
    assert.equal(done.kind, 'restore-complete', done.message);
    t.diagnostic(done.message);
    const all = await events(cluster);
    const replicaFound = all.find((e) => e.kind === 'corruption-detected' && e.data.role === 'replica');
    t.diagnostic(`replica: ${replicaFound ? replicaFound.message.slice(0, 300) : 'refused at its promotion'}`);
    assert.ok(replicaFound || all.some((e) => e.kind === 'promotion-refused'), 'the damaged replica was found damaged too');
    assert.ok(!all.some((e) => e.kind === 'failover-complete'), 'the damaged replica never served');
    assert.equal(done.data.to, 'h2');
    const takenAt = Number(done.data.takenAt);
    assert.ok(takenAt <= damagedAt, 'the restored point was taken before the damage');
    assert.equal(typeof done.data.lostMs, 'number');

    // No restore point was taken of a damaged copy: none between the damage and the restore.
    const points = (await api<{ points: { id: number; takenAt: number }[] }>(cluster, '/v1/sites/shop/backups')).points;
    const restoredAt = Number(all.find((e) => e.kind === 'restore-started' || e.kind === 'promotion-refused')?.at ?? done.at);
    assert.deepEqual(
      points.filter((p) => p.takenAt > damagedAt && p.takenAt < restoredAt),
      [],
      'no restore point of the damaged copy',
    );

    const before = r.acked.filter((o) => o.ackAt < takenAt);
    assert.ok(before.length >= 150);
    assert.deepEqual(await lost(cluster, before), [], 'every order acknowledged before the restored point is there');
    t.diagnostic(
      `${r.acked.length} orders acknowledged, ${before.length} before the restored point; ${r.acked.length - before.length} after it (lost, as restore-complete says: ${(Number(done.data.lostMs) / 1000).toFixed(1)} s of writes)`,
    );

    // Orders after the restore, then a switchover back to h1: its copy is opened fresh (promotion's fold).
    const after: AckedOrder[] = [];
    for (let i = 0; i < 20; i++) {
      const w = await http(`${cluster.front}/api/orders`, { method: 'POST', body: { customer: `wd-after-${i}`, items: [{ productId: 1, qty: 1 }] } });
      assert.equal(w.status, 201);
      after.push({ id: (w.body as { id: number }).id, customer: `wd-after-${i}`, ackAt: w.at, servedBy: w.servedBy });
    }
    await switchTo(cluster, 'h1');
    assert.deepEqual(
      await lost(cluster, [...before, ...after]),
      [],
      'after the db was reopened on h1: every order acknowledged before the point, and since the restore, is there',
    );
  },
);

test(
  "only the replica's WAL damaged: found, the replica re-seeded from the healthy primary; no failover, no restore, no order lost, also after a switchover onto the re-seeded copy",
  { timeout: 150_000 },
  async (t) => {
    const cluster = await startCluster({});
    t.after(() => cluster.stop());
    await waitStreaming(cluster);
    const firstEvent = Math.max(0, ...(await events(cluster)).map((e) => e.id));
    const load = startLoad(cluster.front, { workers: 2, maxMs: 60_000, tag: 'wr' });
    t.after(() => load.stop());
    const damage = await waitExplained(
      cluster,
      "150 orders, frames in the replica's WAL (then damaged, in the same step)",
      async () => (load.result.acked.length >= 150 && committedFrames(volB(cluster)).frames >= 40 ? damageWal(volB(cluster)) : null),
      30_000,
      100,
    );

    const storageA = `http://127.0.0.1:${ports(cluster.slot).storageA}`;
    const damagedAt = Date.now();
    const proof = freshOpenProof(t, volB(cluster), [damage]);
    t.diagnostic(`damaged the replica's ${damage.what}; a fresh open of it reads ${proof.damaged} orders (undamaged: ${proof.undamaged})`);
    assert.ok(proof.damaged < proof.undamaged, 'the damage is real: a fresh open of the replica loses commits');

    const detected = await waitEvent(
      cluster,
      'the replica found damaged',
      (e) => e.id > firstEvent && e.kind === 'corruption-detected',
      VERIFICATION_BUDGET_MS + 5000,
    );
    const detectedAfterMs = detected.at - damagedAt;
    t.diagnostic(`found ${detectedAfterMs} ms after the damage: ${detected.message.slice(0, 300)}`);
    assert.ok(detectedAfterMs <= VERIFICATION_BUDGET_MS, `found within the verification budget (${detectedAfterMs} ms)`);
    assert.deepEqual([detected.data.role, detected.data.storage], ['replica', 'array-b']);
    assert.match(detected.message, /orders\.db-wal: wal-frame \(frame \d+ \(page \d+\) does not verify/);

    const ok = await waitEvent(
      cluster,
      'the replica verifies again',
      (e) => e.id > detected.id && e.kind === 'verification-ok' && e.data.storage === 'array-b',
      15_000,
    );
    const seeds = (await http(`${storageA}/v1/volumes/shop`)).body as {
      replication: { seeds?: { db: string; at: number; kind: string; bytesSent: number }[] };
    };
    const reseed = seeds.replication.seeds?.find((s) => s.db === 'orders.db' && s.at > damagedAt);
    assert.ok(reseed, `orders.db was re-seeded after the damage (${JSON.stringify(seeds.replication.seeds)})`);
    t.diagnostic(
      `re-seeded (${reseed.kind}, ${reseed.bytesSent} bytes sent) ${reseed.at - damagedAt} ms after the damage; verification-ok ${ok.at - damagedAt} ms after`,
    );

    const r = await load.stop();
    const actions = (await events(cluster)).filter((e) => e.id > firstEvent && ACTIONS.test(e.kind));
    assert.deepEqual(
      actions.map((e) => e.kind),
      [],
      'no failover, restore or switchover: the primary was healthy',
    );
    assert.ok(
      !(await events(cluster)).some((e) => e.id > firstEvent && e.kind === 'corruption-detected' && e.data.role === 'primary'),
      'the primary was never blamed',
    );
    const st = await serving(cluster);
    assert.equal(st.sites[0]!.primary.host, 'h1');
    assert.deepEqual(r.postsFailed, [], 'no order failed');
    assert.deepEqual(await lost(cluster, r.acked), [], 'no acknowledged order lost');

    // The re-seeded replica opened fresh by a switchover holds every order.
    await switchTo(cluster, 'h2');
    assert.deepEqual(await lost(cluster, r.acked), [], `all ${r.acked.length} orders on the re-seeded copy`);
  },
);

test(
  "damage in the primary's db file and WAL only (sync mode): found within the budget, failover to the replica that holds every frame; no restore, no order lost, also after a switchover back",
  { timeout: 150_000 },
  async (t) => {
    const cluster = await startCluster({ replication: 'sync', backup: EVERY_SECOND });
    t.after(() => cluster.stop());
    await waitStreaming(cluster);
    const firstEvent = Math.max(0, ...(await events(cluster)).map((e) => e.id));
    const load = startLoad(cluster.front, { workers: 2, maxMs: 60_000, tag: 'wp' });
    t.after(() => load.stop());
    // Checked and damaged in one step: a checkpoint in between would restart the WAL.
    const damages = await waitExplained(
      cluster,
      "orders in the primary's orders.db and in its WAL (then damaged, in the same step)",
      async () =>
        load.result.acked.length >= 150 &&
        fs.statSync(path.join(volA(cluster), 'orders.db')).size >= 24 * 4096 &&
        committedFrames(volA(cluster)).frames >= 40 &&
        dbRunToDamage(volA(cluster)) !== null
          ? [damageWal(volA(cluster)), damageDb(volA(cluster))]
          : null,
      40_000,
      100,
    );
    const damagedAt = Date.now();
    const proof = freshOpenProof(t, volA(cluster), damages);
    t.diagnostic(
      `damaged the primary's ${damages.map((d) => d.what).join(' and ')}; a fresh open of it reads ${proof.damaged} orders (undamaged: ${proof.undamaged})`,
    );
    assert.ok(proof.damaged < proof.undamaged, 'the damage is real: a fresh open of the primary loses commits');

    const detected = await waitEvent(
      cluster,
      'the primary found damaged',
      (e) => e.id > firstEvent && e.kind === 'corruption-detected',
      VERIFICATION_BUDGET_MS + 5000,
    );
    const detectedAfterMs = detected.at - damagedAt;
    t.diagnostic(`found ${detectedAfterMs} ms after the damage: ${detected.message.slice(0, 500)}`);
    assert.ok(detectedAfterMs <= VERIFICATION_BUDGET_MS, `found within the verification budget (${detectedAfterMs} ms)`);
    assert.deepEqual([detected.data.role, detected.data.storage], ['primary', 'array-a']);
    // Both damages are written in one step of this test, but a check round may read the WAL
    // before it and the db file after it: the first detection names at least one of them.
    assert.match(
      detected.message,
      /orders\.db-wal: wal-frame \(frame \d+ \(page \d+\) does not verify|orders\.db: page \(page\(s\) \d+-\d+ /,
      'the damaged WAL frames or db pages are named',
    );

    const done = await waitEvent(
      cluster,
      'the failover',
      (e) => e.id > firstEvent && ['failover-complete', 'failover-failed', 'failover-blocked', 'restore-complete', 'restore-failed'].includes(e.kind),
      30_000,
    );
    assert.equal(done.kind, 'failover-complete', done.message);
    assert.equal(done.data.to, 'h2');
    assert.match(String(done.data.reason), /corrupt/);
    const r = await load.stop();
    const kinds = (await events(cluster)).filter((e) => e.id > firstEvent && ACTIONS.test(e.kind)).map((e) => e.kind);
    assert.ok(!kinds.some((k) => k.startsWith('restore-') || k === 'promotion-refused'), `no restore, no refused promotion (${kinds.join(', ')})`);
    assert.ok(
      !(await events(cluster)).some((e) => e.id > firstEvent && e.kind === 'corruption-detected' && e.data.role === 'replica'),
      'the replica was never blamed',
    );
    assert.deepEqual(await lost(cluster, r.acked), [], `none of the ${r.acked.length} acknowledged orders lost`);

    // Re-protected onto array-a (a new generation over the damaged old copy), then a switchover back.
    await switchTo(cluster, 'h1');
    assert.deepEqual(await lost(cluster, r.acked), [], "every order on h1's re-seeded copy, opened fresh");
  },
);
