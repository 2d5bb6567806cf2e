import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { CatchUpBarrier, type WalPosition } from '../../../src/storage/catch-up-barrier.ts';
import { DbShipper } from '../../../src/storage/db-shipper.ts';
import { ReplicaDbWriter } from '../../../src/storage/replica-db-writer.ts';
import type { ReplicaClient } from '../../../src/storage/replica-protocol.ts';
import { readWalIndexHeader } from '../../../src/storage/wal-index.ts';
import { tempDir, testLogger, waitFor } from './helpers.ts';

/**
 * The sync barrier's release rules (catch-up-barrier.ts): a waiter is released by a
 * pass numbered after its registration that caught up, or by the acknowledgment of a
 * WAL position that covers the position it registered with — never by a pass, in
 * flight or not, whose acknowledged position does not cover its commit.
 */

function tracked(p: Promise<void>): { done: boolean; p: Promise<void> } {
  const s = { done: false, p };
  void p.then(
    () => {
      s.done = true;
    },
    () => undefined,
  );
  return s;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('CatchUpBarrier: a position releases only when the same WAL is acknowledged at or past it', async () => {
  const b = new CatchUpBarrier();
  const S = { salt1: 7, salt2: 9 };
  const pass1 = b.begin(); // a pass is in flight when the waiters arrive
  const w = tracked(b.wait({ ...S, frame: 10 }));
  const anon = tracked(b.wait(null));
  b.acked({ ...S, frame: 9 }); // the in-flight pass read up to 9 only
  b.acked({ salt1: 8, salt2: 9, frame: 100 }); // another WAL, however far
  b.acked({ salt1: 7, salt2: 10, frame: 100 });
  b.done(pass1); // the pass that was in flight at registration
  await tick();
  assert.equal(w.done, false, 'released by a pass that did not cover its commit');
  assert.equal(anon.done, false, 'a waiter without position released by the pass in flight');
  b.acked({ ...S, frame: 10 });
  await tick();
  assert.equal(w.done, true);
  assert.equal(anon.done, false, 'positions never release a waiter without one');
  b.done(b.begin());
  await tick();
  assert.equal(anon.done, true);
  // Already acknowledged: at once. Invalidated (a new generation): not any more.
  assert.equal(await Promise.race([b.wait({ ...S, frame: 5 }).then(() => 'now'), tick().then(() => 'later')]), 'now');
  b.invalidate();
  const after = tracked(b.wait({ ...S, frame: 5 }));
  await tick();
  assert.equal(after.done, false, 'released by a position acknowledged before a new generation');
  b.failAll(new Error('stopped'));
  await assert.rejects(after.p, /stopped/);
});

/**
 * A DbShipper with a replica client that can hold the frames call, i.e. keep a pass in
 * flight: the replica's acknowledged position is recorded when each call returns.
 */
async function heldShipper(t: { after: (fn: () => Promise<void> | void) => void }, opts: { truncateFirst?: boolean } = {}) {
  const root = tempDir('us-catchup-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  fs.mkdirSync(src);
  fs.mkdirSync(dst);
  const app = new Database(path.join(src, 'orders.db'));
  app.pragma('journal_mode = WAL');
  app.pragma('synchronous = FULL');
  app.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)');
  if (opts.truncateFirst) app.pragma('wal_checkpoint(TRUNCATE)'); // no live WAL frame at the image
  const writer = new ReplicaDbWriter(dst, 'orders.db');
  const st = { hold: false, held: 0, frameCalls: 0, acked: null as WalPosition | null, gates: [] as (() => void)[] };
  const client = {
    snapshotChunk: async (c: { generation: number; part: 'db' | 'wal'; offset: number }, data: Buffer) => {
      await writer.snapshotChunk(c.generation, c.part, c.offset, data);
      return { ok: true };
    },
    snapshotBase: () => Promise.resolve({ base: null }), // no older copy: full images
    snapshotCommit: async (c: { generation: number; dbSize: number; dbSha256: string; walSize: number }) => ({
      lastFrame: await writer.snapshotCommit(c.generation, c.dbSize, c.dbSha256, c.walSize),
    }),
    frames: async (f: { generation: number; newWal?: Buffer; firstIndex: number; frames: Buffer }) => {
      st.frameCalls++;
      if (st.hold) {
        st.held++;
        await new Promise<void>((r) => st.gates.push(r));
      }
      const lastFrame = await writer.appendFrames(f.generation, f.newWal, f.firstIndex, f.frames);
      const h = readWalIndexHeader(path.join(src, 'orders.db-shm'))!; // no restart in these tests: same salts
      st.acked = { salt1: h.salt1, salt2: h.salt2, frame: lastFrame };
      return { lastFrame };
    },
  };
  const shipper = new DbShipper({ volumeDir: src, rel: 'orders.db', client: client as unknown as ReplicaClient, logger: testLogger(), idlePollMs: 60_000 });
  t.after(async () => {
    st.hold = false;
    for (const g of st.gates.splice(0)) g();
    await shipper.stop();
    app.close();
    fs.rmSync(root, { recursive: true, force: true });
  });
  shipper.start();
  await waitFor('first generation', () => shipper.state === 'streaming', 10_000);
  const insert = app.prepare('INSERT INTO orders (payload) VALUES (randomblob(300))');
  const position = (): WalPosition => {
    const h = readWalIndexHeader(path.join(src, 'orders.db-shm'))!;
    return { salt1: h.salt1, salt2: h.salt2, frame: h.mxFrame };
  };
  const release = (): void => {
    for (const g of st.gates.splice(0)) g();
  };
  return { st, shipper, insert, position, release };
}

test('a waiter whose commit the in-flight pass did not read is not released by that pass', async (t) => {
  const h = await heldShipper(t);
  h.st.hold = true;
  h.insert.run();
  const p1 = tracked(h.shipper.catchUp());
  await waitFor('pass 1 holding its frames', () => h.st.held === 1, 5000);
  // Committed after pass 1 read the WAL: pass 1 cannot cover it.
  h.insert.run();
  const want = h.position();
  let ackedAtRelease: WalPosition | null = null;
  const p2 = tracked(
    h.shipper.catchUp().then(() => {
      ackedAtRelease = h.st.acked;
    }),
  );
  h.release(); // pass 1 is acknowledged
  await waitFor('waiter 1 released', () => p1.done, 5000);
  await waitFor('pass 2 holding its frames', () => h.st.held === 2, 5000);
  await tick();
  assert.equal(p2.done, false, `released by pass 1, which acknowledged ${JSON.stringify(h.st.acked)} < ${JSON.stringify(want)}`);
  h.st.hold = false;
  h.release();
  await p2.p;
  assert.ok(
    ackedAtRelease !== null && (ackedAtRelease as WalPosition).frame >= want.frame,
    `released at ${JSON.stringify(ackedAtRelease)} before its commit ${JSON.stringify(want)} was acknowledged`,
  );
});

test('a waiter whose commit the in-flight pass already read joins that pass (no second ship)', async (t) => {
  const h = await heldShipper(t);
  h.st.hold = true;
  h.insert.run();
  const p1 = tracked(h.shipper.catchUp());
  await waitFor('pass 1 holding its frames', () => h.st.held === 1, 5000);
  // Count the passes that begin from now on.
  const barrier = (h.shipper as unknown as { barrier: CatchUpBarrier }).barrier;
  let begun = 0;
  const begin = barrier.begin.bind(barrier);
  barrier.begin = () => {
    begun++;
    return begin();
  };
  // Registered while pass 1 is in flight; its commit (the same one) was read by pass 1.
  let begunAtRelease = -1;
  const p2 = tracked(
    h.shipper.catchUp().then(() => {
      begunAtRelease = begun;
    }),
  );
  h.st.hold = false;
  h.release();
  await waitFor('both released', () => p1.done && p2.done, 5000);
  assert.equal(begunAtRelease, 0, 'the joined waiter was released by the pass in flight, not a later one');
});

test('a database nobody writes releases its barriers by position, without a pass; a write after the image needs one', async (t) => {
  const h = await heldShipper(t, { truncateFirst: true });
  // Everything is in the database file at the image (empty WAL); the WAL index has not moved since.
  const barrier = (h.shipper as unknown as { barrier: CatchUpBarrier }).barrier;
  let begun = 0;
  const begin = barrier.begin.bind(barrier);
  barrier.begin = () => {
    begun++;
    return begin();
  };
  for (let i = 0; i < 5; i++) await h.shipper.catchUp();
  assert.equal(begun, 0, 'no pass for the barriers of an idle database');
  // A commit after the image is not covered by the image's position.
  h.insert.run();
  const p = tracked(h.shipper.catchUp());
  await tick();
  assert.equal(p.done, false);
  await waitFor('released by a pass', () => p.done, 5000);
  assert.ok(begun >= 1);
});
